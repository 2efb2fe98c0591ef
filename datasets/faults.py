"""Named fault points: a test stops a run at an exact place instead of killing it at random.

`FAKETRACE_FAULT=point[/file name][@n][:action]` (or the `debug.fault*` config keys) makes the n-th
arrival at `point` raise, exit without clean-up (like a kill), pause so a test can kill the process
group, or fail as a full disk would (`enospc`). Normal runs never set it, and an unknown point name
is an error, not a silently inert plan.

The atomic-write points are passed by every `datasets/io.atomic_path` write (checkpoints, manifests,
crops, reports) and read their plan from the environment variable only, so they reach training,
worker processes and every writer without plumbing; `/file name` narrows one to a file, e.g.
`FAKETRACE_FAULT=atomic_before_rename/last.ckpt@2:pause`.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "FAKETRACE_FAULT"
# Inside every atomic write, in this order: the temporary file is complete, it is fsynced, and it is
# about to be renamed over the final name.
ATOMIC_WRITE_POINTS = ("atomic_after_tmp_written", "atomic_after_fsync", "atomic_before_rename")
# Every named point where a test may stop a run. Preprocessing's, then the evidence scan's.
FAULT_POINTS = ("after_crop_before_row", "mid_manifest_flush", "before_merge",
                "scan_before_item_stored", "scan_after_item_stored", "scan_before_outputs",
                "in_decoder_process", *ATOMIC_WRITE_POINTS)
FAULT_ACTIONS = ("raise", "exit", "pause", "enospc", "kill")
FAULT_EXIT_CODE = 77


class InjectedFault(RuntimeError):
    """Raised at a named fault point by tests; never in normal runs."""


@dataclass(frozen=True)
class FaultPlan:
    """Fail at the `at`-th time (counted per process) `point` is reached (for `target`, if given).

    Actions: `raise` (an exception), `exit` (os._exit, no clean-up, like a kill), `pause` (print
    a line to stderr and wait forever, so a test can kill the process group at that moment),
    `enospc` (the OSError a write to a full disk raises), `kill` (SIGKILL to itself, as the
    out-of-memory killer ends a process). `target` is a file name: an atomic-write
    point then counts only the writes of files of that name.
    """

    point: str
    at: int = 1
    action: str = "raise"
    target: str | None = None

    def __post_init__(self):
        if self.point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {self.point!r}; known: {FAULT_POINTS}")
        if self.action not in FAULT_ACTIONS:
            raise ValueError(f"fault action must be one of {FAULT_ACTIONS}, got {self.action!r}")
        if self.at < 1:
            raise ValueError(f"a fault's count starts at 1, got {self.at}")

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan | None:
        """`point[/file name][@n][:action]`, e.g. `mid_manifest_flush@2:exit` (the env var's format)."""
        if not text:
            return None
        head, _, action = text.partition(":")
        name, at_sign, at = head.rpartition("@")
        if not at_sign:
            name, at = head, ""
        point, _, target = name.partition("/")
        return cls(point, int(at or 1), action or "raise", target or None)


class FaultInjector:
    def __init__(self, plan: FaultPlan | None):
        if plan is not None and plan.point in ATOMIC_WRITE_POINTS and plan != FaultPlan.parse(os.environ.get(FAULT_ENV)):
            # A config key naming an atomic-write point would never fire: those read the environment.
            raise ValueError(f"{plan.point} is an atomic-write fault point: set it with {FAULT_ENV}=..., not in a "
                             "run's options")
        self.plan = plan
        self.hits = 0

    def __call__(self, point: str, target: str | None = None) -> None:
        plan = self.plan
        if plan is None or plan.point != point or (plan.target is not None and plan.target != target):
            return
        self.hits += 1
        if self.hits != plan.at:
            return
        where = point if target is None else f"{point} ({target})"
        message = f"FAULT {where} reached (pid {os.getpid()}, action {plan.action})"
        print(message, file=sys.stderr, flush=True)
        if plan.action == "exit":
            os._exit(FAULT_EXIT_CODE)
        if plan.action == "kill":  # SIGKILL from outside, as the out-of-memory killer sends it
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if plan.action == "pause":
            while True:
                time.sleep(3600)
        if plan.action == "enospc":
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {where})")
        raise InjectedFault(message)


_ATOMIC: tuple[str, FaultInjector] | None = None


def atomic_write_fault(point: str, path: Path) -> None:
    """An atomic-write fault point for the file `path`; the plan is `FAKETRACE_FAULT`'s.

    The variable is read at every call and a new value starts a new count, so a test that sets it
    in-process gets the same behaviour as a fresh process.
    """
    global _ATOMIC
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    if _ATOMIC is None or _ATOMIC[0] != text:
        _ATOMIC = (text, FaultInjector(FaultPlan.parse(text)))
    _ATOMIC[1](point, path.name)
