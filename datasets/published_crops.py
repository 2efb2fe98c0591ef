"""The published preprocessing of shipped detectors: crop rules and resizing as their authors did it.

A published model sees what its authors fed it, not faketrace's training crops. This module
holds the steps that differ from datasets/face_pipeline.py (numpy and OpenCV only):

- `resize`: the named interpolation of a registry spec. "nearest" reproduces PIL's NEAREST, which
  Keras' `load_img(target_size=...)` uses by default (the MesoNet authors' example); OpenCV's
  INTER_NEAREST samples a different pixel grid, INTER_NEAREST_EXACT the same one as PIL.
- `mesonet_crop`: MesoNet's face crop (the authors' pipeline.py): a square centred on the nose,
  side 2.2 x 1.3 x max(distance between the eyes, distance from the eyes' midpoint to the mouth),
  rotated so that the eyes-to-mouth axis is vertical. The authors located eyes, nose and mouth
  with face_recognition's 68-point groups; faketrace uses RetinaFace's five points (eye centres,
  nose tip, mouth corners) in their place: the same geometry from slightly different points.
- `box_margin_crop`: the crop rule `box_margin` of imported detectors (SBI, the DFDC winner): the
  detector box grown on each side by (margin - 1) / 2 of its own width and height, clipped to the
  frame, not squared; the publisher's resize (datasets/published_input.py) then makes it the input.
- `scaled_input`: (N, 3, S, S) float32 in [0, 1] after the spec's resize, then (x - mean) / std.
"""

from __future__ import annotations

import cv2
import numpy as np

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST_EXACT, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}
MESONET_SIDE_FACTOR = 2.2 * 1.3  # K = 2.2 in find_coordinates, l_factor = 1.3 in get_aligned_face


def resize(img: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize an (H, W, C) uint8 image to size (h, w) with a spec's interpolation name."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; known: {sorted(INTERPOLATIONS)}")
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=INTERPOLATIONS[interpolation])


def scaled_input(images: list[np.ndarray], spec_input: dict) -> np.ndarray:
    """(N, 3, H, W) float32 from RGB uint8 images under a registry spec's `input` block."""
    h, w = (int(v) for v in spec_input["size"])
    scale = float(spec_input.get("scale", 1 / 255))
    mean = np.asarray(spec_input.get("mean", [0, 0, 0]), np.float32).reshape(3, 1, 1)
    std = np.asarray(spec_input.get("std", [1, 1, 1]), np.float32).reshape(3, 1, 1)
    if spec_input.get("channels", "RGB") != "RGB":
        raise ValueError(f"only RGB input is supported, the spec says {spec_input.get('channels')!r}")
    out = np.empty((len(images), 3, h, w), np.float32)
    for i, img in enumerate(images):
        x = resize(img, (h, w), spec_input.get("interpolation", "bilinear")).astype(np.float32) * scale
        out[i] = (x.transpose(2, 0, 1) - mean) / std
    return out


def mesonet_crop_geometry(landmarks5: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Centre (x, y), side (pixels) and rotation (radians, image y down) of MesoNet's crop from five points
    ordered right eye, left eye, nose, right and left mouth corner (RetinaFace's order)."""
    p = np.asarray(landmarks5, np.float64).reshape(5, 2)
    e1, e2, nose = p[0], p[1], p[2]
    eyes = (e1 + e2) / 2
    mouth = (p[3] + p[4]) / 2
    side = MESONET_SIDE_FACTOR * max(np.linalg.norm(e1 - e2), np.linalg.norm(mouth - eyes))
    v = mouth - eyes
    angle = np.arctan2(v[0], v[1])  # 0 when the mouth is straight below the eyes
    return nose, float(side), float(angle)


def mesonet_crop(frame: np.ndarray, landmarks5: np.ndarray, size: int = 256, interpolation: str = "nearest") -> np.ndarray:
    """MesoNet's face crop of an RGB frame: cut upright at the face's own resolution (bilinear for
    the rotation), then resized to `size` with the spec's interpolation. Outside the frame: edge pixels."""
    centre, side, angle = mesonet_crop_geometry(landmarks5)
    n = max(int(round(side)), 2)
    c, s = np.cos(angle), np.sin(angle)
    # frame point p -> crop pixel rot (p - centre) + n/2
    rot = np.array([[c, -s], [s, c]])  # turns the eyes-to-mouth direction (sin, cos) to straight down (0, 1)
    m = np.zeros((2, 3))
    m[:, :2] = rot
    m[:, 2] = np.array([n / 2, n / 2]) - rot @ centre
    upright = cv2.warpAffine(frame, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return resize(upright, (size, size), interpolation)


def box_margin_bounds(box, margin: float, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, y0, x1, y1), end exclusive, of the `box_margin` crop of a face box (x0, y0, x1, y1).

    The integer rule is SBI's test-time one (src/utils/funcs.py crop_face, phase "test": w/8 and h/8
    on each side, i.e. margin 1.25): start `int(x0 - pad)`, end `int(x1 + pad) + 1`, clipped to the
    frame. The DFDC winner pads an integer box by `w // 3` with an exclusive end; at margin 1.67 this
    rule lands within 2 pixels of that on each edge (tests/test_published_import.py measures it).
    """
    if margin < 1:
        raise ValueError(f"box_margin grows the box: margin must be at least 1, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
    h, w = frame_shape[:2]
    pad_w, pad_h = (margin - 1) / 2 * (x1 - x0), (margin - 1) / 2 * (y1 - y0)
    left, top = min(max(0, int(x0 - pad_w)), w - 1), min(max(0, int(y0 - pad_h)), h - 1)
    # at least one pixel, even for a degenerate box on the frame's edge
    right, bottom = max(min(w, int(x1 + pad_w) + 1), left + 1), max(min(h, int(y1 + pad_h) + 1), top + 1)
    return left, top, right, bottom


def box_margin_crop(frame: np.ndarray, box, margin: float) -> np.ndarray:
    """The `box_margin` crop of an (H, W, C) frame at the frame's resolution (no resize)."""
    left, top, right, bottom = box_margin_bounds(box, margin, frame.shape)
    return np.ascontiguousarray(frame[top:bottom, left:right])
