"""FaceForensics++ (Rossler et al., ICCV 2019) Xception models: whole pickled PyTorch models.

Release layout (ondyari/FaceForensics, classification/; faceforensics++_models.zip, e.g.
`face_detection/xception/all_c23.p`): `torch.save(model)` of `network.models.TransferModel`, whose
`model` is `network.xception.Xception` (Cadene's Xception) with `last_linear` replaced by a 2-class
`nn.Linear` (or `nn.Sequential(nn.Dropout, nn.Linear)` when trained with dropout); softmax column
1 is "fake". detect_from_video.py feeds the dlib face box enlarged 1.3x, squared, resized to
299 x 299 by PIL (bilinear), ToTensor, Normalize(0.5, 0.5).

The pickle is read by `restricted_pickle.load_pickled_module` with the allow-list below; the
publisher's classes are never imported. A plain state dict of the same model (keys `model.*`) is
accepted too, read with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path

import torch

from faketrace.models.converters.common import (
    Converted,
    ImportRefused,
    expect_keys,
    read_tensor_file,
    refuse,
    strip_prefix,
    tensors_only,
    timm_state,
    two_class_to_logit,
)
from faketrace.models.converters.restricted_pickle import load_pickled_module, record_state_dict
from faketrace.models.serialization import UnsafeModelFileError

ACCEPTED = ("the FaceForensics++ release file (a whole pickled model, e.g. all_c23.p: network.models.TransferModel "
            "around network.xception.Xception, read with an allow-list that never imports or runs its classes); "
            "or its state dict ('model.'-prefixed keys) as a torch.save file read with weights_only=True, or "
            ".safetensors")

# The module classes a TransferModel(Xception) pickle contains; nothing else is admitted.
ALLOWED_MODULES = {
    "network.models.TransferModel", "network.xception.Xception", "network.xception.Block",
    "network.xception.SeparableConv2d", "torch.nn.parallel.data_parallel.DataParallel",
    "torch.nn.modules.conv.Conv2d", "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.activation.ReLU", "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.linear.Linear", "torch.nn.modules.container.Sequential",
    "torch.nn.modules.dropout.Dropout",
}


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    notes = []
    if path.suffix == ".p":
        try:
            root = load_pickled_module(path, ALLOWED_MODULES)
        except UnsafeModelFileError as exc:
            raise ImportRefused(f"{exc}. Accepted: {ACCEPTED}") from None
        state, classes = record_state_dict(root)
        notes.append(f"read as a pickled {classes['']} with the allow-list; publisher code not run")
        return state, notes
    return tensors_only(read_tensor_file(path, ACCEPTED), path, "the file", ACCEPTED), notes


def convert(files: dict[str, Path], input_size: int = 299, fake_index: int = 1) -> Converted:
    path = Path(files["weights"])
    state, notes = _read_state(path)
    state = strip_prefix(state, "model.", path, ACCEPTED, optional_outer="module.")
    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("last_linear.1."):  # Sequential(Dropout, Linear)
            k = "fc." + k[len("last_linear.1."):]
        elif k.startswith("last_linear."):
            k = "fc." + k[len("last_linear."):]
        mapped[k] = v
    target = timm_state("legacy_xception", num_classes=2)
    # Pickles from torch 0.4.0 predate BatchNorm's num_batches_tracked counter; it does not affect
    # inference, so a missing one is filled with 0 (and said so), never any other missing key.
    absent = [k for k in target if k.endswith(".num_batches_tracked") and k not in mapped]
    if absent and all(k.rsplit(".", 1)[0] + ".running_mean" in mapped for k in absent):
        for k in absent:
            mapped[k] = torch.zeros((), dtype=torch.long)
        notes.append(f"{len(absent)} BatchNorm num_batches_tracked counters absent (torch 0.4 file): set to 0")
    expect_keys(mapped, target, path, ACCEPTED, "legacy_xception with a 2-class head")
    if not path.suffix == ".p" and not any(k.startswith("fc.") for k in mapped):
        raise refuse(path, "no last_linear head", ACCEPTED)
    mapped["fc.weight"], mapped["fc.bias"] = two_class_to_logit(mapped["fc.weight"], mapped["fc.bias"], fake_index)
    init = {"_target_": "faketrace.models.detector.Detector", "backbone": "legacy_xception",
            "input_size": input_size, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    notes.append(f"2-class head -> one logit: softmax column {fake_index} minus column {1 - fake_index}")
    return Converted(init=init, backbone=mapped, notes=notes)
