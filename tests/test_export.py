"""Export: ONNX Runtime agrees with PyTorch on real crops; safetensors carry plain timm keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faketrace.engine.checkpoint import load_checkpoint
from faketrace.engine.evaluate import model_from_checkpoint
from faketrace.engine.export import ExportVerificationError, export_checkpoint, verify_onnx
from faketrace.engine.train import train
from faketrace.models.backbones import timm

from .conftest import compose_config, resolved


@pytest.fixture(scope="module")
def tiny_checkpoint(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"], output_dir=out)
    return train(resolved(cfg))["last_ckpt"]


def test_export_writes_verified_onnx_safetensors_and_card(demo_data, tiny_checkpoint, tmp_path):
    cfg = compose_config("export", demo_data["overrides"] + [f"ckpt_path={tiny_checkpoint}", "verify.n_images=12"],
                         output_dir=tmp_path)
    card = export_checkpoint(resolved(cfg))
    out = tmp_path / "export"
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "weights.safetensors", "model_card.json"}
    assert card["onnx"]["verification"]["max_abs_logit_diff"] <= 1e-4
    assert card["fit_for_casework"] is False and card["warning"].startswith("NOT FIT FOR CASEWORK")
    saved = json.loads((out / "model_card.json").read_text())
    assert saved["input"]["input_size"] == 64 and saved["face_preprocessing"]["margin"] == 1.3
    assert len(saved["files"]["model.onnx"]["sha256"]) == 64

    # ONNX has a dynamic batch dimension and its weights inside the one file.
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        assert sess.run(None, {"image": np.zeros((batch, 3, 64, 64), np.float32)})[0].shape == (batch,)

    # The safetensors file loads into timm by timm's own local-file path, head included.
    ckpt = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(ckpt)
    reloaded = timm.create_model("test_efficientnet", pretrained=True, num_classes=1,
                                 pretrained_cfg_overlay=dict(file=str(out / "weights.safetensors"), num_classes=1))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(x).squeeze(-1), model(x), atol=1e-6, rtol=0)


def test_verification_fails_when_onnx_and_torch_disagree(demo_data, tiny_checkpoint, tmp_path):
    cfg = compose_config("export", demo_data["overrides"] + [f"ckpt_path={tiny_checkpoint}", "verify.n_images=4"],
                         output_dir=tmp_path)
    export_checkpoint(resolved(cfg))
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    with torch.no_grad():  # a model that is not the one exported
        for p in model.parameters():
            p.add_(0.05)
    with pytest.raises(ExportVerificationError):
        verify_onnx(model, tmp_path / "export" / "model.onnx", torch.randn(4, 3, 64, 64), atol=1e-4)
