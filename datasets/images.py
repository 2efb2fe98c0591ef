"""Torch datasets of whole images and video frames: the image-level data mode (no face crop).

Rows come straight from an index (any adapter: GenImage-style, folder, the image-level demo, or
a video data set, whose videos contribute `frames_per_video` uniformly sampled frames), and the
media are decoded from the data set root. What the model sees is decided by an `ImageSpec`
(datasets/image_pipeline.py):

* training (`ImageCropDataset`): `crops_per_item` random crops of `tile_size` pixels per frame
  and epoch, at native resolution (or after the optional `resize`), augmented by the same
  albumentations pipeline as faces; fakes with a partial mask are cropped around a manipulated
  pixel (`fake_crop: mask`), so a crop labelled fake shows the manipulation. Optionally, real
  images become pseudo-fakes on the fly by pasting a resampled region of another training image
  through a soft mask (`synthesis`, datasets/image_synthesis.py).
* evaluation (`ImageTileDataset`): every frame covered by fixed tiles (or one centre crop),
  normalised by `face_pipeline.model_input` (the scan's arithmetic); tile scores are aggregated
  per frame by a named rule (max, mean) in the engine.

Every sample carries a pixel mask (1 = manipulated): the item's mask file where the index has one
(`mask_path`), otherwise a uniform mask equal to the label (right for real and fully generated
images; an unmasked partial edit would get a wrong, all-ones target, so do not train the
localisation family on such data without masks).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from faketrace.datasets.face_pipeline import spec_input
from faketrace.datasets.image_pipeline import ImageSpec, InputSpec, eval_crops, pad_to, prepare, random_crop
from faketrace.datasets.image_synthesis import PasteSettings, paste_region
from faketrace.datasets.media import DecodeError, read_image, read_video_frames
from faketrace.datasets.schema import read_index

TABLE_COLUMNS = ["video_id", "frame_index", "path", "media_type", "label", "method", "split", "mask_path",
                 "dataset", "source_identity"]


def load_image_table(index_path: str | Path, frames_per_video: int = 4) -> tuple[pd.DataFrame, dict]:
    """One row per image, and `frames_per_video` rows per video (frame_index = sample position)."""
    index, meta = read_index(index_path)
    rows = []
    for item in index.to_dict("records"):
        n = 1 if item["media_type"] == "image" else int(frames_per_video)
        for k in range(n):
            rows.append({"video_id": item["id"], "frame_index": k, **{c: item.get(c) for c in TABLE_COLUMNS[2:]}})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(["video_id", "frame_index"]).reset_index(drop=True), meta


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class FrameReader:
    """Decodes the frame a row names; keeps the last video's frames (its rows are adjacent)."""

    def __init__(self, root: str | Path, frames_per_video: int):
        self.root = Path(root)
        self.frames_per_video = int(frames_per_video)
        self._video: tuple[str, list[np.ndarray]] | None = None

    def frame(self, row) -> np.ndarray:
        """RGB uint8 frame of a row; raises DecodeError when it cannot be decoded."""
        path = self.root / row["path"]
        if row["media_type"] == "image":
            return read_image(path)
        if self._video is None or self._video[0] != row["path"]:
            video = read_video_frames(path, self.frames_per_video)
            if not video.frames:
                raise DecodeError(f"{row['path']}: {video.error or 'no frame decoded'}")
            self._video = (row["path"], [video.frames[i] for i in sorted(video.frames)])
        frames = self._video[1]
        return frames[int(row["frame_index"]) % len(frames)]

    def mask(self, row, shape: tuple[int, int]) -> np.ndarray | None:
        """The item's truth mask as float32 in [0, 1] at `shape` (None when the index has none)."""
        rel = row.get("mask_path")
        if rel is None or (isinstance(rel, float) and np.isnan(rel)):
            return None
        grey = cv2.imread(str(self.root / rel), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise FileNotFoundError(f"mask missing or unreadable: {self.root / rel}")
        mask = grey.astype(np.float32) / 255.0
        if mask.shape != tuple(shape):
            mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return mask


def _crop_mask(mask: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    padded = pad_to(mask[..., None], size)[..., 0]
    x0, y0 = box[0], box[1]
    return padded[y0:y0 + size, x0:x0 + size]


def _crop_at(image: np.ndarray, size: int, centre: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    padded = pad_to(image, size)
    h, w = padded.shape[:2]
    x = int(np.clip(centre[0] - size // 2, 0, w - size))
    y = int(np.clip(centre[1] - size // 2, 0, h - size))
    return padded[y:y + size, x:x + size], (x, y, x + size, y + size)


class ImageCropDataset(Dataset):
    """Training crops at native resolution, with their pixel masks; re-drawn every epoch."""

    def __init__(self, table: pd.DataFrame, root: str | Path, transform, spec: ImageSpec, split: str | None = None,
                 crops_per_item: int = 1, seed: int = 0, frames_per_video: int = 4, fake_crop: str = "mask",
                 synthesis: dict | None = None):
        part = table if split is None else table[table["split"] == split]
        self.table = part.reset_index(drop=True)
        self.reader = FrameReader(root, frames_per_video)
        self.transform = transform
        self.spec = spec
        self.crops_per_item = int(crops_per_item)
        self.seed = int(seed)
        if fake_crop not in ("mask", "random"):
            raise ValueError(f"fake_crop must be mask or random, got {fake_crop!r}")
        self.fake_crop = fake_crop
        synthesis = dict(synthesis or {})
        self.synthesis_p = float(synthesis.get("p", 0.0))
        self.paste = PasteSettings.from_dict(synthesis.get("paste"))
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.rows = np.repeat(np.arange(len(self.table)), self.crops_per_item)

    def __len__(self) -> int:
        return len(self.rows)

    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()[self.rows]

    def _prepared(self, row) -> tuple[np.ndarray, np.ndarray]:
        image = prepare(self.reader.frame(row), self.spec)
        mask = self.reader.mask(row, image.shape[:2])
        if mask is None:
            mask = np.full(image.shape[:2], float(row["label"]), np.float32)
        return image, mask

    def __getitem__(self, i: int) -> dict:
        r = int(self.rows[i])
        row = self.table.iloc[r]
        seed = _stable_hash(f"{self.seed}/{self.epoch}/{row['video_id']}/{row['frame_index']}/{i}")
        rng = np.random.default_rng(seed)
        image, mask = self._prepared(row)
        label = int(row["label"])
        if label == 0 and self.synthesis_p > 0 and rng.random() < self.synthesis_p:
            donor_row = self.table.iloc[int(rng.integers(len(self.table)))]
            donor, _ = self._prepared(donor_row)
            image, mask = paste_region(image, donor, rng, self.paste)
            label = 1
        size = self.spec.tile_size
        partial = label == 1 and 0 < (mask >= 0.5).mean() < 1
        if partial and self.fake_crop == "mask":
            ys, xs = np.nonzero(mask >= 0.5)
            j = int(rng.integers(len(xs)))
            crop, box = _crop_at(image, size, (int(xs[j]), int(ys[j])))
        else:
            crop, box = random_crop(image, size, rng)
        out = _apply(self.transform, crop, _crop_mask(mask, box, size), seed)
        return {"image": out["image"], "mask": out["mask"], "label": torch.tensor(label), "index": torch.tensor(r)}


def _apply(transform, image: np.ndarray, mask: np.ndarray, seed: int) -> dict:
    transform.set_random_seed(seed)
    out = transform(image=image, mask=mask)
    m = out["mask"]
    return {"image": out["image"], "mask": (m if isinstance(m, torch.Tensor) else torch.from_numpy(m)).float()}


class ImageTileDataset(Dataset):
    """Evaluation: each item is one frame, returned as all its tiles (model inputs) and their boxes."""

    def __init__(self, table: pd.DataFrame, root: str | Path, spec: ImageSpec, input_spec: InputSpec,
                 split: str | None = None, frames_per_video: int = 4, with_masks: bool = False):
        part = table if split is None else table[table["split"] == split]
        self.table = part.reset_index(drop=True)
        self.reader = FrameReader(root, frames_per_video)
        self.spec = spec
        self.input_spec = input_spec
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.table)

    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    def __getitem__(self, i: int) -> dict:
        row = self.table.iloc[i]
        size = self.input_spec.side
        out = {"row": i, "error": None, "mask": None, "height": 0, "width": 0}
        try:
            frame = self.reader.frame(row)
        except DecodeError as exc:
            return {**out, "tiles": torch.zeros((0, 3, size, size)), "boxes": torch.zeros((0, 4), dtype=torch.int64),
                    "error": str(exc)}
        crops, boxes = eval_crops(frame, self.spec)
        x = spec_input(list(crops), self.input_spec)
        height, width = prepare(frame, self.spec).shape[:2] if self.spec.resize else frame.shape[:2]
        if self.with_masks:
            out["mask"] = self.reader.mask(row, (height, width))
        return {**out, "tiles": torch.from_numpy(x), "boxes": torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4),
                "height": int(height), "width": int(width)}


def collate_frames(items: list[dict]) -> dict:
    """Frames of a batch: their tiles concatenated, and which frame each tile belongs to."""
    return {"tiles": torch.cat([it["tiles"] for it in items]),
            "boxes": torch.cat([it["boxes"] for it in items]),
            "owner": torch.cat([torch.full((len(it["tiles"]),), it["row"], dtype=torch.int64) for it in items]),
            "rows": [it["row"] for it in items], "errors": [it["error"] for it in items],
            "masks": [it["mask"] for it in items], "shapes": [(it["height"], it["width"]) for it in items]}

