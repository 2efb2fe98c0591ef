"""Training and evaluation through the real Hydra configs on generated demo data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.evaluate import evaluate_checkpoint
from faketrace.engine.train import train
from faketrace.models.spec import ModelSpec

from .conftest import compose_config, resolved

TINY = ["model=tiny", "trainer.progress_bar=false", "loader.batch_size=8", "trainer.log_every_n_steps=1"]


def _train(demo_data, out, extra):
    cfg = compose_config("train", demo_data["overrides"] + TINY + extra, output_dir=out)
    return train(resolved(cfg)), cfg


def test_one_epoch_trains_validates_and_writes_self_describing_checkpoints(demo_data, tmp_path):
    result, _ = _train(demo_data, tmp_path, ["trainer.max_epochs=1", "loader.num_workers=0"])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    # The real last checkpoint loads with weights_only=True (load_checkpoint uses it).
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    raw = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert raw["epoch"] == 1 and ckpt["global_step"] > 0
    assert isinstance(ckpt["config"], str) and "backbone: test_efficientnet" in ckpt["config"]
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    assert ckpt["fit_for_casework"] is False and "demo" in ckpt["casework_note"]
    spec = ModelSpec.from_dict(raw["spec"])  # the typed model contract, as written
    assert "preprocessing" not in raw and raw["architecture"]["backbone"] == "test_efficientnet"
    assert spec.level == "face" and spec.face.detector.name == "retinaface_mnet025_onnx" and spec.face.margin == 1.3
    assert spec.face.detector.weights_sha256 and spec.video.rule == "mean"
    assert spec.input.size == (64, 64) and len(spec.input.mean) == 3
    assert spec.trained_on.datasets == ("demo",) and spec.trained_on.synthetic and spec.trained_on.methods
    # Plain timm keys: no wrapper prefix.
    assert not any(k.startswith("backbone.") for k in ckpt["model"])
    for name in ("optimizer", "scheduler", "versions", "git_sha", "metrics", "calibration"):
        assert name in ckpt
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any("val/video_auc" in json.loads(line) for line in lines)
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch") or "epoch" in (tmp_path / "metrics.csv").read_text()
    assert math.isfinite(result["best_score"])


def test_evaluate_on_val_reproduces_training_validation(demo_data, tmp_path):
    _train(demo_data, tmp_path / "train", ["trainer.max_epochs=1", "loader.num_workers=0"])
    ckpt_path = tmp_path / "train" / "checkpoints" / "last.ckpt"
    logged = load_checkpoint(ckpt_path)["metrics"]["val"]
    cfg = compose_config("evaluate", demo_data["overrides"] + [f"ckpt_path={ckpt_path}", "split=val",
                                                              "num_workers=0"], output_dir=tmp_path / "eval")
    result = evaluate_checkpoint(resolved(cfg))
    for level in ("frame", "video"):
        for key in ("auc", "ap", "eer", "log_loss", "accuracy@0.5"):
            assert result["detector"][level][key] == pytest.approx(logged[level][key], abs=1e-6), (level, key)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test_set"]["split"] == "val" and saved["aggregation"] == "mean"
    assert saved["warning"].startswith("NOT FIT FOR CASEWORK")
    assert set(saved["detector"]["video_auc_by_method"]) == {"face_swap", "local_resample", "double_jpeg"}
    assert "baseline" in saved and saved["baseline"]["video"]["auc"] is not None
    assert (tmp_path / "eval" / "roc.png").stat().st_size > 1000
    csv = (tmp_path / "eval" / "metrics.csv").read_text()
    assert "video" in csv and "method=face_swap" in csv


# Augmentation and two loader workers: resumption and determinism are tested where they are hardest.
RESUMABLE = ["loader.num_workers=2", "trainer.limit_train_batches=3", "trainer.deterministic=true"]


@pytest.fixture(scope="module")
def straight(demo_data, tmp_path_factory):
    """An uninterrupted two-epoch run: what every resumed or repeated run must equal."""
    out = tmp_path_factory.mktemp("straight")
    _train(demo_data, out, RESUMABLE + ["trainer.max_epochs=2"])
    return out


def _assert_same_weights(a_path, b_path):
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    return a, b


def test_resume_gives_identical_weights_with_augmentation_and_workers(demo_data, straight, tmp_path):
    _train(demo_data, tmp_path / "split", RESUMABLE + ["trainer.max_epochs=1"])
    first = tmp_path / "split" / "checkpoints" / "last.ckpt"
    _train(demo_data, tmp_path / "resumed", RESUMABLE + ["trainer.max_epochs=2", f"ckpt_path={first}"])
    a, _ = _assert_same_weights(straight / "checkpoints" / "last.ckpt", tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    # And the run without resume from epoch 1 differs from epoch 2, so the test can fail.
    c = load_checkpoint(first)
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


@pytest.mark.slow
def test_killed_while_writing_a_checkpoint_resumes_to_identical_weights(demo_data, straight, tmp_path):
    """SIGKILL to the whole process group (trainer and loader workers) while epoch 2's last.ckpt is
    fully written and fsynced under its temporary name, before the rename."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from faketrace.datasets.faults import FAULT_ENV

    from .conftest import REPO

    run = tmp_path / "killed"
    env = {**os.environ, FAULT_ENV: "atomic_before_rename/last.ckpt@2:pause", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "train.py", *demo_data["overrides"], *TINY, *RESUMABLE,
                             "trainer.max_epochs=2", f"hydra.run.dir={run}"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    guard = threading.Timer(300, lambda: os.killpg(proc.pid, signal.SIGKILL))
    guard.start()
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("FAULT atomic_before_rename (last.ckpt)"):
                break
        assert lines and lines[-1].startswith("FAULT"), "".join(lines[-30:])
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        guard.cancel()
    assert proc.returncode == -signal.SIGKILL
    ckpt_dir = run / "checkpoints"
    # Epoch 2's checkpoint never reached its name: last.ckpt is still epoch 1's, whole.
    assert [p.name for p in ckpt_dir.glob(".last.ckpt.*.tmp")] == [f".last.ckpt.{proc.pid}.tmp"]
    assert load_checkpoint(ckpt_dir / "last.ckpt")["epoch"] == 1
    _train(demo_data, tmp_path / "resumed", RESUMABLE + ["trainer.max_epochs=2", f"ckpt_path={ckpt_dir / 'last.ckpt'}"])
    _assert_same_weights(straight / "checkpoints" / "last.ckpt", tmp_path / "resumed" / "checkpoints" / "last.ckpt")


def test_same_seed_and_data_give_identical_metrics_on_cpu(demo_data, straight, tmp_path):
    """Determinism on one machine: a second run of the same config logs the same numbers, bit for bit."""
    _train(demo_data, tmp_path, RESUMABLE + ["trainer.max_epochs=2"])

    def logged(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        # Everything but throughput, which is wall-clock time.
        return [{k: v for k, v in r.items() if not k.endswith("images_per_s")} for r in rows]

    first, second = logged(straight), logged(tmp_path)
    val = [r for r in first if "val/video_auc" in r]
    assert len(val) == 2 and all(r["val/frame_log_loss"] is not None for r in val)
    assert second == first
    a, b = _assert_same_weights(straight / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "last.ckpt")
    assert a["metrics"] == b["metrics"]


def test_bf16_autocast_on_cpu_trains(demo_data, tmp_path):
    result, _ = _train(demo_data, tmp_path, ["trainer.max_epochs=1", "trainer.precision=bf16",
                                             "trainer.accelerator=cpu", "loader.num_workers=0",
                                             "trainer.limit_train_batches=2"])
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(v.dtype != torch.bfloat16 for v in ckpt["model"].values())  # weights stay fp32
    assert "precision: bf16" in ckpt["config"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_logger_none_does_not_import_wandb(demo_data, tmp_path):
    import subprocess
    import sys

    from .conftest import REPO

    code = (
        "import sys; from tests.conftest import compose_config, resolved;"
        "from faketrace.engine.train import train;"
        f"cfg = compose_config('train', {demo_data['overrides'] + TINY!r} + "
        "['trainer.max_epochs=1','loader.num_workers=0','trainer.limit_train_batches=1','logger=none'],"
        f" output_dir={str(tmp_path)!r}); train(resolved(cfg)); print('wandb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_precision_auto_is_full_precision_on_cpu_and_amp_on_gpu():
    from faketrace.engine.train import resolve_precision

    assert resolve_precision(torch.device("cpu"), "auto") == "32"
    assert resolve_precision(torch.device("cpu"), "bf16") == "bf16"
    if torch.cuda.is_available():
        assert resolve_precision(torch.device("cuda"), "auto") in ("bf16", "16-mixed")
