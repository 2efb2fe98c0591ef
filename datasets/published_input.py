"""A published detector's own input preprocessing, from its registry entry (configs/published/).

Published detectors differ in how a face crop becomes a tensor, and a converted model is only the
published model if it sees the same tensor. The entry's `spec.input` (a ModelSpec InputSpec: size,
mean, std) says what the tensor is; its `publisher_preprocessing.resize` says how the publisher
got there: the rule and the library, because OpenCV and PIL resample differently at the same
nominal interpolation:

| rule | what it does | used by |
|---|---|---|
| `stretch` | resize to size x size, aspect ratio not kept (`backend`: opencv or pil) | SBI, DeepfakeBench, FaceForensics++ |
| `center_crop` | no resize; centre crop to size, zero-padded when smaller (torchvision's CenterCrop) | UniversalFakeDetect |
| `isotropic_pad` | longest side to size (opencv, `interpolation_down` / `interpolation_up`), centred on a black square | DFDC winner |

Then RGB uint8 -> float32 / 255 -> (x - mean) / std, as torchvision's ToTensor + Normalize compute it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

_CV2 = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
_PIL = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def _size(spec: dict) -> tuple[int, int]:
    size = spec["size"]
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_published(rgb: np.ndarray, spec: dict, resize: dict | None = None) -> np.ndarray:
    """The RGB uint8 (H, W, 3) crop after the publisher's resize rule, still uint8.

    `spec`: the InputSpec dict (size, interpolation); `resize`: publisher_preprocessing.resize
    (default: stretch with OpenCV at the spec's interpolation)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    h, w = _size(spec)
    resize = resize or spec.get("resize") or {"rule": "stretch", "backend": "opencv"}
    rule = resize["rule"]
    if rule == "stretch":
        interp = resize.get("interpolation", spec.get("interpolation", "bilinear"))
        if resize.get("backend", "opencv") == "pil":
            return np.array(Image.fromarray(rgb).resize((w, h), _PIL[interp]))
        return cv2.resize(rgb, (w, h), interpolation=_CV2[interp])
    if rule == "center_crop":
        ih, iw = rgb.shape[:2]
        if ih < h or iw < w:  # torchvision pads (zeros) to the crop size first, centred
            top, left = max(h - ih, 0) // 2, max(w - iw, 0) // 2
            padded = np.zeros((max(ih, h), max(iw, w), 3), np.uint8)
            padded[top:top + ih, left:left + iw] = rgb
            rgb, (ih, iw) = padded, padded.shape[:2]
        top, left = int(round((ih - h) / 2.0)), int(round((iw - w) / 2.0))
        return np.ascontiguousarray(rgb[top:top + h, left:left + w])
    if rule == "isotropic_pad":
        if h != w:
            raise ValueError("isotropic_pad needs a square size")
        ih, iw = rgb.shape[:2]
        out = rgb
        if max(ih, iw) != h:
            scale = h / max(ih, iw)
            nw, nh = (h, ih * scale) if iw > ih else (iw * scale, h)
            interp = resize.get("interpolation_up" if scale > 1 else "interpolation_down", "bilinear")
            out = cv2.resize(rgb, (int(nw), int(nh)), interpolation=_CV2[interp])
        out = out[:h, :w]
        canvas = np.zeros((h, w, 3), np.uint8)
        top, left = (h - out.shape[0]) // 2, (w - out.shape[1]) // 2
        canvas[top:top + out.shape[0], left:left + out.shape[1]] = out
        return canvas
    raise ValueError(f"unknown resize rule {rule!r}; use stretch, center_crop or isotropic_pad")


def published_tensor(rgb: np.ndarray, spec: dict, resize: dict | None = None) -> torch.Tensor:
    """(3, H, W) float32 model input from an RGB uint8 crop: the publisher's resize, then
    scale, mean and std of the InputSpec dict `spec`."""
    resized = resize_published(rgb, spec, resize)
    if abs(float(spec.get("scale", 1 / 255)) - 1 / 255) > 1e-12:
        raise ValueError(f"published_tensor implements scale 1/255 (ToTensor); got {spec.get('scale')}")
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().div(255)
    mean = torch.as_tensor(spec.get("mean", [0.0, 0.0, 0.0]), dtype=torch.float32)
    std = torch.as_tensor(spec.get("std", [1.0, 1.0, 1.0]), dtype=torch.float32)
    return x.sub(mean[:, None, None]).div(std[:, None, None])
