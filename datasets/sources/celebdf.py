"""Celeb-DF v1 and v2 (Li et al., 2020): celebrity interviews and face swaps among them.

Layout read::

    <root>/Celeb-real/id0_0000.mp4            real, celebrity id0
    <root>/YouTube-real/00170.mp4             real, other people (v2)
    <root>/Celeb-synthesis/id0_id16_0000.mp4  fake: id0's video 0000 with id16's face
    <root>/List_of_testing_videos.txt         official test list, lines "1 YouTube-real/00170.mp4"

The test list's first column uses the opposite convention to ours: 1 = real, 0 = fake. It is
mapped (``label = 1 - column``) and checked against the folder each video sits in.

Which version: the ``version`` option (``v1``/``v2``) wins. With ``auto`` the rule is, in order:
(1) the root folder's name says ``v1`` or ``v2`` (the archives unpack to ``Celeb-DF`` and
``Celeb-DF-v2``); (2) more videos than v1 ever had (408 in Celeb-real, 795 in Celeb-synthesis)
means v2; (3) no ``YouTube-real`` folder means v1; (4) otherwise v2, with a warning. The
rule that decided is written to the metadata. The dataset column is ``celebdf_v1`` or ``celebdf_v2``.

Identity: the celebrity id (``id0`` ... ``id61``) for Celeb-real and Celeb-synthesis; a fake
``idA_idB_clip`` carries ``source_identity`` = idA (the video) and ``target_identity`` = idB (the
face swapped in). YouTube-real videos show people without ids: each is its own identity
(``youtube:<name>``).

Splits: the official test list is the test split. Validation is carved from the remaining videos
by seeded hash of identity, never using a celebrity that appears in the test list; a fake whose
two celebrities fall on different sides of that cut is left out (counted). The rest is train.
The official list shares celebrities with the training videos; that overlap is reported in the
log and in the metadata (``identity_overlap["train/test"]``), not hidden or "fixed".
"""

from __future__ import annotations

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
    identities_of,
    iter_lines_with_numbers,
    list_media,
    make_row,
)

ADAPTER, VERSION = "celebdf", "1"
FOLDERS = ("Celeb-real", "YouTube-real", "Celeb-synthesis")
TEST_LIST = "List_of_testing_videos.txt"
V1_MAX_VIDEOS = {"Celeb-real": 408, "Celeb-synthesis": 795}
IDENTITY = ("celebrity id (id0, id1, ...); a fake carries the video's celebrity (source) and the swapped-in "
            "face (target); each YouTube-real video is its own unknown identity")

_REAL_NAME = re.compile(r"^(id\d+)_(\d+)$")
_FAKE_NAME = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


def detect_version(root: Path, counts: dict[str, int], n_test: int, version: str) -> tuple[str, str]:
    """(version, the rule that decided); see the module docstring."""
    if version in ("v1", "v2"):
        return version, "given by the version option"
    if version != "auto":
        raise ValueError(f"version must be auto, v1 or v2, not {version!r}")
    name = root.name.lower()
    for tag in ("v2", "v1"):
        if re.search(rf"(^|[^a-z0-9]){tag}($|[^a-z0-9])", name):
            return tag, f"root folder name {root.name!r}"
    if any(counts.get(folder, 0) > limit for folder, limit in V1_MAX_VIDEOS.items()):
        return "v2", "more videos than Celeb-DF v1 has"
    if not (root / "YouTube-real").is_dir():
        return "v1", "no YouTube-real folder"
    return "v2", "default (has YouTube-real; no other evidence)"


def parse_test_list(path: Path, findings: Findings) -> dict[str, int]:
    """Relative path -> our label (0 real, 1 fake) from the official list (whose 1 means real)."""
    labels: dict[str, int] = {}
    for number, line in iter_lines_with_numbers(path):
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetLayoutError(f"celebdf: {path.name} line {number} is not '<1|0> <folder>/<video>': {line!r}")
        official_flag, relative = parts
        labels[relative.replace("\\", "/")] = 1 - int(official_flag)
    return labels


def build_index(root: str | Path, version: str = "auto", val_fraction: float = 0.1,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = check_layout(root, ADAPTER, [*FOLDERS, TEST_LIST], findings,
                        required_any=["Celeb-real", "Celeb-synthesis"])
    videos = {folder: list_media(root / folder, VIDEO_EXTENSIONS, recursive=False) for folder in FOLDERS}
    test_labels = parse_test_list(root / TEST_LIST, findings) if (root / TEST_LIST).is_file() else {}
    version, rule = detect_version(root, {f: len(v) for f, v in videos.items()}, len(test_labels), version)
    findings.note(f"Celeb-DF {version} ({rule})")
    if not (root / "YouTube-real").is_dir() and version == "v2":
        findings.warn("YouTube-real is missing (it is part of v2)")

    rows: list[dict] = []
    for video in videos["Celeb-real"]:
        match = _REAL_NAME.match(video.stem)
        if not match:
            findings.warn(f"skipping Celeb-real/{video.name}: not an id<N>_<clip> name")
            continue
        rows.append(make_row(root=root, path=video, label=0, method="real", source_identity=match.group(1)))
    for video in videos["YouTube-real"]:
        rows.append(make_row(root=root, path=video, label=0, method="real", source_identity=f"youtube:{video.stem}"))
    for video in videos["Celeb-synthesis"]:
        match = _FAKE_NAME.match(video.stem)
        if not match:
            findings.warn(f"skipping Celeb-synthesis/{video.name}: not an id<A>_id<B>_<clip> name")
            continue
        shown, swapped_in, clip = match.groups()
        rows.append(make_row(root=root, path=video, label=1, method="Celeb-synthesis", source_identity=shown,
                             target_identity=swapped_in, original_id=f"Celeb-real/{shown}_{clip}"))
    table = pd.DataFrame(rows)
    if table.empty:
        raise DatasetLayoutError(f"celebdf: no videos found in {', '.join(FOLDERS)} under {root}")

    if test_labels:
        on_disk = set(table["path"])
        missing = sorted(set(test_labels) - on_disk)
        if missing:
            findings.warn(f"{len(missing)} videos of {TEST_LIST} are not on disk (e.g. {missing[:3]})")
        listed = table["path"].map(test_labels)
        disagree = listed.notna() & (listed != table["label"])
        if disagree.any():
            raise DatasetLayoutError(f"celebdf: {TEST_LIST} labels disagree with the folders for "
                                     f"{table.loc[disagree, 'path'].head(3).tolist()}")
        is_test = listed.notna()
        split_source = {"train": "derived", "val": "derived", "test": "official"}
    else:
        findings.warn(f"{TEST_LIST} not found: the test split is derived (seeded hash of identity), "
                      "so results are not comparable with published Celeb-DF numbers")
        is_test = pd.Series(False, index=table.index)
        split_source = {"train": "derived", "val": "derived", "test": "derived"}

    test = table[is_test].assign(split="test")
    rest = table[~is_test].assign(split="train")
    fractions = {"val": val_fraction} if test_labels else {"val": val_fraction, "test": val_fraction}
    rest = apply_split(rest, fractions, findings, seed=seed, unit="identity", what="fakes",
                       keep_in_train=identities_of(test) if len(test) else ())
    return finalize(pd.concat([rest, test]), dataset=f"celebdf_{version}", adapter=ADAPTER, version=VERSION,
                    findings=findings, split_source=split_source, identity=IDENTITY,
                    promised_disjoint=("train/val", "val/test"),
                    extra={"celebdf_version": version, "version_rule": rule, "seed": seed,
                           "official_test_videos": len(test_labels)})
