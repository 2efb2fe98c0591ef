"""Torch datasets of face crops, built from a manifest joined with its index.

Training draws `frames_per_video` crops per video each epoch (a different, seeded choice every
epoch); evaluation uses every crop. Frames without a face are not in these datasets, and the
manifest keeps their rows and statuses, so nothing disappears unaccounted.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from faketrace.datasets.schema import read_index, read_manifest
from faketrace.datasets.transforms import apply

LABEL_MAP = {0: "real", 1: "fake"}


def load_face_table(index_path: str | Path, manifest_path: str | Path) -> tuple[pd.DataFrame, dict, dict]:
    """Face rows of a manifest with their index columns (label, split, method, ...)."""
    index, index_meta = read_index(index_path)
    manifest, manifest_meta = read_manifest(manifest_path)
    faces = manifest[manifest["status"] == "face"].merge(
        index[["id", "split", "label", "method", "dataset", "source_identity", "media_type"]],
        left_on="video_id", right_on="id", how="inner", validate="many_to_one").drop(columns="id")
    faces = faces.sort_values(["video_id", "frame_index"]).reset_index(drop=True)
    return faces, index_meta, manifest_meta


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class FaceCropDataset(Dataset):
    """Face crops of one split. `frames_per_video=None` keeps all crops (evaluation)."""

    def __init__(self, faces: pd.DataFrame, faces_dir: str | Path, transform, split: str | None = None,
                 frames_per_video: int | None = None, seed: int = 0):
        table = faces if split is None else faces[faces["split"] == split]
        self.table = table.reset_index(drop=True)
        self.faces_dir = Path(faces_dir)
        self.transform = transform
        self.frames_per_video = frames_per_video
        self.seed = int(seed)
        self.train_mode = frames_per_video is not None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's frames (training) deterministically from (seed, epoch)."""
        self.epoch = int(epoch)
        if not self.train_mode:
            self.rows = np.arange(len(self.table))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        chosen = []
        for _, idx in self.table.groupby("video_id", sort=True).indices.items():
            k = min(self.frames_per_video, len(idx))
            chosen.extend(sorted(rng.choice(idx, size=k, replace=False).tolist()))
        self.rows = np.asarray(chosen, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()[self.rows]

    def __getitem__(self, i: int) -> dict:
        row = self.table.iloc[int(self.rows[i])]
        bgr = cv2.imread(str(self.faces_dir / row["crop_path"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"face crop missing or unreadable: {self.faces_dir / row['crop_path']}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        seed = _stable_hash(f"{self.seed}/{self.epoch}/{row['video_id']}/{row['frame_index']}") if self.train_mode \
            else None
        return {"image": apply(self.transform, image, seed), "label": torch.tensor(int(row["label"])),
                "index": torch.tensor(int(self.rows[i]))}
