"""Named fault points: a test stops a run at an exact place instead of killing it at random.

`FAKETRACE_FAULT=point[@n][:action]` (or the `debug.fault*` config keys) makes the n-th arrival at
`point` raise, exit without clean-up (like a kill) or pause so a test can kill the process group.
Normal runs never set it, and an unknown point name is an error, not a silently inert plan.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

FAULT_ENV = "FAKETRACE_FAULT"
# Every named point where a test may stop a run. Preprocessing's, then the evidence scan's.
FAULT_POINTS = ("after_crop_before_row", "mid_manifest_flush", "before_merge",
                "scan_before_item_stored", "scan_after_item_stored", "scan_before_outputs",
                "in_decoder_process")
FAULT_EXIT_CODE = 77


class InjectedFault(RuntimeError):
    """Raised at a named fault point by tests; never in normal runs."""


@dataclass(frozen=True)
class FaultPlan:
    """Fail at the `at`-th time (counted per process) `point` is reached.

    Actions: `raise` (an exception), `exit` (os._exit, no clean-up, like a kill), `pause` (print
    a line to stderr and wait forever, so a test can kill the process group at that moment).
    """

    point: str
    at: int = 1
    action: str = "raise"

    def __post_init__(self):
        if self.point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {self.point!r}; known: {FAULT_POINTS}")
        if self.action not in ("raise", "exit", "pause"):
            raise ValueError(f"fault action must be raise, exit or pause, got {self.action!r}")

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan | None:
        """`point[@n][:action]`, e.g. `mid_manifest_flush@2:exit` (the env var's format)."""
        if not text:
            return None
        head, _, action = text.partition(":")
        point, _, at = head.partition("@")
        return cls(point, int(at or 1), action or "raise")


class FaultInjector:
    def __init__(self, plan: FaultPlan | None):
        self.plan = plan
        self.hits = 0

    def __call__(self, point: str) -> None:
        if self.plan is None or self.plan.point != point:
            return
        self.hits += 1
        if self.hits != self.plan.at:
            return
        message = f"FAULT {point} reached (pid {os.getpid()}, action {self.plan.action})"
        print(message, file=sys.stderr, flush=True)
        if self.plan.action == "exit":
            os._exit(FAULT_EXIT_CODE)
        if self.plan.action == "pause":
            while True:
                time.sleep(3600)
        raise InjectedFault(message)
