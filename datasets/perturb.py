"""Graded perturbations of raw media (before face detection), for robustness sweeps.

The seven DeeperForensics-1.0 distortion types at their five published levels (Jiang et al.,
CVPR 2020, supplementary material), plus JPEG quality, downscaling and a messenger profile
modelled on Telegram's delivery (photos capped at 1280 px on the long side, 2560 px for large
photos, re-encoded as JPEG at about quality 87; video as H.264 at about 1 to 2.6 Mbit/s at
720p). The level values follow the paper; how each is applied (block size, colour space) is
this module's own implementation, stated per function.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from faketrace.datasets.io import atomic_path

# distortion -> its levels, mildest first (severity 1..5 where there are five)
DEEPERFORENSICS_LEVELS: dict[str, list] = {
    "colour_saturation": [0.4, 0.3, 0.2, 0.1, 0.0],
    "colour_contrast": [0.85, 0.725, 0.6, 0.475, 0.35],
    "block_wise": [16, 32, 48, 64, 80],
    "gaussian_noise": [0.001, 0.002, 0.005, 0.01, 0.05],
    "gaussian_blur": [7, 9, 13, 17, 21],
    "pixelation": [2, 3, 4, 5, 6],
    "h264_crf": [30, 32, 35, 38, 40],
}
EXTRA_LEVELS: dict[str, list] = {
    "jpeg_quality": [90, 70, 50, 30, 10],
    "downscale": [0.75, 0.5, 0.35, 0.25],
    "telegram": ["photo", "photo_large", "video_2600k", "video_1000k"],
}
LEVELS = {**DEEPERFORENSICS_LEVELS, **EXTRA_LEVELS}
# Telegram: long-side caps of delivered photos, their JPEG quality, and video bitrates at 720p.
TELEGRAM_PHOTO_SIDE = {"photo": 1280, "photo_large": 2560}
TELEGRAM_JPEG_QUALITY = 87
TELEGRAM_VIDEO_KBPS_720P = {"video_2600k": 2600, "video_1000k": 1000}
BLOCK_SIDE = 8  # pixels of each grey block of the block-wise distortion
CLEAN_CRF = 0  # re-encoding of perturbed videos whose distortion is not a codec: visually lossless


def _to_ycrcb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)


def _from_ycrcb(ycc: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(ycc, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def colour_saturation(img: np.ndarray, level: float) -> np.ndarray:
    """Chroma (Cr, Cb) pulled towards grey: deviation from 128 times `level` (0 = greyscale)."""
    ycc = _to_ycrcb(img)
    ycc[..., 1:] = 128 + (ycc[..., 1:] - 128) * level
    return _from_ycrcb(ycc)


def colour_contrast(img: np.ndarray, level: float) -> np.ndarray:
    """Every channel's deviation from the image mean times `level`."""
    x = img.astype(np.float32)
    return np.clip(x.mean() + (x - x.mean()) * level, 0, 255).astype(np.uint8)


def block_wise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """`level` mid-grey squares of BLOCK_SIDE pixels at random positions."""
    out = img.copy()
    h, w = img.shape[:2]
    for _ in range(int(level)):
        y, x = int(rng.integers(0, max(1, h - BLOCK_SIDE))), int(rng.integers(0, max(1, w - BLOCK_SIDE)))
        out[y:y + BLOCK_SIDE, x:x + BLOCK_SIDE] = 128
    return out


def gaussian_noise(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise of variance `level` on intensities scaled to [0, 1]."""
    x = img.astype(np.float32) / 255 + rng.normal(0, np.sqrt(level), img.shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def gaussian_blur(img: np.ndarray, level: int) -> np.ndarray:
    """Gaussian blur with a `level` x `level` kernel (sigma from the kernel size, as OpenCV does)."""
    return cv2.GaussianBlur(img, (int(level), int(level)), 0)


def pixelation(img: np.ndarray, level: int) -> np.ndarray:
    """Area-downscale by `level`, then nearest-neighbour upscale back to the original size."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // int(level)), max(1, h // int(level))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def downscale(img: np.ndarray, factor: float) -> np.ndarray:
    """The media delivered smaller: the detector and the crop see fewer pixels."""
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def cap_long_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    return downscale(img, side / max(h, w))


def perturb_frame(img: np.ndarray, distortion: str, level, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 frame under a per-frame distortion (codecs are applied per video instead)."""
    if distortion == "colour_saturation":
        return colour_saturation(img, level)
    if distortion == "colour_contrast":
        return colour_contrast(img, level)
    if distortion == "block_wise":
        return block_wise(img, level, rng)
    if distortion == "gaussian_noise":
        return gaussian_noise(img, level, rng)
    if distortion == "gaussian_blur":
        return gaussian_blur(img, level)
    if distortion == "pixelation":
        return pixelation(img, level)
    if distortion == "jpeg_quality":
        return jpeg(img, level)
    if distortion == "downscale":
        return downscale(img, level)
    if distortion == "telegram" and level in TELEGRAM_PHOTO_SIDE:
        return jpeg(cap_long_side(img, TELEGRAM_PHOTO_SIDE[level]), TELEGRAM_JPEG_QUALITY)
    if distortion in ("h264_crf", "telegram"):
        return img
    raise ValueError(f"unknown distortion {distortion!r}; known: {sorted(LEVELS)}")


def _video_frames(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 25.0
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], fps


def _even(frame: np.ndarray) -> np.ndarray:
    # yuv420p needs even sides.
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def _write_h264(path: Path, frames: list[np.ndarray], fps: float, crf: int | None = None,
                kbps: int | None = None) -> None:
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            first = _even(frames[0])
            stream.width, stream.height = first.shape[1], first.shape[0]
            stream.pix_fmt = "yuv420p"
            options = {"preset": "veryfast", "x264-params": "threads=1:lookahead-threads=1:mbtree=0"}
            if kbps is not None:
                stream.bit_rate = int(kbps * 1000)
            else:
                options["crf"] = str(CLEAN_CRF if crf is None else crf)
            stream.options = options
            stream.codec_context.thread_count = 1
            for f in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(f)), format="rgb24")))
            container.mux(stream.encode(None))


def perturb_file(src: Path, dst: Path, media_type: str, distortion: str, level, seed: int) -> Path:
    """Write a perturbed copy of one image or video; returns the path written (suffix may change)."""
    rng = np.random.default_rng(seed)
    if media_type == "image":
        img = np.asarray(Image.open(src).convert("RGB"))
        out = perturb_frame(img, distortion, level, rng)
        # Lossless PNG unless the distortion is itself a JPEG re-encode (then keep its bytes' effect).
        dst = dst.with_suffix(".png")
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="PNG")
        with atomic_path(dst) as tmp:
            tmp.write_bytes(buf.getvalue())
        return dst
    frames, fps = _video_frames(src)
    if distortion == "telegram" and level in TELEGRAM_VIDEO_KBPS_720P:
        # The bitrate budget is per 1280x720 frame; scale it to this video's pixel count.
        h, w = frames[0].shape[:2]
        kbps = max(20, round(TELEGRAM_VIDEO_KBPS_720P[level] * h * w / (1280 * 720)))
        _write_h264(dst, [cap_long_side(f, 1280) for f in frames], fps, kbps=kbps)
    elif distortion == "h264_crf":
        _write_h264(dst, frames, fps, crf=int(level))
    else:
        _write_h264(dst, [perturb_frame(f, distortion, level, rng) for f in frames], fps)
    return dst
