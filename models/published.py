"""Published detectors: the registry (configs/published/NAME.yaml) and the models shipped inside the package.

An entry names the paper, the release (URL, commit, files with SHA-256), the licence, the training
data, the architecture (`_target_` of its builder), the converter, the published preprocessing and
output polarity (`spec`), the media it can judge (`domain`) and, for a shipped model, the
package-relative path and SHA-256 of its converted safetensors file. Shipped weights live in
models/published_weights/ beside their licence, notice and PROVENANCE.md.

    from faketrace.models.published import build_published
    model, entry = build_published("meso4_df")      # eval mode, weights checked against the entry

docs/published.md describes the format; scripts/convert_published.py regenerates the shipped files
from the publishers' originals.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
import yaml

from faketrace.models.card import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "published_weights"


def registry_dir() -> Path:
    """configs/published: beside models/ in a checkout, faketrace/configs/published in an installed wheel."""
    spec = importlib.util.find_spec("faketrace.configs")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("faketrace.configs is not installed: the published-detector registry is missing")
    return Path(list(spec.submodule_search_locations)[0]) / "published"


def available() -> list[str]:
    return sorted(p.stem for p in registry_dir().glob("*.yaml"))


def load_entry(name: str) -> dict:
    path = registry_dir() / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"no published detector {name!r}; known: {', '.join(available())}")
    entry = yaml.safe_load(path.read_text())
    if entry.get("name") != name:
        raise ValueError(f"{path} names itself {entry.get('name')!r}, not {name!r}")
    return entry


def model_spec(entry: dict):
    """The entry's published preprocessing as a validated, typed ModelSpec (models/spec.py), its
    `source` filled from the entry (paper, release files with SHA-256, licence, notice)."""
    from faketrace.models.spec import ModelSpec

    rel, lic = entry["release"], entry["licence"]
    source = {"name": entry["name"], "paper": entry["paper"]["citation"], "url": rel["url"],
              "licence": lic["spdx"], "notice": "NOTICE" if "NOTICE" in lic.get("files", []) else "",
              "files": [{"filename": f["filename"], "sha256": f.get("sha256"), "role": f.get("role", "weights"),
                         "url": _file_url(rel, f)} for f in rel["files"]]}
    return ModelSpec.from_dict({**entry["spec"], "source": source})


def _file_url(release: dict, file: dict) -> str:
    """A release file's address: its own `url`, the file at the release's commit, or the release page
    (imported entries name release pages and Drive links, not repository files)."""
    if file.get("url"):
        return file["url"]
    if release.get("commit"):
        return f"{release['url']}/blob/{release['commit']}/{file['filename']}"
    return release["url"]


def shipped_names() -> list[str]:
    return [n for n in available() if (load_entry(n).get("shipped") or {}).get("path")]


def _resolve(target: str):
    module, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def architecture(entry: dict) -> torch.nn.Module:
    """The entry's architecture with untrained weights (`architecture._target_` and its arguments)."""
    arch = {k: v for k, v in entry["architecture"].items() if k not in ("what", "_target_")}
    return _resolve(entry["architecture"]["_target_"])(**arch)


def shipped_path(entry: dict) -> Path:
    shipped = entry.get("shipped") or {}
    if not shipped.get("path"):
        raise FileNotFoundError(f"{entry['name']} is not shipped with faketrace: import its published file "
                                "(scripts/import_weights.py) or train your own")
    return Path(__file__).resolve().parent / shipped["path"]


def validated_copy(name: str, validated_dir: str | Path | None) -> Path | None:
    """The entry file of a lab's validated copy (scripts/validate.py writes DIR/NAME/NAME.yaml), if there is one."""
    if not validated_dir:
        return None
    p = Path(validated_dir) / name / f"{name}.yaml"
    return p if p.is_file() else None


def build_published(name: str, device: str = "cpu", validated_dir: str | Path | None = None
                    ) -> tuple[torch.nn.Module, dict]:
    """A shipped published detector in eval mode, and its registry entry (with the file's SHA-256 checked).

    With `validated_dir` holding a validated copy of `name` (scripts/validate.py), that copy's entry
    (with its validation certificate and calibration) and weights are used instead.
    Loading is strict: a missing or unexpected tensor is an error, never a silently random layer.
    """
    from safetensors.torch import load_file

    copy = validated_copy(name, validated_dir)
    if copy is not None:
        entry = yaml.safe_load(copy.read_text())
        if entry.get("name") != name:
            raise ValueError(f"{copy} names itself {entry.get('name')!r}, not {name!r}")
        path = copy.parent / entry["shipped"]["path"]
    else:
        entry = load_entry(name)
        path = shipped_path(entry)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from this installation (it ships with the package; "
                                "regenerate it with scripts/convert_published.py)")
    digest = sha256_file(path)
    expected = entry["shipped"].get("sha256")
    if expected and digest != expected:
        raise ValueError(f"{path} has SHA-256 {digest}, the registry entry lists {expected}: the file was altered")
    model_spec(entry)  # a malformed spec fails here, naming the field
    model = architecture(entry)
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval().to(device)
    entry = {**entry, "shipped": {**entry["shipped"], "sha256": digest, "file": str(path)}}
    return model, entry


# -- converters (publisher's files -> our state dict) --------------------------------------------
def convert_lrnet(g1_path: str | Path, g2_path: str | Path) -> dict[str, torch.Tensor]:
    """The two LRNet stream state dicts (plain tensors; loaded without unpickling code) as one flat dict,
    checked by loading them strictly into our architecture."""
    from faketrace.models.lrnet import LRNet, state_dicts_to_flat
    from faketrace.models.serialization import load_torch_file

    g1 = load_torch_file(g1_path, "LRNet g1 state dict")
    g2 = load_torch_file(g2_path, "LRNet g2 state dict")
    model = LRNet()
    model.load_streams(g1, g2)
    return state_dicts_to_flat(g1, g2)


def convert_entry(name: str, release_dir: str | Path) -> dict[str, torch.Tensor]:
    """Convert an entry's release files found in `release_dir` (by file name), checking their SHA-256."""
    entry = load_entry(name)
    files = {}
    for f in entry["release"]["files"]:
        local = Path(release_dir) / Path(f["filename"]).name
        if not local.is_file():
            raise FileNotFoundError(f"{local} not found (release file {f['filename']} of {name})")
        if f.get("sha256") and sha256_file(local) != f["sha256"]:
            raise ValueError(f"{local} has SHA-256 {sha256_file(local)}, the release lists {f['sha256']}")
        files[f["role"]] = local
    conv = entry["converter"]
    fn = _resolve(conv["_target_"])
    if entry["family"] == "mesonet":
        return fn(files["weights"], conv["variant"])[1]
    if entry["family"] == "lrnet":
        return fn(files["g1_positions"], files["g2_differences"])
    raise ValueError(f"no converter wiring for family {entry['family']!r}")
