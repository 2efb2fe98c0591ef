"""Evaluation of a checkpoint on a split: metrics.json (source of truth), metrics.csv, ROC plot.

The preprocessing is the checkpoint's own: its input size, mean and std, and the face pipeline
spec, which is compared with the manifest's so that a mismatch is reported, not hidden.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from faketrace.datasets.frames import FaceCropDataset, load_face_table
from faketrace.datasets.io import atomic_write_text, sha256_file
from faketrace.datasets.schema import read_index
from faketrace.datasets.transforms import eval_transform
from faketrace.engine import metrics as M
from faketrace.engine.baseline import NAME as BASELINE_NAME
from faketrace.engine.baseline import colour_baseline_scores
from faketrace.engine.checkpoint import load_checkpoint, versions
from faketrace.engine.train import predict, resolve_device

log = logging.getLogger(__name__)
METRICS_SCHEMA_VERSION = 1


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    """Rebuild the Detector a checkpoint describes and load its weights strictly."""
    init = dict(ckpt["model_spec"]["init"])
    init.update(pretrained=False, weights_file=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random initialisation.*")
        model = instantiate(init)
    model.backbone.load_state_dict(ckpt["model"], strict=True)
    return model.eval()


def check_preprocessing(ckpt: dict, manifest_meta: dict) -> list[str]:
    """Differences between the crops a model was trained on and the crops it is given."""
    trained = ckpt["preprocessing"]["face"]
    given = manifest_meta.get("spec", {})
    return [f"{k}: checkpoint {trained.get(k)!r} vs manifest {given.get(k)!r}"
            for k in sorted(set(trained) | set(given)) if k != "frames_per_video" and trained.get(k) != given.get(k)]


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.paths.output_dir)
    ckpt = load_checkpoint(cfg.ckpt_path)
    device = resolve_device(cfg.device)
    model = model_from_checkpoint(ckpt).to(device)
    faces, index_meta, manifest_meta = load_face_table(cfg.data.index_path, cfg.data.manifest_path)
    mismatch = check_preprocessing(ckpt, manifest_meta)
    if mismatch:
        log.warning("face preprocessing differs from the checkpoint's: %s", "; ".join(mismatch))
    spec = ckpt["preprocessing"]["input"]
    dataset = FaceCropDataset(faces, cfg.data.faces_dir, eval_transform(spec["input_size"], spec["mean"], spec["std"]),
                              split=cfg.split)
    if len(dataset) == 0:
        raise ValueError(f"no face crops in split {cfg.split!r} of {cfg.data.manifest_path}")
    rule = cfg.aggregation or ckpt["preprocessing"]["aggregation"]
    frames = predict(model, dataset, cfg.batch_size, cfg.num_workers, device)
    report = M.report_levels(frames, rule)

    index, _ = read_index(cfg.data.index_path)
    in_split = index[index["split"] == cfg.split]
    scored = set(frames["video_id"])
    unscored = in_split[~in_split["id"].isin(scored)]
    result = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "checkpoint": {"path": str(cfg.ckpt_path), "sha256": sha256_file(cfg.ckpt_path), "epoch": ckpt["epoch"],
                       "backbone": ckpt["model_spec"]["backbone"], "family": ckpt["model_spec"]["family"],
                       "trained_on": ckpt["data"]["name"], "fit_for_casework": ckpt["fit_for_casework"],
                       "casework_note": ckpt["casework_note"], "calibration": ckpt["calibration"]},
        "test_set": {"dataset": cfg.data.name, "split": cfg.split, "index": str(cfg.data.index_path),
                     "synthetic": bool(index_meta.get("synthetic")), "n_items": int(len(in_split)),
                     "n_items_scored": int(len(scored)),
                     "items_without_face": {"n": int(len(unscored)), "handling": "excluded from metrics",
                                            "ids": unscored["id"].tolist()[:50]}},
        "preprocessing": {**ckpt["preprocessing"], "mismatch_with_manifest": mismatch},
        "aggregation": rule,
        "detector": report,
        "versions": versions(),
    }
    if cfg.baseline:
        base = colour_baseline_scores(faces, cfg.data.faces_dir, cfg.split, seed=int(cfg.seed))
        result["baseline"] = {"name": BASELINE_NAME, **M.report_levels(base, rule)}
    if ckpt["data"]["name"] == "demo" or not ckpt["fit_for_casework"]:
        result["warning"] = f"NOT FIT FOR CASEWORK: {ckpt['casework_note']}"
    _write_outputs(run_dir, result, frames)
    return result


def _rows(result: dict) -> list[dict]:
    rows = []
    for who in ("detector", "baseline"):
        if who not in result:
            continue
        for level in ("frame", "video"):
            r = result[who][level]
            rows.append({"model": who, "checkpoint": result["checkpoint"]["path"],
                         "test_set": f"{result['test_set']['dataset']}/{result['test_set']['split']}",
                         "level": level, "aggregation": result["aggregation"] if level == "video" else "",
                         "preprocessing": result["preprocessing"]["face"]["detector"], "subset": "all",
                         **{k: r[k] for k in ("n", "n_real", "n_fake", "auc", "ap", "eer", "accuracy@0.5", "log_loss")}})
        for method, r in result[who].get("video_auc_by_method", {}).items():
            rows.append({"model": who, "checkpoint": result["checkpoint"]["path"],
                         "test_set": f"{result['test_set']['dataset']}/{result['test_set']['split']}",
                         "level": "video", "aggregation": result["aggregation"],
                         "preprocessing": result["preprocessing"]["face"]["detector"], "subset": f"method={method}",
                         "n": r["n_fake"] + r["n_real"], "n_real": r["n_real"], "n_fake": r["n_fake"],
                         "auc": r["video_auc"]})
    return rows


def _write_outputs(run_dir: Path, result: dict, frames: pd.DataFrame) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=2, sort_keys=False, default=str))
    pd.DataFrame(_rows(result)).to_csv(run_dir / "metrics.csv", index=False)
    frames.to_csv(run_dir / "frame_scores.csv", index=False)
    plot_roc(frames, result["aggregation"], run_dir / "roc.png", result.get("warning"))


def plot_roc(frames: pd.DataFrame, rule: str, path: Path, warning: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = M.aggregate_videos(frames, rule)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, table in (("frame level", frames), (f"video level ({rule})", videos)):
        if table["label"].nunique() < 2:
            continue
        fpr, tpr, _ = M.roc_points(table["label"], table["score"])
        ax.plot(fpr, tpr, label=f"{name}, AUC {M.roc_auc(table['label'], table['score']):.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake called fake)")
    ax.set_title("ROC" + ("\n" + warning[:60] if warning else ""), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(result: dict) -> str:
    lines = [f"{'model':<10}{'level':<8}{'subset':<26}{'n':>6}{'AUC':>8}{'AP':>8}{'EER':>8}{'acc@.5':>8}"]
    for r in _rows(result):
        def f(x):
            return "   n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:8.4f}"
        lines.append(f"{r['model']:<10}{r['level']:<8}{r['subset']:<26}{r['n']:>6}{f(r['auc'])}{f(r.get('ap'))}"
                     f"{f(r.get('eer'))}{f(r.get('accuracy@0.5'))}")
    if result.get("warning"):
        lines.append(result["warning"])
    return "\n".join(lines)
