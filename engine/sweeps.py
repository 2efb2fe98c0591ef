"""Summaries over sweeps: mean and standard deviation of validation and test metrics across runs.

A multi-seed study is `python train.py -m seed=1,2,3 ...` (any Hydra launcher), then
`python scripts/summarize_runs.py sweep_dir=<the multirun directory>`: every run's best
checkpoint is evaluated on the test split and the spread across runs is reported.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, open_dict

from faketrace.datasets.io import atomic_write_text
from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.evaluate import evaluate_checkpoint

log = logging.getLogger(__name__)
METRICS = ("auc", "ap", "eer", "log_loss", "accuracy@0.5")


def find_runs(sweep_dir: str | Path) -> list[Path]:
    runs = sorted(p.parent.parent for p in Path(sweep_dir).rglob("checkpoints/best.ckpt"))
    if not runs:
        raise FileNotFoundError(f"no run with checkpoints/best.ckpt under {sweep_dir}")
    return runs


def summarize_runs(cfg: DictConfig) -> dict:
    rows = []
    for run in find_runs(cfg.sweep_dir):
        ckpt_path = run / "checkpoints" / "best.ckpt"
        ckpt = load_checkpoint(ckpt_path)
        eval_cfg = cfg.copy()
        with open_dict(eval_cfg):
            eval_cfg.ckpt_path = str(ckpt_path)
            eval_cfg.paths.output_dir = str(run / f"eval_{cfg.split}")
        result = evaluate_checkpoint(eval_cfg)
        row = {"run": str(run), "seed": _seed_of(ckpt), "epoch": ckpt["epoch"]}
        for level in ("frame", "video"):
            for m in METRICS:
                row[f"val/{level}_{m}"] = (ckpt["metrics"]["best_val"] or ckpt["metrics"]["val"])[level][m]
                row[f"{cfg.split}/{level}_{m}"] = result["detector"][level][m]
        rows.append(row)
    table = pd.DataFrame(rows)
    numeric = [c for c in table.columns if "/" in c]
    summary = {c: {"mean": float(np.mean(table[c].astype(float))),
                   "std": float(np.std(table[c].astype(float), ddof=1)) if len(table) > 1 else None,
                   "n_runs": int(len(table))} for c in numeric}
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "runs.csv", index=False)
    atomic_write_text(out / "summary.json", json.dumps({"sweep_dir": str(cfg.sweep_dir), "split": cfg.split,
                                                        "std": "sample standard deviation (ddof=1)",
                                                        "metrics": summary, "runs": rows}, indent=2, default=str))
    return {"runs": table, "summary": summary}


def _seed_of(ckpt: dict) -> int | None:
    import yaml

    return yaml.safe_load(ckpt["config"]).get("seed")
