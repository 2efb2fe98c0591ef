"""Any data set of your own: a ``real/`` and a ``fake/`` tree, or a CSV that lists the files.

The ``dataset_name`` option (default ``folder``) fills the index's ``dataset`` column.

Tree layout::

    <root>/real/**/<file>        label 0
    <root>/fake/**/<file>        label 1; a file in fake/<name>/... gets method <name>, else "fake"

CSV layout (``csv_file`` option, a path relative to the root or absolute)::

    path,label[,video_id,identity,split,method]
    clips/a.mp4,real,,person_3,train,
    clips/b.mp4,1,b,person_3,,stylegan2

``path`` is relative to the root; ``label`` is 0/1 or real/fake; ``video_id`` becomes the index
id (default: the path without extension); ``identity`` the ``source_identity``; ``split`` one of
train/val/test (given for every row or for none); ``method`` names the generator or manipulation
of a fake (evaluation breaks the AUC down by it; default "fake"; real rows are always "real").

Files with video extensions are videos, image extensions images, others are skipped.

Identity: whatever the CSV's ``identity`` column says. Without it (and in the tree layout) the
identity is unknown and each file stands for itself; splits then only keep files apart, not
people, which the metadata says.

Splits: the CSV's ``split`` column when given (if it has no val rows, validation is carved from
train by identity, never from test); otherwise 70/15/15 by seeded hash of identity.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from faketrace.datasets.schema import SPLITS
from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    MEDIA_EXTENSIONS,
    DatasetLayoutError,
    Findings,
    apply_split,
    describe_found,
    finalize,
    identities_of,
    list_media,
    make_row,
)

ADAPTER, VERSION = "folder", "2"  # 2: the csv's method column
_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}


def rows_from_tree(root: Path, findings: Findings) -> list[dict]:
    rows = []
    for name, label in (("real", 0), ("fake", 1)):
        base = root / name
        if not base.is_dir():
            findings.warn(f"{name}/ is missing; indexing only the other label")
            continue
        for item in list_media(base):
            nested = item.relative_to(base).parts
            rows.append(make_row(root=root, path=item, label=label,
                                 method=nested[0] if label and len(nested) > 1 else "fake"))
    return rows


def rows_from_csv(root: Path, table_path: Path, findings: Findings) -> list[dict]:
    rows = []
    with table_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"path", "label"} <= set(reader.fieldnames or ()):
            raise DatasetLayoutError(f"folder: {table_path} needs at least the columns path,label; "
                                     f"found {reader.fieldnames}")
        for number, record in enumerate(reader, start=2):
            label = _LABELS.get(str(record["label"]).strip().lower())
            if label is None:
                raise DatasetLayoutError(f"folder: {table_path.name} line {number}: label {record['label']!r} "
                                         "is not 0/1/real/fake")
            item = root / record["path"].strip().replace("\\", "/")
            if not item.is_file():
                findings.warn(f"{record['path']} (line {number}) is not on disk; skipped")
                continue
            if item.suffix.lower() not in MEDIA_EXTENSIONS:
                findings.warn(f"{record['path']} (line {number}) is not a known video or image type; skipped")
                continue
            split = (record.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                raise DatasetLayoutError(f"folder: {table_path.name} line {number}: split {split!r} not in {SPLITS}")
            method = (record.get("method") or "").strip() or None
            if label == 0 and method not in (None, "real"):
                findings.warn(f"line {number}: a real item's method {method!r} is not kept (methods name what made "
                              "a fake; real items are 'real')")
            rows.append(make_row(root=root, path=item, label=label, method="real" if label == 0 else method or "fake",
                                 split=split,
                                 item_id=(record.get("video_id") or "").strip() or None,
                                 source_identity=(record.get("identity") or "").strip() or None))
    return rows


def build_index(root: str | Path, csv_file: str | None = None, dataset_name: str = ADAPTER,
                val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = Path(root).expanduser()
    table_path = (Path(csv_file) if Path(csv_file).is_absolute() else root / csv_file) if csv_file else None
    if table_path is not None and not table_path.is_file():
        raise DatasetLayoutError(f"folder: the csv {table_path} does not exist; found {describe_found(root)}")
    if table_path is None and not ((root / "real").is_dir() or (root / "fake").is_dir()):
        raise DatasetLayoutError(f"folder: expected real/ and fake/ folders (or the csv_file option) under {root}; "
                                 f"found {describe_found(root)}")
    rows = rows_from_csv(root, table_path, findings) if table_path else rows_from_tree(root, findings)
    if not rows:
        raise DatasetLayoutError(f"folder: no video or image files found under {root}")
    table = pd.DataFrame(rows)
    has_identity = table["source_identity"].notna().any()
    if not has_identity:
        findings.note("no identity given: each file is its own identity, splits keep files apart, not people")

    given = table["split"].notna()
    if given.any() and not given.all():
        raise DatasetLayoutError("folder: the csv gives a split for some rows but not others; give all or none")
    if given.all():
        test = table[table["split"] == "test"]
        val = table[table["split"] == "val"]
        train = table[table["split"] == "train"]
        if val.empty:
            findings.note("the csv has no val rows: validation carved from train by identity")
            train = apply_split(train, {"val": val_fraction}, findings, seed=seed, unit="component",
                                keep_in_train=identities_of(test), what="items")
        table = pd.concat([train, val, test])
        split_source = {"train": "official", "val": "official" if len(val) else "derived", "test": "official"}
        promised: tuple[str, ...] = () if len(val) else ("train/val", "val/test")
    else:
        table = apply_split(table, {"val": val_fraction, "test": test_fraction}, findings, seed=seed,
                            unit="component", what="items")
        split_source = {"train": "derived", "val": "derived", "test": "derived"}
        promised = ("train/val", "train/test", "val/test")
    return finalize(table, dataset=dataset_name, adapter=ADAPTER, version=VERSION,
                    findings=findings, split_source=split_source,
                    identity="the csv's identity column" if has_identity else "unknown: each file is its own",
                    promised_disjoint=promised, extra={"seed": seed, "source": "csv" if csv_file else "tree"})
