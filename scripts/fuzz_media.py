"""Coverage-guided fuzzing (atheris / libFuzzer) of media sniffing and image decoding.

    python scripts/fuzz_media.py [CORPUS_DIR] -max_total_time=60 [other libFuzzer flags]

Each input is written to a file and given to `sniff_media_type` (must name a known type) and
`read_image_frames` (must decode or raise DecodeError; anything else is a crash). With
`--video`, inputs are also decoded as video (`read_video_frames`, 2 s limit per input; it must
never raise). Seeds (small valid JPEG, PNG, GIF, WebP, BMP, TIFF files) are written to the
corpus folder when it is empty or not given, with multi-page and Big TIFF, AVIF, and HEIF and
JPEG XL when their optional decoders are installed (datasets/still_formats.py). A crash leaves the input as `crash-*` under
`-artifact_prefix` (default: the current folder) and exits non-zero. Install with
`pip install -e ".[fuzz]"` (atheris: Linux x86_64, CPython 3.11).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import PIL.Image  # noqa: F401 - instrumented so its Python parsers guide the fuzzer

    from faketrace.datasets import media, still_formats

SNIFF_VALUES = ("image", "video", "unknown", "empty")
# The product decodes images up to 64 megapixels, which legitimately takes a gigabyte or more;
# the fuzzer's -rss_limit_mb is there to catch leaks and runaway allocations, so inputs are held
# to 4 megapixels here (still refused from the header above that, as in the product).
FUZZ_MAX_PIXELS = 4_000_000
media.MAX_IMAGE_PIXELS = FUZZ_MAX_PIXELS
PIL.Image.MAX_IMAGE_PIXELS = FUZZ_MAX_PIXELS
_SCRATCH = Path(tempfile.mkdtemp(prefix="faketrace-fuzz-media-")) / "input"
_VIDEO = False


def write_seeds(folder: Path) -> int:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    seeds = []
    for fmt, mode in (("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "P"), ("PNG", "RGBA"), ("GIF", "P"),
                      ("WEBP", "RGB"), ("BMP", "RGB"), ("TIFF", "CMYK")):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, fmt)
        seeds.append((f"seed.{mode.lower()}.{fmt.lower()}", buf.getvalue()))
    frames = [Image.fromarray(np.roll(rgb, i, axis=1)) for i in range(3)]
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
        seeds.append((f"seed.animated.{fmt.lower()}", buf.getvalue()))
    # The formats decoded on purpose beyond those (datasets/still_formats.py), optional ones when installed.
    seeds += [(f"seed.{name}", data) for name, data in still_formats.fuzz_seeds(rgb).items()]
    for name, data in seeds:
        (folder / name).write_bytes(data)
    return len(seeds)


def test_one_input(data: bytes) -> None:
    _SCRATCH.write_bytes(data)
    kind = media.sniff_media_type(_SCRATCH)
    if kind not in SNIFF_VALUES:
        raise AssertionError(f"sniff_media_type returned {kind!r}")
    try:
        media.read_image_frames(_SCRATCH, max_frames=2)
    except media.DecodeError:
        pass
    if _VIDEO:
        media.read_video_frames(_SCRATCH, 4, time_limit_s=2.0)


def main(argv: list[str]) -> None:
    global _VIDEO
    _VIDEO = "--video" in argv
    argv = [a for a in argv if a != "--video"]
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if not corpus:
        seeds = Path(tempfile.mkdtemp(prefix="faketrace-fuzz-corpus-"))
        argv.append(str(seeds))
        corpus = [str(seeds)]
    for folder in corpus:
        if not Path(folder).exists() or not any(Path(folder).iterdir()):
            print(f"fuzz_media: wrote {write_seeds(Path(folder))} seed files to {folder}", file=sys.stderr)
    os.makedirs(_SCRATCH.parent, exist_ok=True)
    warnings.simplefilter("ignore")  # Pillow warns about every corrupt header: noise here, not findings
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
