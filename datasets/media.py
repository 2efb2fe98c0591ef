"""Media decoding: sniff the type from the bytes, decode images and sampled video frames.

Video frame counts in containers are not trusted (a truncated file reports the full count and
stops early): frames are decoded, counted, and the ones actually decoded are returned together
with how many were expected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import GifImagePlugin, Image, ImageOps

from faketrace.datasets import still_formats
from faketrace.datasets.io import open_readonly

# Refuse decompression bombs before decoding pixels.
MAX_IMAGE_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Multi-page stills (TIFF, HEIF collections): every page is scored, up to this many, and the pages
# decoded together stay within the item's pixel budget; pages past either limit are counted, not decoded.
MAX_PAGES = 100
# GIF frames after the first stay palette images (1 byte a pixel) while the palette does not change,
# instead of Pillow's default of RGBA from the second frame on (4 bytes a pixel): a GIF of huge
# frames then costs a quarter of the memory; the pixels converted to RGB are the same.
GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
# Pixels one item may decode in all (frames x area, sampled frames only): an animation or a video
# of huge frames gets fewer frames sampled, said in the item's decode note. As many as the largest
# single image allowed: 64 M RGB pixels are 192 MB, which the decoder process and then the scan
# process (the frames travel pickled) each hold two or three times over at their peak.
MAX_ITEM_PIXELS = MAX_IMAGE_PIXELS


def frames_within_budget(width: int, height: int, wanted: int, max_item_pixels: int | None) -> tuple[int, str | None]:
    """How many frames of `width` x `height` fit the item's pixel budget (at least one), and a note
    when that is fewer than `wanted`."""
    if not max_item_pixels or wanted <= 0:
        return wanted, None
    area = max(1, int(width) * int(height))
    if area > max_item_pixels:
        raise ImageTooLarge(f"one frame of {width}x{height} pixels is above the item's pixel budget of "
                            f"{max_item_pixels} (scan.max_item_pixels)")
    fits = max(1, max_item_pixels // area)
    if fits >= wanted:
        return wanted, None
    return fits, (f"{fits} of {wanted} frames sampled: {wanted} frames of {width}x{height} would be above the "
                  f"item's pixel budget of {max_item_pixels} (scan.max_item_pixels)")


def _capped(indices: list[int], cap: int | None) -> list[int]:
    """At most `cap` of `indices`, spread evenly over them."""
    if cap is None or len(indices) <= cap:
        return indices
    return [indices[i] for i in uniform_indices(len(indices), cap)]

# Optional decoders (HEIF, JPEG XL) join Pillow here when installed, in this process and in every
# decoder child (each imports this module); datasets/still_formats.py says which and why optional.
still_formats.register_optional_decoders()


def _head(path: str | Path) -> bytes:
    with open_readonly(path) as fh:
        return fh.read(64)


def sniff_media_type(path: str | Path) -> str:
    """'image', 'video' or 'unknown', decided from the first bytes, never from the extension."""
    head = _head(path)
    if not head:
        return "empty"
    if still_formats.identify(head) is not None:
        return "image"
    if head[4:8] == b"ftyp":
        return "video"
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    return "unknown"


def sniff_still_format(path: str | Path) -> still_formats.StillFormat | None:
    """The still format a file's first bytes name (JPEG, TIFF, HEIF, ...), or None."""
    return still_formats.identify(_head(path))


class DecodeError(RuntimeError):
    """A file that cannot be decoded; the message says why."""


class ImageTooLarge(DecodeError):
    """An image that declares more pixels than the limit: refused before its pixels are decoded."""


# The IJG standard luminance quantisation table at quality 50: a JPEG's own table divided by
# it says how hard the file was compressed (the libjpeg scaling rule, inverted).
_IJG_LUMA_Q50_SUM = 3710


def jpeg_quality_estimate(im: Image.Image) -> int | None:
    """Approximate IJG quality (1-100) of a JPEG from its luminance table; None for other formats."""
    tables = getattr(im, "quantization", None)
    if im.format != "JPEG" or not tables or 0 not in tables:
        return None
    scale = 100.0 * sum(tables[0]) / _IJG_LUMA_Q50_SUM  # libjpeg: scale = 5000/q (q<50) or 200-2q
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(round(min(100.0, max(1.0, quality))))


@dataclass
class DecodedImage:
    frames: dict[int, np.ndarray]  # frame index -> RGB uint8 (one frame unless animated or paged)
    width: int
    height: int
    format: str | None
    n_frames: int  # frames in the file (animated GIF / WebP / PNG / AVIF, pages of a TIFF or HEIF)
    jpeg_quality: int | None
    note: str | None = None  # fewer frames or pages decoded than asked, to keep within the limits
    pages: bool = False  # the frames are independent pictures (TIFF, HEIF pages), not an animation
    pages_not_decoded: int = 0  # pages past MAX_PAGES or the pixel budget: counted, not decoded


def _paged(im: Image.Image) -> bool:
    fmt = still_formats.by_pillow_name(im.format)
    return fmt is not None and fmt.frames == "pages"


def read_image_frames(path: str | Path, max_frames: int = 1, max_item_pixels: int | None = None) -> DecodedImage:
    """Decode an image: up to `max_frames` evenly spread frames of an animation, or every page of a
    multi-page still (TIFF, HEIF), up to MAX_PAGES pages.

    Every frame's or page's declared size is checked against the pixel limit before its pixels are
    decoded (a TIFF's pages each have their own size); EXIF orientation is applied; every frame is
    converted to RGB (palette, grayscale, CMYK, 16-bit and alpha images included).
    `max_item_pixels` bounds frames x area: fewer frames are sampled (and the note says so) rather
    than more pixels decoded; pages are decoded in order until the budget (MAX_IMAGE_PIXELS without
    one) is spent, and the rest counted. Only the sampled frames are converted.
    """
    try:
        with open_readonly(path) as fh, Image.open(fh) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(f"image declares {w}x{h} pixels, above the limit of {MAX_IMAGE_PIXELS}")
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            fmt, quality = im.format, jpeg_quality_estimate(im)
            pages = n_frames > 1 and _paged(im)
            if pages:
                indices, note = list(range(min(n_frames, MAX_PAGES))), None
            else:
                wanted = len(uniform_indices(n_frames, max(1, max_frames)))
                fits, note = frames_within_budget(w, h, wanted, max_item_pixels)
                indices = uniform_indices(n_frames, fits)
            frames, budget = {}, max_item_pixels or MAX_IMAGE_PIXELS
            total_budget = budget
            not_decoded = n_frames - len(indices) if pages else 0
            # Only an image with an orientation tag is transposed (exif_transpose copies the frame).
            turn = im.getexif().get(0x0112, 1) not in (None, 1)
            for i in indices:
                im.seek(i)
                pw, ph = im.size
                if pw * ph > MAX_IMAGE_PIXELS:
                    raise ImageTooLarge(f"{'page' if pages else 'frame'} {i} declares {pw}x{ph} pixels, above the "
                                        f"limit of {MAX_IMAGE_PIXELS}")
                if pages and frames and pw * ph > budget:
                    not_decoded += 1  # the pages decoded so far already hold the item's pixel budget
                    continue
                budget -= pw * ph
                frames[i] = _rgb(ImageOps.exif_transpose(im) if turn else im)
            first = frames[min(frames)]
            if pages and not_decoded:
                note = (f"{not_decoded} of {n_frames} pages not decoded (more than {MAX_PAGES} pages, or past the "
                        f"item's pixel budget of {total_budget})")
            return DecodedImage(frames, int(first.shape[1]), int(first.shape[0]), fmt, n_frames, quality, note,
                                pages=pages, pages_not_decoded=not_decoded)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image declares more pixels than the limit of {MAX_IMAGE_PIXELS} ({exc})") from exc
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise DecodeError(f"cannot decode image: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        # Pillow's parsers also raise TypeError, struct.error, IndexError, ... on corrupt headers
        # (the fuzzer found a TIFF whose frame count raises TypeError). Any of them is a property of
        # this file, so it becomes this item's decode failure, never the end of the run.
        raise DecodeError(f"cannot decode image ({type(exc).__name__} in the decoder: {exc})") from exc


def _rgb(im: Image.Image) -> np.ndarray:
    """RGB uint8 of any mode. 16- and 32-bit grey is scaled down, not clipped at 255 (which whitens it)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if grey.max(initial=0) <= 65535 else float(grey.max())
        grey = np.clip(np.round(grey / top * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if im.mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float64))
        span = float(grey.max() - grey.min()) or 1.0
        grey = np.round((grey - grey.min()) / span * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 array of an image's first frame, EXIF orientation applied, size checked first."""
    return read_image_frames(path).frames[0]


@dataclass
class DecodedVideo:
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> RGB uint8
    expected_frames: int | None = None  # what the container claims
    decoded_frames: int = 0  # what actually decoded
    fps: float | None = None
    error: str | None = None  # set when decoding stopped early or failed
    sampled: list[int] = field(default_factory=list)  # frame indices chosen among the decoded ones
    failed: dict[int, str] = field(default_factory=dict)  # sampled frames the second pass could not deliver
    timed_out: bool = False
    seeks: int = 0  # how many times the second pass seeked instead of decoding through
    note: str | None = None  # fewer frames sampled than asked, to keep within the pixel budget
    decoder: str = "cpu"  # where the frames were decoded: cpu (FFmpeg's software decoder) or cuda (NVDEC)
    decoder_note: str | None = None  # why a hardware decoder that was asked for did not decode them


class DecodeTimeout(DecodeError):
    """Decoding a video took longer than its time limit."""


def uniform_indices(n_frames: int, n_samples: int) -> list[int]:
    """`n_samples` frame indices spread evenly over `n_frames` (all frames if fewer)."""
    if n_frames <= 0:
        return []
    if n_frames <= n_samples:
        return list(range(n_frames))
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, n_samples)})


def sample_indices(n_frames: int, sampling: str = "uniform", n_samples: int = 32, every_k: int = 1) -> list[int]:
    """Frame indices to keep: `uniform` (n_samples spread evenly) or `every_k` (0, k, 2k, ...)."""
    if sampling == "uniform":
        return uniform_indices(n_frames, n_samples)
    if sampling == "every_k":
        if every_k < 1:
            raise ValueError(f"every_k must be >= 1, got {every_k}")
        return list(range(0, max(n_frames, 0), every_k))
    raise ValueError(f"unknown frame sampling {sampling!r}; expected uniform or every_k")


def upright_rgb(frame) -> np.ndarray:
    """RGB array of a decoded video frame as it is meant to be shown.

    Phones record portrait video as landscape frames plus a display matrix; without applying it
    faces lie on their side and the detector misses them. `frame.rotation` is counter-clockwise
    degrees, as np.rot90 turns.
    """
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round(getattr(frame, "rotation", 0) or 0)) // 90 % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


# Where video frames are decoded (face.decode): `cpu`, FFmpeg's software decoders (the default and
# the reference); `cuda`, NVDEC through PyAV's hwaccel, strictly (a codec or file NVDEC cannot take
# is decoded again on the CPU); `auto`, NVDEC where FFmpeg can use it for the codec and its software
# decoder otherwise, in the same pass. Whenever the hardware path is not what decoded a video,
# DecodedVideo.decoder_note says why. H.264/HEVC decoding is exact by the standards, so both give
# the same pictures; the hardware frames are copied back to memory before conversion to RGB.
DECODE_MODES = ("cpu", "auto", "cuda")


def _hwaccel(decode: str):
    """PyAV's hardware-decoding settings for a decode mode (None for cpu)."""
    if decode not in DECODE_MODES:
        raise ValueError(f"unknown video decode mode {decode!r}; expected one of {', '.join(DECODE_MODES)}")
    if decode == "cpu":
        return None
    from av.codec.hwaccel import HWAccel

    return HWAccel("cuda", allow_software_fallback=decode == "auto")


def _open_video(fh, hwaccel):
    import av

    return av.open(fh, hwaccel=hwaccel) if hwaccel is not None else av.open(fh)


@dataclass
class _Scan:
    """What the counting pass learnt: one entry per frame that decoded, in presentation order."""

    pts: list[int | None] = field(default_factory=list)
    keyframe: list[bool] = field(default_factory=list)
    claimed: int | None = None
    fps: float | None = None
    error: str | None = None
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # frames converted during the count
    on_hardware: bool = False  # the decoder ran on the GPU (not FFmpeg's software fallback)
    codec: str | None = None


def _deadline_check(deadline: float | None, what: str, limit: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DecodeTimeout(f"time limit of {limit:g}s exceeded {what}")


def _decoded_frames(container, stream, bad_packets: list[str]):
    """Frames of a stream, decoding packet by packet: a packet the decoder rejects (a torn last
    packet, a damaged one) is noted in `bad_packets` and skipped instead of ending the video."""
    import av

    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            bad_packets.append(str(exc))
            continue
        yield from frames


def _scan_video(path: str | Path, deadline: float | None, limit: float | None,
                keep: Callable[[int | None], set[int]] | None = None, hwaccel=None) -> _Scan:
    """Decode every frame once and record pts and key frames.

    `keep(claimed)` names the frames worth converting to RGB on the way (the sample the container's
    claimed count would give); other frames stay in the decoder's format.
    """
    import av

    scan = _Scan()
    with open_readonly(path) as fh, _open_video(fh, hwaccel) as container:
        if not container.streams.video:
            raise DecodeError("the file has no video stream")
        stream = container.streams.video[0]
        scan.codec = stream.codec_context.name
        scan.claimed = stream.frames or None
        scan.fps = float(stream.average_rate) if stream.average_rate else None
        wanted = keep(scan.claimed) if keep else set()
        bad_packets: list[str] = []
        try:
            for frame in _decoded_frames(container, stream, bad_packets):
                scan.pts.append(frame.pts)
                scan.keyframe.append(bool(frame.key_frame))
                if len(scan.pts) - 1 in wanted:
                    scan.kept[len(scan.pts) - 1] = upright_rgb(frame)
                if len(scan.pts) % 16 == 0:
                    _deadline_check(deadline, f"while counting frames ({len(scan.pts)} decoded)", limit)
        except av.error.FFmpegError as exc:
            scan.error = f"decoding stopped after {len(scan.pts)} frames: {exc}"
        if bad_packets and not scan.error:
            scan.error = f"{len(bad_packets)} packets could not be decoded (first: {bad_packets[0]})"
        # Asked after decoding: the codec context is opened, and its hardware set up, on the first packet.
        scan.on_hardware = hwaccel is not None and bool(stream.codec_context.is_hwaccel)
    _deadline_check(deadline, f"while counting frames ({len(scan.pts)} decoded)", limit)
    return scan


def read_first_frames(path: str | Path, n_frames: int, time_limit_s: float | None = None) -> DecodedVideo:
    """The first `n_frames` consecutive frames that decode (landmark-sequence models such as LRNet need
    consecutive frames, not a sample spread over the video). One pass; stops as soon as it has them."""
    import av

    out = DecodedVideo()
    deadline = time.monotonic() + time_limit_s if time_limit_s else None
    try:
        with open_readonly(path) as fh, av.open(fh) as container:
            if not container.streams.video:
                raise DecodeError("the file has no video stream")
            stream = container.streams.video[0]
            out.expected_frames = stream.frames or None
            out.fps = float(stream.average_rate) if stream.average_rate else None
            bad_packets: list[str] = []
            try:
                for i, frame in enumerate(_decoded_frames(container, stream, bad_packets)):
                    out.frames[i] = upright_rgb(frame)
                    out.decoded_frames = i + 1
                    if i + 1 >= n_frames:
                        break
                    if (i + 1) % 16 == 0:
                        _deadline_check(deadline, f"while reading consecutive frames ({i + 1} decoded)", time_limit_s)
            except av.error.FFmpegError as exc:
                out.error = f"decoding stopped after {out.decoded_frames} frames: {exc}"
    except DecodeTimeout as exc:
        out.error, out.timed_out = str(exc), True
    except DecodeError as exc:
        out.error = str(exc)
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
        out.error = f"cannot open video: {exc}"
    out.sampled = sorted(out.frames)
    return out


def _read_sampled(path: str | Path, targets: list[int], scan: _Scan, out: DecodedVideo, deadline: float | None,
                  limit: float | None, hwaccel=None) -> bool:
    """Second pass: decode the sampled frames, seeking past whole groups of pictures.

    A frame is identified by its pts as the counting pass saw it, so what was decoded is verified
    to be the frame that was asked for. Seeking only happens when the target's key frame lies
    ahead of the current position (it never decodes more than reading straight through would).
    Returns False when the file does not behave the same on the second pass (the caller then
    reads straight through without seeking).
    """
    import av

    pts = scan.pts
    index_of_pts = {p: k for k, p in enumerate(pts)}
    seekable = None not in index_of_pts and len(index_of_pts) == len(pts)
    key_before = []
    last_key = 0
    for k, is_key in enumerate(scan.keyframe):
        last_key = k if is_key else last_key
        key_before.append(last_key)
    with open_readonly(path) as fh, _open_video(fh, hwaccel) as container:
        stream = container.streams.video[0]
        decoded = _decoded_frames(container, stream, [])
        current = -1
        try:
            for target in targets:
                position = -1 if current is None else current
                if seekable and key_before[target] > position + 1:
                    container.seek(pts[target], stream=stream, backward=True, any_frame=False)
                    decoded = _decoded_frames(container, stream, [])
                    out.seeks += 1
                    current = None  # unknown until the first frame after the seek
                for frame in decoded:
                    k = index_of_pts.get(frame.pts) if seekable else (current + 1)
                    if k is None or (current is not None and k <= current):
                        return False  # a pts the first pass did not see, or out of order
                    current = k
                    if k == target:
                        out.frames[k] = upright_rgb(frame)
                        break
                    if k > target:
                        return False  # a seek landed past the frame
                    if k % 16 == 0:
                        _deadline_check(deadline, f"while reading sampled frames (at frame {k})", limit)
                else:
                    out.failed[target] = "frame decoded on the counting pass but not on the second pass"
                _deadline_check(deadline, f"while reading sampled frames (at frame {target})", limit)
        except av.error.FFmpegError as exc:
            for t in targets:
                if t not in out.frames:
                    out.failed.setdefault(t, f"decoding failed on the second pass: {exc}")
    return True


def _probe_size(path: str | Path) -> tuple[int, int]:
    """Width and height the video stream declares (no frame decoded)."""
    import av

    with open_readonly(path) as fh, av.open(fh) as container:
        if not container.streams.video:
            raise DecodeError("the file has no video stream")
        ctx = container.streams.video[0].codec_context
        return int(ctx.width or 0), int(ctx.height or 0)


def _hardware_scan(path: str | Path, deadline: float | None, limit: float | None, keep, hwaccel, decode: str,
                   out: DecodedVideo) -> _Scan | None:
    """The counting pass on the GPU's decoder; None (and out.decoder_note) when the CPU must do it.

    A time-out is not retried on the CPU: the video's time budget is spent either way.
    """
    import av

    try:
        scan = _scan_video(path, deadline, limit, keep, hwaccel)
    except DecodeTimeout:
        raise
    except (av.error.FFmpegError, DecodeError, IndexError, OSError, ValueError, RuntimeError) as exc:
        # No device (no GPU, no driver), or the hardware could not open this stream.
        out.decoder_note = (f"{decode} decoding unavailable: PyAV could not open the stream on a CUDA device "
                            f"({type(exc).__name__}: {exc}); decoded on the CPU")
        return None
    if scan.error:
        out.decoder_note = f"{decode} decoding reported an error ({scan.error}); decoded again on the CPU"
        return None
    if not scan.on_hardware:
        # decode=auto: FFmpeg has no hardware decoder for this codec and decoded it in software.
        out.decoder_note = f"no {decode} hardware decoder for codec {scan.codec}; FFmpeg decoded it in software"
        return scan
    out.decoder = "cuda"
    return scan


def read_video_frames(path: str | Path, n_samples: int = 32, *, sampling: str = "uniform", every_k: int = 1,
                      time_limit_s: float | None = None, single_pass: bool = True,
                      max_item_pixels: int | None = None, decode: str = "cpu") -> DecodedVideo:
    """Decode a video and keep the sampled frames among those that actually decode.

    Two passes: the first counts decodable frames (the container count is not trusted: a
    truncated file claims its full length and stops early) and notes each frame's pts and key
    frames; the second seeks to the sampled frames and checks by pts that each is the one asked
    for. Sampled frames that do not come out are listed in `failed` with the reason. The whole
    video is given `time_limit_s` seconds; past it, `timed_out` is set and what was read is kept.

    With `single_pass` (the default) the counting pass already keeps the frames that the
    container's claimed count would sample; when the count it then finds gives the same sample
    (the container told the truth, or every-k sampling of a prefix), the second pass is skipped.

    `decode` (DECODE_MODES) tries the GPU's decoder first. Its result is kept only when it
    decoded every packet without complaint; otherwise (no device, a codec NVDEC lacks, an error
    mid-way) the video is decoded on the CPU as with `cpu`, and `decoder_note` says why.
    """
    import av

    hwaccel = _hwaccel(decode)
    out = DecodedVideo()
    deadline = time.monotonic() + time_limit_s if time_limit_s else None
    cap = None
    if max_item_pixels:
        # Frames x area within the budget: fewer frames for huge ones (before any frame is decoded).
        try:
            width, height = _probe_size(path)
        except DecodeError as exc:
            out.error = str(exc)
            return out
        except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
            out.error = f"cannot open video: {exc}"
            return out
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageTooLarge(f"video frames of {width}x{height} pixels, above the limit of {MAX_IMAGE_PIXELS}")
        if width and height:
            frames_within_budget(width, height, 1, max_item_pixels)  # raises when one frame is above it
            cap = max(1, max_item_pixels // (width * height))
    try:
        keep = (lambda claimed: set(_capped(sample_indices(claimed or 0, sampling, n_samples, every_k), cap))) \
            if single_pass else None
        scan = _hardware_scan(path, deadline, time_limit_s, keep, hwaccel, decode, out) if hwaccel else None
        if scan is None or not scan.on_hardware:
            hwaccel = None  # the second pass decodes where the first one did
        if scan is None:
            scan = _scan_video(path, deadline, time_limit_s, keep)
    except DecodeTimeout as exc:
        out.error, out.timed_out = str(exc), True
        return out
    except DecodeError as exc:
        out.error = str(exc)
        return out
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
        out.error = f"cannot open video: {exc}"
        return out
    decoded = len(scan.pts)
    out.expected_frames, out.decoded_frames, out.fps = scan.claimed, decoded, scan.fps
    if decoded == 0:
        out.error = scan.error or "no frame could be decoded"
        return out
    if scan.claimed and decoded < scan.claimed:
        out.error = f"decoding stopped after {decoded} of {scan.claimed} frames"
    elif scan.error:
        out.error = scan.error
    full = sample_indices(decoded, sampling, n_samples, every_k)
    out.sampled = _capped(full, cap)
    if len(out.sampled) < len(full):
        out.note = (f"{len(out.sampled)} of {len(full)} frames sampled: {len(full)} frames of {width}x{height} would "
                    f"be above the item's pixel budget of {max_item_pixels} (scan.max_item_pixels)")
    if set(out.sampled) <= scan.kept.keys():
        out.frames = {i: scan.kept[i] for i in out.sampled}
        return out
    scan.kept.clear()
    try:
        consistent = _read_sampled(path, out.sampled, scan, out, deadline, time_limit_s, hwaccel)
        if hwaccel is not None and (not consistent or out.failed):
            # The hardware's second pass did not deliver every frame the first one saw: the CPU's does.
            out.decoder_note = (f"{decode} decoding read {len(out.frames)} of {len(out.sampled)} sampled frames on "
                                "the second pass; read them again on the CPU")
            out.decoder, hwaccel = "cpu", None
            out.frames.clear()
            out.failed.clear()
            consistent = _read_sampled(path, out.sampled, scan, out, deadline, time_limit_s)
        if not consistent:
            # The file does not seek reliably: read straight through, counting frames.
            out.frames.clear()
            out.failed.clear()
            scan_no_seek = _Scan(pts=[None] * decoded, keyframe=[False] * decoded)
            _read_sampled(path, out.sampled, scan_no_seek, out, deadline, time_limit_s)
    except DecodeTimeout as exc:
        out.error, out.timed_out = str(exc), True
    except (av.error.FFmpegError, OSError) as exc:
        out.error = out.error or f"decoding failed: {exc}"
    for t in out.sampled:
        if t not in out.frames and t not in out.failed:
            out.failed[t] = out.error or "not decoded"
    return out


# -- decoding in a child process -------------------------------------------------------------------
class DecoderCrashed(DecodeError):
    """The decoding process died (a native decoder crashed on this file)."""


class ResourceLimit(DecodeError):
    """The decoding process went past its memory limit (killed by us) or was killed by the system."""


# Resident memory one decoder process may reach before it is killed. RLIMIT_AS cannot be used: a
# process that imports torch maps gigabytes of address space it never touches; resident memory
# is what exhausts a machine. Checked every POLL_S seconds from the scan process.
DECODER_MAX_RSS_BYTES = 1792 << 20
POLL_S = 0.02


def process_memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process, from Linux /proc; (0, 0) where unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 0, 0


def _decode_in_child(fn_name: str, args: tuple, kwargs: dict):
    import os

    from faketrace.datasets.faults import FAULT_ENV, FaultInjector, FaultPlan

    # A test can make the child crash (exit) or hang (pause) here, as a hostile file could.
    global _CHILD_FAULT
    if _CHILD_FAULT is None:
        _CHILD_FAULT = FaultInjector(FaultPlan.parse(os.environ.get(FAULT_ENV)))
    _CHILD_FAULT("in_decoder_process")
    try:
        return globals()[fn_name](*args, **kwargs)
    finally:
        _release_freed_memory()


def _release_freed_memory() -> None:
    """Hand memory freed by the last decode back to the system (glibc keeps it otherwise), so the
    decoder process's resident size, which its memory cap watches, reflects the next item only."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


_CHILD_FAULT = None


def _die_with_parent(parent_pid: int) -> None:
    """Decoder-process initialiser: end this process when the scan that started it ends.

    A scan killed without clean-up would otherwise leave its decoder child waiting forever (and
    holding the terminal's pipes). Linux: PR_SET_PDEATHSIG; elsewhere the pool's own shutdown.
    """
    import ctypes
    import os
    import signal
    import sys

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


class IsolatedDecoder:
    """Runs media decoding in a separate process, so one hostile file costs one item, not the run.

    FFmpeg and the image codecs are native code: a file can make them crash the process or hang
    inside a single call, where no Python-level time limit can interrupt them. Here a crash comes
    back as DecoderCrashed and a call past its hard time limit as DecodeTimeout; either way the
    child is replaced and the next item decodes in a fresh process. `isolate=False` decodes in
    this process (for trusted data and for speed).
    """

    ALLOWED = ("read_image_frames", "read_video_frames", "read_first_frames")

    def __init__(self, isolate: bool = True, grace_s: float = 30.0, max_rss_bytes: int | None = DECODER_MAX_RSS_BYTES):
        self.isolate = isolate
        self.grace_s = grace_s
        self.max_rss_bytes = max_rss_bytes
        self.peak_rss_bytes = 0  # the highest resident memory any decoder process reached (VmHWM)
        self._pool = None

    def __call__(self, fn_name: str, *args, hard_limit_s: float | None = None, **kwargs):
        if fn_name not in self.ALLOWED:
            raise ValueError(f"not a decoding function: {fn_name}")
        if not self.isolate:
            return globals()[fn_name](*args, **kwargs)
        import signal
        from concurrent.futures import TimeoutError as FutureTimeout
        from concurrent.futures.process import BrokenProcessPool

        pool = self._ensure_pool()
        future = pool.submit(_decode_in_child, fn_name, args, kwargs)
        procs = list(getattr(pool, "_processes", {}).values())
        limit = None if hard_limit_s is None else hard_limit_s + self.grace_s
        deadline = None if limit is None else time.monotonic() + limit
        try:
            while True:
                try:
                    result = future.result(timeout=POLL_S)
                    self._note_peak(procs)
                    return result
                except FutureTimeout:
                    rss = self._note_peak(procs)
                    if self.max_rss_bytes and rss > self.max_rss_bytes:
                        self._kill()
                        raise ResourceLimit(
                            f"the decoder process reached {rss / 2**20:.0f} MiB resident, above the limit of "
                            f"{self.max_rss_bytes / 2**20:.0f} MiB (scan.decoder_max_rss_bytes); it was killed and the "
                            "scan went on in a fresh process") from None
                    if deadline is not None and time.monotonic() > deadline:
                        self._kill()
                        raise DecodeTimeout(f"decoding did not finish within {limit:g}s; the decoder process was "
                                            "killed") from None
        except BrokenProcessPool:
            for proc in procs:
                proc.join(timeout=2)  # reaped, so that its exit code says how it ended
            codes = [p.exitcode for p in procs]
            # The pool's own manager thread may reap the process at the same moment: our waitpid then
            # finds no child (exitcode None) until that thread has stored the status. Wait for it.
            settle = time.monotonic() + 2
            while None in codes and time.monotonic() < settle:
                time.sleep(0.01)
                codes = [p.exitcode for p in procs]
            self._kill()
            if -signal.SIGKILL in codes:
                # Not our kill (ours raise above): on Linux the kernel's out-of-memory killer sends SIGKILL.
                raise ResourceLimit("the decoder process was killed by the system (SIGKILL), as the out-of-memory "
                                    "killer does when memory runs out; the scan went on in a fresh process") from None
            raise DecoderCrashed("the decoder process died on this file (a native decoder crash"
                                 f"{f', exit status {codes[0]}' if codes and codes[0] is not None else ''}); "
                                 "the scan continued in a fresh process") from None

    def _note_peak(self, procs) -> int:
        """Current resident bytes of the decoder process(es); their peak is kept in peak_rss_bytes."""
        total = 0
        for proc in procs:
            rss, hwm = process_memory(proc.pid) if proc.pid else (0, 0)
            total += rss
            self.peak_rss_bytes = max(self.peak_rss_bytes, hwm, rss)
        return total

    def _ensure_pool(self):
        if self._pool is None:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the child starts clean, without the parent's ONNX Runtime / torch threads.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_die_with_parent, initargs=(os.getpid(),))
        return self._pool

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            if proc.is_alive():
                proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
