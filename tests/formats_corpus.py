"""Generated still images of every format the scan decodes on purpose (datasets/still_formats.py),
shared by tests/test_still_formats.py, the hostile-media table and the fuzz seeds."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

HAVE_HEIF = importlib.util.find_spec("pillow_heif") is not None
HAVE_JXL = importlib.util.find_spec("pillow_jxl") is not None


def _register() -> None:
    from faketrace.datasets import still_formats

    still_formats.register_optional_decoders()


def encoded(im: Image.Image, fmt: str, pages: list[Image.Image] = (), **kw) -> bytes:
    """`im` (and further `pages` / frames) encoded as `fmt` in memory."""
    _register()
    buf = io.BytesIO()
    if pages:
        im.save(buf, fmt, save_all=True, append_images=list(pages), **kw)
    else:
        im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def still_format_files(face: Image.Image) -> dict[str, bytes]:
    """name -> bytes: the face in every supported format; multi-page files whose face is on a later page."""
    face = face.convert("RGB")
    blank = noise(face.size, 1)
    files = {"face.jpg": encoded(face, "JPEG", quality=95), "face.png": encoded(face, "PNG"),
             "face.gif": encoded(face.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
             "face.webp": encoded(face, "WEBP", quality=95), "face.bmp": encoded(face, "BMP"),
             "face.tiff": encoded(face, "TIFF", compression="tiff_lzw"),
             # A scanned bundle: the face only on the second of three pages, each page its own size.
             "pages.tiff": encoded(blank, "TIFF", pages=[face, noise((97, 61), 2)], compression="tiff_deflate"),
             "face.bigtiff": encoded(face, "TIFF", big_tiff=True),
             "face.avif": encoded(face, "AVIF", quality=90),
             "sequence.avif": encoded(face, "AVIF", pages=[face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), face],
                                      duration=100, quality=90)}
    if HAVE_HEIF:
        files["face.heic"] = encoded(face, "HEIF", quality=90)
        files["pages.heic"] = encoded(blank, "HEIF", pages=[face], quality=90)
    if HAVE_JXL:
        files["face.jxl"] = encoded(face, "JXL", quality=95)
    return files


def write_still_formats(folder: Path, face_image: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = still_format_files(Image.open(face_image))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _tiff_with_page_bomb(first: Image.Image) -> bytes:
    """A two-page TIFF whose second page declares 20000 x 20000 pixels (its first page is fine)."""
    import struct

    data = bytearray(encoded(first, "TIFF", pages=[first]))
    at = struct.unpack("<I", data[4:8])[0]
    at = struct.unpack("<I", data[at + 2 + 12 * struct.unpack("<H", data[at:at + 2])[0]:][:4])[0]  # second IFD
    for k in range(struct.unpack("<H", data[at:at + 2])[0]):
        entry = at + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            data[entry + 8:entry + 12] = struct.pack("<H", 20000) + b"\0\0" if kind == 3 else struct.pack("<I", 20000)
    return bytes(data)


# The hostile-media table's entries for the formats added on purpose: name -> (scan status,
# preprocessing outcome); optional decoders' entries only where they are installed.
HOSTILE_STILLS = {
    "multipage.tiff": ("scanned", "ok"),
    "truncated_pages.tiff": ("decode_error", "decode_error"),
    "page_bomb.tiff": ("oversized", "decode_error"),  # page 1 declares 20000 x 20000: refused, not decoded
    "photo.avif": ("scanned", "ok"),
    "truncated.avif": ("decode_error", "decode_error"),
    **({"photo.heic": ("scanned", "ok"), "truncated.heic": ("decode_error", "decode_error")} if HAVE_HEIF else {}),
    **({"photo.jxl": ("scanned", "ok"), "truncated.jxl": ("decode_error", "decode_error")} if HAVE_JXL else {}),
}


def write_hostile_stills(d: Path, face_image: Path) -> None:
    """HOSTILE_STILLS' files in `d`, made from the demo face."""
    face = Image.open(face_image).convert("RGB")
    pages = encoded(face, "TIFF", pages=[noise(face.size, 5)])
    (d / "multipage.tiff").write_bytes(pages)
    (d / "truncated_pages.tiff").write_bytes(pages[: len(pages) // 3])
    (d / "page_bomb.tiff").write_bytes(_tiff_with_page_bomb(face))
    for name, fmt, have in (("avif", "AVIF", True), ("heic", "HEIF", HAVE_HEIF), ("jxl", "JXL", HAVE_JXL)):
        if have:
            data = encoded(face, fmt, quality=90)
            (d / f"photo.{name}").write_bytes(data)
            (d / f"truncated.{name}").write_bytes(data[: len(data) // 2])
