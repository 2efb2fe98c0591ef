"""Detector families beside the plain classifier; each overrides only what differs from Detector.

| family | class | what differs |
|---|---|---|
| frequency-aware two-stream | `FrequencyDetector` | a second backbone reads DCT bands or SRM residuals; late fusion |
| frozen foundation features + linear probe | `LinearProbeDetector` | backbone frozen (and kept in eval mode); only a linear probe trains |
| blending-boundary multi-task | `BoundaryDetector` | a boundary-map decoder; loss adds pixel BCE on Face X-ray's 4 M (1 - M) |
| video-level temporal | `TemporalDetector` | input is a clip (B, T, C, H, W); per-frame features pooled by a GRU |
| TF-padded EfficientNet at a foreign size | `StaticPaddingDetector` | paddings frozen for one image size (DeepfakeBench's B4) |
| MesoNet (published weights) | `MesoNetDetector` | the backbone is models/mesonet.py's network, not a timm model |

Frame-level metric of the video family: the data set gives every face crop the clip of the
`clip_length` consecutive sampled crops of its video centred on it (clamped at the ends,
repeated when the video is shorter), so the "frame" score is the score of the clip around that
frame, and the video score aggregates those window scores with the usual rule. A (B, C, H, W)
batch is read as clips of one frame (which is what the ONNX export traces).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from faketrace.models.backbones import create_backbone, pretrained_num_classes
from faketrace.models.detector import Detector
from faketrace.models.frequency import DCTBands, SRMResiduals


class FrequencyDetector(Detector):
    """RGB stream (the timm backbone) + frequency or noise-residual stream, fused late.

    The second stream is the same architecture as the first unless `stream_backbone` names
    another; it reads `stream_filter`'s output (9 or 12 channels), so it starts from random
    initialisation: ImageNet weights do not fit its first layer.
    """

    family = "frequency_two_stream"
    plain_timm = False

    def __init__(self, backbone: str, stream: str = "dct", stream_backbone: str | None = None,
                 bands: list | None = None, learnable_bands: bool = True, srm_truncation: float = 3.0,
                 **kwargs):
        super().__init__(backbone, backbone_classes=0, **kwargs)
        if stream == "dct":
            bands = bands or [[0.0, 1 / 16], [1 / 16, 1 / 8], [1 / 8, 1.0], [0.0, 1.0]]
            self.stream_filter = DCTBands(self.input_size, bands, learnable=learnable_bands)
        elif stream == "srm":
            self.stream_filter = SRMResiduals(self.mean, self.std, srm_truncation)
        else:
            raise ValueError(f"unknown frequency stream {stream!r}; use dct or srm")
        self.stream_kind = stream
        model_kwargs = dict(kwargs.get("model_kwargs") or {})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*random initialisation.*")
            self.stream, _ = create_backbone(stream_backbone or backbone, num_classes=0,
                                             in_chans=self.stream_filter.out_channels, **model_kwargs)
        width = self.backbone.num_features + self.stream.num_features
        self.head = nn.Sequential(nn.Dropout(float(kwargs.get("drop_rate") or 0.0)), nn.Linear(width, 1))

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        rgb = self.backbone(images)
        freq = self.stream(self.stream_filter(images))
        return {"logits": self.head(torch.cat([rgb, freq], dim=1)).squeeze(-1)}


class LinearProbeDetector(Detector):
    """Frozen foundation features + a linear probe (UniversalFakeDetect's recipe with CLIP).

    `use_projection=True` keeps the backbone's pretrained classifier as part of the frozen
    feature extractor: for timm's CLIP towers that is CLIP's image projection, so the probe
    reads the CLIP image embedding (768-d for ViT-L/14). A weight file must then provide it.
    """

    family = "frozen_linear_probe"
    plain_timm = False

    def __init__(self, backbone: str, use_projection: bool = True, **kwargs):
        classes = pretrained_num_classes(backbone) if use_projection else 0
        super().__init__(backbone, backbone_classes=classes, **kwargs)
        report = self.weight_report
        if use_projection and report is not None and report.head_reinitialised:
            raise ValueError(f"{backbone}: the weight file has no {classes}-d projection {report.head_reinitialised}; "
                             "a frozen random projection is useless (use_projection=false probes pooled features)")
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.probe = nn.Linear(classes or self.backbone.num_features, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: no dropout, no norm statistics updates
        return self

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            features = self.backbone(images)
        return {"logits": self.probe(features.float()).squeeze(-1)}


def _feature_map(backbone: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """timm `forward_features` output as (B, C, h, w): CNN maps as they are, NHWC maps (Swin)
    permuted, ViT tokens without prefix tokens reshaped to their square grid."""
    if features.ndim == 4:
        if features.shape[1] != backbone.num_features and features.shape[-1] == backbone.num_features:
            return features.permute(0, 3, 1, 2)
        return features
    if features.ndim == 3:
        tokens = features[:, int(getattr(backbone, "num_prefix_tokens", 0)):]
        side = int(round(tokens.shape[1] ** 0.5))
        if side * side != tokens.shape[1]:
            raise ValueError(f"cannot lay {tokens.shape[1]} tokens out on a square grid")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
    raise ValueError(f"unexpected feature shape {tuple(features.shape)}")


class BoundaryDetector(Detector):
    """Classification plus a predicted blending-boundary map (Face X-ray, Li et al., CVPR 2020).

    The boundary target is 4 M (1 - M) for the soft blending mask M (Sec. 3); the loss is
    BCE on the logit + `boundary_weight` x the pixel-wise BCE on the map (Sec. 3 weights the
    map term by lambda = 100), taken over the samples whose mask is known: synthesised fakes
    and real faces (M = 0); stored fakes without a published mask give no map term.
    """

    family = "blending_boundary"
    plain_timm = False
    targets = ("mask",)

    def __init__(self, backbone: str, boundary_weight: float = 100.0, decoder_width: int = 64, **kwargs):
        super().__init__(backbone, **kwargs)
        self.boundary_weight = float(boundary_weight)
        self.boundary_head = nn.Sequential(
            nn.Conv2d(self.backbone.num_features, decoder_width, 3, padding=1), nn.BatchNorm2d(decoder_width),
            nn.ReLU(inplace=True), nn.Conv2d(decoder_width, 1, 1))

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone.forward_features(images)
        logits = self.backbone.forward_head(features).squeeze(-1)
        boundary = self.boundary_head(_feature_map(self.backbone, features))
        boundary = F.interpolate(boundary, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "boundary": boundary.squeeze(1)}

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        cls = self.classification_loss(outputs["logits"], batch)
        boundary = outputs["boundary"].float()
        if "mask" not in batch:
            return cls + 0.0 * boundary.sum()  # every parameter stays in the graph (DDP)
        mask = batch["mask"].float()
        if mask.shape[-2:] != boundary.shape[-2:]:
            mask = F.interpolate(mask.unsqueeze(1), size=boundary.shape[-2:], mode="bilinear",
                                 align_corners=False).squeeze(1)
        target = 4 * mask * (1 - mask)
        known = batch["mask_known"].float()
        per_sample = F.binary_cross_entropy_with_logits(boundary, target, reduction="none").mean(dim=(1, 2))
        map_loss = (per_sample * known).sum() / known.sum().clamp(min=1.0)
        return cls + self.boundary_weight * map_loss


class TemporalDetector(Detector):
    """Per-frame backbone features of a clip, a small bidirectional GRU over time, mean-pooled."""

    family = "video_temporal"
    plain_timm = False

    def __init__(self, backbone: str, clip_length: int = 8, temporal_dim: int = 256, **kwargs):
        super().__init__(backbone, backbone_classes=0, **kwargs)
        self.clip_length = int(clip_length)
        self.project = nn.Sequential(nn.Linear(self.backbone.num_features, temporal_dim), nn.GELU())
        self.temporal = nn.GRU(temporal_dim, temporal_dim, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(float(kwargs.get("drop_rate") or 0.0)), nn.Linear(2 * temporal_dim, 1))

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        clips = images.unsqueeze(1) if images.ndim == 4 else images  # frames are clips of one
        b, t = clips.shape[:2]
        features = self.backbone(clips.flatten(0, 1)).view(b, t, -1)
        states, _ = self.temporal(self.project(features))
        return {"logits": self.head(states.mean(dim=1)).squeeze(-1)}


class _StaticPadConv2d(nn.Conv2d):
    """A convolution with a fixed (left, right, top, bottom) zero padding, whatever the input size."""

    static_pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(F.pad(x, self.static_pad), self.weight, self.bias)


class StaticPaddingDetector(Detector):
    """A TF-"same"-padded timm EfficientNet whose paddings are frozen for one image size.

    lukemelas' `efficientnet-pytorch` computes each strided convolution's "same" padding once, for
    the model's nominal image size (380 for B4), and applies it to every input. At another input
    size (DeepfakeBench runs B4 at 256) that differs from timm's padding, which is computed from the
    actual input. This family builds the timm model, records the input size each padded convolution
    sees at `padding_image_size`, and fixes those paddings (weights and keys stay timm's).
    `stem_padding="none"` makes the stem convolution unpadded (DeepfakeBench replaces the stem
    with a plain `nn.Conv2d(3, 48, 3, stride=2)`).
    """

    family = "static_padding_classifier"
    plain_timm = False

    def __init__(self, backbone: str, padding_image_size: int = 380, stem_padding: str = "same", **kwargs):
        super().__init__(backbone, **kwargs)
        if stem_padding not in ("same", "none"):
            raise ValueError(f"stem_padding must be 'same' or 'none', not {stem_padding!r}")
        self.padding_image_size = int(padding_image_size)
        self.stem_padding = stem_padding
        convs = {name: m for name, m in self.backbone.named_modules()
                 if isinstance(m, nn.Conv2d) and type(m).__name__ in ("Conv2dSame", "Conv2dSameExport")}
        sizes: dict[str, tuple[int, int]] = {}
        hooks = [m.register_forward_pre_hook(lambda mod, args, n=name: sizes.__setitem__(n, tuple(args[0].shape[-2:])))
                 for name, m in convs.items()]
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            self.backbone.forward_features(torch.zeros(1, 3, self.padding_image_size, self.padding_image_size))
        self.backbone.train(was_training)
        for h in hooks:
            h.remove()
        first = getattr(self.backbone, "pretrained_cfg", {}).get("first_conv")
        for name, conv in convs.items():
            pads = []
            for size, k, s, d in zip(sizes[name], conv.kernel_size, conv.stride, conv.dilation, strict=True):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            conv.__class__ = _StaticPadConv2d
            conv.static_pad = (0, 0, 0, 0) if (name == first and stem_padding == "none") else (left, right, top, bottom)


class MesoNetDetector(Detector):
    """MesoNet (models/mesonet.py) as a faketrace Detector, for imported MesoNet checkpoints.

    timm has no MesoNet, and a 28k-parameter network from 2018 is only used with published weights
    (DeepfakeBench's Meso-4 and MesoInception-4), so this is the one family whose backbone is not
    built by timm. `backbone` names the variant (meso4 | mesoinception4); `model_kwargs` are the
    architecture options of models/mesonet.py (conv bias, BN epsilon, shared norms, branch
    activation, flatten order, what the output unit means). Dropout is the network's own (0.5).
    """

    family = "mesonet"
    plain_timm = False

    def make_backbone(self, name, num_classes, pretrained, weights_file, strict, model_kwargs):
        from faketrace.models.backbones import load_state_dict_file
        from faketrace.models.mesonet import INPUT_SIZE, build_mesonet

        if pretrained:
            raise ValueError("MesoNet has no hub weights: import a published file (scripts/import_weights.py)")
        if num_classes != 1:
            raise ValueError(f"MesoNetDetector has one output (the fake logit); got backbone_classes={num_classes}")
        model = build_mesonet(name, **model_kwargs)
        if weights_file:
            model.load_state_dict(load_state_dict_file(weights_file), strict=True)
        # The Keras authors' input (x 1/255, no mean/std); an import passes its publisher's values.
        cfg = {"input_size": (3, INPUT_SIZE, INPUT_SIZE), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
               "interpolation": "nearest"}
        return model, None, cfg

    def forward_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.backbone(images)}  # already (B,): the logit of fake
