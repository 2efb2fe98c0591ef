"""Calibration, evaluation outputs and plots, paired comparison, and the cross-data-set matrix."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from faketrace.engine import metrics as M
from faketrace.engine import plots as P
from faketrace.engine.calibration import (
    calibrated_frames,
    calibrated_video_scores,
    calibrated_videos,
    fit_calibration,
    fit_temperature,
    fit_temperature_and_bias,
    raw_videos,
    split_videos,
)
from faketrace.engine.checkpoint import load_checkpoint

from .conftest import SMALL_DEMO, compose_config, resolved

TINY = ["model=tiny", "trainer.progress_bar=false", "loader.batch_size=8", "loader.num_workers=0",
        "trainer.max_epochs=1"]
FAST_BOOT = ["bootstrap.n_resamples=200", "num_workers=0"]


def _overconfident_frames(seed: int, n_videos: int = 600, frames_per_video: int = 4, overconfidence: float = 3.0):
    """Frames whose true fake probability is sigmoid(z) but whose model reports logit = 3 z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n_videos * frames_per_video)
    label = (rng.random(len(z)) < M.sigmoid(z)).astype(int)
    vid = np.repeat(np.arange(n_videos), frames_per_video)
    # Each video takes the label of its first frame so that a video has one label.
    label = label[vid * frames_per_video]
    z = z + 0.8 * (2 * label - 1)
    return pd.DataFrame({"video_id": vid, "frame_index": np.tile(np.arange(frames_per_video), n_videos),
                         "label": label, "logit": overconfidence * z})


def test_calibration_lowers_ece_on_videos_it_was_not_fitted_on():
    frames = _overconfident_frames(0)
    cal = fit_calibration(frames, "mean", split="val", seed=0, target_fpr=0.05)  # fit_on="all": cross-fitted
    assert cal["fitted_on"]["n_videos"] == frames["video_id"].nunique()
    assert cal["temperature"] > 1.5  # an overconfident model is cooled down
    assert cal["form"]["video"] != "none" and cal["video_temperature"] < 1  # the video mean is sharpened again
    held = cal["held_out"]
    assert held["how"].startswith("cross-fitted") and held["n_videos"] == frames["video_id"].nunique()
    for level in ("frame", "video"):
        assert held["after"][level]["ece"] < held["before"][level]["ece"], level
        assert held["after"][level]["log_loss"] < held["before"][level]["log_loss"], level
    assert held["ece_improved"] == {"frame": True, "video": True}
    # Fresh videos from the same model, never seen by any fit: ECE drops at both levels.
    fresh = _overconfident_frames(10)
    before, after = raw_videos(fresh, "mean"), calibrated_videos(fresh, "mean", cal)
    for b, a in zip(before, after, strict=True):
        assert M.expected_calibration_error(a["label"], a["score"]) < 0.5 * M.expected_calibration_error(
            b["label"], b["score"])
    # Frame AUC does not move under one map, which is monotone (pooled folds each have their own map).
    assert M.roc_auc(after[0]["label"], after[0]["score"]) == pytest.approx(
        M.roc_auc(before[0]["label"], before[0]["score"]), abs=1e-12)
    thr = cal["thresholds"]["video"]
    assert 0 < thr["eer"] < 1 and thr["target_fpr"] == 0.05 and thr["at_target_fpr"] is not None


def test_a_shifted_model_gets_a_bias_and_a_calibrated_one_is_left_alone():
    shifted = _overconfident_frames(4).assign(logit=lambda d: d["logit"] + 2.0)  # calls too much fake
    cal = fit_calibration(shifted, "mean", split="val")
    assert cal["form"]["frame"] == "temperature+bias" and cal["bias"] < -0.3
    fresh = _overconfident_frames(11).assign(logit=lambda d: d["logit"] + 2.0)
    t_only = calibrated_frames(fresh, {"temperature": fit_temperature(shifted["logit"], shifted["label"])})
    with_bias = calibrated_frames(fresh, cal)
    assert (M.expected_calibration_error(with_bias["label"], with_bias["score"])
            < M.expected_calibration_error(t_only["label"], t_only["score"]))
    # Calibrated logits (label drawn from sigmoid(logit), the same logit on every frame of a video):
    # both maps stay near the identity.
    rng = np.random.default_rng(5)
    z = rng.normal(0, 2, 2000)
    honest = pd.DataFrame({"video_id": np.repeat(np.arange(2000), 2), "frame_index": np.tile([0, 1], 2000),
                           "label": np.repeat((rng.random(2000) < M.sigmoid(z)).astype(int), 2),
                           "logit": np.repeat(z, 2)})
    cal = fit_calibration(honest, "mean", split="val")
    assert cal["temperature"] == pytest.approx(1.0, abs=0.1) and abs(cal["bias"]) < 0.15
    assert cal["video_temperature"] == pytest.approx(1.0, abs=0.1) and abs(cal["video_bias"]) < 0.15


def test_half_split_measures_on_the_other_half_and_the_frame_map_alone_under_sharpens_videos():
    frames = _overconfident_frames(0)
    cal = fit_calibration(frames, "mean", split="val", fit_on="half", seed=0)
    held = cal["held_out"]
    assert held["n_videos"] + cal["fitted_on"]["n_videos"] == frames["video_id"].nunique()
    assert held["ece_improved"] == {"frame": True, "video": True}
    # The frame map alone leaves the video mean under-confident (worse than raw): hence the video map.
    held_frames = frames[frames["video_id"].isin(split_videos(frames, 0)[1])]
    frame_only = M.aggregate_videos(calibrated_frames(held_frames, cal), "mean")
    assert M.expected_calibration_error(frame_only["label"], frame_only["score"]) > held["before"]["video"]["ece"]


def test_an_item_with_one_frame_keeps_its_frame_probability():
    cal = {"temperature": 2.0, "bias": 0.5, "video_temperature": 0.4, "video_bias": -0.2, "video_min_frames": 2}
    videos = pd.DataFrame({"score": [0.7, 0.7], "n_frames": [1, 8]})
    out = calibrated_video_scores(videos, cal)
    assert out[0] == 0.7 and out[1] == pytest.approx(M.sigmoid(M.logit(0.7) / 0.4 - 0.2))
    # A version-1 record (no video_min_frames) rescaled every item, and is still read that way.
    old = calibrated_video_scores(videos, {"temperature": 2.0, "video_temperature": 0.4})
    assert old == pytest.approx(np.full(2, M.sigmoid(M.logit(0.7) / 0.4)))


def test_fitted_temperature_minimises_the_log_loss():
    frames = _overconfident_frames(1, n_videos=200)
    t = fit_temperature(frames["logit"], frames["label"])
    grid = np.exp(np.linspace(np.log(t) - 0.3, np.log(t) + 0.3, 61))
    losses = [M.log_loss(frames["label"], M.sigmoid(frames["logit"] / g), eps=1e-15) for g in grid]
    assert abs(grid[int(np.argmin(losses))] - t) <= t * 0.011


def test_temperature_and_bias_equal_an_unpenalised_logistic_regression_on_the_logit():
    from sklearn.linear_model import LogisticRegression

    frames = _overconfident_frames(1, n_videos=200).assign(logit=lambda d: d["logit"] - 1.0)
    t, b = fit_temperature_and_bias(frames["logit"], frames["label"])
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(frames[["logit"]], frames["label"])
    assert 1 / t == pytest.approx(ref.coef_[0, 0], rel=1e-4) and b == pytest.approx(ref.intercept_[0], abs=1e-4)
    # Logits that rank the classes backwards: no positive T fits; the bounded search returns the hottest.
    t, b = fit_temperature_and_bias(-frames["logit"], frames["label"])
    assert t == pytest.approx(np.exp(5), rel=1e-3) and np.isfinite(b)


def test_calibration_refuses_the_test_split():
    with pytest.raises(ValueError, match="test"):
        fit_calibration(_overconfident_frames(2, n_videos=20), "mean", split="test")
    # Test frames called val are refused too: the rows say which split they come from.
    frames = _overconfident_frames(2, n_videos=20).assign(split="val")
    frames.loc[frames["video_id"] == 3, "split"] = "test"
    with pytest.raises(ValueError, match="test"):
        fit_calibration(frames, "mean", split="val")


def _axes_labelled(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        assert ax.get_legend() is not None and ax.get_legend().get_texts(), ax.get_title()


def test_every_evaluation_plot_has_axis_labels_and_a_legend():
    from faketrace.engine.evaluate import evaluation_figures

    frames = _overconfident_frames(3, n_videos=80)
    frames["score"] = M.sigmoid(frames["logit"])
    result = {"aggregation": "mean", "warning": "NOT FIT FOR CASEWORK: test",
              "checkpoint": {"calibration": {"method": "temperature", "temperature": 3.0}}}
    figs = evaluation_figures(result, frames, {"n_resamples": 50, "seed": 0, "level": 0.95})
    assert set(figs) == {"roc", "det", "reliability", "scores_video", "scores_frame"}
    for fig in figs.values():
        _axes_labelled(fig)
    # The ROC carries the interval band as a labelled artist.
    assert any("bootstrap band" in t.get_text() for t in figs["roc"].axes[0].get_legend().get_texts())
    heat = P.matrix_heatmap_figure(pd.DataFrame([[0.9, 0.7]], index=["a"], columns=["x", "y"]),
                                   pd.DataFrame([[0.8, 0.6]], index=["a"], columns=["x", "y"]),
                                   pd.DataFrame([[0.95, 0.8]], index=["a"], columns=["x", "y"]), "t")
    main_ax = heat.axes[0]
    assert main_ax.get_xlabel() == "test set" and main_ax.get_ylabel()
    assert heat.axes[1].get_ylabel() == "video AUC"  # the colour bar says what the colours mean
    for fig in [*figs.values(), heat]:
        P.plt.close(fig)


# -- through the real configs on demo data ---------------------------------------------------------

@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory):
    from faketrace.engine.train import train

    out = tmp_path_factory.mktemp("train_demo")
    cfg = compose_config("train", demo_data["overrides"] + TINY, output_dir=out)
    train(resolved(cfg))
    return out / "checkpoints" / "last.ckpt"


def _overconfident_copy(path, out, factor: float = 4.0):
    """The checkpoint with its logits scaled by `factor`: an overconfident model, which a fitted
    temperature measurably improves (a 1-epoch model's own calibration may rightly be refused)."""
    from faketrace.engine.checkpoint import save_checkpoint

    ckpt = load_checkpoint(path)
    for key in ("classifier.weight", "classifier.bias"):
        ckpt["model"][key] = ckpt["model"][key] * factor
    ckpt.pop("format")
    return save_checkpoint(ckpt, out)


def test_calibrate_writes_a_calibrated_copy_and_evaluate_uses_it(demo_data, trained, tmp_path):
    from faketrace.engine.evaluate import calibrate_checkpoint, evaluate_checkpoint

    overconfident = _overconfident_copy(trained, tmp_path / "overconfident.ckpt")
    # Fitted on the training split's 12 real and 36 fake items: the small demo's validation split (4 reals)
    # is too small for the held-out check to tell a fit from noise, so a fit there is often refused.
    cfg = compose_config("calibrate", demo_data["overrides"] + [f"ckpt_path={overconfident}", "num_workers=0",
                                                               f"out_path={tmp_path / 'cal.ckpt'}", "split=train"],
                         output_dir=tmp_path / "cal")
    out = calibrate_checkpoint(resolved(cfg))
    ckpt = load_checkpoint(tmp_path / "cal.ckpt")
    torch.load(tmp_path / "cal.ckpt", weights_only=True)
    cal = ckpt["calibration"]
    assert cal["method"] == "platt" and cal["temperature"] > 0 and cal["fitted_on"]["split"] == "train"
    assert cal["held_out"]["n_videos"] > 0 and out["checkpoint"] == str(tmp_path / "cal.ckpt")
    assert cal["temperature"] > 2  # it undoes most of the x4
    assert load_checkpoint(overconfident)["calibration"]["method"] == "none"  # the source is untouched
    # Training calibrated best.ckpt on the validation scores of its epoch: the same maps (or the same
    # refusal) this fit finds from the checkpoint's weights (last.ckpt, to resume from, stays uncalibrated).
    best = trained.with_name("best.ckpt")
    at_training = load_checkpoint(best)["calibration"]
    assert at_training["fitted_on"]["split"] == "val" and at_training["method"] in ("platt", "none")
    refit = calibrate_checkpoint(resolved(compose_config("calibrate", demo_data["overrides"] + [
        f"ckpt_path={best}", "num_workers=0", f"out_path={tmp_path / 'best_cal.ckpt'}"],
        output_dir=tmp_path / "cal_best")))["calibration"]
    for key in ("temperature", "bias", "video_temperature", "video_bias"):
        assert refit[key] == pytest.approx(at_training[key], rel=1e-6, abs=1e-9), key
    assert refit["form"] == at_training["form"] and refit["method"] == at_training["method"]
    with pytest.raises(ValueError, match="test"):
        calibrate_checkpoint(resolved(compose_config("calibrate", demo_data["overrides"] + [
            f"ckpt_path={trained}", "split=test"], output_dir=tmp_path / "refused")))

    ecfg = compose_config("evaluate", demo_data["overrides"] + FAST_BOOT + [
        f"ckpt_path={tmp_path / 'cal.ckpt'}", f"compare_with={overconfident}"], output_dir=tmp_path / "eval")
    result = evaluate_checkpoint(resolved(ecfg))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["schema_version"] == 2 and saved["test_set"]["split"] == "test"
    assert saved["bootstrap"] == {"n_resamples": 200, "seed": 0, "level": 0.95}
    raw, calibrated = saved["detector"], saved["detector_calibrated"]
    assert calibrated["temperature"] == pytest.approx(cal["temperature"])
    # Frame AUC is invariant to T; the raw numbers are the uncalibrated ones.
    assert calibrated["frame"]["auc"] == pytest.approx(raw["frame"]["auc"], abs=1e-12)
    assert calibrated["video"]["operating_threshold"] == pytest.approx(cal["thresholds"]["video"]["eer"])
    for key in ("balanced_accuracy@operating", "confusion@operating"):
        assert key in calibrated["video"]
    iv = raw["video"]["intervals"]
    assert iv["auc"]["low"] <= raw["video"]["auc"] <= iv["auc"]["high"] and iv["n_resamples"] == 200
    assert {"method", "compression", "media_type"} <= {k.removeprefix("video_auc_by_") for k in raw
                                                        if k.startswith("video_auc_by_")}
    # Same weights, same test set: the paired difference is zero and DeLong says so.
    comp = saved["comparison"]
    assert comp["video"]["difference"] == pytest.approx(0, abs=1e-12) and comp["video"]["delong"]["p_value"] == 1.0
    assert "delong" not in comp["frame"]  # frames of a video are not independent
    for name in ("metrics.csv", "summary.md", "roc.png", "det.png", "reliability.png", "scores_video.png",
                 "scores_frame.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 200, name
    summary = (tmp_path / "eval" / "summary.md").read_text()
    assert "NOT FIT FOR CASEWORK" in summary and "detector_calibrated" in summary and "Paired comparison" in summary
    csv = pd.read_csv(tmp_path / "eval" / "metrics.csv")
    assert {"auc_low", "auc_high", "eer_nearest_point", "ece", "tpr@fpr=0.01"} <= set(csv.columns)
    assert result["detector"]["video"]["auc"] == saved["detector"]["video"]["auc"]


@pytest.fixture(scope="module")
def shifted_data(demo_data):
    """The second demo domain, small, generated and preprocessed beside the first."""
    from omegaconf import OmegaConf

    from faketrace.datasets.demo import generate_demo
    from faketrace.datasets.preprocess import PreprocessSpec, preprocess_index

    overrides = demo_data["overrides"] + ["data=demo_shifted"]
    cfg = resolved(compose_config("demo_data", overrides + SMALL_DEMO))
    index = generate_demo(cfg.data.root, cfg.data.index_path, int(cfg.data.seed),
                          OmegaConf.to_container(cfg.data.generator), dataset=cfg.data.name)
    pcfg = resolved(compose_config("preprocess", overrides + ["face.frames_per_video=4", "face.crop_size=64"]))
    preprocess_index(index, pcfg.data.root, pcfg.data.faces_dir,
                     PreprocessSpec.from_dict(OmegaConf.to_container(pcfg.face)), pcfg.data.manifest_path)
    return {"overrides": overrides, "index": index}


def test_demo_shifted_is_a_second_domain(demo_data, shifted_data):
    a, b = demo_data["index"], shifted_data["index"]
    assert set(b["dataset"]) == {"demo_shifted"} and set(b["method"]) == {"real", "face_swap", "local_resample"}
    assert set(b.loc[b["media_type"] == "video", "compression"]) == {"crf28"}
    assert set(a.loc[a["media_type"] == "video", "compression"]) == {"crf10"}


def test_cross_data_set_matrix_is_2x2_with_intervals(demo_data, shifted_data, trained, tmp_path):
    from faketrace.engine.crosseval import cross_evaluate
    from faketrace.engine.train import train

    cfg = compose_config("train", shifted_data["overrides"] + TINY, output_dir=tmp_path / "train_shifted")
    train(resolved(cfg))
    shifted_ckpt = tmp_path / "train_shifted" / "checkpoints" / "last.ckpt"
    test_sets = {name: resolved(compose_config("evaluate", demo_data["overrides"] + [f"data={name}", "ckpt_path=x"]))
                 .data for name in ("demo", "demo_shifted")}
    table = cross_evaluate([str(trained), str(shifted_ckpt)], test_sets, tmp_path / "matrix",
                           bootstrap={"n_resamples": 200, "seed": 0, "level": 0.95}, num_workers=0)
    assert len(table) == 4 and set(table["trained_on"]) == {"demo", "demo_shifted"}
    assert table["video_auc"].notna().all() and (table["video_auc_low"] <= table["video_auc"]).all()
    md = (tmp_path / "matrix" / "cross_eval.md").read_text()
    assert "| checkpoint | demo | demo_shifted |" in md and md.count("trained on") == 2
    assert (tmp_path / "matrix" / "cross_eval.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "matrix" / "cross_eval.csv")) == 4


# -- robustness ---------------------------------------------------------------------------------

def test_perturbation_levels_are_the_published_ones_and_act_as_described():
    from faketrace.datasets import perturb as T

    assert T.DEEPERFORENSICS_LEVELS == {
        "colour_saturation": [0.4, 0.3, 0.2, 0.1, 0.0], "colour_contrast": [0.85, 0.725, 0.6, 0.475, 0.35],
        "block_wise": [16, 32, 48, 64, 80], "gaussian_noise": [0.001, 0.002, 0.005, 0.01, 0.05],
        "gaussian_blur": [7, 9, 13, 17, 21], "pixelation": [2, 3, 4, 5, 6], "h264_crf": [30, 32, 35, 38, 40]}
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    grey = T.colour_saturation(img, 0.0)
    assert np.abs(grey.astype(int) - grey.mean(axis=2, keepdims=True)).max() <= 2  # no chroma left
    assert T.colour_contrast(img, 0.35).std() < img.std() * 0.4
    assert (T.block_wise(img, 16, rng) == 128).all(axis=2).sum() >= T.BLOCK_SIDE ** 2
    assert T.pixelation(img, 4).shape == img.shape and len(np.unique(T.pixelation(img, 4)[:4, :4, 0])) == 1
    assert T.downscale(img, 0.5).shape == (32, 24, 3)
    big = np.zeros((1000, 3000, 3), np.uint8)
    assert T.perturb_frame(big, "telegram", "photo", rng).shape == (427, 1280, 3)


def test_robustness_sweep_2x2_writes_table_and_curves(demo_data, trained, tmp_path):
    from faketrace.engine.robustness import robustness_sweep

    cfg = compose_config("robustness", demo_data["overrides"] + [
        f"ckpt_path={trained}", "distortions=[gaussian_blur,jpeg_quality]",
        "levels={gaussian_blur: [7, 13], jpeg_quality: [70, 30]}",
        "bootstrap.n_resamples=100", "num_workers=0"], output_dir=tmp_path)
    table = robustness_sweep(resolved(cfg))
    assert table["distortion"].tolist() == ["none", "gaussian_blur", "gaussian_blur", "jpeg_quality", "jpeg_quality"]
    assert table["severity"].tolist() == [0, 1, 2, 1, 2] and table["video_auc"].notna().all()
    assert (table["face_rate"] > 0.5).all()
    assert "| gaussian_blur | 2 | 13 |" in (tmp_path / "robustness.md").read_text()
    assert (tmp_path / "robustness.png").stat().st_size > 1000 and not (tmp_path / "work").exists()
    fig = P.robustness_figure(table)
    _axes_labelled(fig)
    P.plt.close(fig)


def test_benchmark_metrics_subcommand_runs_and_reports_both_costs(tmp_path):
    import subprocess
    import sys

    from .conftest import REPO

    out = subprocess.run([sys.executable, "scripts/benchmark.py", "metrics", "--frames", "20000", "--resamples", "50",
                          "--json", str(tmp_path / "bench.json")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seconds = json.loads((tmp_path / "bench.json").read_text())["seconds"]
    assert len(seconds) == 3 and all(v > 0 for v in seconds.values())
