"""Cross-data-set matrix: checkpoints (rows, with their training data) x test sets (columns).

Each cell is the video AUC with its bootstrap interval on the test split of that data set,
under the checkpoint's own aggregation rule and raw probabilities: the cells compare detectors,
not calibrations, and a calibration fitted on one data set's validation split says nothing about
another data set (its video map can also reorder videos and stills, so it would move the AUC).
Written as CSV (one row per cell, the source of truth), JSON, Markdown and a heatmap PNG.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from faketrace.datasets.io import atomic_write_text, sha256_file
from faketrace.engine import metrics as M
from faketrace.engine import plots as P
from faketrace.engine.checkpoint import load_checkpoint, versions
from faketrace.engine.evaluate import score_split
from faketrace.engine.inference import resolve_device
from faketrace.models.spec import checkpoint_spec

log = logging.getLogger(__name__)


def checkpoint_label(path: str | Path, trained_on: str) -> str:
    """Row label: the run folder and file name (best.ckpt alone says nothing), plus training data."""
    p = Path(path)
    run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
    return f"{run}/{p.name} (trained on {trained_on})"


def cross_evaluate(checkpoints: list[str], test_sets: dict[str, DictConfig], out_dir: str | Path, split: str = "test",
                   bootstrap: dict | None = None, aggregation: str | None = None, device: str = "auto",
                   batch_size: int = 64, num_workers: int = 2) -> pd.DataFrame:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    rows = []
    for ckpt_path in checkpoints:
        ckpt = load_checkpoint(ckpt_path)
        rule = aggregation or checkpoint_spec(ckpt).video.rule
        label = checkpoint_label(ckpt_path, ckpt["data"]["name"])
        for name, data_cfg in test_sets.items():
            frames = score_split(ckpt, data_cfg, split, batch_size, num_workers, dev)
            videos = M.aggregate_videos(frames, rule)
            y, s = videos["label"], videos["score"]
            row = {"checkpoint": label, "checkpoint_path": str(ckpt_path), "checkpoint_sha256": sha256_file(ckpt_path),
                   "trained_on": ckpt["data"]["name"], "test_set": name, "split": split, "aggregation": rule,
                   "n_videos": int(len(videos)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
                   "video_auc": M.roc_auc(y, s), "frame_auc": M.roc_auc(frames["label"], frames["score"]),
                   "video_auc_low": None, "video_auc_high": None}
            if bootstrap and row["video_auc"] is not None:
                ci = M.bootstrap_intervals(y, s, **bootstrap)["auc"]
                row.update(video_auc_low=ci["low"], video_auc_high=ci["high"])
            rows.append(row)
            log.info("%s on %s: video AUC %s", label, name, row["video_auc"])
    table = pd.DataFrame(rows)
    write_matrix(table, out_dir, bootstrap)
    return table


def pivot(table: pd.DataFrame, column: str) -> pd.DataFrame:
    rows = list(dict.fromkeys(table["checkpoint"]))
    cols = list(dict.fromkeys(table["test_set"]))
    return table.pivot(index="checkpoint", columns="test_set", values=column).reindex(index=rows, columns=cols)


def matrix_markdown(table: pd.DataFrame, bootstrap: dict | None) -> str:
    auc, lo, hi = pivot(table, "video_auc"), pivot(table, "video_auc_low"), pivot(table, "video_auc_high")
    lines = ["# Cross-data-set matrix: video AUC" + (f" [{bootstrap['level']:.0%} CI]" if bootstrap else ""), "",
             f"Rows: checkpoints (training data); columns: test sets ({table['split'].iloc[0]} split); aggregation "
             f"`{table['aggregation'].iloc[0]}`." + (f" Intervals: percentile bootstrap over videos, "
                                                    f"{bootstrap['n_resamples']} resamples, seed {bootstrap['seed']}."
                                                    if bootstrap else ""), "",
             "| checkpoint | " + " | ".join(auc.columns) + " |", "|---|" + "---|" * len(auc.columns)]
    for r in auc.index:
        cells = []
        for c in auc.columns:
            v = auc.at[r, c]
            cells.append("n/a" if pd.isna(v) else f"{v:.3f}" + (f" [{lo.at[r, c]:.3f}, {hi.at[r, c]:.3f}]"
                                                                 if not pd.isna(lo.at[r, c]) else ""))
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_matrix(table: pd.DataFrame, out_dir: Path, bootstrap: dict | None) -> None:
    table.to_csv(out_dir / "cross_eval.csv", index=False)
    atomic_write_text(out_dir / "cross_eval.json", json.dumps(
        {"schema_version": 1, "bootstrap": bootstrap, "versions": versions(), "cells": table.to_dict("records")},
        indent=2, default=str))
    atomic_write_text(out_dir / "cross_eval.md", matrix_markdown(table, bootstrap))
    fig = P.matrix_heatmap_figure(pivot(table, "video_auc"), pivot(table, "video_auc_low"),
                                  pivot(table, "video_auc_high"), "video AUC [bootstrap interval]")
    P.save(fig, out_dir / "cross_eval.png")
