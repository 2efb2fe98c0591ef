"""Image level: demo scenes, pasted regions, native-resolution crops, tiles, training, evaluation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from faketrace.datasets.demo_images import OPERATORS, generate_demo_images, transposed_conv_upsample
from faketrace.datasets.image_pipeline import ImageSpec
from faketrace.datasets.image_synthesis import PasteSettings, paste_region
from faketrace.datasets.images import ImageCropDataset, ImageTileDataset, load_image_table
from faketrace.datasets.io import sha256_file
from faketrace.datasets.media import read_image
from faketrace.datasets.transforms import train_transform
from faketrace.engine import metrics as M
from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.inference import frames_from_tiles, predict_tiles
from faketrace.engine.train import train
from faketrace.models.spec import InputSpec, card_spec, checkpoint_spec

from .conftest import SMALL_DEMO_IMAGES, compose_config, resolved

NO_AUG = {"hflip": 0.0, "jpeg_p": 0.0, "jpeg_quality": [90, 100], "blur_p": 0.0, "blur_limit": [3, 3],
          "noise_p": 0.0, "noise_std": [0.01, 0.02], "color_p": 0.0, "brightness": 0.1, "contrast": 0.1,
          "saturation": 0.1, "hue": 0.01, "downscale_p": 0.0, "downscale": [0.7, 0.9]}
UNIT = {"input_size": 32, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
UNIT_INPUT = InputSpec(size=(32, 32), mean=UNIT["mean"], std=UNIT["std"])


def _image_overrides(demo_data):
    return demo_data["overrides"] + SMALL_DEMO_IMAGES


# -- generator and synthesis ---------------------------------------------------------------------

def test_demo_images_splits_operators_and_masks(demo_data):
    index, root = demo_data["image_index"], demo_data["image_cfg"].data.root
    assert set(index.method) == {"real", *OPERATORS} and (index.media_type == "image").all()
    scenes = {s: set(index.loc[index.split == s, "source_identity"]) for s in ("train", "val", "test")}
    assert all(scenes.values()) and not (scenes["train"] & scenes["val"]) and not (scenes["val"] & scenes["test"])
    split_of = dict(zip(index.source_identity, index.split, strict=False))
    pasted = index[index.method == "paste_resampled"]
    assert all(split_of[d] == s for d, s in zip(pasted.target_identity, pasted.split, strict=True))
    assert pasted.mask_path.notna().all() and index[index.method != "paste_resampled"].mask_path.isna().all()
    truth = pd.read_parquet(demo_data["root"] / "demo_images" / "truth.parquet").set_index("id")
    for row in pasted.itertuples():
        mask = cv2.imread(f"{root}/{row.mask_path}", cv2.IMREAD_GRAYSCALE)
        image = cv2.imread(f"{root}/{row.path}")
        assert mask.shape == image.shape[:2] and 0 < (mask >= 128).mean() < 1
        assert truth.loc[row.id, "manipulated_fraction"] == pytest.approx((mask / 255.0 >= 0.5).mean(), abs=1e-3)
    assert (truth.loc[index[index.method == "generated"].id, "manipulated_fraction"] == 1).all()


def test_demo_images_are_byte_reproducible(demo_data, tmp_path):
    gen = OmegaConf.to_container(demo_data["image_cfg"].data.generator)
    gen["scenes"] = 10
    a = generate_demo_images(tmp_path / "a", tmp_path / "a.parquet", 5, gen)
    b = generate_demo_images(tmp_path / "b", tmp_path / "b.parquet", 5, gen)
    pd.testing.assert_frame_equal(a, b)
    for rel in [*a.path, *a.mask_path.dropna()]:
        assert sha256_file(tmp_path / "a" / rel) == sha256_file(tmp_path / "b" / rel), rel


def test_paste_region_changes_only_the_masked_region():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    donor = np.full((60, 60, 3), 200, np.uint8)
    out, mask = paste_region(target, donor, np.random.default_rng(1), PasteSettings(area=(0.2, 0.2)))
    assert out.shape == target.shape and mask.shape == (80, 120) and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1 and 0.1 < (mask >= 0.5).mean() < 0.35
    np.testing.assert_array_equal(out[mask == 0], target[mask == 0])
    inside = mask > 0.99
    assert np.abs(out[inside].astype(int) - 200).max() <= 3  # the (flat) donor shows through (1 % of the target left)


def test_transposed_conv_upsampling_leaves_a_period_two_trace():
    flat = np.full((16, 16, 3), 100.0, np.float32)
    up = transposed_conv_upsample(flat, (1.0, 1.05, 1.0))[2:-2, 2:-2, 0]
    assert up[0::2, 0::2].mean() == pytest.approx(100.0) and up[1::2, 1::2].mean() == pytest.approx(100 * 1.05 ** 2)
    assert transposed_conv_upsample(flat, (1.0, 1.0, 1.0))[2:-2, 2:-2].std() < 1e-4  # matched gains: no trace


# -- data sets ------------------------------------------------------------------------------------

def test_training_crops_are_native_resolution_windows_with_their_masks(demo_data):
    cfg = demo_data["image_cfg"]
    table, _ = load_image_table(cfg.data.index_path)
    spec = ImageSpec(tile_size=32)
    ds = ImageCropDataset(table, cfg.data.root, train_transform(32, UNIT["mean"], UNIT["std"], NO_AUG), spec,
                          split="train", crops_per_item=2, seed=3)
    assert len(ds) == 2 * len(ds.table)
    for i in range(len(ds)):
        sample = ds[i]
        row = ds.table.iloc[int(sample["index"])]
        crop = (sample["image"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        image = read_image(f"{cfg.data.root}/{row.path}")  # the decoder training uses (PIL)
        # The crop is a 32 px window of the image as stored: no resampling on the way.
        y, x = np.unravel_index(np.argmin(cv2.matchTemplate(image, crop, cv2.TM_SQDIFF)), (image.shape[0] - 31,
                                                                                           image.shape[1] - 31))
        np.testing.assert_array_equal(image[y:y + 32, x:x + 32], crop, err_msg=row.video_id)
        mask = sample["mask"].numpy()
        assert mask.shape == (32, 32)
        if row.method == "paste_resampled":  # cropped around a manipulated pixel
            assert (mask >= 0.5).any()
        else:
            assert (mask == row.label).all()
        again = ds[i]
        assert torch.equal(again["image"], sample["image"])  # seeded


def test_synthesis_turns_reals_into_pasted_fakes(demo_data):
    cfg = demo_data["image_cfg"]
    table, _ = load_image_table(cfg.data.index_path)
    reals = table[table.label == 0]
    ds = ImageCropDataset(reals, cfg.data.root, train_transform(32, UNIT["mean"], UNIT["std"], NO_AUG),
                          ImageSpec(tile_size=32), split="train", synthesis={"p": 1.0, "paste": {"area": [0.3, 0.4]}})
    samples = [ds[i] for i in range(len(ds))]
    assert all(int(s["label"]) == 1 for s in samples)
    assert all((s["mask"] >= 0.5).any() for s in samples)


def test_tiles_scores_aggregate_per_image_by_named_rule(demo_data):
    cfg = demo_data["image_cfg"]
    table, _ = load_image_table(cfg.data.index_path)
    ds = ImageTileDataset(table, cfg.data.root, ImageSpec(tile_size=32, stride=24), UNIT_INPUT, split="test", with_masks=True)

    class MeanBrightness(torch.nn.Module):
        aux_outputs = ("map",)

        def forward(self, x, with_aux=False):
            logits = (x.mean(dim=(1, 2, 3)) - 0.5) * 10
            if with_aux:
                return {"logits": logits, "map": (x.mean(dim=1) - 0.5) * 10}
            return logits

    tiles, maps = predict_tiles(MeanBrightness(), ds, batch_size=16, num_workers=0, device=torch.device("cpu"),
                                with_maps=True)
    for row in ds.table.itertuples():
        image = read_image(f"{cfg.data.root}/{row.path}").astype(np.float64) / 255
        mine = tiles[tiles.video_id == row.video_id]
        boxes = mine[["x0", "y0", "x1", "y1"]].to_numpy()
        covered = np.zeros(image.shape[:2], bool)
        for (x0, y0, x1, y1), logit in zip(boxes, mine.logit, strict=True):
            covered[y0:y1, x0:x1] = True
            assert logit == pytest.approx((image[y0:y1, x0:x1].mean() - 0.5) * 10, abs=1e-4)
        assert covered.all()
        if row.mask_path is not None and isinstance(row.mask_path, str):
            pred, truth = maps[(row.video_id, 0)]
            assert pred.shape == truth.shape == image.shape[:2]
            expected = 1 / (1 + np.exp(-(image.mean(axis=2) - 0.5) * 10))
            np.testing.assert_allclose(pred, expected, atol=1e-4)  # overlapping tiles agree pixel by pixel
    for rule, agg in (("max", "max"), ("mean", "mean")):
        frames = frames_from_tiles(tiles, rule).set_index("video_id")
        brute = tiles.groupby("video_id")["score"].agg(agg)
        np.testing.assert_allclose(frames.loc[brute.index, "score"], brute, atol=1e-12)
        np.testing.assert_allclose(M.sigmoid(frames["logit"]), frames["score"], atol=1e-9)
    assert set(maps) == {(v, 0) for v in ds.table[ds.table.mask_path.notna()].video_id}


# -- training and evaluation ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def image_ckpt(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("image_train")
    cfg = compose_config("train", _image_overrides(demo_data) + [
        "model=localization", "model.backbone=test_efficientnet", "model.input_size=32", "trainer.max_epochs=1",
        "trainer.progress_bar=false", "loader.num_workers=0", "loader.batch_size=16"], output_dir=out)
    result = train(resolved(cfg))
    return result["best_ckpt"]


def test_image_level_checkpoint_records_its_preprocessing(image_ckpt):
    ckpt = load_checkpoint(image_ckpt)
    spec = checkpoint_spec(ckpt)
    assert spec.level == "image" and spec.face is None
    assert spec.image == ImageSpec(tile_size=32, aggregation="max")
    assert spec.input.size == (32, 32) and ckpt["architecture"]["family"] == "localization"
    assert ckpt["model_family"] and all(k.startswith("map_head.") for k in ckpt["model_family"])
    assert ckpt["fit_for_casework"] is False


def test_face_level_checkpoint_says_face(demo_data, tmp_path):
    cfg = compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"], output_dir=tmp_path)
    ckpt = load_checkpoint(train(resolved(cfg))["last_ckpt"])
    spec = checkpoint_spec(ckpt)
    assert spec.level == "face" and spec.face.crop_size == 64 and spec.image is None


def test_image_level_evaluation_writes_both_rules_baseline_and_localisation(demo_data, image_ckpt, tmp_path):
    from faketrace.engine.evaluate import evaluate_checkpoint

    cfg = compose_config("evaluate", _image_overrides(demo_data) + [f"ckpt_path={image_ckpt}",
                                                                    "bootstrap.n_resamples=50", "num_workers=0"],
                         output_dir=tmp_path)
    result = evaluate_checkpoint(resolved(cfg))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["level"] == "image" and saved["tile_aggregation"] == "max"
    assert saved["detector"]["frame"]["auc"] == saved["detector_tile_max"]["frame"]["auc"]
    assert saved["detector_tile_mean"]["tile_aggregation"] == "mean"
    n_test = int((demo_data["image_index"].split == "test").sum())
    assert saved["detector"]["video"]["n"] == n_test == saved["test_set"]["n_frames_scored"]
    assert set(saved["detector"]["video_auc_by_method"]) == set(OPERATORS)
    assert saved["baseline"]["name"].startswith("logistic regression on per-image")
    loc = saved["localization"]
    assert loc["n_images"] == int(((demo_data["image_index"].split == "test")
                                   & demo_data["image_index"].mask_path.notna()).sum())
    assert loc["pixel_auc"] is not None and loc["mean_iou"] is not None and 0.01 <= loc["iou_threshold"] <= 0.99
    assert "validation" in loc["iou_threshold_source"]
    assert "diffusion" in saved["note"] and "NOT FIT FOR CASEWORK" in saved["warning"]
    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert {"detector_tile_max", "detector_tile_mean", "baseline"} <= set(csv.model)
    assert "Localisation" in (tmp_path / "summary.md").read_text()
    assert result["detector"]["frame"]["n"] == n_test


def test_image_level_model_runs_on_video_frames(demo_data, image_ckpt):
    """The image-level model scores the face demo's videos frame by frame (no face crop)."""
    from faketrace.engine.evaluate import score_split

    ckpt = load_checkpoint(image_ckpt)
    data = resolved(compose_config("evaluate", demo_data["overrides"] + ["ckpt_path=x"])).data
    frames = score_split(ckpt, data, "test", 32, 0, torch.device("cpu"))
    index = demo_data["index"]
    videos = index[(index.split == "test") & (index.media_type == "video")]
    per_video = frames[frames.video_id.isin(videos.id)].groupby("video_id").size()
    assert len(per_video) == len(videos) and (per_video == checkpoint_spec(ckpt).video.frames_per_video).all()
    assert frames["score"].between(0, 1).all()


def test_robustness_sweep_runs_on_an_image_level_model_and_notes_the_messenger_profile(demo_data, image_ckpt,
                                                                                       tmp_path):
    from faketrace.engine.robustness import robustness_sweep

    cfg = compose_config("robustness", _image_overrides(demo_data) + [
        f"ckpt_path={image_ckpt}", "distortions=[jpeg_quality,telegram]", "levels={jpeg_quality: [50], telegram: [photo]}",
        "bootstrap.n_resamples=20", "num_workers=0"], output_dir=tmp_path)
    table = robustness_sweep(resolved(cfg))
    assert list(table.distortion) == ["none", "jpeg_quality", "telegram"]
    assert (table.face_rate == 1.0).all() and table.video_auc.notna().all()
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["level"] == "image" and "messenger profile" in saved["note"]
    assert saved["spec"]["image"]["tile_size"] == 32
    assert "messenger profile" in (tmp_path / "robustness.md").read_text()


def test_export_of_an_image_level_model_verifies_on_tiles(demo_data, image_ckpt, tmp_path):
    from faketrace.engine.export import export_checkpoint

    cfg = compose_config("export", _image_overrides(demo_data) + [f"ckpt_path={image_ckpt}",
                                                                  f"out_dir={tmp_path / 'model'}"], output_dir=tmp_path)
    card = export_checkpoint(resolved(cfg))
    spec = card_spec(card)
    assert card["level"] == "image" and spec.image.tile_size == 32
    assert card["onnx"]["verification"]["passed"] and card["onnx"]["verification"]["n_images"] > 1
    assert "diffusion" in card["image_note"] and spec.face is None
    assert not (tmp_path / "model" / "face_detector.onnx").exists()
    assert any("diffusion" in x for x in card["never_seen"])
    assert "Whole-image tiling" in (tmp_path / "model" / "MODEL_CARD.md").read_text()


# -- the scan and its report ----------------------------------------------------------------------

def test_scan_with_face_and_exported_image_level_models_reports_both_and_a_redacted_map(
        demo_data, image_ckpt, scan_ckpt, evidence, tmp_path):
    """Face-less demo scenes and a face photo, scanned by the face model and the exported image-level
    model: every item gets an image-level score and bands, the face photo both levels and the deciding
    one; the ONNX export scores as the checkpoint does; the report's image-level map is drawn over
    the redacted picture."""
    import shutil

    from faketrace.engine.export import export_checkpoint
    from faketrace.forensics.heatmaps import overlay
    from faketrace.forensics.redact import fit_within, redact
    from faketrace.forensics.scan import scan_from_config
    from faketrace.forensics.scoring import VERDICTS

    from .conftest import results, scan_cfg

    export_checkpoint(resolved(compose_config("export", _image_overrides(demo_data) + [
        f"ckpt_path={image_ckpt}", f"out_dir={tmp_path / 'model'}"], output_dir=tmp_path / "export")))
    folder = tmp_path / "evidence"
    folder.mkdir()
    index, root = demo_data["image_index"], demo_data["image_cfg"].data.root
    scenes = index[index.split == "test"].groupby("method").head(1)  # one real, one pasted, one generated
    for row in scenes.itertuples():
        shutil.copy(f"{root}/{row.path}", folder / f"{row.method}.jpg")
    shutil.copy(evidence["loose"] / "photo_real.jpg", folder / "face.jpg")
    every = "report.heatmaps_for=[likely_manipulated,inconclusive,no_evidence_of_manipulation]"

    case = tmp_path / "case"
    scan_from_config(scan_cfg([folder], case, [f"ckpt_path={scan_ckpt}", f"image_model_dir={tmp_path / 'model'}",
                                               "allow_unvalidated=true"], [every]))
    header, items = results(case)
    assert header["model"]["level"] == "face" and header["image_model"]["level"] == "image"
    assert len(items) == 4
    for r in items.values():
        level = r["image_level"]
        assert r["status"] == "scanned" and 0 <= level["score"]["probability"] <= 1
        assert level["verdict"] in VERDICTS and {"lower", "upper", "source"} <= set(level["bands"])
        assert level["score"]["tile_rule"] == "max" and len(level["tiles"]["probabilities"]) >= 4
    for method in scenes.method:
        r = items[f"0/{method}.jpg"]
        assert r["face_level"]["status"] == "no_face" and r["decided_by"] == "image"
    face = items["0/face.jpg"]
    assert face["faces"] and {"score", "verdict", "bands"} <= set(face["face_level"])
    assert face["decided_by"] == "face" and face["verdict"] == face["face_level"]["verdict"]  # scenes model: no faces

    # The export and the checkpoint agree on every image-level score.
    scan_from_config(scan_cfg([folder], tmp_path / "case_pt", [f"image_ckpt_path={image_ckpt}",
                                                               f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]))
    _, by_torch = results(tmp_path / "case_pt")
    for k, r in items.items():
        np.testing.assert_allclose(r["image_level"]["tiles"]["probabilities"],
                                   by_torch[k]["image_level"]["tiles"]["probabilities"], atol=1e-4)

    # A clip: the face model scores its sampled frames, the image-level model the number it is told
    # (scan.image_frames_per_video; by default its checkpoint's), spread evenly over them.
    clip = tmp_path / "clip"
    clip.mkdir()
    shutil.copy(evidence["loose"] / "sub" / "clip_fake.mp4", clip / "clip.mp4")
    scan_from_config(scan_cfg([clip], tmp_path / "case_clip", [f"ckpt_path={scan_ckpt}", f"image_ckpt_path={image_ckpt}",
                                                               "allow_unvalidated=true"],
                              ["scan.image_frames_per_video=2", "report.enabled=false"]))
    (r,) = results(tmp_path / "case_clip")[1].values()
    assert r["image_level"]["score"]["level"] == "video" and len(r["image_level"]["frame_scores"]) == 2
    if r.get("faces"):  # the face level keeps all its frames
        assert len(r["frame_scores"]) > 2

    # The standalone predictor takes the image-level export folder (no face detector in it).
    from faketrace.forensics.predict import load_predictor

    predictor = load_predictor(tmp_path / "model", allow_unvalidated=True)
    try:
        alone = predictor.scorer.score_file(folder / "real.jpg")
    finally:
        predictor.close()
    assert alone["decided_by"] == "image" and alone["score"] == items["0/real.jpg"]["image_level"]["score"]

    report = json.loads((case / "report.json").read_text())
    assert report["redacted"] and report["plain_language"]["image_level"]
    for rec in report["items"]:
        assert rec["image_level"]["probability"] == items[rec["item_id"]]["image_level"]["score"]["probability"]
        assert rec["decided_by"] == items[rec["item_id"]]["decided_by"]
        m = rec["image_map"]
        assert m["file"] and m["redacted"] and m["n_tiles"] == len(items[rec["item_id"]]["image_level"]["tiles"]["boxes"])
        written = np.asarray(cv2.cvtColor(cv2.imread(str(case / m["file"])), cv2.COLOR_BGR2RGB), np.float64)
        frame = cv2.cvtColor(cv2.imread(str(folder / rec["rel_path"])), cv2.COLOR_BGR2RGB)
        tiles = items[rec["item_id"]]["image_level"]["tiles"]
        from faketrace.datasets.image_pipeline import tile_score_map

        heat = tile_score_map(tiles["probabilities"], [tuple(b) for b in tiles["boxes"]], *frame.shape[:2])
        small = fit_within(frame, 240)
        blurred, sharp = overlay(redact(small), heat), overlay(small, heat)
        # The map lies over the blurred picture (JPEG error only), far from the one over the sharp picture.
        assert np.abs(written - blurred).mean() < 3 < np.abs(written - sharp).mean()
    assert "image-level map" in (case / "report.html").read_text()
