"""Backbone factory: the only caller of `timm.create_model` in faketrace.

Local weight files go through timm's own path (`pretrained_cfg_overlay=dict(file=...)`). timm
silently drops a classifier whose shape does not match, so we compare the file's keys with the
model's ourselves and report (or refuse) what is missing, unexpected or mismatched.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from faketrace.models.serialization import load_torch_file


def _import_timm_without_wandb():
    """Import timm without letting it import wandb.

    timm.utils tries `import wandb` at import time; wandb must only load when the `logger`
    group asks for it (and never on the offline analyst path). A None entry in sys.modules makes
    that import fail, which timm handles; the entry is removed again so our own logger can still
    import wandb when configured.
    """
    import sys

    if "timm" in sys.modules:
        return sys.modules["timm"]
    block = "wandb" not in sys.modules
    if block:
        sys.modules["wandb"] = None  # type: ignore[assignment]
    try:
        import timm
        import timm.data  # noqa: F401
    finally:
        if block and sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]
    return timm


timm = _import_timm_without_wandb()

log = logging.getLogger(__name__)

# Weight files we accept. A TorchScript archive or an arbitrary pickle is not one of them:
# loading those can run code.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class KeyReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    head_reinitialised: list[str] = field(default_factory=list)
    # The file's classifier when the model was built without one (num_classes=0: features only).
    head_unused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict from safetensors or a `torch.save` file, never running code."""
    path = Path(path)
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"weight file {path} must be one of {WEIGHT_SUFFIXES} (safetensors or a plain state dict)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = load_torch_file(path, "weight file")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a plain state dict of tensors")
    return obj


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of a timm model's classifier (its pretrained config says which)."""
    clf = getattr(model, "pretrained_cfg", {}).get("classifier") if hasattr(model, "pretrained_cfg") else None
    if not clf:
        return ()
    return (clf,) if isinstance(clf, str) else tuple(clf)


def check_weight_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> KeyReport:
    """Compare a weight file with a model: what timm would keep quietly, we list."""
    own = model.state_dict()
    heads = classifier_names(model)

    def is_head(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    report = KeyReport()
    for k, v in own.items():
        if k not in state:
            (report.head_reinitialised if is_head(k) else report.missing).append(k)
        elif tuple(state[k].shape) != tuple(v.shape):
            (report.head_reinitialised if is_head(k) else report.mismatched).append(k)
    for k in state:
        if k not in own:
            (report.head_unused if is_head(k) else report.unexpected).append(k)
    return report


def pretrained_num_classes(name: str) -> int:
    """Outputs of a model's pretrained classifier (e.g. 768 for the CLIP ViT-L/14 projection)."""
    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {name!r}")
    return int(cfg.num_classes)


def create_backbone(name: str, num_classes: int = 1, pretrained: bool = False, weights_file: str | None = None,
                    strict: bool = True, **kwargs) -> tuple[nn.Module, KeyReport | None]:
    """Build a timm model; load hub or local weights; return it with the key report.

    `strict` refuses a weight file with missing, unexpected or mismatched keys outside the head.
    """
    report = None
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise FileNotFoundError(f"weight file not found: {path}")
        state = load_state_dict_file(path)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        report = check_weight_keys(model, state)
        problems = report.missing + report.unexpected + report.mismatched
        if problems and strict:
            raise ValueError(f"weight file {path} does not fit {name}: missing {report.missing[:5]}, unexpected "
                             f"{report.unexpected[:5]}, mismatched {report.mismatched[:5]} (strict loading)")
        # Load through timm's own pretrained path so its filters/adapters apply as for hub weights.
        # timm keeps the file's classifier only when the overlay's num_classes matches the model's;
        # otherwise it drops it without a word, which the report above has already named.
        overlay = dict(file=str(path))
        if not report.head_reinitialised and not report.head_unused:
            overlay["num_classes"] = num_classes
        # timm drops a classifier only when num_classes differs from its pretrained config's; a
        # file without a head for a model that keeps the pretrained head size would fail inside timm.
        timm_keeps_head = report.head_reinitialised and num_classes == model.pretrained_cfg.get("num_classes")
        if problems or timm_keeps_head:
            # Load what fits by name and shape (every other key is already reported), keep the rest.
            fits = {k: v for k, v in state.items() if k in model.state_dict() and k not in report.mismatched
                    and k not in report.head_reinitialised}
            model.load_state_dict(fits, strict=False)
        else:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes,
                                      pretrained_cfg_overlay=overlay, **kwargs)
        loaded = model.state_dict()
        not_loaded = [k for k, v in state.items() if k in loaded and k not in report.head_reinitialised
                      and k not in report.mismatched and not torch.equal(loaded[k], v.to(loaded[k].dtype))]
        if not_loaded:
            raise RuntimeError(f"timm did not load {len(not_loaded)} tensors from {path}, e.g. {not_loaded[:3]}")
        if report.head_reinitialised:
            log.warning("%s: classifier %s initialised fresh (the file's head does not fit num_classes=%d)",
                        name, report.head_reinitialised, num_classes)
        if report.head_unused:
            log.info("%s: built without a classifier; the file's %s is not used", name, report.head_unused)
        if problems:
            log.warning("%s: non-strict load from %s: %s", name, path, report.as_dict())
    elif pretrained:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    else:
        warnings.warn(f"{name}: random initialisation (no pretrained weights). Fine for the demo and tests; "
                      "real training wants model.weights_file=PATH or model.pretrained=true (hub).", stacklevel=2)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return model, report


def backbone_meta_state(name: str, num_classes: int = 1, **kwargs) -> dict[str, torch.Tensor]:
    """Key names and shapes of a timm model, built on the meta device (no memory, no weights).

    Weight converters compare a released file with this before building anything real.
    """
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    return model.state_dict()


def load_exported_weights(name: str, weights_file: str | Path, num_classes: int = 1) -> nn.Module:
    """A released `weights.safetensors` loaded as any timm user would, head included.

    Exactly the call a model card documents. Declaring the file's `num_classes` in the overlay is
    what keeps timm from dropping the head silently; the export compares the logits of this model
    with the checkpoint's, so a dropped head fails the export rather than shipping.
    """
    return timm.create_model(name, pretrained=True, num_classes=num_classes,
                             pretrained_cfg_overlay=dict(file=str(weights_file), num_classes=num_classes))


def data_config(model: nn.Module) -> dict:
    """Input size, mean, std and interpolation from the model's pretrained config."""
    cfg = timm.data.resolve_data_config({}, model=model)
    return {"input_size": list(cfg["input_size"]), "mean": list(cfg["mean"]), "std": list(cfg["std"]),
            "interpolation": cfg.get("interpolation", "bilinear"), "crop_pct": cfg.get("crop_pct")}
