"""WildDeepfake (Zi et al., 2020): face sequences of real and fake videos collected online.

Layout read (the per-clip archives extracted in place)::

    <root>/real_train/<clip>/.../<frame>.png
    <root>/fake_train/<clip>/.../<frame>.png
    <root>/real_test/<clip>/...
    <root>/fake_test/<clip>/...

The release ships face crops as frame images, so each frame is one index row (``media_type``
image); video files found in a clip folder are indexed as videos.

Identity: unknown. The people in the clips are not labelled, so the clip folder stands in
(``source_identity`` = ``real_train/<clip>``): frames of one clip never cross splits, but the
same person may well appear in clips of different splits. This is said in the metadata.

Splits: the ``*_train`` and ``*_test`` folders are the official train and test splits.
Validation is carved from train by seeded hash of the clip folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    DatasetLayoutError,
    Findings,
    apply_split,
    check_layout,
    finalize,
    list_media,
    make_row,
)

ADAPTER, VERSION = "wilddeepfake", "1"
FOLDERS = {"real_train": (0, "train"), "fake_train": (1, "train"), "real_test": (0, "test"), "fake_test": (1, "test")}
IDENTITY = "unknown (people are not labelled): the clip folder stands in, so clips never cross splits"


def build_index(root: str | Path, val_fraction: float = 0.1, seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = check_layout(root, ADAPTER, list(FOLDERS), findings)
    rows = []
    for folder, (label, split) in FOLDERS.items():
        base = root / folder
        archives = sorted(base.glob("*.tar.gz")) if base.is_dir() else []
        if archives:
            findings.warn(f"{folder} holds {len(archives)} unextracted .tar.gz archives; extract them in "
                          "place (tar -xzf) to index their frames")
        for item in list_media(base):
            clip = item.relative_to(base).parts[0] if len(item.relative_to(base).parts) > 1 else item.stem
            rows.append(make_row(root=root, path=item, label=label, method="wild" if label else "real",
                                 split=split, source_identity=f"{folder}/{clip}"))
    if not rows:
        raise DatasetLayoutError(f"wilddeepfake: no frames or videos found under {', '.join(FOLDERS)} in {root}")
    table = pd.DataFrame(rows)
    test = table[table["split"] == "test"]
    train = apply_split(table[table["split"] == "train"], {"val": val_fraction}, findings, seed=seed,
                        unit="component", what="frames")
    findings.note("identity is unknown: splits are disjoint by clip folder only")
    return finalize(pd.concat([train, test]), dataset=ADAPTER, adapter=ADAPTER, version=VERSION,
                    findings=findings, identity=IDENTITY,
                    split_source={"train": "official", "val": "derived", "test": "official"},
                    promised_disjoint=("train/val", "train/test", "val/test"), extra={"seed": seed})
