"""Redaction: every picture of the evidence written into a case folder is blurred in its pixels.

The evidence this tool handles is sexual and often of minors. With redaction on (the default),
no file the report writes holds an unblurred derivative of the evidence: thumbnails, frames and
heatmap backgrounds all go through `redact` before they are encoded. CSS blur is not enough (the
file under it stays sharp); this is in the pixels. The picture is shrunk so that its longer side
keeps `resolution` samples, brought back to size and smoothed: layout, colours and the position
of a face stay visible, identity and explicit detail do not.

`sharpness` (variance of the Laplacian) is how the tests check it over every written image.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_RESOLUTION = 12  # samples along the longer side that survive redaction


def redact(rgb: np.ndarray, resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """A blurred copy of an RGB uint8 picture, same size."""
    h, w = rgb.shape[:2]
    scale = max(h, w) / float(max(2, resolution))
    if scale <= 1:
        return rgb.copy()
    small = cv2.resize(rgb, (max(1, round(w / scale)), max(1, round(h / scale))), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    sigma = scale / 2.0
    return cv2.GaussianBlur(big, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: high for sharp detail, near 0 for a blur."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F).var())


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Scale a picture down (never up) so its longer side is at most `max_side`."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
