"""Learning-rate schedules stepped once per optimiser step, built from config with `_partial_`.

The engine calls `factory(optimizer=..., total_steps=...)`, because the number of steps is only
known once the data are loaded.
"""

from __future__ import annotations

import math

from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """Linear warm-up to the base lr, then cosine decay to `min_lr_ratio` x base lr."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0):
        self.total_steps, self.warmup_steps, self.min_lr_ratio = int(total_steps), int(warmup_steps), min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> LambdaLR:
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio))


class WarmupStep:
    """Linear warm-up, then the lr times `gamma` every `step_size` steps."""

    def __init__(self, total_steps: int, step_size: int, gamma: float = 0.1, warmup_steps: int = 0):
        self.step_size, self.gamma, self.warmup_steps = int(step_size), float(gamma), int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.gamma ** ((step - self.warmup_steps) // self.step_size)


class WarmupPoly:
    """Linear warm-up, then (1 - progress) ** power down to zero at the last step."""

    def __init__(self, total_steps: int, power: float = 0.9, warmup_steps: int = 0):
        self.total_steps, self.power, self.warmup_steps = int(total_steps), float(power), int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return (1 - progress) ** self.power


def warmup_step(optimizer, total_steps: int, step_size: int, gamma: float = 0.1, warmup_steps: int = 0) -> LambdaLR:
    return LambdaLR(optimizer, WarmupStep(total_steps, step_size, gamma, warmup_steps))


def warmup_poly(optimizer, total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> LambdaLR:
    return LambdaLR(optimizer, WarmupPoly(total_steps, power, warmup_steps))


def constant(optimizer, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, _Constant())


class _Constant:
    def __call__(self, step: int) -> float:
        return 1.0


class LinearDecay:
    """Constant base lr until `start_fraction` of the steps, then linear decay to zero at the end
    (the schedule Self-Blended Images trains with: decay over the last quarter)."""

    def __init__(self, total_steps: int, start_fraction: float = 0.75):
        if not 0.0 <= start_fraction < 1.0:
            raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction}")
        self.total_steps = int(total_steps)
        self.start = int(round(start_fraction * self.total_steps))

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 1.0
        return max(0.0, 1.0 - (step - self.start) / max(1, self.total_steps - self.start))


def linear_decay(optimizer, total_steps: int, start_fraction: float = 0.75) -> LambdaLR:
    return LambdaLR(optimizer, LinearDecay(total_steps, start_fraction))
