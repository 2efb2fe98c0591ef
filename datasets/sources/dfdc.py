"""DFDC, the Deepfake Detection Challenge data set (Dolhansky et al., 2020), full release.

Layout read::

    <root>/dfdc_train_part_0/metadata.json   {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"}, ...}
    <root>/dfdc_train_part_0/abc.mp4
    ...                                      (parts 0-49; any subset indexes, with a warning)
    <root>/test/labels.csv                   filename,label   (label 1 = fake, 0 = real)
    <root>/test/videos/<filename>            (or next to labels.csv)

Identity: the original (real) video. DFDC has no published actor ids per video, so a real video
is its own identity and a fake carries its original's name (``source_identity``, and
``original_id`` when that original is in the downloaded parts). Keeping an original and all of
its fakes together is the closest to identity-disjoint the metadata allows; the same paid actor
does appear in several originals, which no split built from this metadata can rule out.
Test videos have no ``original`` field: each is its own identity.

Splits: the test set (``labels.csv``) is the official test split. The training parts are all
``"split": "train"``; validation is carved from them by seeded hash of the original video, so an
original and its fakes are always in the same split. If ``labels.csv`` is missing, a test split
is carved the same way and marked derived.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    DatasetLayoutError,
    Findings,
    apply_split,
    describe_found,
    finalize,
    make_row,
    strip_media_suffix,
)

ADAPTER, VERSION = "dfdc", "1"
N_TRAIN_PARTS = 50
IDENTITY = "the original (real) video a fake was made from; a real video is its own identity"
_LABELS = {"REAL": 0, "FAKE": 1}


def read_train_part(root: Path, part: Path, findings: Findings) -> list[dict]:
    metadata = json.loads((part / "metadata.json").read_text(encoding="utf-8"))
    rows = []
    for filename, entry in sorted(metadata.items()):
        label = _LABELS.get(str(entry.get("label", "")).upper())
        if label is None:
            raise DatasetLayoutError(f"dfdc: {part.name}/metadata.json gives {filename!r} the label "
                                     f"{entry.get('label')!r}; expected REAL or FAKE")
        video = part / filename
        if not video.is_file():
            findings.warn(f"{part.name}/{filename} is in metadata.json but not on disk; skipped")
            continue
        original = entry.get("original") if label == 1 else filename
        if label == 1 and not original:
            findings.warn(f"fake {part.name}/{filename} names no original; it is its own identity")
            original = filename
        rows.append(make_row(root=root, path=video, label=label, method="dfdc",
                             source_identity=Path(original).stem, original_id=original if label else None))
    return rows


def find_test_labels(root: Path, labels_csv: str | None) -> Path | None:
    candidates = [root / labels_csv] if labels_csv else [root / "test" / "labels.csv", root / "labels.csv"]
    return next((p for p in candidates if p.is_file()), None)


def read_test_set(root: Path, labels_path: Path, findings: Findings) -> list[dict]:
    rows = []
    with labels_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"filename", "label"} <= set(reader.fieldnames or ()):
            raise DatasetLayoutError(f"dfdc: {labels_path} needs the columns filename,label; "
                                     f"found {reader.fieldnames}")
        for record in reader:
            filename, label = record["filename"].strip(), int(float(record["label"]))
            video = next((p for p in (labels_path.parent / "videos" / filename, labels_path.parent / filename)
                          if p.is_file()), None)
            if video is None:
                findings.warn(f"test video {filename} is in labels.csv but not on disk; skipped")
                continue
            rows.append(make_row(root=root, path=video, label=label, method="dfdc", split="test",
                                 source_identity=f"test:{Path(filename).stem}"))
    return rows


def build_index(root: str | Path, val_fraction: float = 0.1, labels_csv: str | None = None,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = Path(root).expanduser()
    parts = sorted((p for p in root.glob("dfdc_train_part_*") if (p / "metadata.json").is_file()),
                   key=lambda p: (len(p.name), p.name))
    labels_path = find_test_labels(root, labels_csv)
    if not root.is_dir() or (not parts and labels_path is None):
        raise DatasetLayoutError(f"dfdc: {root} does not look like DFDC. Expected dfdc_train_part_*/metadata.json "
                                 f"and/or test/labels.csv under it; found {describe_found(root)}.")
    if 0 < len(parts) < N_TRAIN_PARTS:
        findings.warn(f"{len(parts)} of {N_TRAIN_PARTS} training parts found ({parts[0].name} ... {parts[-1].name})")
    without_metadata = sorted(p.name for p in root.glob("dfdc_train_part_*") if not (p / "metadata.json").is_file())
    if without_metadata:
        findings.warn(f"training parts without metadata.json are skipped: {without_metadata}")

    train_rows = [row for part in parts for row in read_train_part(root, part, findings)]
    train = pd.DataFrame(train_rows).assign(split="train") if train_rows else pd.DataFrame()
    if len(train):
        # original_id points at the original's index row when that original was downloaded
        id_of_file = {Path(p).name: strip_media_suffix(p) for p in train["path"]}
        train["original_id"] = train["original_id"].map(lambda o: id_of_file.get(o, o) if isinstance(o, str) else o)
    if labels_path is not None:
        test = pd.DataFrame(read_test_set(root, labels_path, findings))
        fractions = {"val": val_fraction}
        split_source = {"train": "official", "val": "derived", "test": "official"}
    else:
        findings.warn("test/labels.csv not found: the test split is derived from the training parts")
        test = pd.DataFrame()
        fractions = {"val": val_fraction, "test": val_fraction}
        split_source = {"train": "official", "val": "derived", "test": "derived"}
    train = apply_split(train, fractions, findings, seed=seed, unit="component", what="videos")
    return finalize(pd.concat([train, test], ignore_index=True), dataset=ADAPTER, adapter=ADAPTER,
                    version=VERSION, findings=findings, split_source=split_source, identity=IDENTITY,
                    promised_disjoint=("train/val", "train/test", "val/test"),
                    extra={"train_parts": [p.name for p in parts], "seed": seed})
