"""Partial manipulation without a generator: regions of other images pasted in through soft masks.

"Undressing" bots keep the victim's real photograph and regenerate part of it with diffusion
inpainting. When no inpainting model is at hand, `paste_region` is the stand-in: a region of a
donor image, **resampled** (cut at a smaller size and scaled up, which leaves interpolation
traces and removes the sensor noise of the original), is blended into a real image through a
soft, blurred mask; the mask is the pixel truth. A model trained on this has learned resampled,
spliced regions, **not diffusion output**: it has not seen diffusion output unless it was trained
on some.

Torch-free (numpy + OpenCV), used by the demo generator (datasets/demo_images.py) and by the
training-time synthesis option of image-level data (datasets/images.py, `image.synthesis`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

METHOD = "paste_resampled"


@dataclass(frozen=True)
class PasteSettings:
    """How large, how soft and how resampled a pasted region is (fractions of the image)."""

    area: tuple[float, float] = (0.08, 0.3)        # mask area / image area (before feathering)
    feather: tuple[float, float] = (0.02, 0.05)    # Gaussian blur sigma of the mask edge / shorter side
    resample: tuple[float, float] = (0.45, 0.75)   # the donor region is cut at this scale and scaled up
    blobs: tuple[int, int] = (1, 3)                # ellipses whose union makes the region

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> PasteSettings:
        d = d or {}
        return cls(**{k: tuple(d[k]) for k in cls.__dataclass_fields__ if k in d})


def soft_region_mask(height: int, width: int, rng: np.random.Generator, settings: PasteSettings) -> np.ndarray:
    """A soft (H, W) float32 mask in [0, 1]: a union of random ellipses, edge blurred."""
    target = rng.uniform(*settings.area) * height * width
    n = int(rng.integers(settings.blobs[0], settings.blobs[1] + 1))
    hard = np.zeros((height, width), np.uint8)
    cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
    for _ in range(n):
        area = target / n
        aspect = rng.uniform(0.6, 1.6)
        a = np.sqrt(area * aspect / np.pi)
        b = area / (np.pi * a)
        centre = (int(round(cx + rng.normal(0, 0.12) * width)), int(round(cy + rng.normal(0, 0.12) * height)))
        cv2.ellipse(hard, centre, (max(2, int(a)), max(2, int(b))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    sigma = max(0.5, rng.uniform(*settings.feather) * min(height, width))
    return np.clip(cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


def resampled_donor(donor: np.ndarray, height: int, width: int, rng: np.random.Generator,
                    settings: PasteSettings) -> np.ndarray:
    """A (height, width) float32 view of the donor cut at a smaller scale and scaled up (bilinear)."""
    scale = rng.uniform(*settings.resample)
    ch, cw = max(4, int(round(height * scale))), max(4, int(round(width * scale)))
    if donor.shape[0] < ch or donor.shape[1] < cw:
        donor = cv2.resize(donor, (max(cw, donor.shape[1]), max(ch, donor.shape[0])), interpolation=cv2.INTER_AREA)
    y = int(rng.integers(0, donor.shape[0] - ch + 1))
    x = int(rng.integers(0, donor.shape[1] - cw + 1))
    cut = donor[y:y + ch, x:x + cw]
    return cv2.resize(cut, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def paste_region(target: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                 settings: PasteSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blend a resampled donor region into `target` (RGB uint8); return the image and its soft mask."""
    settings = settings or PasteSettings()
    h, w = target.shape[:2]
    mask = soft_region_mask(h, w, rng, settings)
    source = resampled_donor(donor, h, w, rng, settings)
    out = target.astype(np.float32) * (1 - mask[..., None]) + source * mask[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask
