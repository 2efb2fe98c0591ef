"""DeepFakeDetection (DFD, Google/Jigsaw 2019), distributed inside the FaceForensics++ tree.

Layout read (one compression per index)::

    <root>/original_sequences/actors/<compression>/videos/01__exit_phone_room.mp4
    <root>/manipulated_sequences/DeepFakeDetection/<compression>/videos/01_02__exit_phone_room__YVGY8LOK.mp4
    <root>/manipulated_sequences/DeepFakeDetection/masks/videos/01_02__exit_phone_room__YVGY8LOK.mp4  (optional)

Identity: the two-digit id of one of the 28 paid actors. A real video ``01__<scene>`` shows actor
01. A fake ``01_02__<scene>__<code>`` is taken to be actor 01's recording of that scene
(``source_identity`` = 01, ``original_id`` = the real ``01__<scene>``) with actor 02's face
(``target_identity`` = 02). This reading of the name order is an assumption: the data set does
not document it, and the split below does not depend on it.

Splits: DFD publishes none, and using the same videos for training, validation and test (as is
common) measures memorisation. Here actors are split deterministically (seeded hash, 70/15/15 of
the actors), and a fake goes to a split only when both of its actors are in it. Fakes that pair
actors of different splits cannot be placed without putting an actor on both sides; they are
left out and counted in the log and metadata (roughly half of the fakes with 28 actors).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from faketrace.datasets.sources.common import (
    DEFAULT_SEED,
    VIDEO_EXTENSIONS,
    Findings,
    apply_split,
    check_layout,
    finalize,
    list_media,
    make_row,
)
from faketrace.datasets.sources.ffpp import check_compression, mask_for, videos_dir

ADAPTER, VERSION = "dfd", "1"
METHOD = "DeepFakeDetection"
IDENTITY = "actor id (01-28) of the paid actors; fakes carry the recorded actor (source) and the pasted actor (target)"
DEFAULT_FRACTIONS = {"val": 0.15, "test": 0.15}

_REAL_NAME = re.compile(r"^(\d{2})__(.+)$")
_FAKE_NAME = re.compile(r"^(\d{2})_(\d{2})__(.+)__([A-Za-z0-9]+)$")


def build_index(root: str | Path, compression: str = "c23", include_masks: bool = True,
                val_fraction: float = DEFAULT_FRACTIONS["val"], test_fraction: float = DEFAULT_FRACTIONS["test"],
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    compression = check_compression(compression)
    findings = Findings(ADAPTER)
    expected = [f"original_sequences/actors/{compression}/videos",
                f"manipulated_sequences/{METHOD}/{compression}/videos"]
    root = check_layout(root, ADAPTER, expected, findings,
                        required_any=["original_sequences/actors", f"manipulated_sequences/{METHOD}"])

    rows: list[dict] = []
    for video in list_media(videos_dir(root, "original_sequences", "actors", compression), VIDEO_EXTENSIONS,
                            recursive=False):
        match = _REAL_NAME.match(video.stem)
        if not match:
            findings.warn(f"skipping actors/{video.name}: not an <actor>__<scene> name")
            continue
        rows.append(make_row(root=root, path=video, label=0, method="real", compression=compression,
                             source_identity=match.group(1)))
    real_ids = {Path(r["path"]).stem: r["id"] for r in rows}
    for video in list_media(videos_dir(root, "manipulated_sequences", METHOD, compression), VIDEO_EXTENSIONS,
                            recursive=False):
        match = _FAKE_NAME.match(video.stem)
        if not match:
            findings.warn(f"skipping {METHOD}/{video.name}: not an <actor>_<actor>__<scene>__<code> name")
            continue
        recorded, pasted, scene, _ = match.groups()
        original = f"{recorded}__{scene}"
        rows.append(make_row(
            root=root, path=video, label=1, method=METHOD, compression=compression,
            source_identity=recorded, target_identity=pasted,
            original_id=real_ids.get(original, f"original_sequences/actors/{compression}/videos/{original}"),
            mask_path=mask_for(root, METHOD, video.stem) if include_masks else None))

    findings.note(f"DFD has no official split: actors split {1 - val_fraction - test_fraction:.2f}/"
                  f"{val_fraction:.2f}/{test_fraction:.2f} by seeded hash (seed {seed})")
    table = apply_split(pd.DataFrame(rows), {"val": val_fraction, "test": test_fraction}, findings,
                        seed=seed, unit="identity", what="fakes")
    return finalize(table, dataset=ADAPTER, adapter=ADAPTER, version=VERSION, findings=findings,
                    split_source={"train": "derived", "val": "derived", "test": "derived"}, identity=IDENTITY,
                    promised_disjoint=("train/val", "train/test", "val/test"),
                    extra={"compression": compression, "seed": seed})
