"""What a newcomer sees first: each entry point's --help lists its own groups, and evaluate.py
without a model says in one line what to give it."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_each_help_lists_its_own_groups_only():
    train, evaluate = _run("train.py", "--help"), _run("evaluate.py", "--help")
    assert train.returncode == 0 and evaluate.returncode == 0
    train_groups = train.stdout.split("== Groups")[1].split("== Config")[0]
    evaluate_groups = evaluate.stdout.split("== Groups")[1].split("== Config")[0]
    assert "optim" in train_groups and "scheduler" in train_groups and "mode " not in train_groups
    assert "mode" in evaluate_groups and "optim" not in evaluate_groups and "scheduler" not in evaluate_groups


def test_evaluate_without_a_checkpoint_says_what_to_give_in_one_line():
    run = _run("evaluate.py")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    message = run.stderr.strip()
    assert len(message.splitlines()) == 1 and "ckpt_path=" in message and "model_dir=" in message
