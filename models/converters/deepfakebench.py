"""DeepfakeBench (Yan et al., NeurIPS 2023 Datasets & Benchmarks) detector checkpoints.

Release layout (SCLBD/DeepfakeBench, training/trainer/trainer.py `save_ckpt`, loaded by
training/test.py with `load_state_dict(strict=True)`): `torch.save(detector.state_dict())`, a plain
state dict whose keys start with `backbone.` (with `module.` in front when saved under DDP). The
classifier is a 2-class linear layer whose softmax column 1 is "fake". Test-time input: the
dlib-aligned face crop resized to 256 x 256 with cv2 INTER_CUBIC, ToTensor, Normalize(0.5, 0.5).

- Xception (`networks/xception.py`, the FaceForensics++ copy of Cadene's Xception): timm's
  `legacy_xception` keys, `last_linear` -> `fc`; `adjust_channel.*` exists in every file but is
  used only in the 'adjust_channel' mode, not by the released 'original' model, so it is dropped.
- EfficientNet-B4 (`networks/efficientnetb4.py`): `efficientnet.*` in efficientnet-pytorch names
  (`_fc` replaced by Identity), `last_layer` the head; the stem is replaced by an unpadded
  `nn.Conv2d(3, 48, 3, stride=2)` and the other paddings stay those computed for 380 px, which
  `StaticPaddingDetector` reproduces at 256 px.
"""

from __future__ import annotations

from pathlib import Path

from faketrace.models.converters.common import (
    Converted,
    expect_keys,
    read_tensor_file,
    refuse,
    strip_prefix,
    tensors_only,
    timm_state,
    two_class_to_logit,
)
from faketrace.models.converters.efficientnet import efficientnet_pytorch_to_timm

ACCEPTED = ("a DeepfakeBench checkpoint (e.g. xception_best.pth, effnb4_best.pth from the v1.0.1 release): "
            "torch.save(detector.state_dict()), a plain state dict with 'backbone.'-prefixed keys (optionally "
            "'module.backbone.' from DDP), read with weights_only=True; or the same state dict as .safetensors")
_MEAN = [0.5, 0.5, 0.5]


def _read(path: Path) -> dict:
    obj = read_tensor_file(path, ACCEPTED)
    state = tensors_only(obj, path, "the file", ACCEPTED)
    return strip_prefix(state, "backbone.", path, ACCEPTED, optional_outer="module.")


def convert_xception(files: dict[str, Path], input_size: int = 256, fake_index: int = 1) -> Converted:
    path = Path(files["weights"])
    state = _read(path)
    dropped = {k: "DeepfakeBench 'adjust_channel' layer, unused in the released 'original' mode"
               for k in state if k.startswith("adjust_channel.")}
    mapped = {("fc." + k[len("last_linear."):] if k.startswith("last_linear.") else k): v
              for k, v in state.items() if k not in dropped}
    expect_keys(mapped, timm_state("legacy_xception", num_classes=2), path, ACCEPTED,
                "legacy_xception with a 2-class head")
    mapped["fc.weight"], mapped["fc.bias"] = two_class_to_logit(mapped["fc.weight"], mapped["fc.bias"], fake_index)
    init = {"_target_": "faketrace.models.detector.Detector", "backbone": "legacy_xception",
            "input_size": input_size, "mean": _MEAN, "std": _MEAN}
    return Converted(init=init, backbone=mapped, dropped={f"backbone.{k}": v for k, v in dropped.items()},
                     notes=[f"2-class head -> one logit: softmax column {fake_index} minus column {1 - fake_index}"])


def convert_efficientnet_b4(files: dict[str, Path], input_size: int = 256, fake_index: int = 1) -> Converted:
    path = Path(files["weights"])
    state = _read(path)
    dropped = {k: "DeepfakeBench 'adjust_channel' layer, unused in the released 'Original' mode"
               for k in state if k.startswith("adjust_channel.")}
    body = {k[len("efficientnet."):]: v for k, v in state.items() if k.startswith("efficientnet.")}
    other = sorted(k for k in state if not k.startswith(("efficientnet.", "last_layer.")) and k not in dropped)
    if other:
        raise refuse(path, f"unexpected keys {other[:5]} (expected backbone.efficientnet.* and "
                     "backbone.last_layer.*)", ACCEPTED)
    target = timm_state("tf_efficientnet_b4", num_classes=2)
    try:
        mapped = efficientnet_pytorch_to_timm(body, target)
    except KeyError as exc:
        raise refuse(path, f"unexpected key {exc}", ACCEPTED) from None
    for leaf in ("weight", "bias"):
        if f"last_layer.{leaf}" in state:
            mapped[f"classifier.{leaf}"] = state[f"last_layer.{leaf}"]
    expect_keys(mapped, target, path, ACCEPTED, "tf_efficientnet_b4 with a 2-class head")
    mapped["classifier.weight"], mapped["classifier.bias"] = two_class_to_logit(
        mapped["classifier.weight"], mapped["classifier.bias"], fake_index)
    init = {"_target_": "faketrace.models.families.StaticPaddingDetector", "backbone": "tf_efficientnet_b4",
            "padding_image_size": 380, "stem_padding": "none", "input_size": input_size, "mean": _MEAN, "std": _MEAN}
    return Converted(init=init, backbone=mapped, dropped={f"backbone.{k}": v for k, v in dropped.items()}, notes=[
        "efficientnet-pytorch static 'same' paddings (computed for 380 px) and DeepfakeBench's unpadded stem kept",
        f"2-class head -> one logit: softmax column {fake_index} minus column {1 - fake_index}"])


# DeepfakeBench's ResNet-34 keeps torchvision's body as nn.Sequential(*children[:-2]): its indices
# are conv1, bn1, relu, maxpool, layer1..layer4 (torchvision's names are timm's resnet34 names).
_RESNET_BODY = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def convert_resnet34(files: dict[str, Path], input_size: int = 256, fake_index: int = 1) -> Converted:
    path = Path(files["weights"])
    state = _read(path)
    dropped = {k: "DeepfakeBench 'adjust_channel' layer, unused in the released 'Original' mode"
               for k in state if k.startswith("adjust_channel.")}
    mapped = {}
    for k, v in state.items():
        if k in dropped:
            continue
        if k.startswith("resnet."):
            index, _, rest = k[len("resnet."):].partition(".")
            if index not in _RESNET_BODY:
                raise refuse(path, f"unexpected key backbone.{k}", ACCEPTED)
            mapped[f"{_RESNET_BODY[index]}.{rest}"] = v
        else:
            mapped[k] = v  # fc.weight / fc.bias keep their names
    expect_keys(mapped, timm_state("resnet34", num_classes=2), path, ACCEPTED, "resnet34 with a 2-class head")
    mapped["fc.weight"], mapped["fc.bias"] = two_class_to_logit(mapped["fc.weight"], mapped["fc.bias"], fake_index)
    init = {"_target_": "faketrace.models.detector.Detector", "backbone": "resnet34", "input_size": input_size,
            "mean": _MEAN, "std": _MEAN}
    return Converted(init=init, backbone=mapped, dropped={f"backbone.{k}": v for k, v in dropped.items()},
                     notes=[f"2-class head -> one logit: softmax column {fake_index} minus column {1 - fake_index}"])
