"""The Detector base class: a timm backbone with one logit per image and working defaults.

Contract: `forward(images) -> logits` of shape (B,); `forward(images, with_aux=True)` returns
the dict of `forward_outputs` (the logits under "logits", plus a family's auxiliary outputs,
e.g. a predicted boundary map or a per-pixel manipulation map); `loss(outputs, batch)` defaults to
BCE on the logits. Families (models/families.py, models/localization.py) subclass and override
only what differs: usually `forward_outputs`, sometimes `loss`, `targets` or `input_spec`.

Weights: the timm backbone keeps plain timm keys (`backbone_state_dict`); whatever a family adds
beside it (a second stream, a boundary or localisation decoder, a temporal model, a probe) is
`family_state_dict`, so checkpoints and exports can keep the two apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faketrace.models.backbones import create_backbone, data_config
from faketrace.models.spec import INTERPOLATIONS as RESIZE_METHODS
from faketrace.models.spec import InputSpec


class Detector(nn.Module):
    """Plain binary classifier: timm backbone with a single-logit head."""

    family = "binary_classifier"
    #: Per-sample training targets a family needs beyond image and label (the engine asks the
    #: data set for them), e.g. ("mask",) for the blending-boundary family.
    targets: tuple[str, ...] = ()
    #: Auxiliary outputs of `forward_outputs` beyond the logits (e.g. ("map",) for localisation).
    aux_outputs: tuple[str, ...] = ()
    # The whole model is the timm backbone: its weights alone, under timm's own keys, reproduce the
    # logits (export writes weights.safetensors only then). Families with extra parts set False.
    plain_timm = True

    def __init__(self, backbone: str, pretrained: bool = False, weights_file: str | None = None,
                 strict_weights: bool = True, input_size: int | None = None, mean: list | None = None,
                 std: list | None = None, drop_rate: float = 0.0, label_smoothing: float = 0.0,
                 model_kwargs: dict | None = None, resize: str = "bilinear", *, backbone_classes: int = 1):
        """`model_kwargs` go to `timm.create_model` (e.g. `dynamic_img_size` for ViTs); families
        pass `backbone_classes=0` to get pooled features from the backbone instead of a logit."""
        super().__init__()
        kwargs = dict(model_kwargs or {})
        if drop_rate:
            kwargs["drop_rate"] = drop_rate
        self.backbone, self.weight_report, cfg = self.make_backbone(backbone, backbone_classes, pretrained,
                                                                    weights_file, strict_weights, kwargs)
        self.backbone_name = backbone
        # Preprocessing comes from the backbone's pretrained config unless explicitly overridden.
        self.input_size = int(input_size or cfg["input_size"][-1])
        self.mean = [float(v) for v in (mean or cfg["mean"])]
        self.std = [float(v) for v in (std or cfg["std"])]
        # The resize this model is fed with everywhere (training, evaluation, scan, predictor, export
        # check). timm's pretrained config names the interpolation of its own eval pipeline (often
        # bicubic); it is kept beside, for information, and not claimed as ours.
        if resize not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {resize!r}; known: {sorted(RESIZE_METHODS)}")
        self.resize = str(resize)
        self.pretrained_interpolation = cfg["interpolation"]
        self.label_smoothing = float(label_smoothing)

    def make_backbone(self, name: str, num_classes: int, pretrained: bool, weights_file: str | None, strict: bool,
                      model_kwargs: dict) -> tuple[nn.Module, object, dict]:
        """The backbone, its weight-key report (or None) and its data config (input_size, mean, std,
        interpolation): a timm model. Only a published architecture that timm does not have
        (MesoNet, models/families.MesoNetDetector) builds another module here."""
        model, report = create_backbone(name, num_classes=num_classes, pretrained=pretrained,
                                        weights_file=weights_file, strict=strict, **model_kwargs)
        return model, report, data_config(model)

    # -- the forward contract ---------------------------------------------------------------------
    def forward(self, images: torch.Tensor, with_aux: bool = False):
        outputs = self.forward_outputs(images)
        return outputs if with_aux else outputs["logits"]

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"logits": (B,)} plus a family's auxiliary outputs."""
        return {"logits": self.backbone(images).squeeze(-1)}

    # -- training ------------------------------------------------------------------------------
    def loss(self, outputs, batch: dict) -> torch.Tensor:
        """BCE on the logits; `outputs` is the dict of `forward_outputs` or the logits alone."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        return self.classification_loss(logits, batch)

    def classification_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        target = batch["label"].float()
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    # -- weights -------------------------------------------------------------------------------
    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The timm backbone's weights under plain timm keys."""
        return self.backbone.state_dict()

    def family_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything outside the timm backbone (empty for the plain classifier)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def load_trained_state(self, backbone_state: dict, family_state: dict | None = None) -> None:
        """Load a trained detector's weights strictly (both parts, nothing missing or extra)."""
        self.backbone.load_state_dict(backbone_state, strict=True)
        expected = set(self.family_state_dict())
        given = dict(family_state or {})
        if set(given) != expected:
            raise ValueError(f"{type(self).__name__}: family weights do not fit: missing "
                             f"{sorted(expected - set(given))[:5]}, unexpected {sorted(set(given) - expected)[:5]}")
        if given:
            result = self.load_state_dict({**{f"backbone.{k}": v for k, v in backbone_state.items()}, **given},
                                          strict=True)
            assert not result.missing_keys and not result.unexpected_keys

    #: Consecutive frames per input: 1 for single images; clip families set more.
    clip_length = 1

    def input_spec(self) -> InputSpec:
        """What an image must look like on the way in: the `input` section of the model's spec."""
        return InputSpec(size=(self.input_size, self.input_size), mean=tuple(self.mean), std=tuple(self.std),
                         interpolation=self.resize, channels="RGB",
                         layout="NTCHW" if self.clip_length > 1 else "NCHW")
