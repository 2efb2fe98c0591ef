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
- Meso4 / MesoInception4 (`networks/mesonet.py`, DeepfakeBench's rewrite of HongguLiu/MesoNet-Pytorch):
  not the Keras MesoNet (models/mesonet.py lists the differences: bias-free convolutions, shared
  batch norms, PyTorch's BN epsilon, channel-first flatten, no ReLU in the inception branches);
  their attribute names map onto models/mesonet.py's keys, each shared batch norm once.
"""

from __future__ import annotations

from pathlib import Path

import torch

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


# networks/mesonet.py attribute -> models/mesonet.py module. Their Meso4 applies bn1 after conv1 and
# conv2 and bn2 after conv3 and conv4; MesoInception4 applies bn1 after both 5x5 convolutions. Each
# shared norm has one owner on our side (the first block that uses it).
_MESO4_MODULES = {"conv1": "blocks.0.conv", "conv2": "blocks.1.conv", "conv3": "blocks.2.conv",
                  "conv4": "blocks.3.conv", "bn1": "blocks.0.bn", "bn2": "blocks.2.bn", "fc1": "fc1", "fc2": "fc2"}
_MESOINCEPTION4_MODULES = {
    **{f"Incption{i}_{theirs}": f"inc{i}.{ours}" for i in (1, 2) for theirs, ours in (
        ("conv1", "b1"), ("conv2_1", "b2_reduce"), ("conv2_2", "b2"), ("conv3_1", "b3_reduce"), ("conv3_2", "b3"),
        ("conv4_1", "b4_reduce"), ("conv4_2", "b4"))},
    "Incption1_bn": "bn1", "Incption2_bn": "bn2",
    "conv1": "block3.conv", "conv2": "block4.conv", "bn1": "block3.bn", "fc1": "fc1", "fc2": "fc2"}


def _convert_mesonet(path: Path, variant: str, modules: dict[str, str], options: dict, input_size: int,
                     fake_index: int) -> Converted:
    from faketrace.models.mesonet import build_mesonet

    state = _read(path)
    mapped = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module not in modules:
            raise refuse(path, f"unexpected key backbone.{key} (DeepfakeBench's {variant} has modules "
                         f"{sorted(modules)})", ACCEPTED)
        mapped[f"{modules[module]}.{leaf}"] = value
    with torch.device("meta"):
        target = build_mesonet(variant, **options).state_dict()
    # the file's head has two classes; ours one unit (collapsed below)
    target["fc2.weight"], target["fc2.bias"] = torch.empty(2, 16, device="meta"), torch.empty(2, device="meta")
    expect_keys(mapped, target, path, ACCEPTED, f"DeepfakeBench's {variant} with a 2-class head")
    mapped["fc2.weight"], mapped["fc2.bias"] = two_class_to_logit(mapped["fc2.weight"], mapped["fc2.bias"], fake_index)
    init = {"_target_": "faketrace.models.families.MesoNetDetector", "backbone": variant,
            "model_kwargs": dict(options), "input_size": input_size, "mean": _MEAN, "std": _MEAN}
    shared = "bn1 (conv1, conv2) and bn2 (conv3, conv4)" if variant == "meso4" else "bn1 (conv1, conv2)"
    return Converted(init=init, backbone=mapped, notes=[
        f"DeepfakeBench's PyTorch {variant}, not the Keras MesoNet: bias-free convolutions, BN eps 1e-5, shared "
        f"batch norms {shared} kept shared, channel-first flatten"
        + (", no activation in the inception branches" if variant == "mesoinception4" else ""),
        f"2-class head -> one logit: softmax column {fake_index} minus column {1 - fake_index}"])


def convert_meso4(files: dict[str, Path], input_size: int = 256, fake_index: int = 1) -> Converted:
    from faketrace.models.mesonet import DEEPFAKEBENCH

    return _convert_mesonet(Path(files["weights"]), "meso4", _MESO4_MODULES, DEEPFAKEBENCH, input_size, fake_index)


def convert_mesoinception4(files: dict[str, Path], input_size: int = 256, fake_index: int = 1) -> Converted:
    from faketrace.models.mesonet import DEEPFAKEBENCH_INCEPTION

    return _convert_mesonet(Path(files["weights"]), "mesoinception4", _MESOINCEPTION4_MODULES,
                            DEEPFAKEBENCH_INCEPTION, input_size, fake_index)
