"""The README's job through the real command-line entry points, on a small demo set."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SMALL_DEMO


def _run(args, tmp_path):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "FAKETRACE_DATA": str(tmp_path / "data"),
                              "WANDB_MODE": "offline"})
    assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def printed_command(name: str) -> str:
    """The command line the Makefile's demo prints (an @echo line) that runs `name`."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.strip().startswith("@echo") and name in line:
            return line.split('"', 1)[1].rsplit('"', 1)[0].strip().split(": ", 1)[-1]
    raise AssertionError(f"the Makefile prints no {name} command")


def _run_printed(command_line: str, tmp_path) -> str:
    out = subprocess.run(shlex.split(command_line), cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "FAKETRACE_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"})
    assert out.returncode == 0, f"{command_line} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


@pytest.mark.slow
def test_demo_pipeline_from_the_command_line(tmp_path):
    runs = tmp_path / "runs"
    _run(["scripts/make_demo_data.py", f"hydra.run.dir={runs}/gen", *SMALL_DEMO], tmp_path)
    _run(["scripts/preprocess.py", f"hydra.run.dir={runs}/pre", "face.crop_size=64", "face.frames_per_video=4"],
         tmp_path)
    _run(["train.py", "model=tiny", "trainer.max_epochs=2", "trainer.progress_bar=false", "loader.batch_size=16",
          f"hydra.run.dir={runs}/train"], tmp_path)
    ckpt = runs / "train" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file() and (runs / "train" / ".hydra" / "config.yaml").is_file()
    printed = _run(["evaluate.py", f"ckpt_path={ckpt}", f"hydra.run.dir={runs}/eval"], tmp_path)
    assert "NOT FIT FOR CASEWORK" in printed and "baseline" in printed
    metrics = json.loads((runs / "eval" / "metrics.json").read_text())
    assert metrics["test_set"]["split"] == "test" and metrics["detector"]["video"]["n"] > 0
    # Training fitted a calibration on validation. It is applied only where it improved its own
    # cross-fitted held-out check (two epochs of a tiny model may not); the evaluation reports
    # calibrated numbers exactly when the checkpoint says the calibration is applied, and says why not.
    calibration = metrics["checkpoint"]["calibration"]
    assert calibration["fitted_on"]["split"] == "val"
    assert ("detector_calibrated" in metrics) == calibration["applied"], calibration
    if not calibration["applied"]:
        assert "held-out" in calibration["not_applied"]["reason"] and calibration["method"] == "none"
    exported = _run(["scripts/export.py", f"ckpt_path={ckpt}", f"hydra.run.dir={runs}/export",
                     f"evaluation={runs}/eval/metrics.json"], tmp_path)
    assert "max |logit diff|" in exported and "test crops, batch sizes 1, 8" in exported
    folder = runs / "export" / "export"
    assert (folder / "model.onnx").is_file() and "## Evaluation" in (folder / "MODEL_CARD.md").read_text()
    # The command `make demo` prints at its end, run as printed (only the demo's folders swapped for this test's).
    printed = printed_command("faketrace-predict")
    predicted = _run_printed(printed.replace("$(VENV)", str(Path(sys.executable).parents[1]))
                             .replace("$(DEMO)/export/model", str(folder))
                             .replace("data/demo/raw", str(tmp_path / "data" / "demo" / "raw")), tmp_path)
    results = [json.loads(line) for line in predicted.splitlines()]
    assert results and all(r["status"] in ("scanned", "no_face") for r in results)
