"""UADFV (Li et al., 2018): 49 real videos and 49 DeepFake videos made from them.

Layout read::

    <root>/real/0000.mp4
    <root>/fake/0000_fake.mp4

Identity: the four-digit video number: a fake ``0000_fake`` is made from real ``0000`` and
shows the same person, so both carry ``source_identity`` = 0000 (``original_id`` points at the
real video). Different numbers may show the same person; the data set does not say.

Splits: none are published. Videos are split 70/15/15 by seeded hash of the number, a real
video and its fake always together.
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

ADAPTER, VERSION = "uadfv", "1"
IDENTITY = "four-digit video number; a fake shares it with the real video it was made from"
_FAKE_NAME = re.compile(r"^(\d+)_fake$")


def build_index(root: str | Path, val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = DEFAULT_SEED) -> tuple[pd.DataFrame, dict]:
    findings = Findings(ADAPTER)
    root = check_layout(root, ADAPTER, ["real", "fake"], findings)
    rows = [make_row(root=root, path=video, label=0, method="real", source_identity=video.stem)
            for video in list_media(root / "real", VIDEO_EXTENSIONS)]
    for video in list_media(root / "fake", VIDEO_EXTENSIONS):
        match = _FAKE_NAME.match(video.stem)
        number = match.group(1) if match else video.stem
        if not match:
            findings.warn(f"fake/{video.name} is not named <number>_fake; its own identity")
        rows.append(make_row(root=root, path=video, label=1, method="Deepfakes", source_identity=number,
                             original_id=f"real/{number}" if (root / "real" / f"{number}.mp4").is_file() else None))
    findings.note(f"no official split: videos split by seeded hash of their number (seed {seed})")
    table = apply_split(pd.DataFrame(rows), {"val": val_fraction, "test": test_fraction}, findings,
                        seed=seed, unit="component", what="videos")
    return finalize(table, dataset=ADAPTER, adapter=ADAPTER, version=VERSION, findings=findings,
                    split_source={"train": "derived", "val": "derived", "test": "derived"}, identity=IDENTITY,
                    promised_disjoint=("train/val", "train/test", "val/test"), extra={"seed": seed})
