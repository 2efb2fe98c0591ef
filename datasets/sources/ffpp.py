"""FaceForensics++ (Rössler et al., 2019): 1000 YouTube sequences and their manipulations.

Layout read (one compression per index; ``raw``, ``c23`` or ``c40``)::

    <root>/original_sequences/youtube/<compression>/videos/071.mp4
    <root>/manipulated_sequences/<Method>/<compression>/videos/071_054.mp4
    <root>/manipulated_sequences/<Method>/masks/videos/071_054.mp4      (optional)
    <root>/train.json, val.json, test.json   (or <root>/splits/*.json; optional)

Methods: Deepfakes, Face2Face, FaceSwap, NeuralTextures and FaceShifter. The actors and
DeepFakeDetection folders that share this tree are the DFD data set (:mod:`.dfd`).

Identity: the three-digit number of a YouTube sequence, standing for the person in it (the data
set has no person ids; a few people appear in more than one sequence, which the official split
does not account for either). A fake ``071_054.mp4`` is sequence 071 with the face (swaps) or
expressions (reenactment) of 054: ``source_identity`` = 071, ``target_identity`` = 054,
``original_id`` = the id of real sequence 071.

Splits: the official ``train/val/test.json`` lists of pairs (360/70/70 pairs) when all three are
found; a pair ``["071", "054"]`` puts reals 071 and 054 and fakes 071_054 and 054_071 of every
method in that split. Without them, a deterministic split of the same proportions over the
pairs linked by the fakes (so 071 and 054 stay together), said in the log and the metadata.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    VIDEO_EXTENSIONS,
    DatasetLayoutError,
    Findings,
    apply_split,
    check_layout,
    finalize,
    list_media,
    make_row,
)

ADAPTER, VERSION = "ffpp", "1"
COMPRESSIONS = ("raw", "c23", "c40")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
DEFAULT_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
# Official pair counts; a derived split keeps the same proportions.
OFFICIAL_PAIRS = {"train": 360, "val": 70, "test": 70}
DERIVED_FRACTIONS = {s: n / sum(OFFICIAL_PAIRS.values()) for s, n in OFFICIAL_PAIRS.items() if s != "train"}

IDENTITY = ("YouTube sequence number (000-999) standing for the person in it; fakes carry the "
            "sequence they were built on (source) and the one whose face/expression was used (target)")

_PAIR_NAME = re.compile(r"^(\d{3})_(\d{3})$")
_SEQUENCE_NAME = re.compile(r"^\d{3}$")


def check_compression(compression: str) -> str:
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    return compression


def videos_dir(root: Path, group: str, name: str, compression: str) -> Path:
    return root / group / name / compression / "videos"


def mask_for(root: Path, method: str, stem: str) -> Path | None:
    for ext in (".mp4", ".avi"):
        mask = root / "manipulated_sequences" / method / "masks" / "videos" / f"{stem}{ext}"
        if mask.is_file():
            return mask
    return None


def find_split_lists(root: Path, splits_dir: str | Path | None) -> Path | None:
    """The folder holding train/val/test.json, or None when a complete set is not found."""
    if splits_dir:
        given = Path(splits_dir)
        candidates = [given if given.is_absolute() else root / given]
    else:
        candidates = [root, root / "splits"]
    for folder in candidates:
        if all((folder / f"{s}.json").is_file() for s in OFFICIAL_PAIRS):
            return folder
    return None


def read_pair_lists(folder: Path) -> dict[str, str]:
    """Sequence number -> split, from the official pair lists; refuses a number in two splits."""
    split_of: dict[str, str] = {}
    for split in OFFICIAL_PAIRS:
        pairs = json.loads((folder / f"{split}.json").read_text(encoding="utf-8"))
        for pair in pairs:
            if len(pair) != 2:
                raise DatasetLayoutError(f"ffpp: {folder / f'{split}.json'} entry {pair!r} is not a pair")
            for number in pair:
                number = str(number)
                if split_of.setdefault(number, split) != split:
                    raise DatasetLayoutError(f"ffpp: sequence {number} is listed in both "
                                             f"{split_of[number]} and {split}")
    return split_of


def build_index(root: str | Path, compression: str = "c23", methods: list[str] | tuple[str, ...] = DEFAULT_METHODS,
                splits_dir: str | None = None, include_masks: bool = True,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    compression = check_compression(compression)
    methods = list(methods)
    if "DeepFakeDetection" in methods:
        raise ValueError("DeepFakeDetection is the DFD data set with its own identities; index it with data=dfd")
    unknown = sorted(set(methods) - set(FFPP_METHODS))
    if unknown:
        raise ValueError(f"unknown FaceForensics++ methods {unknown}; expected some of {FFPP_METHODS}")
    findings = Findings(ADAPTER)
    expected = [f"original_sequences/youtube/{compression}/videos"] + [
        f"manipulated_sequences/{m}/{compression}/videos" for m in methods]
    root = check_layout(root, ADAPTER, expected, findings,
                        required_any=["original_sequences/youtube", "manipulated_sequences"])

    rows: list[dict] = []
    real_dir = videos_dir(root, "original_sequences", "youtube", compression)
    for video in list_media(real_dir, VIDEO_EXTENSIONS, recursive=False):
        if not _SEQUENCE_NAME.match(video.stem):
            findings.warn(f"skipping {video.name}: not a three-digit sequence name")
            continue
        rows.append(make_row(root=root, path=video, label=0, method="real", compression=compression,
                             source_identity=video.stem))
    real_ids = {r["source_identity"]: r["id"] for r in rows}
    for method in methods:
        for video in list_media(videos_dir(root, "manipulated_sequences", method, compression),
                                VIDEO_EXTENSIONS, recursive=False):
            match = _PAIR_NAME.match(video.stem)
            if not match:
                findings.warn(f"skipping {method}/{video.name}: not a <target>_<source> name")
                continue
            shown, brought = match.groups()
            rows.append(make_row(
                root=root, path=video, label=1, method=method, compression=compression,
                source_identity=shown, target_identity=brought,
                original_id=real_ids.get(shown, f"original_sequences/youtube/{compression}/videos/{shown}"),
                mask_path=mask_for(root, method, video.stem) if include_masks else None))
    table = pd.DataFrame(rows)
    if table.empty:
        raise DatasetLayoutError(f"ffpp: no {compression} videos under {root} (looked in {', '.join(expected)})")

    lists = find_split_lists(root, splits_dir)
    if lists is not None:
        split_of = read_pair_lists(lists)
        where = lists.relative_to(root).as_posix() if lists.is_relative_to(root) else str(lists)
        findings.note(f"official split from train/val/test.json in {where}")
        first, second = table["source_identity"].map(split_of), table["target_identity"].map(split_of)
        second = second.where(table["target_identity"].notna(), first)
        unlisted = first.isna() | second.isna() | (first != second)
        if unlisted.any():
            findings.warn(f"{int(unlisted.sum())} videos are not covered by one pair of the official "
                          f"lists and are left out (e.g. {table.loc[unlisted, 'id'].head(3).tolist()})")
        table = table.loc[~unlisted].assign(split=first[~unlisted])
        split_source = dict.fromkeys(OFFICIAL_PAIRS, "official")
    else:
        findings.warn("official train/val/test.json not found; using a deterministic split of "
                      f"360/70/70 proportions over the sequence pairs (seed {seed})")
        table = apply_split(table, DERIVED_FRACTIONS, findings, seed=seed, unit="component", what="videos")
        split_source = dict.fromkeys(OFFICIAL_PAIRS, "derived")

    return finalize(table, dataset=ADAPTER, adapter=ADAPTER, version=VERSION, findings=findings,
                    split_source=split_source, identity=IDENTITY,
                    promised_disjoint=("train/val", "train/test", "val/test"),
                    extra={"compression": compression, "methods": methods, "seed": seed})
