"""torchrun + DDP (gloo on CPU): 2 processes x batch b equal 1 process x batch 2b."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from faketrace.datasets.schema import read_manifest, write_manifest
from faketrace.engine.checkpoint import load_checkpoint

from .conftest import REPO

# BN-free model, no dropout, AdamW; validation on every sample.
COMMON = ["model=tiny", "model.backbone=test_vit", "model.input_size=64", "trainer.max_epochs=1",
          "trainer.limit_train_batches=3", "loader.num_workers=0", "trainer.progress_bar=false",
          "trainer.accelerator=cpu", "trainer.threads=1"]


def _run(cmd, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_twice_the_batch(demo_data, tmp_path):
    # An odd-sized validation set, so a padding sampler would have to duplicate a sample.
    manifest, meta = read_manifest(demo_data["cfg"].data.manifest_path)
    val_ids = set(demo_data["index"].loc[demo_data["index"].split == "val", "id"])
    val_rows = manifest.index[manifest.video_id.isin(val_ids)]
    odd = manifest.drop(index=val_rows[:1]) if len(val_rows) % 2 == 0 else manifest
    n_val = int(odd.video_id.isin(val_ids).sum())
    assert n_val % 2 == 1
    odd_path = tmp_path / "manifest_odd.parquet"
    write_manifest(odd, odd_path, meta)
    data = demo_data["overrides"] + [f"data.manifest_path={odd_path}"]

    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
          *data, *COMMON, "loader.batch_size=4", f"hydra.run.dir={tmp_path}/ddp"])
    _run([sys.executable, "train.py", *data, *COMMON, "loader.batch_size=8", f"hydra.run.dir={tmp_path}/single"])

    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt")
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.ckpt")
    assert ddp["global_step"] == single["global_step"] == 3
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, atol=1e-5, rtol=0)
    # Validation: every sample once (no duplicates from padding), the same numbers.
    for level in ("frame", "video"):
        for key in ("n", "auc", "log_loss"):
            assert ddp["metrics"]["val"][level][key] == pytest.approx(single["metrics"]["val"][level][key],
                                                                      abs=1e-6)
    assert ddp["metrics"]["val"]["frame"]["n"] == n_val
    # Only rank 0 wrote: one metrics file, one set of checkpoints, in the one run directory.
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (tmp_path / "ddp" / "metrics.jsonl").is_file()


def test_run_directory_name_is_shared_by_all_ranks(monkeypatch):
    from faketrace.engine.distributed import run_stamp

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc123")
    assert run_stamp() == "torchrun_abc123"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    assert run_stamp() == f"torchrun_agent{os.getppid()}"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert run_stamp().count("-") == 4  # a timestamp YYYY-MM-DD_HH-MM-SS
