"""From a whole image to the arrays an image-level model sees: crops and tiles at native resolution.

Face-level models see an aligned face crop; image-level models see the whole picture, because the
manipulation may be anywhere (an inpainted body, a fully generated scene). Generator traces live
in the high frequencies of the pixels as they were written, so the image is **not resized** by
default: training takes random crops of `tile_size` pixels at native resolution, and evaluation
covers the image with fixed tiles (or one centre crop) whose scores are aggregated by a named
rule (max: the most suspicious tile decides; mean: the average over tiles). `resize` (shorter side
in pixels) is available for data whose resolution says something about the label.

This module needs numpy and OpenCV only (no torch), so the evidence scan and a standalone
predictor use exactly the tiles that training and evaluation use. Model input normalisation is
`faketrace.datasets.face_pipeline.model_input`, shared with the face path.
"""

from __future__ import annotations

import cv2
import numpy as np

from faketrace.datasets.face_pipeline import spec_input

# The spec of a whole-image model lives with the rest of the model contract (models/spec.py).
from faketrace.models.spec import EVAL_CROPS, TILE_AGGREGATIONS, ImageSpec, InputSpec  # noqa: F401  (re-exported)


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def pad_to(image: np.ndarray, min_side: int) -> np.ndarray:
    """Pad bottom and right by edge replication so both sides are at least `min_side`."""
    h, w = image.shape[:2]
    ph, pw = max(0, min_side - h), max(0, min_side - w)
    if ph == 0 and pw == 0:
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every `stride` pixels, the last one aligned to the border."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def image_tiles(image: np.ndarray, tile: int, stride: int | None = None
                ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Cover an RGB image with square tiles; return them (N, tile, tile, 3) uint8 and their boxes.

    Boxes are (x0, y0, x1, y1) in image pixels, x1/y1 exclusive and clipped to the image (a tile
    of an image smaller than `tile` is padded by edge replication at the bottom and right, and its
    box covers only the real pixels). Tiles run row by row, top to bottom, left to right.
    """
    _check_image(image)
    tile = int(tile)
    stride = tile if stride is None else int(stride)
    h, w = image.shape[:2]
    padded = pad_to(image, tile)
    ys, xs = tile_starts(padded.shape[0], tile, stride), tile_starts(padded.shape[1], tile, stride)
    tiles = np.empty((len(ys) * len(xs), tile, tile, 3), np.uint8)
    boxes = []
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            tiles[i * len(xs) + j] = padded[y:y + tile, x:x + tile]
            boxes.append((x, y, min(x + tile, w), min(y + tile, h)))
    return tiles, boxes


def resize_shorter(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the shorter side is `side` pixels (aspect kept)."""
    h, w = image.shape[:2]
    if min(h, w) == side:
        return image
    scale = side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interp)


def prepare(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """The image at the resolution the model works at: native unless `spec.resize` is set."""
    _check_image(image)
    return resize_shorter(image, int(spec.resize)) if spec.resize else image


def centre_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One square crop from the centre (padded by edge replication if the image is smaller)."""
    padded = pad_to(image, size)
    h, w = padded.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    box = (x, y, min(x + size, image.shape[1]), min(y + size, image.shape[0]))
    return padded[y:y + size, x:x + size], box


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A square crop at a random position, native resolution (padded if the image is smaller)."""
    padded = pad_to(image, size)
    h, w = padded.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return padded[y:y + size, x:x + size], (x, y, x + size, y + size)


def eval_crops(image: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The evaluation crops of an image under a spec (tiles or one centre crop) and their boxes.

    Boxes are in the coordinates of the prepared (possibly resized) image.
    """
    image = prepare(image, spec)
    if spec.crop == "centre":
        crop, box = centre_crop(image, spec.tile_size)
        return crop[None], [box]
    return image_tiles(image, spec.tile_size, spec.stride)


def aggregate_tiles(scores, rule: str) -> float:
    """Image score from its tile scores: the highest (max) or the average (mean)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no tile scores to aggregate")
    if rule == "max":
        return float(s.max())
    if rule == "mean":
        return float(s.mean())
    raise ValueError(f"unknown tile aggregation {rule!r}; known: {TILE_AGGREGATIONS}")


def tile_score_map(scores, boxes: list[tuple[int, int, int, int]], height: int, width: int,
                   rule: str = "max") -> np.ndarray:
    """A (height, width) float32 map of tile scores: each pixel the max (or mean) of its tiles' scores.

    Pixels that no box covers are NaN. Boxes are in the same coordinates as height and width.
    """
    out = np.full((height, width), -np.inf if rule == "max" else 0.0, np.float64)
    count = np.zeros((height, width), np.int64)
    for s, (x0, y0, x1, y1) in zip(np.asarray(scores, np.float64), boxes, strict=True):
        if rule == "max":
            np.maximum(out[y0:y1, x0:x1], s, out=out[y0:y1, x0:x1])
        elif rule == "mean":
            out[y0:y1, x0:x1] += s
        else:
            raise ValueError(f"unknown tile aggregation {rule!r}; known: {TILE_AGGREGATIONS}")
        count[y0:y1, x0:x1] += 1
    if rule == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = out / count
    out[count == 0] = np.nan
    return out.astype(np.float32)


def image_model_input(image: np.ndarray, spec: ImageSpec, input_spec: InputSpec
                      ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """(N, 3, S, S) float32 model inputs of an image's evaluation crops, and their boxes.

    `input_spec` is the model spec's input section. When the model's input size equals the tile
    size (the default), no pixel is resampled.
    """
    crops, boxes = eval_crops(image, spec)
    return spec_input(list(crops), input_spec), boxes
