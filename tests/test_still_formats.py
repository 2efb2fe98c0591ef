"""Still formats on purpose (datasets/still_formats.py): each decodes from a generated file, every
page of a multi-page still is scored, and an optional decoder that is absent gives `unsupported`
with the reason, never a decode error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faketrace.datasets import media, still_formats
from faketrace.datasets.media import ImageTooLarge, read_image_frames, sniff_media_type, sniff_still_format
from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.scan import scan_from_config

from .conftest import results, scan_cfg
from .formats_corpus import HAVE_HEIF, HAVE_JXL, encoded, noise, write_still_formats

register_case_resolver()

FORMAT_OF = {"face.jpg": "JPEG", "face.png": "PNG", "face.gif": "GIF", "face.webp": "WebP", "face.bmp": "BMP",
             "face.tiff": "TIFF", "pages.tiff": "TIFF", "face.bigtiff": "TIFF", "face.avif": "AVIF",
             "sequence.avif": "AVIF", "face.heic": "HEIF/HEIC", "pages.heic": "HEIF/HEIC", "face.jxl": "JPEG XL"}


@pytest.fixture(scope="module")
def formats(evidence, tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats") / "stills"
    face = evidence["loose"] / "photo_real.jpg"
    files = write_still_formats(folder, face)
    return {"dir": folder, "files": files, "face": np.asarray(Image.open(face).convert("RGB"))}


def test_every_supported_format_is_recognised_and_decoded(formats):
    folder, face = formats["dir"], formats["face"]
    assert ("face.heic" in formats["files"]) == HAVE_HEIF and ("face.jxl" in formats["files"]) == HAVE_JXL
    for name in formats["files"]:
        path = folder / name
        assert sniff_media_type(path) == "image", name
        assert sniff_still_format(path).name == FORMAT_OF[name], name
        img = read_image_frames(path, max_frames=8)
        for frame in img.frames.values():
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        first = img.frames[min(img.frames)]
        if name.startswith("face."):
            assert (img.n_frames, img.pages) == (1, False) and first.shape == face.shape, name
            # Lossless formats give the face's pixels back; lossy ones stay close to them.
            error = np.abs(first.astype(int) - face.astype(int)).mean()
            assert error == 0 if name in ("face.png", "face.bmp", "face.tiff", "face.bigtiff") else error < 12, \
                (name, error)
    pages = read_image_frames(folder / "pages.tiff", max_frames=1)  # pages ignore the animation sample size
    assert pages.pages and pages.n_frames == 3 and sorted(pages.frames) == [0, 1, 2]
    assert [f.shape[:2] for f in pages.frames.values()] == [face.shape[:2], face.shape[:2], (61, 97)]
    assert np.array_equal(pages.frames[1], face)
    sequence = read_image_frames(folder / "sequence.avif", max_frames=8)
    assert sequence.n_frames == 3 and not sequence.pages and sorted(sequence.frames) == [0, 1, 2]
    if HAVE_HEIF:
        heif_pages = read_image_frames(folder / "pages.heic", max_frames=1)
        assert heif_pages.pages and sorted(heif_pages.frames) == [0, 1]


def test_multi_page_limits_refuse_a_page_bomb_and_count_skipped_pages(formats, tmp_path, monkeypatch):
    small = noise((40, 30), 3)
    # A TIFF whose first page is small and whose second declares 20000 x 20000: refused before decoding it.
    bomb = bytearray(encoded(small, "TIFF", pages=[noise((40, 30), 4)]))
    second_ifd = _ifd_offsets(bytes(bomb))[1]
    _set_tiff_size(bomb, second_ifd, 20000, 20000)
    (tmp_path / "bomb.tiff").write_bytes(bytes(bomb))
    with pytest.raises(ImageTooLarge, match="page 1 declares 20000x20000"):
        read_image_frames(tmp_path / "bomb.tiff")
    (tmp_path / "many.tiff").write_bytes(encoded(small, "TIFF", pages=[small] * 6))
    monkeypatch.setattr(media, "MAX_PAGES", 3)
    img = read_image_frames(tmp_path / "many.tiff")
    assert sorted(img.frames) == [0, 1, 2] and img.pages_not_decoded == 4
    monkeypatch.setattr(media, "MAX_PAGES", 100)
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 40 * 30 * 2)  # a budget of two pages' pixels
    img = read_image_frames(tmp_path / "many.tiff")
    assert sorted(img.frames) == [0, 1] and img.pages_not_decoded == 5


def _ifd_offsets(tiff: bytes) -> list[int]:
    order = "<" if tiff[:2] == b"II" else ">"
    offsets, at = [], struct.unpack(order + "I", tiff[4:8])[0]
    while at:
        offsets.append(at)
        n = struct.unpack(order + "H", tiff[at:at + 2])[0]
        at = struct.unpack(order + "I", tiff[at + 2 + 12 * n: at + 6 + 12 * n])[0]
    return offsets


def _set_tiff_size(tiff: bytearray, ifd: int, width: int, height: int) -> None:
    n = struct.unpack("<H", tiff[ifd:ifd + 2])[0]
    for k in range(n):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", tiff[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            tiff[entry + 8:entry + 12] = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)


def test_the_scan_scores_every_format_and_every_page(formats, scan_ckpt, tmp_path):
    case = tmp_path / "case"
    scan_from_config(scan_cfg([formats["dir"]], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
                              ["report.enabled=false"]))
    _, items = results(case)
    by_name = {Path(r["rel_path"]).name: r for r in items.values()}
    assert by_name.keys() == formats["files"].keys()
    for name, r in by_name.items():
        assert r["status"] == "scanned", (name, r["status"], r.get("reason"))
        assert r["faces"], name
    pages = by_name["pages.tiff"]
    # The face is on page 1 of 3; the score is a still's (highest face), not a video rule over pages.
    assert pages["decode"]["pages"] is True and pages["decode"]["frames_scored"] == 3
    assert pages["score"]["level"] == "frame" and "of all 3 pages" in pages["score"]["how"]
    assert {f["frame_index"] for f in pages["faces"]} == {1}
    assert by_name["sequence.avif"]["score"]["level"] == "video"  # an AVIF sequence is an animation
    assert by_name["face.avif"]["decode"]["format"] == "AVIF"
    # The same face in every format gets nearly the same score (lossy formats move it a little).
    probabilities = [r["score"]["probability"] for n, r in by_name.items() if n.startswith("face.")]
    assert max(probabilities) - min(probabilities) < 0.2, json.dumps(probabilities)


def test_an_absent_optional_decoder_makes_the_item_unsupported_with_its_reason(formats, scan_ckpt, tmp_path,
                                                                               monkeypatch):
    """As on an installation without faketrace[heif] / [jxl]: the item says which extra decodes it."""
    folder = tmp_path / "optional"
    folder.mkdir()
    # Headers are enough: without the decoder nothing past the first bytes is read.
    (folder / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64)
    (folder / "photo.jxl").write_bytes(b"\xff\x0a" + b"\0" * 64)
    for plugin in ("pillow_heif", "pillow_jxl"):
        monkeypatch.setitem(still_formats._REGISTERED, plugin, "ModuleNotFoundError: not installed (test)")
    case = tmp_path / "case"
    scan_from_config(scan_cfg([folder], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
                              ["report.enabled=false"]))
    _, items = results(case)
    by_name = {Path(r["rel_path"]).name: r for r in items.values()}
    assert by_name["photo.heic"]["status"] == by_name["photo.jxl"]["status"] == "unsupported"
    assert "faketrace[heif]" in by_name["photo.heic"]["reason"] and "HEIF/HEIC" in by_name["photo.heic"]["reason"]
    assert "faketrace[jxl]" in by_name["photo.jxl"]["reason"]
