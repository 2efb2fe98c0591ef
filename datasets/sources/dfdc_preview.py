"""DFDC Preview (Dolhansky et al., 2019): the first, smaller release of the DFDC data.

Layout read::

    <root>/dataset.json
    <root>/original_videos/<person>/<clip>.mp4
    <root>/method_A/<person>/.../<clip>.mp4
    <root>/method_B/<person>/.../<clip>.mp4

``dataset.json`` maps each video's path (relative to the root) to its record::

    {"method_A/1061556/1061556_A/1255229_1061556_A_001.mp4":
        {"label": "fake", "set": "train", "target_id": "1061556", "source_id": "1255229"}, ...}

Format assumption (not verified against the release, which is not publicly mirrored): ``label``
is ``real``/``fake`` (any case), ``set`` is ``train``/``test``; ``target_id`` (the person in the
video that was manipulated) and ``source_id`` (the person whose face was used) may be present.
Without ``target_id`` the person is the first folder below ``original_videos/`` or
``method_X/``. The method is the top folder (``method_A``, ``method_B``).

Identity: the paid actor's id. Our ``source_identity`` is DFDC's ``target_id`` (the person of the
video the fake was built on) and our ``target_identity`` is its ``source_id`` (the face brought in).

Splits: ``set`` gives the official train and test splits. Validation is carved from train by
seeded hash of the actor, never using an actor of the test split; a fake whose two actors fall
on different sides of that cut is left out (counted). Overlap between the official train and
test actors, if any, is reported in the log and the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    DatasetLayoutError,
    Findings,
    apply_split,
    check_layout,
    finalize,
    identities_of,
    make_row,
)

ADAPTER, VERSION = "dfdc_preview", "1"
INDEX_FILE = "dataset.json"
REAL_FOLDER = "original_videos"
IDENTITY = ("actor id: DFDC's target_id (person of the manipulated video) as source_identity, its source_id "
            "(face brought in) as target_identity; for reals the person folder")
_LABELS = {"real": 0, "fake": 1}
_SETS = {"train": "train", "test": "test"}


def build_index(root: str | Path, val_fraction: float = 0.1, seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = check_layout(root, ADAPTER, [INDEX_FILE], findings)
    records = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    if not isinstance(records, dict):
        raise DatasetLayoutError(f"dfdc_preview: {INDEX_FILE} should map video paths to records, "
                                 f"found a {type(records).__name__}")
    rows, missing = [], []
    for key, record in sorted(records.items()):
        relative = PurePosixPath(key.replace("\\", "/"))
        label = _LABELS.get(str(record.get("label", "")).lower())
        split = _SETS.get(str(record.get("set", "")).lower())
        if label is None or split is None:
            raise DatasetLayoutError(f"dfdc_preview: {INDEX_FILE} record for {key!r} has label "
                                     f"{record.get('label')!r} and set {record.get('set')!r}; expected "
                                     "real/fake and train/test")
        video = root / relative
        if not video.is_file():
            missing.append(key)
            continue
        person = record.get("target_id") or (relative.parts[1] if len(relative.parts) > 2 else relative.stem)
        donor = record.get("source_id") if label == 1 else None
        method = relative.parts[0] if label == 1 else "real"
        if label == 1 and method == REAL_FOLDER:
            findings.warn(f"{key} is labelled fake but sits in {REAL_FOLDER}/")
        rows.append(make_row(root=root, path=video, label=label, method=method, split=split,
                             source_identity=str(person), target_identity=str(donor) if donor else None))
    if missing:
        findings.warn(f"{len(missing)} videos listed in {INDEX_FILE} are not on disk (e.g. {missing[:3]}); "
                      "indexing what is there")
    table = pd.DataFrame(rows)
    if table.empty:
        raise DatasetLayoutError(f"dfdc_preview: none of the {len(records)} videos in {INDEX_FILE} is on disk")
    test = table[table["split"] == "test"]
    train = apply_split(table[table["split"] == "train"], {"val": val_fraction}, findings, seed=seed,
                        unit="identity", keep_in_train=identities_of(test), what="fakes")
    return finalize(pd.concat([train, test]), dataset=ADAPTER, adapter=ADAPTER, version=VERSION,
                    findings=findings, identity=IDENTITY,
                    split_source={"train": "official", "val": "derived", "test": "official"},
                    promised_disjoint=("train/val", "val/test"), extra={"seed": seed})
