"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): EfficientNet-B4 from `efficientnet-pytorch`.

Release layout (mapooon/SelfBlendedImages, src/train_sbi.py): `torch.save({"model": state_dict,
"optimizer": ..., "epoch": ...})`, the state dict of a module holding the EfficientNet as `net`,
so every key starts with `net.`; a 2-class `_fc` whose softmax column 1 is "fake". Inference feeds
RGB / 255 at 380 x 380 with no mean/std normalisation.
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
    unwrap,
)
from faketrace.models.converters.efficientnet import efficientnet_pytorch_to_timm

ACCEPTED = ("the SBI release file (FFraw.tar or FFc23.tar): a torch.save dict {'model': state dict, 'optimizer', "
            "'epoch'} whose keys are 'net.' + efficientnet-pytorch EfficientNet-B4 names with a 2-class '_fc', "
            "read with weights_only=True; or that state dict alone as .pth/.tar/.safetensors")


def convert(files: dict[str, Path], backbone: str = "tf_efficientnet_b4", input_size: int = 380,
            fake_index: int = 1) -> Converted:
    path = Path(files["weights"])
    obj = read_tensor_file(path, ACCEPTED)
    if isinstance(obj, dict) and "model" in obj:
        state = unwrap(obj, path, ["model"], ACCEPTED)
    else:
        state = tensors_only(obj, path, "the file", ACCEPTED)
    state = strip_prefix(state, "net.", path, ACCEPTED, optional_outer="module.")
    target = timm_state(backbone, num_classes=2)
    try:
        mapped = efficientnet_pytorch_to_timm(state, target)
    except KeyError as exc:
        raise refuse(path, f"unexpected key {exc}", ACCEPTED) from None
    expect_keys(mapped, target, path, ACCEPTED, f"{backbone} with a 2-class head")
    mapped["classifier.weight"], mapped["classifier.bias"] = two_class_to_logit(
        mapped["classifier.weight"], mapped["classifier.bias"], fake_index)
    init = {"_target_": "faketrace.models.detector.Detector", "backbone": backbone, "input_size": input_size,
            "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    return Converted(init=init, backbone=mapped, notes=[
        f"2-class head -> one logit: softmax column {fake_index} (fake) minus column {1 - fake_index}"])
