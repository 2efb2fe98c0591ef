"""Media decoding: sniff the type from the bytes, decode images and sampled video frames.

Video frame counts in containers are not trusted (a truncated file reports the full count and
stops early): frames are decoded, counted, and the ones actually decoded are returned together
with how many were expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Refuse decompression bombs before decoding pixels.
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def sniff_media_type(path: str | Path) -> str:
    """'image', 'video' or 'unknown', decided from the first bytes, never from the extension."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "empty"
    for magic, _ in _IMAGE_MAGIC:
        if head.startswith(magic):
            return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "image" if brand in (b"heic", b"heix", b"avif", b"mif1") else "video"
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    return "unknown"


class DecodeError(RuntimeError):
    """A file that cannot be decoded; the message says why."""


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 array, EXIF orientation applied, size checked before pixels are decoded."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise DecodeError(f"image declares {w}x{h} pixels, above the limit of {MAX_IMAGE_PIXELS}")
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except DecodeError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"cannot decode image: {exc}") from exc


@dataclass
class DecodedVideo:
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> RGB uint8
    expected_frames: int | None = None  # what the container claims
    decoded_frames: int = 0  # what actually decoded
    fps: float | None = None
    error: str | None = None  # set when decoding stopped early


def uniform_indices(n_frames: int, n_samples: int) -> list[int]:
    """`n_samples` frame indices spread evenly over `n_frames` (all frames if fewer)."""
    if n_frames <= 0:
        return []
    if n_frames <= n_samples:
        return list(range(n_frames))
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, n_samples)})


def count_video_frames(path: str | Path) -> tuple[int, int | None, float | None]:
    """Decode every frame once (without converting pixels) and count them.

    Returns (decoded count, container-claimed count, fps).
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        claimed = stream.frames or None
        fps = float(stream.average_rate) if stream.average_rate else None
        n = 0
        try:
            for _ in container.decode(stream):
                n += 1
        except av.error.FFmpegError:
            pass
    return n, claimed, fps


def read_video_frames(path: str | Path, n_samples: int) -> DecodedVideo:
    """Decode a video and keep `n_samples` uniformly spaced frames among those that decode.

    Two passes: the first counts decodable frames (the container count is not trusted), the
    second keeps the sampled ones. Small demo and evidence videos make this cheap; long videos
    get seeking in the preprocessing issue.
    """
    import av

    out = DecodedVideo()
    try:
        decoded, claimed, fps = count_video_frames(path)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        out.error = f"cannot open video: {exc}"
        return out
    out.expected_frames, out.decoded_frames, out.fps = claimed, decoded, fps
    if decoded == 0:
        out.error = "no frame could be decoded"
        return out
    if claimed and decoded < claimed:
        out.error = f"decoding stopped after {decoded} of {claimed} frames"
    wanted = set(uniform_indices(decoded, n_samples))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out.frames[i] = frame.to_ndarray(format="rgb24")
                if i >= max(wanted):
                    break
        except av.error.FFmpegError as exc:
            out.error = out.error or f"decoding failed: {exc}"
    return out
