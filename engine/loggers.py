"""Run logging: a CSV and a JSON-lines metrics file per run, always; wandb when configured.

wandb is imported only when the `logger` group selects it, and runs offline unless told
otherwise, with git and code saving off.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class MetricsFile:
    """Appends one row per logging event to metrics.csv and metrics.jsonl in the run directory."""

    def __init__(self, run_dir: str | Path, wandb_cfg: dict | None = None, config: dict | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.wandb = None
        if wandb_cfg:
            self.wandb = _start_wandb(wandb_cfg, config, self.run_dir)

    def log(self, row: dict) -> None:
        row = {k: _plain(v) for k, v in row.items()}
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        fields = sorted({k for r in rows for k in r})
        with open(self.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=row.get("step"))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(cfg: dict, config: dict | None, run_dir: Path):
    import wandb

    settings = wandb.Settings(save_code=bool(cfg.get("save_code", False)),
                              disable_git=not bool(cfg.get("save_git", False)))
    return wandb.init(project=cfg.get("project", "faketrace"), mode=cfg.get("mode", "offline"),
                      dir=str(run_dir), name=cfg.get("name"), config=config, settings=settings,
                      tags=list(cfg.get("tags") or []))
