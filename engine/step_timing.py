"""Where a training step's time goes: wall time per phase, the device synchronised at each boundary.

The Trainer holds an optional `StepTimer` (`Trainer.step_timer`, None in normal training) and
wraps each phase of its loop in `Trainer._phase(name)`, a no-op without a timer. With one, every
phase boundary waits for the device, so a phase's time is the work it queued, not the time to
queue it. That changes the overlap the normal loop gets, which is why only the breakdown pass of
scripts/benchmark.py sets a timer: the throughput figures beside it are measured without one.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

import torch

# In the order a step runs them. host_sync: the loop's own reads of device values (`.item()`
# at log points), the metrics logger and the progress bar.
PHASES = ("data", "h2d", "forward", "backward", "optimizer", "host_sync")
LABELS = {"data": "data wait", "h2d": "host-to-device copy", "forward": "forward + loss", "backward": "backward",
          "optimizer": "optimiser step", "host_sync": "host syncs + logging", "other": "other (Python)"}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Per-step seconds of each phase in PHASES, plus the step's total and the rest ('other').

    On CUDA it also counts the host synchronisations the step makes that nobody asked for
    (torch.cuda.set_sync_debug_mode: `.item()`, `bool(tensor)`, device-to-host copies), the fixed
    cost a step pays for each one being a full drain of the GPU queue.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] = defaultdict(float)
        self._start: float | None = None
        self._syncs = 0
        self._sync_counts: list[int] = []

    @contextmanager
    def phase(self, name: str):
        synchronize(self.device)
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        try:
            if self.device.type == "cuda":
                # Only the phase's own work is watched: the timer's synchronisations are not counted.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        yield
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                self._syncs += sum("synchroniz" in str(w.message) for w in caught)
            else:
                yield
            synchronize(self.device)
        finally:
            self._current[name] += time.perf_counter() - now

    def end_step(self) -> None:
        """Close the current step: its total runs from its first phase's start to now."""
        if self._start is None:
            return
        synchronize(self.device)
        total = time.perf_counter() - self._start
        row = {p: self._current.get(p, 0.0) for p in PHASES}
        row["other"] = max(total - sum(row.values()), 0.0)
        row["step"] = total
        self.steps.append(row)
        self._sync_counts.append(self._syncs)
        self._current, self._start, self._syncs = defaultdict(float), None, 0

    def summary(self) -> dict:
        """Median ms per phase and each phase's share of all the steps' time (shares sum to 1)."""
        if not self.steps:
            raise ValueError("no step was timed")
        total = sum(s["step"] for s in self.steps)
        names = (*PHASES, "other")
        rows = {p: {"median_ms": 1e3 * statistics.median(s[p] for s in self.steps),
                    "share": sum(s[p] for s in self.steps) / total if total else 0.0} for p in names}
        out = {"steps": len(self.steps), "phases": rows,
               "step_median_ms": 1e3 * statistics.median(s["step"] for s in self.steps),
               "device": str(self.device)}
        if self.device.type == "cuda":
            out["host_syncs_per_step"] = statistics.median(self._sync_counts)
        return out


def format_breakdown(summary: dict) -> str:
    """The breakdown as a plain table: phase, median ms, share of the step."""
    lines = [f"per-step breakdown ({summary['steps']} steps on {summary['device']}, device synchronised "
             f"between phases)", f"  {'phase':<24}{'median ms':>11}{'share':>8}"]
    for name, row in summary["phases"].items():
        lines.append(f"  {LABELS[name]:<24}{row['median_ms']:>11.2f}{row['share']:>8.1%}")
    lines.append(f"  {'step':<24}{summary['step_median_ms']:>11.2f}{1:>8.1%}")
    if "host_syncs_per_step" in summary:
        lines.append(f"  implicit host synchronisations per step (median): {summary['host_syncs_per_step']:g}")
    return "\n".join(lines)
