"""Tensor-level export of a Detector: ONNX (dynamic batch, weights inside) and safetensors.

This module knows models and tensors only; choosing real images to verify an export against
is the engine's job (engine/export.py), because models/ never imports datasets/.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class _LogitsOnly(nn.Module):
    """Wraps a Detector so the exported graph has one output, `logit`, of shape (B,)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def export_onnx(model: nn.Module, path: str | Path, input_size: int, opset: int = 18) -> dict:
    """Write `path` with a dynamic batch dimension; returns how it was exported.

    The current default exporter (torch.export based) is tried first, the legacy TorchScript
    exporter second.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _LogitsOnly(model).eval()
    example = torch.zeros(2, 3, input_size, input_size)
    errors = []
    for dynamo in (True, False):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    batch = torch.export.Dim("batch", min=1, max=4096)
                    program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset,
                                                input_names=["image"], output_names=["logit"],
                                                dynamic_shapes={"images": {0: batch}}, verbose=False)
                    program.save(str(path), external_data=False)
                else:
                    torch.onnx.export(wrapped, (example,), str(path), dynamo=False, opset_version=opset,
                                      input_names=["image"], output_names=["logit"],
                                      dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}})
            return {"exporter": "dynamo" if dynamo else "torchscript", "opset": opset,
                    "errors_before": errors}
        except Exception as exc:  # noqa: BLE001 - report and fall back to the other exporter
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {exc}"[:500])
            log.warning("ONNX export with %s exporter failed: %s", "dynamo" if dynamo else "legacy", errors[-1])
    raise RuntimeError("ONNX export failed with both exporters: " + " | ".join(errors))


def export_safetensors(weights: nn.Module | dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A module's (or a state dict's) tensors; a timm backbone's plain timm keys are loadable by
    `timm.create_model(..., pretrained_cfg_overlay=dict(file=path))`."""
    from safetensors.torch import save_file

    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(path), metadata=metadata or {})
