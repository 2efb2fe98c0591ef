"""Property-based fuzzing (hypothesis) of the code that reads untrusted bytes and structures.

Media sniffing and image decoding get arbitrary and mutated bytes; the Telegram chat-export parser
gets arbitrary JSON and path strings. Each must fail only in its documented way (DecodeError,
ExportError) and never hand out a path outside the export. The examples are derandomised and
their number and deadline fixed, so the suite is reproducible; `scripts/fuzz_media.py` (atheris)
explores further without those bounds.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from faketrace.datasets.media import DecodedImage, DecodeError, read_image_frames, sniff_media_type
from faketrace.datasets.still_formats import fuzz_seeds as still_format_seeds
from faketrace.forensics import telegram
from faketrace.forensics.telegram import (
    MEDIA_FIELDS,
    ExportError,
    is_placeholder,
    iter_references,
    message_context,
    resolve_media_path,
)

from .conftest import REPO

REGRESSIONS = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.bin"))

SNIFF_VALUES = {"image", "video", "unknown", "empty"}
# Fixed bounds: the suite runs the same examples every time, in seconds.
FAST = settings(max_examples=300, deadline=timedelta(seconds=2), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
DECODE = settings(max_examples=200, deadline=timedelta(seconds=10), derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP",
          b"RIFF\x00\x00\x00\x00AVI ", b"\x00\x00\x00\x18ftypisom", b"\x00\x00\x00\x18ftypheic", b"\x1a\x45\xdf\xa3",
          b"II*\x00", b"MM\x00*", b"II+\x00", b"\x00\x00\x00\x1cftypavif", b"\x00\x00\x00\x1cftypavis",
          b"\x00\x00\x00\x1cftypmif1", b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n"]


def _seed_images() -> list[bytes]:
    """Small valid files of the formats evidence arrives in, to mutate (random bytes rarely parse)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    out = []
    for fmt, mode, kwargs in (("JPEG", "RGB", {"quality": 80}), ("PNG", "RGB", {}), ("PNG", "P", {}),
                              ("PNG", "I;16", {}), ("PNG", "RGBA", {}), ("GIF", "P", {}), ("WEBP", "RGB", {}),
                              ("BMP", "RGB", {}), ("TIFF", "CMYK", {}), ("JPEG", "L", {})):
        im = Image.fromarray(rgb).convert(mode) if mode != "I;16" else Image.fromarray(
            rgb[..., 0].astype(np.uint16) * 257)
        buf = io.BytesIO()
        im.save(buf, fmt, **kwargs)
        out.append(buf.getvalue())
    frames = [Image.fromarray(np.roll(rgb, i, axis=1)) for i in range(3)]
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)
        out.append(buf.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif.tobytes())
    out.append(buf.getvalue())
    # The still formats decoded on purpose (datasets/still_formats.py): every native decoder the
    # scan enables is fuzzed here, optional ones (HEIF, JPEG XL) whenever they are installed.
    out += list(still_format_seeds(rgb).values())
    return out


SEEDS = _seed_images()


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with a few byte flips, cuts, insertions and duplicated runs."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "set"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "cut":
            data = data[:i]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "dup" and data:
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[i:i] = data[i:j]
    return bytes(data)


untrusted_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=256)),
    mutated(SEEDS),
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="faketrace-fuzz-") as d:
        yield Path(d)


# -- media -----------------------------------------------------------------------------------------
@FAST
@given(data=untrusted_bytes)
@example(data=b"")
@example(data=b"RIFF")
@example(data=b"\x00\x00\x00\x00ftyp")
def test_sniffing_never_raises_and_names_a_known_type(scratch, data):
    path = scratch / "sniff.bin"
    path.write_bytes(data)
    assert sniff_media_type(path) in SNIFF_VALUES


def test_the_seeds_decode(scratch):
    """The mutation seeds are valid files: the fuzzing below starts from decodable images."""
    for i, seed in enumerate(SEEDS):
        path = scratch / f"seed{i}"
        path.write_bytes(seed)
        assert sniff_media_type(path) == "image", i  # every seed's format is one the scan decodes on purpose
        img = read_image_frames(path, max_frames=3)
        assert img.frames and all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in img.frames.values())


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF; fine
@DECODE
@given(data=untrusted_bytes)
@example(data=b"")
@example(data=b"\x89PNG\r\n\x1a\n")
def test_image_decoding_decodes_or_raises_decode_error(scratch, data):
    path = scratch / "image.bin"
    path.write_bytes(data)
    try:
        img = read_image_frames(path, max_frames=2)
    except DecodeError as exc:
        assert str(exc)
        return
    assert isinstance(img, DecodedImage) and img.frames
    for frame in img.frames.values():
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert frame.shape[0] * frame.shape[1] <= 64_000_000


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_inputs_the_fuzzer_found_decode_or_raise_decode_error(path):
    """Inputs on which scripts/fuzz_media.py found a crash (a truncated GIF, a TIFF without size, ...)."""
    assert sniff_media_type(path) in SNIFF_VALUES
    try:
        read_image_frames(path, max_frames=2)
    except DecodeError:
        pass


def _atheris_platform() -> bool:
    return platform.system() == "Linux" and platform.machine() == "x86_64" and sys.version_info[:2] <= (3, 11)


@pytest.mark.slow
def test_atheris_harness_finds_no_crash_in_60_seconds(tmp_path):
    if not _atheris_platform():
        pytest.skip("atheris has wheels for Linux x86_64 and CPython <= 3.11 only")
    import resource

    import atheris  # noqa: F401 - installed by `make install` (the dev extra); a missing one is a failure

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # libFuzzer checks the peak RSS (ru_maxrss), which Linux carries over fork and exec: the
    # harness starts with this pytest process's peak (several GB late in the suite). The limit is
    # 3 GB above that inheritance, so it still catches a leak or runaway allocation of the harness.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    proc = subprocess.run([sys.executable, "scripts/fuzz_media.py", str(tmp_path / "corpus"), "-max_total_time=60",
                           "-seed=1", "-timeout=30", f"-rss_limit_mb={inherited_mb + 3072}",
                           f"-artifact_prefix={artifacts}/"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    crashes = sorted(p.name for p in artifacts.iterdir())
    output = proc.stdout + proc.stderr
    at = output.find("=== Uncaught Python exception")
    assert proc.returncode == 0 and not crashes, f"{crashes} in {artifacts}\n" + \
        (output[at:at + 4000] if at >= 0 else output[-4000:])
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    assert done and int(done.group(1)) > 1000 and int(done.group(2)) >= 59, proc.stderr[-2000:]


# -- Telegram chat exports -------------------------------------------------------------------------
# Path strings an export could hold: pieces that climb, absolute roots, drive letters, separators of
# both kinds, NUL bytes, non-ASCII and names too long for the file system, and the real files below.
PATH_PIECES = st.sampled_from(["..", ".", "", "/", "\\", "C:", "photos", "video_files", "files", "a.jpg",
                               "link_out", "link_in", "loop", "ok.jpg", "\x00", "фото.jpg", "x" * 300, "~",
                               "chats", "chat_001"])
path_strings = st.one_of(
    st.text(max_size=64),
    st.lists(PATH_PIECES, max_size=6).map("/".join),
    st.lists(PATH_PIECES, max_size=6).map("\\".join),
    st.sampled_from(["(File not included. Change data exporting settings to download.)",
                     "(File exceeds maximum size. Change data exporting settings to download.)", "(File unavailable",
                     "/etc/passwd", "../../etc/passwd", "photos/../../etc/passwd", "C:\\Windows\\win.ini"]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=16), path_strings)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
message_keys = st.sampled_from([*MEDIA_FIELDS, "id", "type", "date", "date_unixtime", "edited_unixtime", "from",
                                "from_id", "text", "forwarded_from", "media_type", "width", "duration_seconds"])
messages = st.dictionaries(message_keys, st.one_of(path_strings, json_values), max_size=8)
chats = st.dictionaries(st.sampled_from(["name", "type", "id", "messages"]),
                        st.one_of(st.lists(st.one_of(messages, json_values), max_size=5), json_values), max_size=4)
result_json = st.one_of(
    json_values,
    st.builds(lambda ms, extra: {**extra, "messages": ms}, st.lists(st.one_of(messages, json_values), max_size=6),
              st.dictionaries(st.sampled_from(["name", "type", "id"]), json_values, max_size=3)),
    st.builds(lambda cs: {"chats": {"list": cs}}, st.lists(st.one_of(chats, json_values), max_size=3)),
    st.builds(lambda v: {"chats": v}, json_values),
)


def _export_tree(top: Path) -> Path:
    """An export folder with real media, a link leading out of it, one inside it and a link loop."""
    root = top / "export"
    outside = top / "outside"
    for d in (root / "photos", root / "video_files", root / "chats" / "chat_001" / "photos", outside):
        d.mkdir(parents=True, exist_ok=True)
    for p in (root / "photos" / "ok.jpg", root / "a.jpg", root / "chats" / "chat_001" / "photos" / "a.jpg",
              outside / "secret.jpg"):
        p.write_bytes(b"\xff\xd8\xff")
    for name, target in (("link_out", outside / "secret.jpg"), ("link_in", root / "a.jpg"), ("loop", root / "loop")):
        link = root / "photos" / name
        if not link.is_symlink():
            link.symlink_to(target)
    return root


@pytest.fixture(scope="module")
def export_root(scratch):
    return _export_tree(scratch)


def _inside(path: Path, root: Path) -> bool:
    real, real_root = path.resolve(), root.resolve()
    return real == real_root or real_root in real.parents


@FAST
@given(value=path_strings)
@example(value="photos/link_out")
@example(value="photos/loop")
@example(value="photos/" + "x" * 300)
@example(value="photos/ok.jpg\x00.png")
def test_resolve_media_path_never_leaves_the_export(export_root, value):
    bases = [export_root, export_root / "chats" / "chat_001"]
    status, reason, path = resolve_media_path(value, bases, export_root)
    assert status in ("ok", "missing", "refused")
    if status == "ok":
        assert path is not None and reason is None and _inside(path, export_root)
    else:
        assert path is None and reason
    assert isinstance(is_placeholder(value), bool)


@FAST
@given(msg=messages, chat=st.dictionaries(st.sampled_from(["name", "type", "id"]), json_values, max_size=3))
def test_message_context_takes_any_message(msg, chat):
    ctx = message_context(msg, chat)
    json.dumps(ctx)  # what the case store will do with it
    assert ctx["message_id"] == msg.get("id")


@FAST
@given(doc=result_json)
@example(doc={"messages": 5})
@example(doc={"chats": {"list": [{"messages": 7}, {"messages": {"a": 1}}]}})
@example(doc={"messages": [{"photo": "photos/link_out"}, {"file": "photos/loop"}, {"photo": "x" * 5000}]})
def test_iter_references_raises_only_export_error_and_stays_inside(export_root, doc):
    (export_root / "result.json").write_text(json.dumps(doc))
    info = telegram.ExportInfo(root=export_root, form="json", kind="")
    try:
        refs = list(iter_references(export_root, info))
    except ExportError:
        return
    for ref in refs:
        assert ref.status in ("ok", "missing", "refused") and ref.field in MEDIA_FIELDS
        assert (ref.path is not None) == (ref.status == "ok")
        if ref.path is not None:
            assert _inside(ref.path, export_root)
        json.dumps(ref.context, default=str)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"messages": [' + "9" * 5000 + "]}",
                                  "\ufeff{}", '{"messages": [NaN, Infinity]}', b"\xff\xfe{}".decode("latin-1")])
def test_iter_references_refuses_unreadable_json_with_export_error(export_root, text):
    """Nesting past the recursion limit, integers past Python's digit limit, a byte-order mark."""
    (export_root / "result.json").write_text(text, encoding="utf-8")
    try:
        list(iter_references(export_root))
    except ExportError as exc:
        assert "result.json" in str(exc)


# Fragments of the HTML export's markup, shuffled and cut by hypothesis: the page parser must
# never raise, and every reference it yields must stay inside the export.
HTML_FRAGMENTS = ['<div class="message default clearfix" id="message7">', '<div class="message default clearfix joined" '
                  'id="message8">', '<div class="message service" id="message-1">', '<div class="body">', "</div>",
                  '<div class="from_name">', '<span class="details">via @bot</span>', '<div class="forwarded body">',
                  '<div class="pull_right date details" title="21.11.2026 10:00:00 UTC+01:00">',
                  '<span class="date details" title="99.99.9999 99:99:99 UTC+99:99">', '<div class="text">', "<br>",
                  '<a class="photo_wrap clearfix pull_left" href="photos/ok.jpg">', '<a href="photos/link_out">',
                  '<a href="../escape.jpg">', '<a href="/etc/passwd">', '<a href="https://example.org">', "</a>",
                  '<a href="#go_to_message5">', '<div class="media clearfix media_photo">',
                  '<div class="description">Not included, change data exporting settings to download.',
                  '<div class="page_header"><div class="text bold">', "&amp;", "<!--", "<script>", "</span>", "<"]


@FAST
@given(parts=st.lists(st.one_of(st.sampled_from(HTML_FRAGMENTS), st.text(max_size=20)), max_size=60))
def test_html_export_pages_parse_without_raising_and_stay_inside(export_root, parts):
    from faketrace.forensics.telegram_html import iter_html_references

    (export_root / "messages.html").write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    for ref in iter_html_references(export_root, telegram.ExportInfo(root=export_root, form="html", kind="html")):
        assert ref.status in ("ok", "missing", "refused") and (ref.path is not None) == (ref.status == "ok")
        if ref.path is not None:
            assert _inside(ref.path, export_root)
        json.dumps(ref.context)


def test_the_export_tree_holds_what_the_fuzzing_needs(export_root):
    assert os.path.islink(export_root / "photos" / "link_out")
    assert resolve_media_path("photos/ok.jpg", [export_root], export_root)[0] == "ok"
    assert resolve_media_path("photos/link_in", [export_root], export_root)[0] == "ok"
    status, reason, _ = resolve_media_path("photos/link_out", [export_root], export_root)
    assert status == "refused" and "symbolic link" in reason
