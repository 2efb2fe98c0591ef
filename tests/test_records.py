"""What a record says was done is what was done (issue 17).

Crops that fit the model and the recipe, the resize that is recorded and used, calibration named
for what it is and applied only when it helps on held-out items, derived files outside the data
set's root, validation decisions that state their uncertainty, stills described as stills.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from faketrace.datasets.face_pipeline import RESIZE_METHODS, model_input, resize_method, spec_input
from faketrace.datasets.transforms import apply, spec_eval_transform, train_transform
from faketrace.engine.calibration import fit_calibration, has_video_map, is_calibrated, maps_summary
from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.recipes import RecipeMismatch, check_face_crops
from faketrace.engine.sample_size import MIN_ITEMS_PER_CLASS, auc_interval, interval_width_table

from .conftest import CONFIGS, compose_config, resolved

LITERATURE = ["sbi_efficientnet_b4", "dfdc_efficientnet_b4", "ffpp_xception_c23"]
TINY = ["model=tiny", "debug=fast"]


# -- 1. crops that fit the model and the recipe -----------------------------------------------------

@pytest.mark.parametrize("experiment", LITERATURE)
def test_literature_recipe_names_its_crop_at_the_model_input_size(experiment, tmp_path):
    cfg = resolved(compose_config("train", [f"experiment={experiment}"], output_dir=tmp_path))
    assert cfg.recipe.literature is True and cfg.recipe.name == experiment
    # The crop the paper used, cut straight at the model's input size: no second resize.
    assert cfg.face.crop_size == cfg.model.input_size
    assert {"margin", "align", "detector"} <= set(cfg.face)
    # The same crop is what preprocessing writes with face=<recipe>, into the folder training reads.
    compression = cfg.data.adapter.get("compression")
    pre = resolved(compose_config("preprocess", [f"data={cfg.data.name}", f"face={experiment}"]
                                  + ([f"data.adapter.compression={compression}"] if compression else []),
                                  output_dir=tmp_path))
    assert OmegaConf.to_container(pre.face) == OmegaConf.to_container(cfg.face)
    assert pre.data.faces_dir == cfg.data.faces_dir and pre.data.faces_dir.endswith(f"_{experiment}")
    # The published recipe's rule is named in its file, with what differs here.
    text = (CONFIGS / "face" / f"{experiment}.yaml").read_text()
    assert "Published rule" in text and "deviation" in text


def test_generic_crops_stay_small_and_the_demo_keeps_its_own():
    pre = resolved(compose_config("preprocess", []))
    train = resolved(compose_config("train", ["experiment=demo"]))
    assert pre.face.crop_size == 128
    # The demo reads the generic 128 px crops at 96 px: a shrink, which the crop check accepts
    # silently (only enlarging a crop is warned about).
    assert train.model.input_size == 96 < pre.face.crop_size
    assert train.recipe.literature is False
    record = check_face_crops(OmegaConf.to_container(pre.face), train.model.input_size, None, False)
    assert record["outcome"] == "ok" and record["problems"] == []


def test_crop_check_refuses_for_literature_and_warns_otherwise(caplog):
    small = {"crop_size": 128, "margin": 1.3, "align": False, "detector": "retinaface"}
    need = {"crop_size": 380, "margin": 1.25, "align": False, "detector": "retinaface"}
    with pytest.raises(RecipeMismatch, match=r"2\.97x.*face=sbi_efficientnet_b4"):
        check_face_crops(small, 380, need, True, "sbi_efficientnet_b4")
    with caplog.at_level(logging.WARNING):
        record = check_face_crops(small, 380, None, False)
    assert record["outcome"] == "warned" and "enlarged 2.97x" in caplog.text
    assert check_face_crops({**need}, 380, need, True, "sbi_efficientnet_b4")["outcome"] == "ok"
    # A crop of the right size but the wrong rule is refused too.
    with pytest.raises(RecipeMismatch, match="margin"):
        check_face_crops({**need, "margin": 1.3}, 380, need, True, "sbi_efficientnet_b4")


def test_train_refuses_a_literature_recipe_on_small_crops(demo_data, tmp_path):
    from faketrace.engine.train import train

    cfg = compose_config("train", demo_data["overrides"] + ["experiment=ffpp_xception_c23", "data=demo",
                                                            "debug=fast"], output_dir=tmp_path)
    with pytest.raises(RecipeMismatch, match=r"64 px.*299 px.*face=ffpp_xception_c23"):
        train(resolved(cfg))
    assert not (tmp_path / "checkpoints").exists()  # refused before any step


def test_train_warns_on_enlarged_crops_and_records_it(demo_data, tmp_path, caplog):
    from faketrace.engine.train import train

    cfg = compose_config("train", demo_data["overrides"] + TINY + ["model.input_size=96"], output_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        result = train(resolved(cfg))
    assert "enlarged 1.50x" in caplog.text
    check = load_checkpoint(result["last_ckpt"])["crop_check"]
    assert check["outcome"] == "warned" and check["manifest_crop_size"] == 64 and check["input_size"] == 96


# -- 2. the recorded resize is the one used -----------------------------------------------------------

def _crop(size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_b0"])
def test_recorded_resize_is_what_every_feeding_path_does(backbone):
    from faketrace.models.detector import Detector

    model = Detector(backbone, input_size=96)
    spec = model.input_spec()
    # timm's efficientnet says bicubic for its own pipeline; ours is recorded, not timm's.
    assert spec.interpolation == "bilinear" and model.pretrained_interpolation in ("bicubic", "bilinear")
    crop, mean, std = _crop(), list(spec.mean), list(spec.std)
    expected = cv2.resize(crop, (96, 96), interpolation=RESIZE_METHODS[spec.interpolation]).astype(np.float32)
    expected = ((expected / 255.0 - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1)
    scan = spec_input([crop], spec)[0]  # scan, predictor, heatmaps, tiles
    evaluation = apply(spec_eval_transform(spec), crop, None).numpy()  # eval, export check
    no_aug = {"hflip": 0, "jpeg_p": 0, "jpeg_quality": [90, 100], "blur_p": 0, "blur_limit": [3, 3], "noise_p": 0,
              "noise_std": [0.01, 0.02], "color_p": 0, "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0,
              "downscale_p": 0, "downscale": [0.7, 0.9]}
    training = apply(train_transform(96, mean, std, no_aug, spec.interpolation), crop, 0).numpy()
    for fed in (scan, evaluation, training):
        assert np.abs(fed - expected).max() < 1e-4
    bicubic = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    assert np.abs(((bicubic / 255.0 - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1) - scan).max() > 0.05


_NO_AUG = {"hflip": 0, "jpeg_p": 0, "jpeg_quality": [90, 100], "blur_p": 0, "blur_limit": [3, 3], "noise_p": 0,
           "noise_std": [0.01, 0.02], "color_p": 0, "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0,
           "downscale_p": 0, "downscale": [0.7, 0.9]}


def test_white_balance_casts_the_whole_picture_with_one_gain_per_channel():
    crop = np.random.default_rng(1).integers(60, 200, (32, 32, 3), dtype=np.uint8)
    identity = ([0.0] * 3, [1.0] * 3)  # Normalize to crop / 255
    cast = train_transform(32, *identity, {**_NO_AUG, "white_balance_p": 1.0, "white_balance": [0.8, 1.2]})
    gains = []
    for seed in range(6):
        out = apply(cast, crop, seed).numpy().transpose(1, 2, 0) * 255
        ratio = out / crop
        # One gain per channel over every pixel (up to uint8 rounding), inside the configured range.
        assert (ratio.std(axis=(0, 1)) < 0.01).all()
        gains.append(ratio.mean(axis=(0, 1)))
        assert ((gains[-1] > 0.79) & (gains[-1] < 1.21)).all()
    gains = np.array(gains)
    assert np.ptp(gains[:, 0] - gains[:, 2]) > 0.05  # the channels' balance changes, not only brightness
    # Off unless asked for: older configs have no such key and see their colours unchanged.
    plain = apply(train_transform(32, *identity, _NO_AUG), crop, 0).numpy().transpose(1, 2, 0) * 255
    assert np.abs(plain - crop).max() < 1e-3


def test_a_chosen_resize_is_recorded_and_used_and_old_records_mean_bilinear(demo_data, tmp_path):
    from faketrace.engine.evaluate import score_split
    from faketrace.engine.train import resolve_device, train
    from faketrace.models.spec import checkpoint_spec, migrate_card

    cfg = compose_config("train", demo_data["overrides"] + TINY + ["model.input_size=96", "model.resize=bicubic"],
                         output_dir=tmp_path)
    ckpt = load_checkpoint(train(resolved(cfg))["last_ckpt"])
    spec = checkpoint_spec(ckpt).input
    assert spec.interpolation == "bicubic"
    frames = score_split(ckpt, resolved(cfg).data, "val", 8, 0, resolve_device("cpu"))
    assert len(frames) > 0
    # Records written before `resize` existed carried timm's interpolation; they were fed bilinear.
    old_input = {"input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic"}
    old_card = {"input": old_input, "face_preprocessing": {}, "face_detector": {"name": "retinaface"}}
    assert resize_method(old_input) == "bilinear" == migrate_card(old_card).input.interpolation
    with pytest.raises(ValueError, match="unknown resize"):
        model_input([_crop()], 96, [0.5] * 3, [0.5] * 3, "lanczos")


# -- 3. and 5. calibration named for what it is, applied only when it helps ---------------------------

def _items(seed, n_real=6, n_fake=18, frames_per_item=1, separation=0.3):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * n_real + [1] * n_fake)
    z = rng.normal(0, 1, len(labels)) + separation * (2 * labels - 1)
    vid = np.repeat(np.arange(len(labels)), frames_per_item)
    return pd.DataFrame({"video_id": vid, "frame_index": np.tile(np.arange(frames_per_item), len(labels)),
                         "label": labels[vid],
                         "logit": np.repeat(z, frames_per_item) + rng.normal(0, 0.1, len(vid))})


def test_calibration_is_recorded_as_platt_scaling_and_old_records_still_apply():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    frames = pd.DataFrame({"video_id": np.arange(400), "frame_index": 0, "label": labels,
                           "logit": 4 * (rng.normal(0, 1, 400) + 1.2 * (2 * labels - 1)) + 2})
    cal = fit_calibration(frames, "mean", "val")
    assert cal["method"] == "platt" and cal["applied"] is True and "Platt" in cal["method_description"]
    assert maps_summary(cal).startswith("Platt scaling: T = ")
    assert is_calibrated(cal) and is_calibrated({"method": "temperature", "temperature": 2.0})
    assert not is_calibrated({"method": "none", "temperature": 1.0})


def test_calibration_that_worsens_its_held_out_check_is_not_applied_and_says_why(caplog):
    frames = _items(2)  # 6 real and 18 fake stills, weak signal: the cross-fitted maps do harm
    with caplog.at_level(logging.WARNING):
        cal = fit_calibration(frames, "mean", "val")
    held = cal["held_out"]
    worse = [lv for lv in ("frame", "video") if held["after"][lv]["log_loss"] > held["before"][lv]["log_loss"]]
    assert worse and cal["method"] == "none" and cal["applied"] is False and not is_calibrated(cal)
    assert cal["temperature"] == 1.0 and cal["bias"] == 0.0  # every reader applies the identity
    assert "worsened its own held-out check" in cal["not_applied"]["reason"] and cal["not_applied"]["maps"]
    assert cal["not_applied"]["worsened_levels"] == worse and "not calibrated" in maps_summary(cal)
    assert held["log_loss_improved"] == {lv: lv not in worse for lv in ("frame", "video")}
    # ...and it rests on too few items, which the record and the log say with the AUC interval.
    size = cal["sample_size"]
    assert size["n_real"] == 6 and size["n_fake"] == 18 and size["min_per_class"] == MIN_ITEMS_PER_CLASS
    assert size["warning"] and "95% interval" in size["warning"] and "95% interval" in caplog.text
    low, high = size["interval_95"]
    assert high - low > 0.3


def test_auc_interval_widths_are_what_the_documented_minimum_buys():
    table = interval_width_table()
    assert table[MIN_ITEMS_PER_CLASS][0.9] == pytest.approx(0.126, abs=0.002)
    assert table[MIN_ITEMS_PER_CLASS][0.75] == pytest.approx(0.191, abs=0.002)
    assert table[10][0.75] > 2 * table[MIN_ITEMS_PER_CLASS][0.9]
    low, high = auc_interval(0.594, 30, 11)  # the case: chance is inside
    assert low < 0.5 < high
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    assert f"{MIN_ITEMS_PER_CLASS} items per class" in docs and "0.13" in docs and "0.19" in docs


def test_model_selection_records_its_interval_and_warns_on_a_small_validation_set(demo_data, tmp_path, caplog):
    from faketrace.engine.train import train

    cfg = compose_config("train", demo_data["overrides"] + TINY, output_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        result = train(resolved(cfg))
    selection = load_checkpoint(result["best_ckpt"])["selection"]
    # The small demo's validation items are videos and stills, and the record says so.
    assert selection["monitor"] == "val/video_auc" and selection["unit"] == "items (videos and stills)"
    assert selection["n_real"] + selection["n_fake"] > 0 and selection["n_real"] < MIN_ITEMS_PER_CLASS
    assert selection["warning"] and "model selection rests on" in caplog.text
    if selection["auc"] is not None:
        low, high = selection["interval_95"]
        assert low <= selection["auc"] <= high


# -- 4. derived files outside the data set's root ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml")))
def test_no_derived_file_defaults_into_the_data_set_root(name, tmp_path):
    cfg = resolved(compose_config("train", [f"data={name}", f"paths.data_dir={tmp_path}/project",
                                            f"data.root={tmp_path}/readonly/{name}"]))
    root = Path(cfg.data.root)
    for key in ("index_path", "faces_dir", "manifest_path"):
        path = Path(cfg.data[key])
        assert root not in path.parents, (key, path)
        assert Path(f"{tmp_path}/project") in path.parents, (key, path)


def test_derived_files_are_keyed_by_the_root(tmp_path):
    a = resolved(compose_config("train", ["data=ffpp", "data.root=/shared/ffpp", f"paths.data_dir={tmp_path}"]))
    b = resolved(compose_config("train", ["data=ffpp", "data.root=/scratch/ffpp", f"paths.data_dir={tmp_path}"]))
    again = resolved(compose_config("index", ["data=ffpp", "data.root=/shared/ffpp", f"paths.data_dir={tmp_path}"]))
    assert a.data.index_path != b.data.index_path and a.data.faces_dir != b.data.faces_dir
    assert a.data.index_path == again.data.index_path and Path(a.data.index_path).parent.name.startswith("ffpp-")


# -- 6. stills are described as stills --------------------------------------------------------------

def test_a_set_of_stills_gets_no_video_words_in_its_calibration():
    frames = _items(0, n_real=60, n_fake=60, separation=1.5)
    cal = fit_calibration(frames, "mean", "val")
    assert cal["fitted_on"]["items"] == "stills" and cal["form"]["video"] == "none" and not has_video_map(cal)
    assert "T_video" not in maps_summary(cal) and "still" in cal["probability"]["video"]
    videos = fit_calibration(_items(0, n_real=60, n_fake=60, frames_per_item=4, separation=1.5), "mean", "val")
    assert videos["fitted_on"]["items"] == "videos"


def test_folder_csv_method_column_gives_a_per_generator_breakdown(tmp_path):
    from faketrace.datasets.sources.folder import build_index

    root = tmp_path / "mine"
    rows = ["path,label,method"]
    for i in range(12):
        for label, method in (("real", ""), ("fake", "stylegan2"), ("fake", "sdxl")):
            name = f"{label}_{method or 'x'}_{i}.png"
            (root / "imgs").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "imgs" / name), _crop(32, i))
            rows.append(f"imgs/{name},{label},{method}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    index, _ = build_index(root, csv_file="labels.csv")
    assert set(index.loc[index.label == 1, "method"]) == {"stylegan2", "sdxl"}
    assert set(index.loc[index.label == 0, "method"]) == {"real"}


def test_the_readme_recipe_from_a_raw_ffpp_tree_makes_the_published_crops(tmp_path):
    """The README's three commands, composed as written: what preprocessing writes is what training needs."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "face=sbi_efficientnet_b4" in b)
    commands = {}
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        script = Path(words[1]).stem
        commands[script] = [w for w in words[2:] if "=" in w] + [f"paths.data_dir={tmp_path}"]
    assert set(commands) == {"index", "preprocess", "train"}
    index, pre, train = (resolved(compose_config(name, commands[name], output_dir=tmp_path))
                         for name in ("index", "preprocess", "train"))
    assert index.data.index_path == pre.data.index_path == train.data.index_path  # the same index, outside the root
    assert pre.data.faces_dir == train.data.faces_dir  # training reads what preprocessing wrote
    spec = OmegaConf.to_container(pre.face)
    assert spec["crop_size"] == train.model.input_size == 380 and spec["margin"] == 1.25
    record = check_face_crops(spec, int(train.model.input_size), OmegaConf.to_container(train.face), True,
                              train.recipe.name)
    assert record["outcome"] == "ok"
