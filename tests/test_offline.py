"""Nothing leaves the machine: no library telemetry, and wandb offline (no git, no code) by default."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from faketrace.datasets.offline import OFFLINE_ENV

from .conftest import REPO, compose_config, resolved


def _clean_env() -> dict:
    """The environment without what faketrace sets itself: the child must set it on its own."""
    return {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and k != "FAKETRACE_FAULT"}


def inet_connects(trace) -> list[str]:
    return [line for line in trace.read_text().splitlines() if "connect(" in line and "AF_INET" in line]


@pytest.mark.slow
def test_onnxruntime_telemetry_is_off_in_a_faketrace_process(tmp_path):
    """ONNX Runtime's telemetry thread looks up its collector about ten seconds after import; a process
    that imports faketrace first and lives 20 s must make no AF_INET/AF_INET6 connection at all."""
    strace = shutil.which("strace")
    assert strace, "strace is needed (.ci/run installs it with apt-get)"
    control = tmp_path / "control.txt"
    probe = ("import socket; s = socket.socket(); s.settimeout(1)\n"
             "try: s.connect(('127.0.0.1', 9))\nexcept OSError: pass")
    subprocess.run([strace, "-f", "-e", "trace=connect", "-o", str(control), sys.executable, "-c", probe],
                   env=_clean_env(), capture_output=True, timeout=120)
    assert len(inet_connects(control)) == 1

    trace = tmp_path / "trace.txt"
    code = ("import time; import faketrace.forensics.scoring; import onnxruntime\n"
            "from faketrace.datasets.faces import build_detector; build_detector('retinaface'); time.sleep(20)")
    proc = subprocess.run([strace, "-f", "-e", "trace=connect", "-o", str(trace), sys.executable, "-c", code],
                          cwd=REPO, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert inet_connects(trace) == []


# -- wandb -----------------------------------------------------------------------------------------
@pytest.fixture
def wandb_calls(monkeypatch):
    """wandb.init replaced by a recorder: the real Settings object is built, nothing is started."""
    import wandb

    calls = []

    class Run:
        def log(self, *args, **kwargs):
            pass

        def finish(self):
            pass

    def init(**kwargs):
        calls.append(kwargs)
        return Run()

    monkeypatch.setattr(wandb, "init", init)
    return calls


def _logger(overrides, tmp_path):
    from omegaconf import OmegaConf

    from faketrace.engine.loggers import MetricsFile

    cfg = resolved(compose_config("train", ["logger=wandb", *overrides], output_dir=tmp_path))
    logger = MetricsFile(tmp_path, OmegaConf.to_container(cfg.logger, resolve=True)["wandb"], {"seed": 1})
    logger.log({"step": 1, "train/loss": 0.5})
    logger.close()


def test_wandb_is_offline_without_git_or_code_by_default(wandb_calls, tmp_path):
    _logger([], tmp_path)
    (call,) = wandb_calls
    assert call["mode"] == "offline" and call["dir"] == str(tmp_path)
    assert call["settings"].disable_git is True and call["settings"].save_code is False


def test_wandb_goes_online_only_when_chosen_and_still_keeps_git_and_code(wandb_calls, tmp_path):
    _logger(["logger.wandb.mode=online"], tmp_path)
    (call,) = wandb_calls
    assert call["mode"] == "online"
    assert call["settings"].disable_git is True and call["settings"].save_code is False
    _logger(["logger.wandb.mode=online", "logger.wandb.save_git=true", "logger.wandb.save_code=true"], tmp_path)
    assert wandb_calls[1]["settings"].disable_git is False and wandb_calls[1]["settings"].save_code is True
