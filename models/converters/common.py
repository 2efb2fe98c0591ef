"""Shared pieces of the published-weight converters: reading a released file, checking its keys.

A converter turns one publisher's released file(s) into faketrace weights: the timm backbone under
plain timm keys plus whatever a detector family adds, and the `_target_` + arguments of the
faketrace Detector that holds them. Every converter refuses a file it does not recognise with
`ImportRefused`, whose message says what was expected and which formats are accepted; nothing is
loaded leniently (no `strict=False`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faketrace.models.serialization import UnsafeModelFileError, load_torch_file


class ImportRefused(ValueError):
    """A released file that a converter will not turn into faketrace weights, and why."""


@dataclass
class Converted:
    """What a converter hands to the import command."""

    init: dict                                   # `_target_` + arguments of the faketrace Detector
    backbone: dict[str, torch.Tensor]            # timm keys
    family: dict[str, torch.Tensor] = field(default_factory=dict)
    # Keys of the released file deliberately left out, with the reason (e.g. an unused ImageNet head).
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def refuse(path: Path, problem: str, accepted: str) -> ImportRefused:
    return ImportRefused(f"refused {path}: {problem}. Accepted: {accepted}")


def read_tensor_file(path: Path, accepted: str, allow_numpy_scalars: bool = False) -> object:
    """A safetensors file or a `torch.save` file read with `weights_only=True` (never a program).

    `allow_numpy_scalars`: some training scripts saved a NumPy float (a loss value) beside the
    weights; NumPy scalars and dtypes are data, so they may be admitted for those formats only.
    """
    if not path.is_file():
        raise FileNotFoundError(f"released file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise refuse(path, f"not a readable safetensors file ({exc})", accepted) from None
    if head[:2] == b"PK" and _is_torchscript(path):
        raise refuse(path, "it is a TorchScript archive (a program, not weights; faketrace never loads one)",
                     accepted)
    try:
        if allow_numpy_scalars:
            import numpy as np

            core = getattr(np, "_core", None) or np.core
            safe = [core.multiarray.scalar, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
            with torch.serialization.safe_globals(safe):
                return load_torch_file(path, "released file")
        return load_torch_file(path, "released file")
    except UnsafeModelFileError as exc:
        raise ImportRefused(f"{exc}. Accepted: {accepted}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise refuse(path, f"not a readable torch.save file ({type(exc).__name__}: {str(exc)[:200]})",
                     accepted) from None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with code/ and constants.pkl beside data.pkl."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("constants.pkl") for n in names) or any("/code/" in n for n in names)


def tensors_only(obj: object, path: Path, what: str, accepted: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                        for k, v in obj.items()):
        raise refuse(path, f"{what} is not a state dict of tensors", accepted)
    return obj


def unwrap(obj: object, path: Path, keys: Iterable[str], accepted: str) -> dict[str, torch.Tensor]:
    """The state dict inside a wrapper dict such as {"model": ..., "optimizer": ..., "epoch": ...}."""
    keys = list(keys)
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and isinstance(obj[k], dict):
                return tensors_only(obj[k], path, f"its {k!r} entry", accepted)
    found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise refuse(path, f"expected a dict with a state dict under {' or '.join(repr(k) for k in keys)}; "
                 f"found {found}", accepted)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str, path: Path, accepted: str,
                 optional_outer: str = "") -> dict[str, torch.Tensor]:
    """Keys under `prefix` with it removed; every key must have it (after an optional outer prefix
    such as DataParallel's `module.`, which must then be on every key too)."""
    if optional_outer and all(k.startswith(optional_outer) for k in state):
        state = {k[len(optional_outer):]: v for k, v in state.items()}
    wrong = [k for k in state if not k.startswith(prefix)]
    if wrong:
        raise refuse(path, f"expected every key to start with {prefix!r}"
                     + (f" (optionally under {optional_outer!r})" if optional_outer else "")
                     + f"; these do not: {wrong[:5]}", accepted)
    return {k[len(prefix):]: v for k, v in state.items()}


def expect_keys(mapped: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], path: Path,
                accepted: str, what: str) -> None:
    """The mapped keys and shapes must be exactly the model's: nothing missing, extra or reshaped."""
    missing = sorted(set(model_state) - set(mapped))
    extra = sorted(set(mapped) - set(model_state))
    shapes = [f"{k}: file {tuple(mapped[k].shape)} vs {what} {tuple(model_state[k].shape)}"
              for k in mapped if k in model_state and tuple(mapped[k].shape) != tuple(model_state[k].shape)]
    if missing or extra or shapes:
        raise refuse(path, f"its weights do not fit {what}: missing {missing[:5]} ({len(missing)} in all), "
                     f"unexpected {extra[:5]} ({len(extra)}), mismatched shapes {shapes[:3]} ({len(shapes)})",
                     accepted)


def two_class_to_logit(weight: torch.Tensor, bias: torch.Tensor, fake_index: int = 1
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-way softmax head as one fake-vs-real logit.

    softmax(z)[fake] = sigmoid(z_fake - z_real), so the linear layer (w_fake - w_real, b_fake - b_real)
    gives exactly the published fake probability through a sigmoid.
    """
    if weight.ndim != 2 or weight.shape[0] != 2 or bias.shape != (2,):
        raise ValueError(f"expected a 2-class head, got weight {tuple(weight.shape)} bias {tuple(bias.shape)}")
    real_index = 1 - fake_index
    return ((weight[fake_index] - weight[real_index]).unsqueeze(0).clone(),
            (bias[fake_index] - bias[real_index]).reshape(1).clone())


def timm_state(name: str, num_classes: int = 1, **kwargs) -> dict[str, torch.Tensor]:
    """Key names and shapes of the timm model a converter targets (built on the meta device: no memory)."""
    from faketrace.models.backbones import backbone_meta_state

    return backbone_meta_state(name, num_classes=num_classes, **kwargs)
