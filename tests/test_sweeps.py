"""A seed sweep through Hydra's submitit launcher (locally) and its mean/std summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from .conftest import REPO


@pytest.mark.slow
def test_two_seed_sweep_through_submitit_local_and_summary(demo_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sweep = tmp_path / "sweep"
    train = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", "seed=1,2", *demo_data["overrides"], "model=tiny",
         "debug=fast", f"hydra.sweep.dir={sweep}"], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-4000:]
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    assert list(sweep.rglob(".submitit"))  # the jobs really went through submitit
    summ = subprocess.run(
        [sys.executable, "scripts/summarize_runs.py", f"sweep_dir={sweep}", *demo_data["overrides"],
         "num_workers=0", f"hydra.run.dir={tmp_path / 'summary'}"], cwd=REPO, capture_output=True, text=True,
        timeout=900, env=env)
    assert summ.returncode == 0, summ.stdout[-2000:] + summ.stderr[-4000:]
    summary = json.loads((tmp_path / "summary" / "summary.json").read_text())
    runs = pd.read_csv(tmp_path / "summary" / "runs.csv")
    assert sorted(runs.seed) == [1, 2]
    for key in ("val/video_auc", "test/video_auc", "test/frame_log_loss"):
        values = runs[key].astype(float).to_numpy()
        assert summary["metrics"][key]["mean"] == pytest.approx(values.mean())
        assert summary["metrics"][key]["std"] == pytest.approx(np.std(values, ddof=1))
    # Different seeds train different models.
    assert runs["test/frame_log_loss"].nunique() == 2
