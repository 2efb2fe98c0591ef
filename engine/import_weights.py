"""Import a published detector's released file(s) into a faketrace checkpoint (issue 20).

`import_published("sbi_efficientnet_b4_c23", {"weights": "FFc23.tar"}, out)`:

1. reads the registry entry configs/published/NAME.yaml (paper, release URL and files, licence,
   published preprocessing spec, converter);
2. hashes every given file (SHA-256); where the registry knows the publisher's hash, a different
   file is refused with both hashes named;
3. runs the entry's converter (models/converters/), which reads the file in its declared format
   only and refuses unknown keys, prefixes or shapes, naming the accepted formats;
4. builds the faketrace Detector and loads the converted weights strictly;
5. writes a self-describing checkpoint (engine/checkpoint.py) that records the files' hashes,
   URL, licence, the published spec and `fit_for_casework: false` (a lab's own validation flow
   decides otherwise later).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import yaml
from hydra.utils import get_method, instantiate

from faketrace.datasets.io import sha256_file
from faketrace.engine.checkpoint import git_sha, save_checkpoint, versions
from faketrace.models.converters.common import ImportRefused
from faketrace.models.spec import FileRef, ModelSpec, OutputSpec, SourceSpec

log = logging.getLogger(__name__)

NOT_FIT_REASON = ("published weights imported from a released file; not validated on this lab's data. Run the "
                  "validation flow before using its output in casework")


def registry_dir() -> Path:
    """configs/published of the installed package (the checkout's in an editable install)."""
    import faketrace.configs

    # faketrace.configs is a namespace package; an editable install adds a finder hook to its path.
    for entry in faketrace.configs.__path__:
        if (Path(entry) / "published").is_dir():
            return Path(entry) / "published"
    raise FileNotFoundError(f"no published/ registry in {list(faketrace.configs.__path__)}")


def registry_names() -> list[str]:
    return sorted(p.stem for p in registry_dir().glob("*.yaml"))


def load_entry(name: str) -> dict:
    path = registry_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ImportRefused(f"no published detector named {name!r}; the registry has: {', '.join(registry_names())}")
    entry = yaml.safe_load(path.read_text())
    if entry.get("name") != name:
        raise ValueError(f"{path}: its name field {entry.get('name')!r} differs from the file name")
    ModelSpec.from_dict(entry["spec"])  # the published spec must be a valid ModelSpec
    return entry


def _check_files(entry: dict, given: dict[str, str | Path | None]) -> tuple[dict[str, Path], list[dict]]:
    declared = {f["role"]: f for f in entry["release"]["files"]}
    unknown = sorted(set(r for r, p in given.items() if p is not None) - set(declared))
    if unknown:
        raise ImportRefused(f"{entry['name']} takes files {sorted(declared)}, not {unknown}")
    files: dict[str, Path] = {}
    records = []
    for role, spec in declared.items():
        path = given.get(role)
        if path is None:
            if spec.get("required", True):
                raise ImportRefused(f"{entry['name']} needs its {role} file ({spec['filename']}, {spec.get('what', '')}"
                                    f"); released at {entry['release']['url']}")
            continue
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{role} file not found: {path}")
        digest = sha256_file(path)
        expected = spec.get("sha256")
        if expected and digest != expected.lower():
            raise ImportRefused(
                f"refused {path}: its SHA-256 is {digest}, but {entry['name']}'s {role} file {spec['filename']} "
                f"({entry['release']['url']}) has SHA-256 {expected}. A different file is not the published model")
        files[role] = path
        records.append({"role": role, "filename": spec["filename"], "given_name": path.name, "sha256": digest,
                        "published_sha256": expected, "hash_checked": bool(expected),
                        "url": spec.get("url") or entry["release"]["url"]})
    return files, records


SCAN_NOTE = ("faketrace's scan finds faces with RetinaFace and crops them by the published rule, margin and "
             "size (square_margin and aligned_5pt through the face pipeline; box_margin with the publisher's own "
             "resize, forensics/scoring.published_crop); where the publisher's detector (publisher_preprocessing."
             "face) is another one, RetinaFace stands in and the scan says so: scores on the same video can differ "
             "from the publisher's")


def converted_spec(published: ModelSpec, entry: dict, records: list[dict]) -> ModelSpec:
    """The faketrace checkpoint's spec: the published one, with one logit out (a 2-class softmax head
    was collapsed to z_fake - z_real) and the source files as given (their SHA-256)."""
    source = SourceSpec(name=entry["name"], paper=f"{entry['paper']['citation']} ({entry['paper']['url']})",
                        url=entry["release"]["url"], licence=entry["licence"]["name"],
                        notice=entry["licence"].get("url", ""),
                        files=tuple(FileRef(filename=r["given_name"], sha256=r["sha256"], role=r["role"], url=r["url"])
                                    for r in records))
    return published.replace(output=OutputSpec(activation="logit", positive_class="fake"), source=source)


def build_model(init: dict) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random initialisation.*")
        return instantiate(dict(init, pretrained=False, weights_file=None))


def import_published(name: str, files: dict[str, str | Path | None], out: str | Path) -> dict:
    """Convert, load strictly, write the checkpoint to `out`; return a summary (also in the checkpoint)."""
    entry = load_entry(name)
    paths, records = _check_files(entry, files)
    converter = dict(entry["converter"])
    convert = get_method(converter.pop("_target_"))
    converted = convert(paths, **converter)
    published_spec = ModelSpec.from_dict(entry["spec"])
    # The tensor helpers resize crops with the spec's interpolation; the Detector records the same.
    converted.init.setdefault("resize", published_spec.input.interpolation)
    model = build_model(converted.init)
    try:
        model.load_trained_state(converted.backbone, converted.family)
    except (RuntimeError, ValueError) as exc:
        raise ImportRefused(f"converted weights of {name} do not load strictly into {converted.init['_target_']}: "
                            f"{str(exc)[:400]}") from None
    model.eval()
    size = model.input_size
    with torch.inference_mode():
        probe = model(torch.zeros(1, 3, size, size))
    if not torch.isfinite(probe).all():
        raise ImportRefused(f"{name}: the converted model gives a non-finite logit on a blank input")
    spec = converted_spec(published_spec, entry, records)
    summary = {"name": name, "paper": entry["paper"], "release": entry["release"], "licence": entry["licence"],
               "files": records, "converter": entry["converter"]["_target_"], "notes": converted.notes,
               "dropped_keys": converted.dropped, "training_data": entry.get("training_data"),
               "publisher_preprocessing": entry["publisher_preprocessing"],
               "scan_note": SCAN_NOTE if spec.level == "face" else None}
    payload = {
        "model": {k: v.detach().cpu().contiguous() for k, v in model.backbone_state_dict().items()},
        "model_family": {k: v.detach().cpu().contiguous() for k, v in model.family_state_dict().items()},
        # How to rebuild the network (engine/inference.model_from_checkpoint) and what it looks at.
        "architecture": {"target": f"{type(model).__module__}.{type(model).__qualname__}", "family": model.family,
                         "backbone": model.backbone_name, "init": dict(converted.init)},
        "spec": spec.to_dict(),
        "published_spec": published_spec.to_dict(),
        "published": summary,
        "config": yaml.safe_dump(entry, sort_keys=False),
        "calibration": {"method": "none", "temperature": 1.0,
                        "note": "published weights, uncalibrated: probabilities are sigmoid(logit)"},
        "metrics": {}, "data": {"name": f"published:{name}", "index_meta": {"synthetic": False}},
        "epoch": None, "global_step": None, "versions": versions(), "git_sha": git_sha(),
        "fit_for_casework": False, "casework_note": NOT_FIT_REASON,
    }
    save_checkpoint(payload, out)
    log.info("%s: wrote %s", name, out)
    return summary
