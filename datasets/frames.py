"""Torch datasets of face crops, built from a manifest joined with its index.

Training draws `crops_per_video` crops per video each epoch (a different, seeded choice every
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
    """Face crops of one split. `crops_per_video=None` keeps all crops (evaluation).

    Options a detector family or a training recipe asks for:

    * `synthesis` (a `datasets.synthesis.Synthesis`, with the preprocessing `crop_spec` that
      made the crops): the table becomes the split's real crops (all crops unless `real_only`)
      plus pseudo-fake copies made on the fly from them;
    * `masks`: each sample also carries its blending mask (`mask`, the input size) and whether
      it is known (`mask_known`): pseudo-fakes and real crops (all zero) yes, stored fakes no;
    * `clip_length`: each sample is the clip of that many consecutive crops of its video
      centred on it, `image` of shape (T, C, H, W), every frame augmented alike.
    """

    def __init__(self, faces: pd.DataFrame, faces_dir: str | Path, transform, split: str | None = None,
                 crops_per_video: int | None = None, seed: int = 0, *, synthesis=None, crop_spec=None,
                 masks: bool = False, clip_length: int | None = None):
        table = (faces if split is None else faces[faces["split"] == split]).reset_index(drop=True)
        self.plan = None
        if synthesis is not None:
            if crop_spec is None:
                raise ValueError("synthesis needs the preprocessing spec of the crops (crop_spec)")
            table = synthesis.expand(table)
            self.plan = synthesis.bind(table, crop_spec)
        self.table = table
        self.faces_dir = Path(faces_dir)
        self.transform = transform
        self.crops_per_video = crops_per_video
        self.seed = int(seed)
        self.train_mode = crops_per_video is not None
        self.masks = bool(masks)
        self.clip_length = int(clip_length) if clip_length else None
        if self.masks and self.clip_length:
            raise ValueError("blending masks are per image; clips (clip_length) do not carry them")
        self._video_rows: dict[str, np.ndarray] = {}
        if self.clip_length:
            for vid, idx in self.table.groupby("video_id", sort=False).indices.items():
                order = np.argsort(self.table["frame_index"].to_numpy()[idx], kind="stable")
                self._video_rows[vid] = np.asarray(idx)[order]
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's frames (training) deterministically from (seed, epoch)."""
        self.epoch = int(epoch)
        if not self.train_mode:
            self.rows = np.arange(len(self.table))
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        sources = self.table["synth_source"].to_numpy() if self.plan is not None else None
        stored = self.table if sources is None else self.table[sources < 0]
        chosen = []
        for _, idx in stored.groupby("video_id", sort=True).indices.items():
            idx = stored.index.to_numpy()[idx]
            k = min(self.crops_per_video, len(idx))
            chosen.extend(sorted(rng.choice(idx, size=k, replace=False).tolist()))
        if sources is not None:
            # Pseudo-fakes of exactly the chosen real crops: every real comes with its blends.
            chosen.extend(np.flatnonzero(np.isin(sources, chosen)).tolist())
            chosen.sort()
        self.rows = np.asarray(chosen, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()[self.rows]

    def read_crop(self, pos: int) -> np.ndarray:
        """The stored RGB crop of table row `pos`."""
        path = self.faces_dir / self.table["crop_path"].iat[pos]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"face crop missing or unreadable: {path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _window(self, pos: int) -> list[int]:
        """The clip of `clip_length` crops of pos's video centred on it (edges repeated if short)."""
        rows = self._video_rows[self.table["video_id"].iat[pos]]
        t = self.clip_length
        i = int(np.flatnonzero(rows == pos)[0])
        start = min(max(0, i - t // 2), max(0, len(rows) - t))
        window = rows[start:start + t].tolist()
        return window + [window[-1]] * (t - len(window))

    def _sample(self, pos: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """Image, mask (None when masks are off) and whether the mask is known, for row `pos`."""
        image = self.read_crop(pos)
        if self.plan is not None and self.plan.is_synthetic(pos):
            blend = self.plan.make(pos, image, seed, self.read_crop)
            return blend.image, (blend.mask if self.masks else None), True
        if self.plan is not None:
            image = self.plan.real(pos, image, seed)
        if not self.masks:
            return image, None, False
        known = int(self.table["label"].iat[pos]) == 0  # a real face has nothing blended in
        return image, np.zeros(image.shape[:2], np.float32), known

    def __getitem__(self, i: int) -> dict:
        pos = int(self.rows[i])
        row = self.table.iloc[pos]
        # A pseudo-fake shares its real crop's seeds: same augmentation, and with SBI the real is
        # exactly the pseudo-fake's background.
        base = self.table.iloc[int(self.plan.sources[pos])] if self.plan is not None and \
            self.plan.is_synthetic(pos) else row
        key = f"{base['video_id']}/{base['frame_index']}"
        aug_seed = _stable_hash(f"{self.seed}/{self.epoch}/{key}") if self.train_mode else None
        # Pseudo-fakes are new every epoch in training and fixed in evaluation.
        synth_seed = aug_seed if aug_seed is not None else _stable_hash(f"{self.seed}/synthesis/{key}")
        images, masks, known = [], [], True
        for p in (self._window(pos) if self.clip_length else [pos]):
            image, mask, mask_known = self._sample(p, synth_seed)
            out = apply(self.transform, image, aug_seed, mask)
            if mask is not None:
                out, mask_t = out
                masks.append(mask_t)
            images.append(out)
            known = known and mask_known
        sample = {"image": torch.stack(images) if self.clip_length else images[0],
                  "label": torch.tensor(int(row["label"])), "index": torch.tensor(pos)}
        if self.masks:
            sample["mask"] = masks[0]
            sample["mask_known"] = torch.tensor(known)
        return sample
