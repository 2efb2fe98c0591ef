"""The still-image formats the scan decodes on purpose, told apart by their first bytes.

Each entry names the library that decodes it, whether its extra frames are an animation (scored
with the video rule) or independent pages (every page scored, the item's score the highest), and,
for optional decoders, the pip extra that installs them and why they are not installed by default.
docs/scan.md renders the same facts for analysts; tests/test_still_formats.py decodes a generated
file of every format through the scan.

Optional decoders (HEIF/HEIC: pillow-heif; JPEG XL: pillow-jxl-plugin) are registered with Pillow
when their package is installed (installing the extra is the opt-in); without them such a file is
`unsupported` with a reason naming the extra, never a decode error. Both are in the fuzz harness
(scripts/fuzz_media.py, tests/test_fuzz.py) and the hostile-media table whenever installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StillFormat:
    name: str
    decoder: str  # the library that decodes it
    frames: str  # "single" | "animation" (frames in time: video rule) | "pages" (independent pictures)
    plugin: str | None = None  # module whose import registers the Pillow opener (optional decoders)
    extra: str | None = None  # `pip install faketrace[EXTRA]`
    why_optional: str = ""
    pillow_names: tuple[str, ...] = ()  # Image.format values Pillow (or the plugin) gives it


JPEG = StillFormat("JPEG", "Pillow (libjpeg-turbo)", "single", pillow_names=("JPEG", "MPO"))
PNG = StillFormat("PNG", "Pillow (zlib); APNG animations included", "animation", pillow_names=("PNG",))
GIF = StillFormat("GIF", "Pillow (pure Python)", "animation", pillow_names=("GIF",))
WEBP = StillFormat("WebP", "Pillow (libwebp); animated WebP included", "animation", pillow_names=("WEBP",))
BMP = StillFormat("BMP", "Pillow (pure Python)", "single", pillow_names=("BMP", "DIB"))
TIFF = StillFormat("TIFF", "Pillow (libtiff); classic and BigTIFF, every page", "pages", pillow_names=("TIFF",))
AVIF = StillFormat("AVIF", "Pillow >= 12 (libavif, bundled in Pillow's wheels); AVIF sequences as animations",
                   "animation", pillow_names=("AVIF",))
HEIF = StillFormat(
    "HEIF/HEIC", "pillow-heif (libheif, libde265)", "pages", plugin="pillow_heif", extra="heif", pillow_names=("HEIF",),
    why_optional=("pillow-heif's own code is BSD-3-Clause, but its binary wheels bundle libheif and libde265 "
                  "(LGPL-3.0) and the x265 encoder (GPL-2.0), so the wheels as a whole are GPL-2.0; and HEVC, "
                  "the codec inside HEIC, is covered by patent pools whose licences may apply where the tool "
                  "is used. faketrace (MIT) therefore does not install it; a lab that accepts both installs "
                  "faketrace[heif]"))
JPEG_XL = StillFormat(
    "JPEG XL", "pillow-jxl-plugin (libjxl through the jpegxl-rs bindings)", "single", plugin="pillow_jxl", extra="jxl",
    pillow_names=("JXL",),
    why_optional="pillow-jxl-plugin is GPL-3.0-or-later; faketrace (MIT) does not install it by default")

SUPPORTED = (JPEG, PNG, GIF, WEBP, BMP, TIFF, AVIF, HEIF, JPEG_XL)

# ISO base media file format brands (the `ftyp` box) of still images: AVIF is AV1 in HEIF, HEIC
# is HEVC in HEIF; `mif1`/`msf1` alone say "some HEIF", so the compatible brands decide.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2"}
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"


def _ftyp_brands(head: bytes) -> list[bytes]:
    """Major and compatible brands of a leading `ftyp` box (as far as `head` holds it)."""
    if head[4:8] != b"ftyp":
        return []
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    return [head[8:12]] + [head[i:i + 4] for i in range(16, end - 3, 4)]


def identify(head: bytes) -> StillFormat | None:
    """The still format of a file from its first bytes (64 are enough), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:2] == b"BM":
        return BMP
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return TIFF
    if head.startswith(b"\xff\x0a") or head.startswith(_JXL_CONTAINER):
        return JPEG_XL
    brands = _ftyp_brands(head)
    if brands:
        if _AVIF_BRANDS & set(brands):
            return AVIF
        if brands[0] in _HEIC_BRANDS:
            return HEIF
    return None


def by_pillow_name(name: str | None) -> StillFormat | None:
    return next((f for f in SUPPORTED if name in f.pillow_names), None)


_REGISTERED: dict[str, str | None] = {}  # plugin module -> None (registered) or why it is not


def register_optional_decoders() -> dict[str, str | None]:
    """Register every installed optional decoder with Pillow (idempotent); returns plugin -> problem."""
    for fmt in SUPPORTED:
        if fmt.plugin is None or fmt.plugin in _REGISTERED:
            continue
        try:
            module = importlib.import_module(fmt.plugin)
            if fmt.plugin == "pillow_heif":
                # HEIF only: Pillow decodes AVIF itself; thumbnails stay off (we decode the primary image).
                module.register_heif_opener(thumbnails=False)
            _REGISTERED[fmt.plugin] = None
        except Exception as exc:  # noqa: BLE001 - a missing or broken optional decoder is a reason, not a crash
            _REGISTERED[fmt.plugin] = f"{type(exc).__name__}: {exc}"
    return dict(_REGISTERED)


def missing_decoder(fmt: StillFormat) -> str | None:
    """Why files of `fmt` cannot be decoded here (the item's `unsupported` reason), or None."""
    if fmt.plugin is None:
        return None
    problem = register_optional_decoders().get(fmt.plugin)
    if problem is None:
        return None
    return (f"a {fmt.name} image; its decoder ({fmt.decoder}) is optional and not installed here "
            f"(pip install 'faketrace[{fmt.extra}]'; why optional: docs/scan.md). Not decoded.")


def decoders() -> list[dict]:
    """What this installation decodes, for docs and the custody record."""
    register_optional_decoders()
    return [{"format": f.name, "decoder": f.decoder, "frames": f.frames,
             "available": missing_decoder(f) is None, "extra": f.extra} for f in SUPPORTED]


def fuzz_seeds(rgb) -> dict[str, bytes]:
    """Small valid files of the formats added on purpose (multi-page and Big TIFF, AVIF and its
    sequences, HEIF and JPEG XL when their decoders are installed), for scripts/fuzz_media.py and
    the hypothesis tests to mutate: no decoder is enabled without being fuzzed."""
    import io

    from PIL import Image

    register_optional_decoders()
    first = Image.fromarray(rgb)
    other = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    jobs = {"pages.tiff": ("TIFF", {"save_all": True, "append_images": [other.resize((9, 7))]}),
            "big.tiff": ("TIFF", {"big_tiff": True}),
            "still.avif": ("AVIF", {"quality": 60}),
            "sequence.avif": ("AVIF", {"save_all": True, "append_images": [other], "duration": 50})}
    if _REGISTERED.get("pillow_heif", "absent") is None:
        jobs["still.heic"] = ("HEIF", {"quality": 60})
        jobs["pages.heic"] = ("HEIF", {"save_all": True, "append_images": [other]})
    if _REGISTERED.get("pillow_jxl", "absent") is None:
        jobs["still.jxl"] = ("JXL", {"quality": 60})
    seeds = {}
    for name, (fmt, kwargs) in jobs.items():
        buf = io.BytesIO()
        first.save(buf, fmt, **kwargs)
        seeds[name] = buf.getvalue()
    return seeds
