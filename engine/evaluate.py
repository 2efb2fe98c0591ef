"""Evaluation of a checkpoint on a split: metrics.json (source of truth), CSV, Markdown, plots.

The preprocessing is the checkpoint's own model spec (models/spec.py): its input size, mean, std
and resize method, and its face section, which is compared with the manifest's so that a mismatch
is reported, not hidden. An image-level checkpoint (spec level `image`) is evaluated on whole images and
video frames from the data set root, tiled by its ImageSpec; the image score is named by its tile
rule, and both rules (max, mean) are reported, with pixel-level localisation metrics when the
model has a map.

`detector` holds the raw numbers (probability = sigmoid(logit)), the same definitions training
validation uses, so evaluating on val reproduces it. When the checkpoint carries a calibration
(fitted at the end of training, or by scripts/calibrate.py), `detector_calibrated` adds the
numbers on the calibrated probabilities and at the EER threshold chosen on validation data.
`calibrate_checkpoint` fits that calibration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.image_pipeline import TILE_AGGREGATIONS
from faketrace.datasets.images import ImageTileDataset, load_image_table
from faketrace.datasets.io import atomic_write_text, sha256_file
from faketrace.datasets.preprocess import PreprocessSpec
from faketrace.datasets.schema import read_index
from faketrace.datasets.transforms import spec_eval_transform
from faketrace.engine import metrics as M
from faketrace.engine import plots as P
from faketrace.engine.baseline import IMAGE_NAME as IMAGE_BASELINE_NAME
from faketrace.engine.baseline import NAME as BASELINE_NAME
from faketrace.engine.baseline import colour_baseline_scores, image_colour_baseline_scores
from faketrace.engine.calibration import (
    calibrated_frames,
    calibrated_video_scores,
    calibrated_videos,
    fit_calibration,
    has_video_map,
    is_calibrated,
    maps_summary,
)
from faketrace.engine.checkpoint import load_checkpoint, save_checkpoint, versions
from faketrace.engine.inference import (
    frames_from_tiles,
    model_from_checkpoint,
    predict_tiles,
    resolve_device,
    score_frames,
)
from faketrace.models.spec import ModelSpec, checkpoint_spec

log = logging.getLogger(__name__)
METRICS_SCHEMA_VERSION = 2
DEFINITIONS = {
    "auc": "area under the ROC curve, ties counted half (Mann-Whitney U)",
    "ap": "average precision, step-wise as scikit-learn (sum of recall increments x precision)",
    "eer": "equal error rate interpolated linearly where FPR crosses FNR on the ROC curve",
    "eer_nearest_point": "(FPR + FNR) / 2 at the ROC point where |FPR - FNR| is smallest",
    "ece": "expected calibration error of the fake probability over ece_bins equal-width bins",
    "brier": "mean squared difference between probability and label",
    "log_loss": f"binary cross-entropy with probabilities clipped to [{M.LOG_LOSS_EPS:g}, 1 - {M.LOG_LOSS_EPS:g}]",
    "tpr@fpr=x": "highest TPR among ROC points with FPR <= x; null when there are fewer than 1/x reals",
    "@0.5": "at probability threshold 0.5", "@operating": "at the EER threshold fitted on validation data",
    "intervals": "percentile bootstrap, resampling videos within each class (frame level: whole videos)",
}
IMAGE_DEFINITIONS = {
    "frame (image level)": "one image, or one sampled video frame; its score aggregates its tile probabilities",
    "tile_aggregation": "max: the most suspicious tile decides; mean: the average over tiles",
    "pixel_auc": "ROC AUC over the pixels of all images with a truth mask, pooled (truth: mask >= 0.5)",
    "pixel_ap": "average precision over the same pooled pixels",
    "mean_iou": "mean over images of IoU(map >= threshold, mask >= 0.5); an image with both empty counts 1",
    "pooled_iou": "sum of intersections / sum of unions over the same images",
    "iou_threshold": "the map threshold (0.01 steps) with the highest mean IoU on the validation split",
}
DIFFUSION_NOTE = ("image level: this model has learned what its training data show; it has not seen diffusion "
                  "output (inpainting or full generation) unless it was trained on some")


def checkpoint_level(ckpt: dict) -> str:
    """face, image or clip: what the checkpoint's model looks at (models/spec.py LEVELS)."""
    return checkpoint_spec(ckpt).level


def eval_dataset(spec: ModelSpec, data_cfg: DictConfig, split: str, faces: pd.DataFrame | None = None,
                 with_masks: bool = False):
    """The evaluation items of a split as the model looks at them, chosen once from its spec's level.

    face: the manifest's face crops; clip: clips of consecutive crops of a video, one per crop;
    image: every image or sampled video frame from the data set root, covered by the spec's tiles.
    Any of them goes to `engine.inference.score_frames`, which gives the same frame table.
    """
    if spec.level == "image":
        n_frames = spec.video.frames_per_video or 4
        table, _ = load_image_table(data_cfg.index_path, n_frames)
        dataset = ImageTileDataset(table, data_cfg.root, spec.image, spec.input, split=split,
                                   frames_per_video=n_frames, with_masks=with_masks)
        where = f"images or video frames in split {split!r} of {data_cfg.index_path}"
    else:
        if faces is None:
            faces, _, _ = load_face_table(data_cfg.index_path, data_cfg.manifest_path)
        dataset = FaceCropDataset(faces, data_cfg.faces_dir, spec_eval_transform(spec.input), split=split,
                                  clip_length=spec.clip_length if spec.clip_length > 1 else None)
        where = f"face crops in split {split!r} of {data_cfg.manifest_path}"
    if len(dataset) == 0:
        raise ValueError(f"no {where}")
    return dataset


def image_dataset(ckpt: dict, data_cfg: DictConfig, split: str, with_masks: bool = False) -> ImageTileDataset:
    """The evaluation tiles of a split under an image-level checkpoint's own ImageSpec."""
    return eval_dataset(checkpoint_spec(ckpt), data_cfg, split, with_masks=with_masks)


def check_preprocessing(ckpt: dict, manifest_meta: dict) -> list[str]:
    """Differences between the crops a model was trained on and the crops it is given."""
    trained = checkpoint_spec(ckpt).face_pipeline_dict()
    given = PreprocessSpec.from_dict(manifest_meta.get("spec", {})).to_dict()
    return [f"{k}: checkpoint {trained.get(k)!r} vs manifest {given.get(k)!r}"
            for k in sorted(trained) if k != "frames_per_video" and trained.get(k) != given.get(k)]


def score_split(ckpt: dict, data_cfg: DictConfig, split: str, batch_size: int, num_workers: int,
                device: torch.device, faces: pd.DataFrame | None = None) -> pd.DataFrame:
    """Frame table (video_id, frame_index, label, method, split, logit, score) of a checkpoint on a split.

    Image-level checkpoints: one row per image or sampled video frame, scored by the checkpoint's
    tile rule (`faces` is not used).
    """
    model = model_from_checkpoint(ckpt).to(device)
    dataset = eval_dataset(checkpoint_spec(ckpt), data_cfg, split, faces)
    return score_frames(model, dataset, batch_size, num_workers, device)


def with_index_columns(frames: pd.DataFrame, index: pd.DataFrame, columns) -> pd.DataFrame:
    """Attach the index columns a breakdown needs (compression, media_type, attributes) to frames."""
    extra = [c for c in columns if c in index.columns and c not in frames.columns]
    if not extra:
        return frames
    return frames.merge(index[["id", *extra]], left_on="video_id", right_on="id", how="left").drop(columns="id")


def _bootstrap_cfg(cfg: DictConfig) -> dict | None:
    b = cfg.get("bootstrap")
    if not b or not int(b.get("n_resamples", 0)):
        return None
    return {"n_resamples": int(b.n_resamples), "seed": int(b.seed), "level": float(b.level)}


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    """metrics.json of a checkpoint on a split. What the model looks at (face crops, clips of crops,
    image tiles) is chosen once, from its spec's level, as a LevelEvaluation; the rest is shared."""
    run_dir = Path(cfg.paths.output_dir)
    ckpt = load_checkpoint(cfg.ckpt_path)
    spec = checkpoint_spec(ckpt)
    device = resolve_device(cfg.device)
    level = (ImageTileEvaluation if spec.level == "image" else FaceCropEvaluation)(cfg, ckpt, spec, device)
    rule = cfg.aggregation or spec.video.rule
    index, index_meta = read_index(cfg.data.index_path)
    by = list(cfg.get("breakdown_by") or ["method"])
    boot = _bootstrap_cfg(cfg)
    frames = with_index_columns(level.score(), index, by)
    in_split = index[index["split"] == cfg.split]
    result = {
        "schema_version": METRICS_SCHEMA_VERSION,
        **level.header(),
        "checkpoint": _checkpoint_record(cfg, ckpt),
        "test_set": {"dataset": cfg.data.name, "split": cfg.split, "index": str(cfg.data.index_path),
                     "index_sha256": sha256_file(cfg.data.index_path),
                     "synthetic": bool(index_meta.get("synthetic")), "n_items": int(len(in_split)),
                     "n_items_scored": int(frames["video_id"].nunique()), **level.test_set(in_split, frames)},
        "spec": spec.to_dict(),
        "preprocessing_mismatch_with_manifest": level.mismatch,
        "aggregation": rule,
        **level.rule_fields(),
        "breakdown_by": by,
        "bootstrap": boot,
        "definitions": level.definitions,
        "detector": {**level.rule_fields(), **M.report_levels(frames, rule, by=by, bootstrap=boot)},
        **level.extra_reports(rule, by, boot, index),
        "versions": versions(),
    }
    calibration = ckpt["calibration"]
    if is_calibrated(calibration):
        result["detector_calibrated"] = calibrated_report(frames, calibration, rule, by, boot)
    if cfg.get("compare_with"):
        result["comparison"] = compare_checkpoints(cfg, frames, rule, device, level.faces, boot)
    if cfg.baseline:
        name, base = level.baseline()
        base = with_index_columns(base, index, by)
        result["baseline"] = {"name": name, **M.report_levels(base, rule, by=by, bootstrap=boot)}
    result.update(level.after())
    if (ckpt["data"].get("index_meta") or {}).get("synthetic") or not ckpt["fit_for_casework"]:
        result["warning"] = f"NOT FIT FOR CASEWORK: {ckpt['casework_note']}"
    _write_outputs(run_dir, result, frames, boot, bool(cfg.get("plots", True)))
    level.write(run_dir)
    return result


class FaceCropEvaluation:
    """Face level (and clip level): the manifest's face crops, compared with the checkpoint's face spec."""

    definitions = DEFINITIONS

    def __init__(self, cfg: DictConfig, ckpt: dict, spec: ModelSpec, device):
        self.cfg, self.ckpt, self.spec, self.device = cfg, ckpt, spec, device
        self.faces, _, manifest_meta = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
        self.mismatch = check_preprocessing(ckpt, manifest_meta)
        if self.mismatch:
            log.warning("face preprocessing differs from the checkpoint's: %s", "; ".join(self.mismatch))

    def header(self) -> dict:
        return {}

    def score(self) -> pd.DataFrame:
        c = self.cfg
        return score_split(self.ckpt, c.data, c.split, c.batch_size, c.num_workers, self.device, self.faces)

    def test_set(self, in_split: pd.DataFrame, frames: pd.DataFrame) -> dict:
        unscored = in_split[~in_split["id"].isin(set(frames["video_id"]))]
        return {"items_without_face": {"n": int(len(unscored)), "handling": "excluded from metrics",
                                       "ids": unscored["id"].tolist()[:50]}}

    def rule_fields(self) -> dict:
        return {}

    def extra_reports(self, rule: str, by: list, boot: dict | None, index: pd.DataFrame) -> dict:
        return {}

    def baseline(self) -> tuple[str, pd.DataFrame]:
        return BASELINE_NAME, colour_baseline_scores(self.faces, self.cfg.data.faces_dir, self.cfg.split,
                                                     seed=int(self.cfg.seed))

    def after(self) -> dict:
        return {}

    def write(self, run_dir: Path) -> None:
        pass


class ImageTileEvaluation:
    """Image level: every image or sampled video frame, tiled by the spec's ImageSpec; the image score
    named by its tile rule, both rules reported, pixel-level localisation when the model has a map."""

    definitions = {**DEFINITIONS, **IMAGE_DEFINITIONS}
    faces = None
    mismatch: list = []

    def __init__(self, cfg: DictConfig, ckpt: dict, spec: ModelSpec, device):
        self.cfg, self.ckpt, self.spec, self.device = cfg, ckpt, spec, device
        self.model = model_from_checkpoint(ckpt).to(device)
        self.with_maps = "map" in getattr(self.model, "aux_outputs", ())

    def header(self) -> dict:
        return {"level": "image"}

    def score(self) -> pd.DataFrame:
        c = self.cfg
        dataset = image_dataset(self.ckpt, c.data, c.split, with_masks=self.with_maps)
        self.tiles, self.maps = predict_tiles(self.model, dataset, c.batch_size, c.num_workers, self.device,
                                              with_maps=self.with_maps)
        self.per_rule = {r: frames_from_tiles(self.tiles, r) for r in TILE_AGGREGATIONS}
        return self.per_rule[self.spec.image.aggregation]

    def test_set(self, in_split: pd.DataFrame, frames: pd.DataFrame) -> dict:
        errors = self.tiles.attrs.get("errors", {})
        return {"n_frames_scored": int(len(frames)), "n_tiles": int(len(self.tiles)),
                "items_without_face": {"n": 0, "handling": "not applicable: image level needs no face"},
                "frames_not_decoded": {"n": len(errors), "handling": "excluded from metrics",
                                       "reasons": dict(list(errors.items())[:50])}}

    def rule_fields(self) -> dict:
        return {"tile_aggregation": self.spec.image.aggregation}

    def extra_reports(self, rule: str, by: list, boot: dict | None, index: pd.DataFrame) -> dict:
        return {f"detector_tile_{r}": {"tile_aggregation": r, **M.report_levels(with_index_columns(f, index, by), rule,
                                                                                by=by, bootstrap=boot)}
                for r, f in self.per_rule.items()}

    def baseline(self) -> tuple[str, pd.DataFrame]:
        c = self.cfg
        n_frames = self.spec.video.frames_per_video or 4
        table, _ = load_image_table(c.data.index_path, n_frames)
        return IMAGE_BASELINE_NAME, image_colour_baseline_scores(table, c.data.root, self.spec.image, c.split, n_frames,
                                                                 seed=int(c.seed))

    def after(self) -> dict:
        out = {"note": DIFFUSION_NOTE}
        if self.with_maps:
            out["localization"] = localization_metrics(self.cfg, self.ckpt, self.model, self.maps, self.device)
        return out

    def write(self, run_dir: Path) -> None:
        self.tiles.to_csv(run_dir / "tile_scores.csv", index=False)


def calibrated_report(frames: pd.DataFrame, calibration: dict, rule: str, by: list, boot: dict | None) -> dict:
    """`detector_calibrated`: the calibration's maps applied to frames and videos, EER thresholds from validation."""
    operating = {level: calibration["thresholds"][level]["eer"] for level in ("frame", "video")}
    return {**{k: calibration.get(k) for k in ("temperature", "bias", "video_temperature", "video_bias",
                                               "video_min_frames")},
            **M.report_levels(calibrated_frames(frames, calibration), rule, by=by, operating_thresholds=operating,
                              bootstrap=boot, video_scores=lambda videos: calibrated_video_scores(videos, calibration))}


def _checkpoint_record(cfg: DictConfig, ckpt: dict) -> dict:
    return {"path": str(cfg.ckpt_path), "sha256": sha256_file(cfg.ckpt_path), "epoch": ckpt["epoch"],
            "backbone": ckpt["architecture"]["backbone"], "family": ckpt["architecture"]["family"],
            "trained_on": ckpt["data"]["name"], "fit_for_casework": ckpt["fit_for_casework"],
            "casework_note": ckpt["casework_note"], "calibration": ckpt["calibration"]}


def localization_metrics(cfg: DictConfig, ckpt: dict, model, maps: dict, device) -> dict:
    """Pixel AUC / AP on the evaluated split, and IoU at the threshold with the best mean IoU on validation."""
    if cfg.split == "val":
        val_maps, source = maps, "fitted on the evaluated split itself (split=val): optimistic"
    else:
        val_set = image_dataset(ckpt, cfg.data, "val", with_masks=True)
        _, val_maps = predict_tiles(model, val_set, cfg.batch_size, cfg.num_workers, device, with_maps=True)
        source = "validation split"
    keys = sorted(val_maps)
    threshold, val_iou = M.fit_iou_threshold([val_maps[k][0] for k in keys], [val_maps[k][1] for k in keys])
    keys = sorted(maps)
    report = M.localization_report([maps[k][0] for k in keys], [maps[k][1] for k in keys], threshold,
                                   f"{source} ({len(val_maps)} images with masks)")
    report["iou_on_fit_split"] = val_iou
    report["items"] = "images (or frames) whose index row has a mask_path; real and fully generated items have none"
    if not keys:
        report["null_reason"] = "no item of the split has a truth mask"
    return report


def compare_checkpoints(cfg: DictConfig, frames_a: pd.DataFrame, rule: str, device, faces, boot: dict | None) -> dict:
    """Paired comparison of the evaluated checkpoint (A) with `compare_with` (B) on the same items."""
    ckpt_b = load_checkpoint(cfg.compare_with)
    frames_b = score_split(ckpt_b, cfg.data, cfg.split, cfg.batch_size, cfg.num_workers, device, faces)
    keys = ["video_id", "frame_index"]
    frames = frames_a[[*keys, "label", "score"]].merge(frames_b[[*keys, "score"]], on=keys, suffixes=("_a", "_b"),
                                                       validate="one_to_one")
    n_resamples = boot["n_resamples"] if boot else 2000
    seed, level = (boot["seed"], boot["level"]) if boot else (0, 0.95)
    va = M.aggregate_videos(frames.rename(columns={"score_a": "score"}).drop(columns="score_b"), rule)
    vb = M.aggregate_videos(frames.rename(columns={"score_b": "score"}).drop(columns="score_a"), rule)
    return {
        "a": str(cfg.ckpt_path), "b": str(cfg.compare_with), "b_sha256": sha256_file(cfg.compare_with),
        "question": "is B better than A? difference = AUC(B) - AUC(A)",
        "video": M.compare_auc(va["label"], va["score"], vb["score"], None, n_resamples, seed, level),
        "frame": M.compare_auc(frames["label"], frames["score_a"], frames["score_b"], frames["video_id"],
                               n_resamples, seed, level),
    }


# -- calibration ---------------------------------------------------------------------------

def calibrate_checkpoint(cfg: DictConfig) -> dict:
    """Fit the Platt-scaling maps and thresholds on the validation split; write a calibrated copy atomically.

    A calibration that worsens its own held-out check is stored as not applied (engine/calibration.py)."""
    if cfg.split == "test":
        raise ValueError("calibration is never fitted on the test split; use split=val")
    ckpt = load_checkpoint(cfg.ckpt_path)
    device = resolve_device(cfg.device)
    rule = cfg.aggregation or checkpoint_spec(ckpt).video.rule
    frames = score_split(ckpt, cfg.data, cfg.split, cfg.batch_size, cfg.num_workers, device)
    calibration = fit_calibration(frames, rule, cfg.split, cfg.fit_on, int(cfg.seed), float(cfg.target_fpr),
                                  int(cfg.folds))
    calibration["fitted_on"].update(dataset=cfg.data.name, index=str(cfg.data.index_path),
                                    source_checkpoint_sha256=sha256_file(cfg.ckpt_path))
    src = Path(cfg.ckpt_path)
    out = Path(cfg.out_path) if cfg.get("out_path") else src.with_name(f"{src.stem}.calibrated{src.suffix}")
    save_checkpoint({**ckpt, "calibration": calibration}, out)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "calibration.json", json.dumps({"checkpoint": str(out), **calibration}, indent=2))
    log.info("%s fitted on %s; calibrated checkpoint %s", maps_summary(calibration), cfg.split, out)
    return {"checkpoint": str(out), "calibration": calibration}


# -- outputs -------------------------------------------------------------------------------

ROW_METRICS = ("n", "n_real", "n_fake", "auc", "ap", "eer", "eer_nearest_point", "accuracy@0.5",
               "balanced_accuracy@0.5", "accuracy@operating", "balanced_accuracy@operating", "log_loss", "brier",
               "ece", "tpr@fpr=0.01", "tpr@fpr=0.001")
MODELS = ("detector", "detector_calibrated", "detector_tile_max", "detector_tile_mean", "baseline")


def _rows(result: dict) -> list[dict]:
    rows = []
    common = {"checkpoint": result["checkpoint"]["path"],
              "test_set": f"{result['test_set']['dataset']}/{result['test_set']['split']}",
              "preprocessing": _preprocessing_label(result["spec"])}
    for who in MODELS:
        if who not in result:
            continue
        for level in ("frame", "video"):
            r = result[who][level]
            ci = (r.get("intervals") or {}).get("auc") or {}
            rows.append({"model": who, **common, "level": level,
                         "aggregation": result["aggregation"] if level == "video" else "", "subset": "all",
                         **{k: r.get(k) for k in ROW_METRICS}, "auc_low": ci.get("low"), "auc_high": ci.get("high")})
        for key, values in result[who].items():
            if not key.startswith("video_auc_by_"):
                continue
            column = key.removeprefix("video_auc_by_")
            for value, r in values.items():
                ci = r.get("video_auc_interval") or {}
                rows.append({"model": who, **common, "level": "video", "aggregation": result["aggregation"],
                             "subset": f"{column}={value}", "n": r["n_fake"] + r["n_real"], "n_real": r["n_real"],
                             "n_fake": r["n_fake"], "auc": r["video_auc"], "auc_low": ci.get("low"),
                             "auc_high": ci.get("high")})
    return rows


def _preprocessing_label(spec: dict) -> str:
    """One cell naming what the model looked at (metrics.csv)."""
    s = ModelSpec.from_dict(spec)
    if s.image is not None:
        return f"image tiles {s.image.tile_size} px"
    return f"{s.face.detector.name} {s.face.crop_rule} x{s.face.margin} {s.face.crop_size} px"


def _fmt(x, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _auc_cell(r: dict) -> str:
    ci = (r.get("intervals") or {}).get("auc") or {}
    return _fmt(r["auc"]) + (f" [{_fmt(ci['low'])}, {_fmt(ci['high'])}]" if ci else "")


def markdown_summary(result: dict) -> str:
    """A human summary rendered from metrics.json (which stays the source of truth)."""
    ts, ck = result["test_set"], result["checkpoint"]
    lines = [f"# Evaluation: {Path(ck['path']).name} on {ts['dataset']}/{ts['split']}", ""]
    if result.get("warning"):
        lines += [f"**{result['warning']}**", ""]
    boot = result.get("bootstrap")
    lines += [f"- checkpoint sha256 `{ck['sha256'][:16]}…`, trained on `{ck['trained_on']}`, epoch {ck['epoch']}",
              f"- test set: {ts['n_items_scored']} of {ts['n_items']} items scored; "
              f"{ts['items_without_face']['n']} without a face ({ts['items_without_face']['handling']})",
              f"- video aggregation: `{result['aggregation']}`; calibration: `{ck['calibration'].get('method')}`"
              + (f" ({maps_summary(ck['calibration'])})" if is_calibrated(ck["calibration"])
                 or ck["calibration"].get("not_applied") else ""),
              "- intervals: " + (f"{boot['level']:.0%} percentile bootstrap over videos, {boot['n_resamples']} "
                                 f"resamples, seed {boot['seed']}" if boot else "none (bootstrap off)")]
    if result.get("level") == "image":
        image = result["spec"]["image"]
        lines += [f"- image level: {ts['n_frames_scored']} images/frames in {ts['n_tiles']} tiles of "
                  f"{image['tile_size']} px (stride {image['stride'] or image['tile_size']}, resize "
                  f"{image['resize'] or 'none: native resolution'}); `detector` = tile rule `{result['tile_aggregation']}`"
                  "; `detector_tile_max` and `detector_tile_mean` name both rules; the frame level is the image",
                  f"- {result['note']}"]
    lines += ["", "| model | level | n (real/fake) | AUC [CI] | AP | EER (interp.) | EER (nearest) | acc@0.5 | "
              "bal. acc@0.5 | bal. acc@operating | log loss | Brier | ECE | TPR@FPR 1% | TPR@FPR 0.1% |",
              "|" + "---|" * 15]
    for who in MODELS:
        if who not in result:
            continue
        for level in ("frame", "video"):
            r = result[who][level]
            lines.append(f"| {who} | {level} | {r['n']} ({r['n_real']}/{r['n_fake']}) | {_auc_cell(r)} | "
                         f"{_fmt(r['ap'])} | {_fmt(r['eer'])} | {_fmt(r['eer_nearest_point'])} | "
                         f"{_fmt(r['accuracy@0.5'])} | {_fmt(r['balanced_accuracy@0.5'])} | "
                         f"{_fmt(r.get('balanced_accuracy@operating'))} | {_fmt(r['log_loss'])} | {_fmt(r['brier'])} | "
                         f"{_fmt(r['ece'])} | {_fmt(r['tpr@fpr=0.01'])} | {_fmt(r['tpr@fpr=0.001'])} |")
    reasons = {f"{who}/{level}/{k}": v for who in MODELS if who in result for level in ("frame", "video")
               for k, v in result[who][level].get("null_reasons", {}).items()}
    if reasons:
        lines += ["", "n/a: " + "; ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))]
    breakdown_rows = [r for r in _rows(result) if r["subset"] != "all" and r["model"] == "detector"]
    if breakdown_rows:
        lines += ["", "## Video AUC by subset (detector)", "", "| subset | n (real/fake) | AUC [CI] |", "|---|---|---|"]
        for r in breakdown_rows:
            ci = f" [{_fmt(r['auc_low'])}, {_fmt(r['auc_high'])}]" if r.get("auc_low") is not None else ""
            lines.append(f"| {r['subset']} | {r['n']} ({r['n_real']}/{r['n_fake']}) | {_fmt(r['auc'])}{ci} |")
    loc = result.get("localization")
    if loc:
        lines += ["", "## Localisation (pixel level)", "",
                  f"{loc['n_images']} images with a truth mask; pixel AUC {_fmt(loc['pixel_auc'])}, pixel AP "
                  f"{_fmt(loc['pixel_ap'])}; at map threshold {_fmt(loc['iou_threshold'], 2)} "
                  f"({loc['iou_threshold_source']}): mean IoU {_fmt(loc['mean_iou'])}, pooled IoU "
                  f"{_fmt(loc['pooled_iou'])}"]
    comp = result.get("comparison")
    if comp:
        lines += ["", "## Paired comparison", "", f"A = `{comp['a']}`, B = `{comp['b']}`; {comp['question']}", "",
                  "| level | AUC A | AUC B | difference | bootstrap CI | bootstrap p | DeLong p |", "|---|---|---|---|---|---|---|"]
        for level in ("video", "frame"):
            c = comp[level]
            pb, dl = c["paired_bootstrap"], c.get("delong")
            lines.append(f"| {level} | {_fmt(c['auc_a'])} | {_fmt(c['auc_b'])} | {_fmt(c['difference'])} | "
                         f"[{_fmt(pb['low'])}, {_fmt(pb['high'])}] | {_fmt(pb['p_value'], 3)} | "
                         f"{_fmt(dl['p_value'], 4) if dl else 'n/a (frames are not independent)'} |")
    return "\n".join(lines) + "\n"


def _write_outputs(run_dir: Path, result: dict, frames: pd.DataFrame, boot: dict | None, plots: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=2, sort_keys=False, default=str))
    pd.DataFrame(_rows(result)).to_csv(run_dir / "metrics.csv", index=False)
    atomic_write_text(run_dir / "summary.md", markdown_summary(result))
    frames.to_csv(run_dir / "frame_scores.csv", index=False)
    if plots:
        for name, fig in evaluation_figures(result, frames, boot).items():
            P.save(fig, run_dir / f"{name}.png")


def evaluation_figures(result: dict, frames: pd.DataFrame, boot: dict | None) -> dict:
    """ROC with interval band, DET, reliability diagram and score histograms, as Figures."""
    rule, warning = result["aggregation"], result.get("warning")
    videos = M.aggregate_videos(frames, rule)
    band = None
    if boot and videos["label"].nunique() == 2:
        band = M.roc_band(videos["label"], videos["score"], **boot)
    if result.get("level") == "image":  # a frame is an image scored by its tile rule; an item, its frames
        tile = result.get("tile_aggregation") or "max"
        names, nouns = (f"image level ({tile} tile)", f"item level ({rule} over its frames)"), ("image", "item")
    else:
        names, nouns = ("frame level", f"video level ({rule})"), ("frame", "video")
    figs = {"roc": P.roc_figure(frames, videos, rule, band, warning, names=names),
            "det": P.det_figure({names[0]: frames, names[1]: videos}, warning)}
    curves = {f"{nouns[0]}s, raw": frames, f"{nouns[1]}s, raw": videos}
    cal = result["checkpoint"]["calibration"]
    if is_calibrated(cal):
        calibrated, calibrated_videos_table = calibrated_videos(frames, rule, cal)
        curves[f"{nouns[0]}s, Platt-scaled (T={cal['temperature']:.2f}, b={cal.get('bias', 0.0):.2f})"] = calibrated
        if has_video_map(cal):
            curves[f"{nouns[1]}s, Platt-scaled (T_video={cal.get('video_temperature', 1.0):.2f}, "
                   f"b_video={cal.get('video_bias', 0.0):.2f})"] = calibrated_videos_table
    figs["reliability"] = P.reliability_figure(curves, warning=warning)
    figs["scores_video"] = P.score_histogram_figure(videos, nouns[1], warning=warning)
    figs["scores_frame"] = P.score_histogram_figure(frames, nouns[0], warning=warning)
    return figs


def format_table(result: dict) -> str:
    lines = [f"{'model':<20}{'level':<8}{'subset':<26}{'n':>6}{'AUC':>8}{'AP':>8}{'EER':>8}{'acc@.5':>8}"]
    for r in _rows(result):
        def f(x):
            return "   n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:8.4f}"
        lines.append(f"{r['model']:<20}{r['level']:<8}{r['subset']:<26}{r['n']:>6}{f(r['auc'])}{f(r.get('ap'))}"
                     f"{f(r.get('eer'))}{f(r.get('accuracy@0.5'))}")
    loc = result.get("localization")
    if loc:
        lines.append(f"localisation: {loc['n_images']} masked images, pixel AUC {_fmt(loc['pixel_auc'])}, "
                     f"mean IoU {_fmt(loc['mean_iou'])} at threshold {_fmt(loc['iou_threshold'], 2)} "
                     f"(fitted on {loc['iou_threshold_source']})")
    if result.get("note"):
        lines.append(result["note"])
    if result.get("warning"):
        lines.append(result["warning"])
    return "\n".join(lines)

