"""What every data set adapter shares: walking trees, deterministic identity splits, reporting.

An adapter reads one public layout and returns ``(rows, meta)``; the helpers here keep the rules
the same everywhere:

* Paths are stored relative to the data set root, POSIX style (:func:`relative_posix`); ids are
  the relative path without its extension unless an adapter says otherwise.
* Identity columns: ``source_identity`` is the person of the video a fake was built on (for a
  real item, the person shown); ``target_identity`` is the identity brought in from elsewhere
  (the face pasted in, the expression driver). What "person" means is each adapter's to say.
* Derived splits are a seeded hash of the split unit (an identity, or a connected group of
  identities linked by fakes), so the same tree always gives the same split on any machine,
  and adding files never moves the units that were already there.
* Validation is never the test split: :func:`split_by_identity` keeps every unit that touches an
  identity of the test split out of validation, and :func:`finalize` refuses an index whose
  validation and test splits share an identity.
* A partial download is indexed with warnings; a tree that is not the expected layout at all
  raises :class:`DatasetLayoutError` naming what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd

from faketrace.datasets.schema import FAKE, REAL, SPLITS, validate_index

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
# The still formats of datasets/still_formats.py (HEIF and JPEG XL decode where their optional decoders are installed).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".avif", ".heic",
                              ".heif", ".jxl"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS

DEFAULT_SEED = 20240611


class DatasetLayoutError(ValueError):
    """The root does not hold the layout the adapter reads (wrong folder or wrong data set)."""


class Findings:
    """Warnings and facts an adapter collects while reading a tree, for the log and the metadata."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def warn(self, message: str) -> None:
        log.warning("%s: %s", self.dataset, message)
        self.warnings.append(message)

    def note(self, message: str) -> None:
        log.info("%s: %s", self.dataset, message)
        self.notes.append(message)


# ----------------------------------------------------------------------------- trees


def relative_posix(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def strip_media_suffix(relative: str) -> str:
    """Relative path without its extension: the default item id."""
    stem, ext = os.path.splitext(relative)
    return stem if ext.lower() in MEDIA_EXTENSIONS else relative


def list_media(folder: Path, extensions: Iterable[str] = MEDIA_EXTENSIONS, recursive: bool = True) -> list[Path]:
    """Media files under `folder`, sorted, matched on lower-cased extension; hidden files skipped."""
    if not folder.is_dir():
        return []
    wanted = {e.lower() for e in extensions}
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    found = [p for p in pattern if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith(".")]
    return sorted(found)


def describe_found(root: Path, limit: int = 12) -> str:
    """A short listing of what is at the top of `root`, for error messages."""
    if not root.exists():
        return "nothing (the path does not exist)"
    if not root.is_dir():
        return "a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    if not names:
        return "an empty folder"
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_layout(root: str | Path, dataset: str, expected: Sequence[str], findings: Findings,
                 required_any: Sequence[str] | None = None) -> Path:
    """Check that `root` holds (part of) the expected layout.

    `expected` are relative paths a complete download has; `required_any` (default: `expected`)
    are those of which at least one must exist for the tree to be this data set at all. Missing
    expected paths are warned about (a partial download is still indexed).
    """
    root = Path(root).expanduser()
    required = list(required_any if required_any is not None else expected)
    if not root.is_dir() or not any((root / rel).exists() for rel in required):
        raise DatasetLayoutError(
            f"{dataset}: {root} does not look like this data set. Expected "
            f"{', '.join(required)} under it; found {describe_found(root)}."
        )
    missing = [rel for rel in expected if not (root / rel).exists()]
    if missing:
        findings.warn(f"partial download: missing {', '.join(missing)}; indexing what is there")
    return root


def read_split_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text list, stripped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


# ----------------------------------------------------------------------------- rows


def media_type_of(path: str | Path) -> str:
    return "image" if Path(path).suffix.lower() in IMAGE_EXTENSIONS else "video"


def make_row(*, root: Path, path: Path, label: int, method: str, split: str | None = None,
             source_identity: str | None = None, target_identity: str | None = None,
             original_id: str | None = None, mask_path: Path | None = None,
             compression: str | None = None, item_id: str | None = None) -> dict:
    """One index row; `dataset` and `adapter_version` are filled in by :func:`finalize`."""
    relative = relative_posix(path, root)
    return {
        "id": item_id or strip_media_suffix(relative),
        "split": split,
        "label": int(label),
        "method": "real" if label == REAL else method,
        "compression": compression,
        "media_type": media_type_of(path),
        "path": relative,
        "source_identity": source_identity,
        "target_identity": target_identity,
        "original_id": original_id,
        "mask_path": relative_posix(mask_path, root) if mask_path is not None else None,
    }


def row_identities(row: Mapping) -> list[str]:
    """The identities a row involves; a row with none is its own identity (its id)."""
    found = [row[c] for c in ("source_identity", "target_identity") if isinstance(row.get(c), str)]
    return found or [f"item:{row['id']}"]


# ----------------------------------------------------------------------------- splits


def stable_rank(key: str, seed: int) -> str:
    """A seeded, platform-independent sort key (Python's hash() is salted per process)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller name wins so the component's name does not depend on row order
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def _units_per_row(rows: pd.DataFrame, unit: str) -> list[list[str]]:
    identities = [row_identities(r) for r in rows.to_dict("records")]
    if unit == "identity":
        return identities
    if unit != "component":
        raise ValueError(f"split unit must be 'component' or 'identity', not {unit!r}")
    groups = _UnionFind()
    for ids in identities:
        for other in ids[1:]:
            groups.union(ids[0], other)
    return [[groups.find(ids[0])] for ids in identities]


def split_by_identity(rows: pd.DataFrame, fractions: Mapping[str, float], *, seed: int = DEFAULT_SEED,
                      unit: str = "component", keep_in_train: Iterable[str] = (),
                      ) -> tuple[pd.Series, pd.Index]:
    """Assign `rows` to splits by a seeded hash of their identities.

    `fractions` gives the share of units for the non-train splits (e.g. ``{"val": 0.15,
    "test": 0.15}``); train takes the rest. With ``unit="component"`` identities linked by a
    fake (a pair swapped with each other) move together and no row is lost; with
    ``unit="identity"`` each identity is placed on its own and a fake whose identities landed in
    different splits cannot be placed without a leak, so it is dropped (its index is returned).
    Units that contain an identity of `keep_in_train` (typically: identities of an official test
    split) stay in train, so a carved validation split never shares them.

    Returns the split of each kept row (indexed like `rows`) and the index of dropped rows.
    """
    forced = set(keep_in_train)
    row_units = _units_per_row(rows, unit)
    if unit == "component":
        # a component is forced if any identity in it is forced
        forced_units = {u for ids, units in zip(
            (row_identities(r) for r in rows.to_dict("records")), row_units, strict=True)
            if forced.intersection(ids) for u in units}
    else:
        forced_units = forced
    all_units = sorted({u for units in row_units for u in units})
    eligible = sorted((u for u in all_units if u not in forced_units), key=lambda u: stable_rank(u, seed))
    wanted = {s: f for s, f in fractions.items() if f > 0}
    bad = set(wanted) - {"val", "test"}
    if bad:
        raise ValueError(f"fractions may name val and test only (train takes the rest), not {sorted(bad)}")
    assignment: dict[str, str] = {}
    start = 0
    for split in ("test", "val"):
        if split not in wanted:
            continue
        n = round(len(all_units) * wanted[split])
        # a requested split is never empty while at least one unit is left for train
        if n == 0 and len(eligible) - start > len(wanted):
            n = 1
        n = min(n, max(0, len(eligible) - start - 1))
        for u in eligible[start:start + n]:
            assignment[u] = split
        start += n
    splits, dropped = {}, []
    for idx, units in zip(rows.index, row_units, strict=True):
        placed = {assignment.get(u, "train") for u in units}
        if len(placed) == 1:
            splits[idx] = placed.pop()
        else:
            dropped.append(idx)
    return pd.Series(splits, dtype=object).reindex([i for i in rows.index if i in splits]), pd.Index(dropped)


def apply_split(rows: pd.DataFrame, fractions: Mapping[str, float], findings: Findings, *,
                seed: int, unit: str, keep_in_train: Iterable[str] = (), what: str = "") -> pd.DataFrame:
    """:func:`split_by_identity` applied in place of `rows`' split column; drops are reported."""
    if rows.empty:
        return rows
    split, dropped = split_by_identity(rows, fractions, seed=seed, unit=unit, keep_in_train=keep_in_train)
    if len(dropped):
        examples = rows.loc[dropped, "id"].head(3).tolist()
        findings.warn(
            f"{len(dropped)} {what or 'items'} involve identities placed in different splits and are "
            f"left out so that no identity crosses splits (e.g. {examples})"
        )
    rows = rows.loc[split.index].copy()
    rows["split"] = split
    return rows


def identities_of(rows: pd.DataFrame) -> set[str]:
    found: set[str] = set()
    for column in ("source_identity", "target_identity"):
        found.update(v for v in rows[column] if isinstance(v, str))
    return found


def identity_overlap(index: pd.DataFrame) -> dict[str, dict]:
    """For each pair of splits, the identities present in both (count and a sorted sample)."""
    per_split = {s: identities_of(index[index["split"] == s]) for s in SPLITS}
    report = {}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = sorted(per_split[a] & per_split[b])
        report[f"{a}/{b}"] = {"count": len(shared), "examples": shared[:20]}
    return report


# ----------------------------------------------------------------------------- result


def finalize(rows: Sequence[dict] | pd.DataFrame, *, dataset: str, adapter: str, version: str,
             findings: Findings, split_source: Mapping[str, str], identity: str,
             promised_disjoint: Sequence[str] = ("val/test",), extra: Mapping | None = None,
             ) -> tuple[pd.DataFrame, dict]:
    """Validate the rows, check the split promises, and build the metadata every index carries.

    `split_source` says per split whether it is "official" (published by the data set) or
    "derived" (made here); `promised_disjoint` names split pairs that must share no identity
    (an adapter bug otherwise, so it raises); other overlaps are reported, not hidden.
    """
    df = pd.DataFrame(list(rows) if not isinstance(rows, pd.DataFrame) else rows)
    if df.empty:
        raise DatasetLayoutError(f"{dataset}: the layout was recognised but no media files were found")
    df["dataset"] = dataset
    df["adapter_version"] = f"{adapter}/{version}"
    df["label"] = df["label"].astype("int8")
    df = validate_index(df).sort_values(["split", "label", "method", "id"], kind="stable").reset_index(drop=True)

    overlap = identity_overlap(df)
    for pair in promised_disjoint:
        if overlap[pair]["count"]:
            raise AssertionError(f"{dataset}: splits {pair} share identities {overlap[pair]['examples']}")
    for pair, found in overlap.items():
        if found["count"] and pair not in promised_disjoint:
            findings.warn(f"splits {pair} share {found['count']} identities (e.g. {found['examples'][:5]})")
    for split in SPLITS:
        present = set(df.loc[df["split"] == split, "label"])
        if not present:
            findings.warn(f"split {split} is empty")
        elif present != {REAL, FAKE}:
            findings.warn(f"split {split} has only {'real' if REAL in present else 'fake'} items")

    counts = (df.groupby(["split", "label", "method"]).size().rename("n").reset_index()
              .to_dict("records"))
    meta = {
        "dataset": dataset,
        "adapter": adapter,
        "adapter_version": version,
        "identity": identity,
        "split_source": dict(split_source),
        "identity_disjoint": list(promised_disjoint),
        "identity_overlap": overlap,
        "counts": [{k: (int(v) if k in ("label", "n") else v) for k, v in c.items()} for c in counts],
        "n_items": int(len(df)),
        "warnings": list(findings.warnings),
        "notes": list(findings.notes),
    }
    if extra:
        meta.update(extra)
    log.info("%s: %d items; splits %s", dataset, len(df), df["split"].value_counts().to_dict())
    return df, meta


def iter_lines_with_numbers(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            yield number, line.strip()
