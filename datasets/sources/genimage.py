"""GenImage-style sets of AI-generated images (Zhu et al., 2023): one folder per generator.

Layout read::

    <root>/<generator>/train/{nature,ai}/<image>
    <root>/<generator>/val/{nature,ai}/<image>
    <root>/<generator>/<subset>/train/{nature,ai}/...    (the release's extra level, e.g. imagenet_ai_0419_sdv4)

``nature`` images are real (label 0, method ``real``); ``ai`` images are fake with the
generator folder's name as method. The ``generators`` option restricts which folders are read.

Identity: no people here. A real image's identity is its file stem (GenImage draws its real
images from ImageNet, and the same photograph can sit in several generators' folders, so the
stem groups them); a generated image is its own identity.

Splits: GenImage publishes train and val, and papers report results on its val. So its val is
our test split (official), and our validation is carved from its train by seeded hash of
identity; a real photograph that sits in both GenImage train and val (through different
generators) is reported as overlap.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    IMAGE_EXTENSIONS,
    DatasetLayoutError,
    Findings,
    apply_split,
    describe_found,
    finalize,
    identities_of,
    list_media,
    make_row,
)

ADAPTER, VERSION = "genimage", "1"
OUR_SPLIT = {"train": "train", "val": "test"}
IDENTITY = "real images: the file stem (one ImageNet photo across generators); generated images: themselves"


def split_folders(generator_dir: Path) -> dict[str, Path]:
    """GenImage split name -> folder, directly under the generator or one subset level below."""
    found = {}
    for base in [generator_dir, *sorted(p for p in generator_dir.iterdir() if p.is_dir())]:
        for name in OUR_SPLIT:
            if (base / name).is_dir() and name not in found:
                found[name] = base / name
    return found


def build_index(root: str | Path, generators: list[str] | None = None, val_fraction: float = 0.1,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = Path(root).expanduser()
    candidates = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    layout = {g.name: split_folders(g) for g in candidates}
    layout = {g: s for g, s in layout.items() if s}
    if not layout:
        raise DatasetLayoutError(f"genimage: expected <generator>/{{train,val}}/{{nature,ai}} folders under {root}; "
                                 f"found {describe_found(root)}")
    if generators is not None:
        absent = sorted(set(generators) - set(layout))
        if absent:
            findings.warn(f"generators {absent} not found (found {sorted(layout)})")
        layout = {g: s for g, s in layout.items() if g in generators}
    rows = []
    for generator, folders in layout.items():
        for theirs in OUR_SPLIT:
            if theirs not in folders:
                findings.warn(f"{generator} has no {theirs}/ folder (partial download)")
                continue
            for kind, label in (("nature", 0), ("ai", 1)):
                if not (folders[theirs] / kind).is_dir():
                    findings.warn(f"{generator}/{theirs} has no {kind}/ folder")
                for image in list_media(folders[theirs] / kind, IMAGE_EXTENSIONS):
                    rows.append(make_row(root=root, path=image, label=label, method=generator,
                                         split=OUR_SPLIT[theirs],
                                         source_identity=f"photo:{image.stem}" if label == 0 else None))
    if not rows:
        raise DatasetLayoutError(f"genimage: the generator folders {sorted(layout)} hold no images")
    table = pd.DataFrame(rows)
    test = table[table["split"] == "test"]
    train = apply_split(table[table["split"] == "train"], {"val": val_fraction}, findings, seed=seed,
                        unit="component", keep_in_train=identities_of(test), what="images")
    findings.note("GenImage val is used as the test split; validation is carved from GenImage train")
    return finalize(pd.concat([train, test]), dataset=ADAPTER, adapter=ADAPTER, version=VERSION,
                    findings=findings, identity=IDENTITY,
                    split_source={"train": "official", "val": "derived", "test": "official"},
                    promised_disjoint=("train/val", "val/test"),
                    extra={"generators": sorted(layout), "seed": seed})
