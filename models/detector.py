"""The Detector base class: a timm backbone with one logit per image and working defaults.

Contract: `forward(images) -> logits` of shape (B,), with auxiliary outputs (if a family has
them) in `self.aux` style dicts from `forward_outputs`; `loss(outputs, batch)` defaults to BCE.
Families subclass and override only what differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faketrace.models.backbones import create_backbone, data_config


class Detector(nn.Module):
    """Plain binary classifier: timm backbone with a single-logit head."""

    family = "binary_classifier"
    # The whole model is the timm backbone: its weights alone, under timm's own keys, reproduce the
    # logits (export writes weights.safetensors only then). Families with extra parts set False.
    plain_timm = True

    def __init__(self, backbone: str, pretrained: bool = False, weights_file: str | None = None,
                 strict_weights: bool = True, input_size: int | None = None, mean: list | None = None,
                 std: list | None = None, drop_rate: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        kwargs = {"drop_rate": drop_rate} if drop_rate else {}
        self.backbone, self.weight_report = create_backbone(backbone, num_classes=1, pretrained=pretrained,
                                                            weights_file=weights_file, strict=strict_weights,
                                                            **kwargs)
        self.backbone_name = backbone
        cfg = data_config(self.backbone)
        # Preprocessing comes from the backbone's pretrained config unless explicitly overridden.
        self.input_size = int(input_size or cfg["input_size"][-1])
        self.mean = [float(v) for v in (mean or cfg["mean"])]
        self.std = [float(v) for v in (std or cfg["std"])]
        self.interpolation = cfg["interpolation"]
        self.label_smoothing = float(label_smoothing)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).squeeze(-1)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        target = batch["label"].float()
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def input_spec(self) -> dict:
        """What an image must look like on the way in: stored in checkpoints and model cards."""
        return {"input_size": self.input_size, "mean": self.mean, "std": self.std,
                "interpolation": self.interpolation, "channels": "RGB", "layout": "NCHW",
                "value_range": "0..1 then (x - mean) / std"}
