"""Optimiser construction: parameter groups with layer-wise learning rates, freezing, and SAM.

The optimiser config (`configs/optim/`) is a `_partial_` target; the engine calls it with the
parameter groups built here, so every optimiser gets the same backbone/head split.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (in `model.named_parameters()`) of the classifier head of a Detector's backbone."""
    backbone = model.backbone
    clf = backbone.pretrained_cfg.get("classifier") if hasattr(backbone, "pretrained_cfg") else None
    names = set()
    if clf:
        names = {f"backbone.{n}" for n, _ in backbone.named_parameters() if n == clf or n.startswith(clf + ".")}
    # Anything outside the timm backbone (a family's extra heads) counts as head too.
    names |= {n for n, _ in model.named_parameters() if not n.startswith("backbone.")}
    return names


def build_param_groups(model: nn.Module, lr: float, backbone_lr_mult: float = 1.0, head_lr_mult: float = 1.0,
                       freeze_backbone: bool = False, weight_decay: float | None = None) -> list[dict]:
    """Two groups, `backbone` and `head`, each with its own lr; frozen parameters get no group.

    Biases and norm weights (1-d tensors) are kept out of weight decay, as is usual for
    fine-tuning timm backbones.
    """
    head = head_parameter_names(model)
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        part = "head" if name in head else "backbone"
        if part == "backbone" and freeze_backbone:
            p.requires_grad_(False)
            continue
        if not p.requires_grad:
            continue
        decay = p.ndim > 1
        key = f"{part}{'' if decay else '_no_decay'}"
        g = groups.setdefault(key, {"name": key, "params": [],
                                    "lr": lr * (head_lr_mult if part == "head" else backbone_lr_mult)})
        if weight_decay is not None:
            g["weight_decay"] = weight_decay if decay else 0.0
        g["params"].append(p)
    if not groups:
        raise ValueError("every parameter is frozen: nothing to train")
    return list(groups.values())


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimisation (Foret et al., 2021) around any base optimiser.

    The training step calls `first_step` after the first backward pass (move to the adversarial
    point within radius rho), recomputes the loss there, then `second_step` (restore the weights
    and apply the base optimiser with the gradient from the perturbed point).
    """

    requires_closure_steps = True

    def __init__(self, params, base_optimizer, rho: float = 0.05, adaptive: bool = False, **kwargs):
        if rho <= 0:
            raise ValueError(f"SAM rho must be positive, got {rho}")
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    @torch.no_grad()
    def first_step(self) -> None:
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e_w = (torch.pow(p, 2) if group["adaptive"] else 1.0) * p.grad * scale.to(p)
                p.add_(e_w)
                self.state[p]["e_w"] = e_w

    @torch.no_grad()
    def second_step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()
        # A learning-rate scheduler built on SAM wraps SAM.step to check that the update comes
        # before scheduler.step(); the update runs here, through the base optimiser, so record it
        # as torch's wrapper would. Without this torch warns "lr_scheduler.step() before
        # optimizer.step()" on the first step, although no learning-rate value is skipped: the
        # scheduler steps after every second_step (tests/test_sam_schedule.py).
        self._opt_called = True

    def step(self, closure=None):
        if closure is None:
            raise RuntimeError("SAM needs the two-step protocol (first_step / second_step) or a closure")
        closure = torch.enable_grad()(closure)
        self.first_step()
        closure()
        self.second_step()

    def _grad_norm(self) -> torch.Tensor:
        norms = [((torch.abs(p) if g["adaptive"] else 1.0) * p.grad).norm(p=2)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        return torch.norm(torch.stack(norms), p=2) if norms else torch.tensor(0.0)

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
