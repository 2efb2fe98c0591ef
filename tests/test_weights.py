"""Local weight files: loaded through timm's own path, with missing/unexpected keys checked."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from faketrace.models.backbones import create_backbone, timm


def _file(tmp_path, state, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_exactly(tmp_path, suffix):
    src = timm.create_model("test_resnet", num_classes=1)
    path = _file(tmp_path, src.state_dict(), suffix)
    model, report = create_backbone("test_resnet", num_classes=1, weights_file=str(path))
    assert report.missing == report.unexpected == report.mismatched == report.head_reinitialised == []
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_a_head_of_another_size_is_reported_not_silently_dropped(tmp_path):
    src = timm.create_model("test_resnet", num_classes=1000)  # an ImageNet-style head
    path = _file(tmp_path, src.state_dict(), ".safetensors")
    model, report = create_backbone("test_resnet", num_classes=1, weights_file=str(path))
    assert report.head_reinitialised == ["fc.weight", "fc.bias"]
    body = [k for k in src.state_dict() if not k.startswith("fc.")]
    assert all(torch.equal(model.state_dict()[k], src.state_dict()[k]) for k in body)


def test_missing_body_keys_fail_strict_loading(tmp_path):
    state = timm.create_model("test_resnet", num_classes=1).state_dict()
    dropped = next(k for k in state if k.startswith("layer"))
    del state[dropped]
    state["stranger.weight"] = torch.zeros(1)
    path = _file(tmp_path, state, ".safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        create_backbone("test_resnet", num_classes=1, weights_file=str(path))
    _, report = create_backbone("test_resnet", num_classes=1, weights_file=str(path), strict=False)
    assert report.missing == [dropped] and report.unexpected == ["stranger.weight"]


def test_torchscript_and_pickles_are_refused(tmp_path):
    scripted = torch.jit.script(timm.create_model("test_resnet", num_classes=1))
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    with pytest.raises(Exception):  # noqa: B017 - any refusal; weights_only never runs the archive
        create_backbone("test_resnet", num_classes=1, weights_file=str(path))
    (tmp_path / "model.onnx").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="must be one of"):
        create_backbone("test_resnet", num_classes=1, weights_file=str(tmp_path / "model.onnx"))
