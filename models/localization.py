"""Localisation family: the binary detector plus a per-pixel manipulation map.

A small decoder reads one intermediate feature stage of the timm backbone (the deepest one whose
stride is at most `map_stride`, through timm's `forward_intermediates`) and predicts one logit
per location, upsampled bilinearly to the input size. The image logit is the backbone's own
head, computed from the same pass, so `forward(images)` (no map) is exactly the plain Detector
and exports to ONNX unchanged. Training adds `map_weight` x BCE between the map and the pixel
mask of the batch (0 real, 1 manipulated; soft masks are soft targets).

For image-level data the map of each tile is pasted back at the tile's box, which gives an
image-level manipulation map (engine/evaluate.py scores it against the truth masks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faketrace.models.detector import Detector


def _feature_stage(feature_info, map_stride: int) -> tuple[int, int]:
    """(index, channels) of the deepest backbone stage with reduction <= map_stride (else the first)."""
    stages = [(i, int(f["reduction"]), int(f["num_chs"])) for i, f in enumerate(feature_info)]
    fitting = [s for s in stages if s[1] <= map_stride]
    index, _, channels = fitting[-1] if fitting else stages[0]
    return index, channels


class LocalizationDetector(Detector):
    """Detector + manipulation map (per pixel of the input), trained with the batch's `mask`."""

    family = "localization"
    targets = ("mask",)  # trains on the batch's pixel masks (image-level data provide them)
    aux_outputs = ("map",)

    def __init__(self, *args, map_stride: int = 8, map_weight: float = 1.0, map_channels: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.map_stride = int(map_stride)
        self.map_weight = float(map_weight)
        self.map_stage, channels = _feature_stage(self.backbone.feature_info, self.map_stride)
        self.map_head = nn.Sequential(
            nn.Conv2d(channels, map_channels, 3, padding=1, bias=False), nn.BatchNorm2d(map_channels),
            nn.ReLU(inplace=True), nn.Conv2d(map_channels, 1, 1))

    def forward(self, images: torch.Tensor, with_aux: bool = False):
        if with_aux:
            return self.forward_outputs(images)
        return self.backbone(images).squeeze(-1)  # the map is not computed when nobody asks for it

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        final, stages = self.backbone.forward_intermediates(images, indices=[self.map_stage], norm=False)
        logits = self.backbone.forward_head(final).squeeze(-1)
        coarse = self.map_head(stages[0])
        fine = F.interpolate(coarse, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "map": fine[:, 0]}

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        loss = self.classification_loss(outputs["logits"], batch)
        if "mask" not in batch:
            raise ValueError("the localisation family needs pixel masks in the batch (image-level data, "
                             "data.level=image); face crops carry none")
        target = batch["mask"].float()
        return loss + self.map_weight * F.binary_cross_entropy_with_logits(outputs["map"].float(), target)
