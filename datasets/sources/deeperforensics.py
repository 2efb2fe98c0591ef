"""DeeperForensics-1.0 (Jiang et al., 2020): 100 paid actors swapped into FaceForensics++ videos.

Layout read::

    <root>/source_videos/M004/<...>/M004_BlendShape_camera_down.mp4      real, actor M004
    <root>/manipulated_videos/<perturbation>/000_M101.mp4               fake: FF++ video 000, face of M101
    <root>/lists/splits/train.txt, val.txt, test.txt                    official lists of fake videos

``<perturbation>`` is a folder per distortion setting (``end_to_end``, ``end_to_end_level_3``,
``reenact_postprocess``, ...); it becomes the ``method`` of its fakes. The ``perturbations``
option restricts which folders are read (all by default).

The split lists name the fake videos (``000_M101.mp4``, one per line; a folder prefix, if any,
is ignored), so one list line covers that video in every perturbation folder.

Identity: the actor id (``M004``, ``W006``). Reals carry it as ``source_identity``. A fake
``000_M101`` carries ``source_identity`` = ``ffpp:000`` (the FaceForensics++ sequence whose video
was used, not part of this tree, so ``original_id`` stays empty) and ``target_identity`` = M101.

Splits: official lists when all three are present. The real source videos are not listed; an
actor's real videos go to the split that holds most of that actor's fakes (train for actors
with no listed fakes). The official lists are not promised to be actor-disjoint: any overlap is
reported, not changed. Without the lists, actors (with the FF++ videos swapped onto them) are
split 70/15/15 by seeded hash, which is disjoint by actor.
"""

from __future__ import annotations

import re
from collections import Counter
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
    read_split_list,
)

ADAPTER, VERSION = "deeperforensics", "1"
SPLIT_FILES = {"train": "lists/splits/train.txt", "val": "lists/splits/val.txt", "test": "lists/splits/test.txt"}
IDENTITY = "actor id (M004, W006, ...); fakes carry the FF++ sequence used (source) and the actor swapped in (target)"

_ACTOR = re.compile(r"^[MW]\d{3}$")
_FAKE_NAME = re.compile(r"^(\d{3})_([MW]\d{3})$")


def build_index(root: str | Path, perturbations: list[str] | None = None, include_source_videos: bool = True,
                val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = check_layout(root, ADAPTER, ["source_videos", "manipulated_videos", *SPLIT_FILES.values()],
                        findings, required_any=["source_videos", "manipulated_videos"])
    rows: list[dict] = []
    if include_source_videos:
        for actor_dir in sorted(p for p in (root / "source_videos").glob("*") if p.is_dir()):
            if not _ACTOR.match(actor_dir.name):
                findings.warn(f"skipping source_videos/{actor_dir.name}: not an actor id like M004")
                continue
            for video in list_media(actor_dir, VIDEO_EXTENSIONS):
                rows.append(make_row(root=root, path=video, label=0, method="real", source_identity=actor_dir.name))

    available = sorted(p.name for p in (root / "manipulated_videos").glob("*") if p.is_dir())
    wanted = available if perturbations is None else list(perturbations)
    absent = sorted(set(wanted) - set(available))
    if absent:
        findings.warn(f"perturbation folders {absent} not found under manipulated_videos (found {available})")
    for perturbation in (w for w in wanted if w in available):
        for video in list_media(root / "manipulated_videos" / perturbation, VIDEO_EXTENSIONS):
            match = _FAKE_NAME.match(video.stem)
            if not match:
                findings.warn(f"skipping manipulated_videos/{perturbation}/{video.name}: not <ffpp id>_<actor>")
                continue
            rows.append(make_row(root=root, path=video, label=1, method=perturbation,
                                 source_identity=f"ffpp:{match.group(1)}", target_identity=match.group(2)))
    table = pd.DataFrame(rows)
    if table.empty:
        raise DatasetLayoutError(f"deeperforensics: no videos under {root}/source_videos or manipulated_videos")

    if all((root / f).is_file() for f in SPLIT_FILES.values()):
        split_of_name: dict[str, str] = {}
        for split, relative in SPLIT_FILES.items():
            for line in read_split_list(root / relative):
                split_of_name[Path(line.replace("\\", "/")).name] = split
        is_fake = table["label"] == 1
        fake_split = table.loc[is_fake, "path"].map(lambda p: split_of_name.get(Path(p).name))
        unlisted = fake_split.isna()
        if unlisted.any():
            findings.warn(f"{int(unlisted.sum())} fakes are in no split list and are left out "
                          f"(e.g. {table.loc[unlisted[unlisted].index, 'id'].head(3).tolist()})")
        table.loc[fake_split.index, "split"] = fake_split
        votes: dict[str, Counter] = {}
        for actor, split in zip(table.loc[is_fake, "target_identity"], fake_split, strict=True):
            if isinstance(split, str):
                votes.setdefault(actor, Counter())[split] += 1
        spread = sorted(a for a, c in votes.items() if len(c) > 1)
        if spread:
            findings.warn(f"{len(spread)} actors have fakes in more than one official split (e.g. {spread[:5]})")
        actor_split = {a: c.most_common(1)[0][0] for a, c in votes.items()}
        reals = ~is_fake
        table.loc[reals, "split"] = table.loc[reals, "source_identity"].map(lambda a: actor_split.get(a, "train"))
        table = table[table["split"].notna()]
        split_source = {"train": "official", "val": "official", "test": "official"}
        promised: tuple[str, ...] = ()
    else:
        findings.warn("lists/splits/{train,val,test}.txt not all found: actors are split by seeded hash "
                      f"{1 - val_fraction - test_fraction:.2f}/{val_fraction:.2f}/{test_fraction:.2f} (seed {seed})")
        table = apply_split(table, {"val": val_fraction, "test": test_fraction}, findings, seed=seed,
                            unit="component", what="videos")
        split_source = {"train": "derived", "val": "derived", "test": "derived"}
        promised = ("train/val", "train/test", "val/test")
    return finalize(table, dataset=ADAPTER, adapter=ADAPTER, version=VERSION, findings=findings,
                    split_source=split_source, identity=IDENTITY, promised_disjoint=promised,
                    extra={"perturbations": [w for w in wanted if w in available], "seed": seed})
