"""SAM under a learning-rate scheduler: each update uses the schedule's value, none is skipped."""

from __future__ import annotations

import warnings

import torch

from faketrace.engine.optim import SAM


def _lrs_used(make_optimizer, sam: bool) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    used = []
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        used.append(opt.param_groups[0]["lr"])
        if sam:
            opt.first_step()
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.second_step()
        else:
            opt.step()
        sched.step()
    return used


def test_sam_takes_every_scheduled_learning_rate_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "lr_scheduler.step() before optimizer.step()" would raise
        with_sam = _lrs_used(lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=0.1), sam=True)
    plain = _lrs_used(lambda p: torch.optim.SGD(p, lr=0.1), sam=False)
    assert with_sam == plain == [0.1, 0.05, 0.025, 0.0125]
