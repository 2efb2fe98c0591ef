"""Hostile media: one generated corpus, one table of expected statuses, every entry point that reads media.

Entry points: preprocessing (per-item outcome in videos.parquet and manifest rows), training data
loading (the manifest's crops through FaceCropDataset), the scan and the standalone predictor (item
status; the predictor runs the exported ONNX model and must give every entry the scan's status).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from faketrace.datasets.sources.common import media_type_of

from .conftest import compose_config, make_hostile_corpus, resolved
from .formats_corpus import HOSTILE_STILLS

ROOT_USER = os.geteuid() == 0
# name: (scan status, preprocessing outcome); None = preprocessing never sees it (adapters list
# regular media files only).
EXPECTED = {
    "zero_bytes.jpg": ("empty", "decode_error"),
    "truncated.jpg": ("decode_error", "decode_error"),
    "truncated.png": ("decode_error", "decode_error"),
    "truncated.webp": ("decode_error", "decode_error"),
    "truncated_index_at_end.mp4": ("decode_error", "decode_error"),
    "truncated_index_at_start.mp4": ("scanned", "partial"),  # scored on the frames that decode, flagged
    "text_as_image.jpg": ("unsupported", "decode_error"),
    "image_as_video.mp4": ("scanned", "decode_error"),  # the scan sniffs an image; the index said video
    "bomb_20000x20000.png": ("oversized", "decode_error"),  # refused for its declared pixels, not decoded
    "gray16.png": ("scanned", "ok"),
    "cmyk.jpg": ("scanned", "ok"),
    "palette.png": ("scanned", "ok"),
    "grayscale.png": ("scanned", "ok"),
    "alpha.png": ("scanned", "ok"),
    "exif_rotated.jpg": ("scanned", "ok"),
    "animated.gif": ("scanned", "ok"),
    "animated.webp": ("scanned", "ok"),
    "zero_frames.mp4": ("decode_error", "decode_error"),
    "variable_frame_rate.mp4": ("scanned", "ok"),
    "rotated_display_matrix.mp4": ("scanned", "ok"),
    "two_hours_1fps.mp4": ("no_face", "ok"),  # 7,200 frames of noise at 64 x 64
    "visage_é_日本語.jpg": ("scanned", "ok"),
    "n" * 246 + ".jpg": ("scanned", "ok"),
    "loop_a": ("refused", None),
    "loop_b": ("refused", None),
    "named_pipe.jpg": ("refused", None),
    # Permission bits do not stop root; as another user the file cannot be opened.
    "unreadable.jpg": ("scanned", "ok") if ROOT_USER else ("error", "decode_error"),
    # Issue 21 (tests/test_hostile_scan.py has one test per defect): a name that is not UTF-8 and
    # names that mislead on screen are scanned, shown escaped (VISIBLE); frames of extreme shape are
    # unsupported with their size; an animation of 7999 x 7999 frames decodes 1 of its frames
    # within the item's pixel budget (flat colour: no face).
    os.fsdecode(b"not_utf8_\xff\xfe.jpg"): ("scanned", None),
    "rtl_\u202egpj.exe": ("scanned", None),
    "new\nline.jpg": ("scanned", None),
    "wide_65535x1.png": ("unsupported", None),
    "tall_1x65535.png": ("unsupported", None),
    "animated_7999x7999x8.gif": ("no_face", None),
    **HOSTILE_STILLS,  # the still formats decoded on purpose (tests/formats_corpus.py)
}
VISIBLE = {os.fsdecode(b"not_utf8_\xff\xfe.jpg"): "not_utf8_\\xff\\xfe.jpg", "rtl_\u202egpj.exe": "rtl_\\u202egpj.exe",
           "new\nline.jpg": "new\\x0aline.jpg"}


@pytest.fixture(scope="module")
def corpus(demo_data, tmp_path_factory):
    index = demo_data["index"]
    root = Path(demo_data["cfg"].data.root)
    image = root / index[(index.media_type == "image") & (index.label == 0)].sort_values("id").iloc[0]["path"]
    video = root / index[(index.media_type == "video") & (index.label == 0)].sort_values("id").iloc[0]["path"]
    folder = make_hostile_corpus(tmp_path_factory.mktemp("hostile"), image, video)
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPECTED)
    return folder


@pytest.fixture(scope="module")
def scan_ckpt(demo_data, tmp_path_factory):
    from faketrace.engine.train import train

    out = tmp_path_factory.mktemp("hostile_train")
    cfg = compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"], output_dir=out)
    return train(resolved(cfg))["last_ckpt"]


@pytest.mark.slow
def test_scan_gives_every_hostile_entry_its_expected_status(corpus, scan_ckpt, tmp_path):
    from faketrace.forensics.scan import scan_from_config

    case = tmp_path / "case"
    cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{corpus}]", "case.id=H", "case.operator=pytest",
                                      f"case.dir={case}", f"ckpt_path={scan_ckpt}", "allow_unvalidated=true",
                                      "scan.progress=false"], output_dir=case)
    summary = scan_from_config(resolved(cfg))
    lines = (case / "scan_results.jsonl").read_text().splitlines()[1:]
    items = {r["rel_path"]: r for r in map(json.loads, lines)}
    items = {name: items[VISIBLE.get(name, name)] for name in EXPECTED}
    got = {name: items[name]["status"] for name in EXPECTED}
    assert got == {name: want[0] for name, want in EXPECTED.items()}
    assert all(items[n]["reason"] for n, (s, _) in EXPECTED.items() if s not in ("scanned",))
    assert summary["evidence_unchanged"] is True and (case.stat().st_mode & 0o777) == 0o700

    # Decoded the right way up: EXIF orientation and the video display matrix are applied.
    from PIL import Image

    w, h = Image.open(corpus / "cmyk.jpg").size  # the upright face every image entry was made from
    exif = items["exif_rotated.jpg"]
    assert (exif["decode"]["width"], exif["decode"]["height"]) == (w, h * 4 // 5) and exif["n_faces_detected"] >= 1
    rotated = items["rotated_display_matrix.mp4"]
    assert (rotated["decode"]["width"], rotated["decode"]["height"]) == (w, h * 4 // 5 // 2 * 2)
    assert rotated["frames_with_face"] == rotated["decode"]["frames_read"]
    assert items["two_hours_1fps.mp4"]["decode"]["duration_s"] == 7200
    partial = items["truncated_index_at_start.mp4"]["decode"]
    assert partial["partial"] and partial["frames_decoded"] < partial["frames_claimed"]
    for name in ("animated.gif", "animated.webp"):
        assert items[name]["decode"]["n_frames"] == 6 and items[name]["score"]["level"] == "video"
    assert items["gray16.png"]["n_faces_detected"] >= 1  # scaled, not clipped to white
    assert "pixels" in items["bomb_20000x20000.png"]["reason"]
    note = items["animated_7999x7999x8.gif"]["decode"]["frames_note"]  # 1 frame of 64 M pixels fits 64 M
    assert note.startswith("1 of ") and "7999x7999" in note and items["animated_7999x7999x8.gif"]["decode"]["n_frames"] == 8
    assert items["wide_65535x1.png"]["reason"].startswith("65535x1 pixels")
    assert bytes.fromhex(items[os.fsdecode(b"not_utf8_\xff\xfe.jpg")]["rel_path_raw_hex"]) == b"not_utf8_\xff\xfe.jpg"


@pytest.mark.slow
def test_the_standalone_predictor_gives_every_hostile_entry_the_scans_status(demo_data, corpus, scan_ckpt, tmp_path):
    from faketrace.engine.export import export_checkpoint
    from faketrace.forensics.predict import EXIT_ITEMS_FAILED, main

    export = tmp_path / "export"
    export_checkpoint(resolved(compose_config("export", demo_data["overrides"] + [
        f"ckpt_path={scan_ckpt}", "verify.n_images=8", f"out_dir={export}"], output_dir=tmp_path / "e")))
    out = tmp_path / "predicted.jsonl"
    code = main([str(export), str(corpus), "--allow-unvalidated", "--out", str(out)])
    items = {r["rel_path"]: r for r in map(json.loads, out.read_text().splitlines())}
    items = {name: items[VISIBLE.get(name, name)] for name in EXPECTED}
    assert code == EXIT_ITEMS_FAILED
    assert {name: items[name]["status"] for name in EXPECTED} == {name: want[0] for name, want in EXPECTED.items()}
    assert all(items[n]["reason"] for n, (s, _) in EXPECTED.items() if s != "scanned")
    assert "pixels" in items["bomb_20000x20000.png"]["reason"]
    assert items["truncated_index_at_start.mp4"]["decode"]["partial"] is True


@pytest.mark.slow
def test_preprocessing_and_training_data_loading_give_the_expected_outcomes(corpus, tmp_path):
    from faketrace.datasets.frames import FaceCropDataset, load_face_table
    from faketrace.datasets.preprocess import PreprocessSpec, RunOptions, preprocess_index
    from faketrace.datasets.schema import read_videos, write_index
    from faketrace.datasets.transforms import eval_transform

    names = [n for n, (_, pre) in EXPECTED.items() if pre is not None]
    index = pd.DataFrame([{"id": f"h{i:02d}", "dataset": "hostile", "split": "test", "label": 0, "method": "real",
                           "compression": None, "media_type": media_type_of(n), "path": n, "source_identity": f"h{i}",
                           "target_identity": None, "original_id": None, "mask_path": None,
                           "adapter_version": "test/1"} for i, n in enumerate(names)])
    write_index(index, tmp_path / "index.parquet")
    faces = tmp_path / "faces"
    preprocess_index(index, corpus, faces, PreprocessSpec(frames_per_video=4, crop_size=64), faces / "manifest.parquet",
                     options=RunOptions(progress=False, video_time_limit_s=120))
    videos, _ = read_videos(faces / "videos.parquet")
    outcome = dict(zip(index.set_index("id").loc[videos["video_id"], "path"], videos["outcome"], strict=True))
    assert outcome == {n: EXPECTED[n][1] for n in names}

    table, _, _ = load_face_table(tmp_path / "index.parquet", faces / "manifest.parquet")
    dataset = FaceCropDataset(table, faces, eval_transform(64, [0.5] * 3, [0.5] * 3))
    loaded = [dataset[i]["image"].shape for i in range(len(dataset))]
    assert len(loaded) == len(table) > 0 and all(s == (3, 64, 64) for s in loaded)
    with_faces = set(index.set_index("id").loc[table["video_id"].unique(), "path"])
    assert {"exif_rotated.jpg", "rotated_display_matrix.mp4", "gray16.png", "cmyk.jpg"} <= with_faces


def test_the_pixel_bomb_is_refused_before_decoding(corpus):
    from faketrace.datasets.media import ImageTooLarge, read_image_frames
    from faketrace.forensics.scan import rss_bytes

    before = rss_bytes()
    with pytest.raises(ImageTooLarge, match="pixels"):
        read_image_frames(corpus / "bomb_20000x20000.png")
    assert rss_bytes() - before < 100e6


def test_a_crashing_or_hanging_decoder_costs_one_item(scan_ckpt, corpus, tmp_path, monkeypatch):
    """Named fault inside the decoding process: it dies on the 2nd file, then hangs on the 2nd of a fresh one."""
    from faketrace.forensics.scan import scan_from_config

    evidence = tmp_path / "ev"
    evidence.mkdir()
    for name in ("cmyk.jpg", "palette.png", "grayscale.png"):
        (evidence / name).write_bytes((corpus / name).read_bytes())

    def scan(case, fault):
        monkeypatch.setenv("FAKETRACE_FAULT", fault)
        cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{evidence}]", "case.id=C", "case.operator=p",
                                          f"case.dir={case}", f"ckpt_path={scan_ckpt}", "allow_unvalidated=true",
                                          "scan.progress=false", "scan.image_time_limit_s=1",
                                          "scan.decode_grace_s=2", "report.enabled=false"], output_dir=case)
        scan_from_config(resolved(cfg))
        lines = (case / "scan_results.jsonl").read_text().splitlines()[1:]
        return {r["rel_path"]: (r["status"], r.get("reason") or "") for r in map(json.loads, lines)}

    # Items go in sorted order: cmyk.jpg, grayscale.png (the 2nd: the fault), palette.png.
    crashed = scan(tmp_path / "crash", "in_decoder_process@2:exit")
    assert crashed["cmyk.jpg"][0] == "scanned" and crashed["palette.png"][0] == "scanned"
    assert crashed["grayscale.png"][0] == "decode_error" and "decoder process died" in crashed["grayscale.png"][1]
    hung = scan(tmp_path / "hang", "in_decoder_process@2:pause")
    assert hung["grayscale.png"][0] == "timeout" and "killed" in hung["grayscale.png"][1]
    assert hung["cmyk.jpg"][0] == "scanned" and hung["palette.png"][0] == "scanned"
