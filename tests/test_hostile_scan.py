"""Hostile evidence, second round (issue 21): each defect reproduced, then its fix checked.

Each test checks the status, the reason and that nothing else was lost. Huge files are sparse
(a few KB on disk). The scan runs in this process where that suffices, and as `evaluate.py` in a
separate process where the exit status, stderr or the case folder on disk is the point.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from .conftest import REPO, results, scan_cfg, tree_snapshot

GiB = 1 << 30


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as a strict reader does."""
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def scan(inputs, case: Path, ckpt: Path, *extra: str) -> dict:
    from faketrace.forensics.scan import scan_from_config

    return scan_from_config(scan_cfg(inputs, case, [f"ckpt_path={ckpt}", "allow_unvalidated=true", *extra]))


def evaluate(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "FAKETRACE_FAULT"} | (env or {})
    return subprocess.run([sys.executable, "evaluate.py", "mode=scan", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def scan_args(inputs, case: Path, ckpt: Path | str, *extra: str) -> list[str]:
    return [f"inputs=[{','.join(map(str, inputs))}]", f"ckpt_path={ckpt}", "case.id=H21", "case.operator=pytest",
            f"case.dir={case}", "scan.progress=false", *extra]


# -- 1 and 10: names that are not UTF-8, or that lie about themselves ---------------------------------
def test_undecodable_and_misleading_names_are_kept_exactly_and_shown_escaped(scan_ckpt, evidence, tmp_path):
    photo = (evidence["loose"] / "photo_real.jpg").read_bytes()
    folder = tmp_path / "names"
    folder.mkdir()
    names = {b"\xff\xfe.jpg": "\\xff\\xfe.jpg", "rtl_\u202egpj.exe": "rtl_\\u202egpj.exe",
             "two\nlines.jpg": "two\\x0alines.jpg", "back\\slash.jpg": "back\\\\slash.jpg", "plain.jpg": "plain.jpg"}
    for raw in names:
        (folder / os.fsdecode(raw) if isinstance(raw, bytes) else folder / raw).write_bytes(photo)
    case = tmp_path / "case"
    summary = scan([folder], case, scan_ckpt)
    _, items = results(case)
    assert sorted(r["rel_path"] for r in items.values()) == sorted(names.values())
    sha = hashlib.sha256(photo).hexdigest()
    for raw, shown in names.items():
        r = items[f"0/{shown}"]
        assert r["status"] == "scanned" and r["sha256"] == sha
        raw_bytes = raw if isinstance(raw, bytes) else raw.encode()
        assert bytes.fromhex(r.get("rel_path_raw_hex") or raw_bytes.hex()) == raw_bytes  # the exact name, kept
        assert ("rel_path_raw_hex" in r) == (shown != os.fsdecode(raw))
    assert summary["evidence_unchanged"] is True and summary["by_status"] == {"scanned": len(names)}
    # Everything written is valid UTF-8 and shows no control or bidi character in a name.
    report_html = (case / "report.html").read_text(encoding="utf-8")
    items_csv = (case / "items.csv").read_text(encoding="utf-8")
    for text in (report_html, items_csv, (case / "report.json").read_text(encoding="utf-8")):
        assert "\u202e" not in text
    assert "rtl_\\u202egpj.exe" in report_html and "\\xff\\xfe.jpg" in report_html
    assert "two\\x0alines.jpg" in items_csv and "two\nlines" not in items_csv
    # A second run meets the same items under the same ids: nothing is redone, nothing lost.
    again = scan([folder], case, scan_ckpt)
    assert again["already_done"] == len(names) and again["scanned_this_session"] == 0


def test_visible_names_are_one_to_one():
    from faketrace.forensics.names import from_hex, raw_hex, visible

    names = ["a.jpg", "a\\xff.jpg", os.fsdecode(b"a\xff.jpg"), "a\\\\xff.jpg", "x\u202ey", "x\\u202ey", "tab\there",
             "zero\u200bwidth", "日本語.jpg", "line\u2028sep"]
    shown = [visible(n) for n in names]
    assert len(set(shown)) == len(names)
    assert all(s.isprintable() for s in shown)
    for n in names:
        assert from_hex(raw_hex(n)) == n if raw_hex(n) else visible(n) == n


# -- 9: strict JSON everywhere ------------------------------------------------------------------------
def test_infinity_in_an_export_never_reaches_the_outputs(scan_ckpt, evidence, tmp_path):
    export = tmp_path / "ChatExport_inf"
    (export / "photos").mkdir(parents=True)
    (export / "photos" / "p.jpg").write_bytes((evidence["loose"] / "photo_real.jpg").read_bytes())
    (export / "result.json").write_text('{"name": "G", "type": "private_group", "id": 1, "messages": [{"id": 7, '
                                        '"type": "message", "photo": "photos/p.jpg", "width": 1e309, "height": -1e309, '
                                        '"text": "x"}]}')
    case = tmp_path / "case"
    scan([export], case, scan_ckpt)
    lines = (case / "scan_results.jsonl").read_text().splitlines()
    records = [strict_json(line) for line in lines]
    for name in ("scan_summary.json", "custody.json", "report.json"):
        strict_json((case / name).read_text())
    (item,) = [r for r in records[1:] if r["rel_path"] == "photos/p.jpg"]
    assert item["status"] == "scanned"
    assert item["telegram"][0]["message_id"] == 7 and item["telegram"][0]["width"] == "1E+309"
    assert item["telegram"][0]["height"] == "-1E+309"


# -- 3: a huge result.json ----------------------------------------------------------------------------
def _export_with_photo(root: Path, photo: bytes) -> Path:
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "p.jpg").write_bytes(photo)
    return root


def test_a_huge_result_json_costs_its_context_not_the_case(evidence, tmp_path):
    from faketrace.forensics.discover import describe_inputs, iter_items
    from faketrace.forensics.scan import rss_bytes

    export = _export_with_photo(tmp_path / "ChatExport_huge", b"\xff\xd8\xff")
    sparse(export / "result.json", 6 * GiB, b'{"name": "G", "messages": [{"id": 1, "photo": "photos/p.jpg", "text": "')
    before = rss_bytes()
    t0 = time.perf_counter()
    infos = describe_inputs([export])
    items = {i.rel_path: i for i in iter_items(infos)}
    assert time.perf_counter() - t0 < 30 and rss_bytes() - before < 200e6  # not read, let alone loaded
    assert items["photos/p.jpg"].status is None and items["photos/p.jpg"].path is not None  # still scanned
    assert items["result.json"].status == "error"
    assert "above the limit" in items["result.json"].reason and "without" in items["result.json"].reason
    assert infos[0].telegram["unreadable"] and infos[0].kind == "telegram_json"


def test_result_json_is_parsed_as_a_stream(tmp_path):
    """200,000 messages: the references come out with memory for one message, not for the export."""
    from faketrace.forensics.telegram import ExportInfo, iter_references

    export = _export_with_photo(tmp_path / "ChatExport_big", b"\xff\xd8\xff")
    with open(export / "result.json", "w") as fh:
        fh.write('{"name": "Big", "type": "public_supergroup", "id": 9, "messages": [')
        for i in range(200_000):
            fh.write(json.dumps({"id": i, "type": "message", "from": f"user {i}", "text": "hello " * 10,
                                 **({"photo": "photos/p.jpg"} if i % 50_000 == 0 else {})}) + ",")
        fh.write('{"id": -1, "type": "message", "text": "last"}]}')
    size = (export / "result.json").stat().st_size
    info = ExportInfo(root=export, form="json", kind="chat")
    tracemalloc.start()
    refs = list(iter_references(export, info))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.messages == 200_001 and info.chats == 1 and len(refs) == 4
    assert [r.context["message_id"] for r in refs] == [0, 50_000, 100_000, 150_000]
    assert refs[0].context["chat_name"] == "Big" and refs[1].context["from"] == "user 50000"
    assert peak < size / 4, (peak, size)  # json.load would hold several times the file


def test_a_truncated_result_json_keeps_the_references_before_the_break(tmp_path):
    from faketrace.forensics.telegram import ExportError, ExportInfo, iter_references

    export = _export_with_photo(tmp_path / "ChatExport_cut", b"\xff\xd8\xff")
    (export / "result.json").write_text('{"name": "G", "messages": [{"id": 1, "photo": "photos/p.jpg"}, {"id": 2, "ph')
    got = []
    with pytest.raises(ExportError, match="not valid JSON"):
        for ref in iter_references(export, ExportInfo(root=export, form="json", kind="chat")):
            got.append(ref)
    assert [(r.status, r.context["message_id"]) for r in got] == [("ok", 1)]


# -- 4: export files that are links -------------------------------------------------------------------
def test_linked_export_files_are_refused_and_never_read(tmp_path):
    from faketrace.forensics.discover import describe_inputs, iter_items

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "result.json").write_text(json.dumps({"name": "SECRET CHAT", "messages": [
        {"id": 1, "type": "message", "from": "SECRET SENDER", "photo": "photos/p.jpg", "text": "SECRET TEXT"}]}))
    (outside / "messages2.html").write_text("<html><body><div class='message default clearfix' id='message9'>"
                                           "<div class='from_name'>SECRET SENDER</div></div></body></html>")
    evidence = tmp_path / "evidence"
    json_export = _export_with_photo(evidence / "ChatExport_json", b"\xff\xd8\xff")
    (json_export / "result.json").symlink_to(outside / "result.json")
    html_export = _export_with_photo(evidence / "ChatExport_html", b"\xff\xd8\xff")
    (html_export / "css").mkdir()
    (html_export / "messages.html").write_text("<html><body></body></html>")
    (html_export / "messages2.html").symlink_to(outside / "messages2.html")
    infos = describe_inputs([evidence])
    items = {i.rel_path: i for i in iter_items(infos)}
    assert set(items) == {"ChatExport_json/result.json", "ChatExport_json/photos/p.jpg",
                          "ChatExport_html/messages2.html", "ChatExport_html/photos/p.jpg"}
    for name in ("ChatExport_json/result.json", "ChatExport_html/messages2.html"):
        assert items[name].status == "refused" and "symbolic link not followed" in items[name].reason
        assert items[name].path is None
    assert items["ChatExport_json/photos/p.jpg"].status is None  # the media are still scanned
    assert "SECRET" not in json.dumps([vars(i) for i in infos], default=str)
    assert all("SECRET" not in json.dumps(i.telegram) for i in items.values())


# -- 5, 12: refusals before anything is written; one line and an exit status ---------------------------
@pytest.mark.slow
def test_refusals_write_nothing_print_one_line_and_exit_2(scan_ckpt, evidence, tmp_path):
    from faketrace.forensics.guard import EXIT_REFUSED

    loose = evidence["loose"]
    before = tree_snapshot(evidence["root"])
    # hydra.run.dir given directly, inside the evidence: refused before Hydra creates it.
    inside = evidence["loose"] / "case"
    run = evaluate(*scan_args([loose], tmp_path / "unused", scan_ckpt, "allow_unvalidated=true",
                              f"hydra.run.dir={inside}"))
    assert run.returncode == EXIT_REFUSED and "inside the input folder" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert tree_snapshot(evidence["root"]) == before and not inside.exists()
    # A model not fit for casework, without allow_unvalidated: one line, no case folder left behind.
    case = tmp_path / "case_unvalidated"
    run = evaluate(*scan_args([loose], case, scan_ckpt))
    assert run.returncode == EXIT_REFUSED and "allow_unvalidated=true" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not case.exists()
    # Inputs that do not exist.
    run = evaluate(*scan_args([tmp_path / "nowhere"], tmp_path / "case_missing", scan_ckpt))
    assert run.returncode == EXIT_REFUSED and "no such file or folder" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "case_missing").exists()


# -- 6: one scan per case folder; a failed report is a failed run --------------------------------------
@pytest.mark.slow
def test_a_second_scan_of_a_locked_case_is_refused_and_changes_nothing(scan_ckpt, evidence, tmp_path):
    from faketrace.forensics.guard import EXIT_LOCKED

    case = tmp_path / "case"
    args = scan_args([evidence["loose"]], case, scan_ckpt, "allow_unvalidated=true", "report.enabled=false")
    environment = {k: v for k, v in os.environ.items() if k != "FAKETRACE_FAULT"}
    first = subprocess.Popen([sys.executable, "evaluate.py", "mode=scan", *args], cwd=REPO, text=True,
                             env={**environment, "FAKETRACE_FAULT": "scan_before_item_stored@2:pause"},
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for line in first.stderr:  # paused after one stored item, holding the lock
            if "FAULT scan_before_item_stored" in line:
                break
        config_before = (case / ".hydra" / "config.yaml").read_bytes()
        second = evaluate(*args)
        assert second.returncode == EXIT_LOCKED, second.stderr[-2000:]
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert (case / ".hydra" / "config.yaml").read_bytes() == config_before
        with sqlite3.connect(case / "case.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The killed run's record says what it did: one stored item, not zero.
    rerun = evaluate(*args)
    assert rerun.returncode in (0, 3), rerun.stderr[-2000:]
    sessions = json.loads((case / "custody.json").read_text())["sessions"]
    assert sessions[0]["ended"].startswith("interrupted") and sessions[0]["items_scanned"] == 1
    summary = json.loads((case / "scan_summary.json").read_text())
    assert summary["already_done"] == 1 and sessions[1]["items_scanned"] == summary["scanned_this_session"] > 0


def test_a_failed_report_is_a_failed_run(scan_ckpt, evidence, tmp_path, monkeypatch):
    import faketrace.forensics.report as report
    from faketrace.forensics.scan import EXIT_REPORT_FAILED

    def broken(*args, **kwargs):
        raise RuntimeError("report renderer broke")

    monkeypatch.setattr(report, "build_report", broken)
    case = tmp_path / "case"
    summary = scan([evidence["loose"] / "photo_real.jpg"], case, scan_ckpt)
    assert summary["exit_status"] == EXIT_REPORT_FAILED and "broke" in summary["report"]["error"]
    custody = json.loads((case / "custody.json").read_text())
    assert custody["session"]["exit_status"] == EXIT_REPORT_FAILED
    assert json.loads((case / "scan_summary.json").read_text())["exit_status"] == EXIT_REPORT_FAILED
    _, items = results(case)
    assert [r["status"] for r in items.values()] == ["scanned"]  # the results are intact


# -- 2: memory per item, not per frame; a memory cap on the decoder process ---------------------------
def _gif_bomb(path: Path, side: int = 7999, frames: int = 8) -> Path:
    """Frames of side x side in two flat colours: a few KB on disk, side**2 pixels each when decoded."""
    from PIL import Image

    a, b = Image.new("P", (side, side), 0), Image.new("P", (side, side), 1)
    a.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    b.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    a.save(path, save_all=True, append_images=[b, a] * ((frames - 1) // 2) + [b] * ((frames - 1) % 2),
           duration=100, loop=0, optimize=False)
    return path


def _big_video(path: Path, side: int = 4096, frames: int = 8) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), 30 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_an_animation_of_huge_frames_decodes_within_the_item_pixel_budget(tmp_path):
    """Sizes scaled down for speed (the 7999 x 7999 GIF runs in the hostile table and the mixed-folder test)."""
    from faketrace.datasets.media import IsolatedDecoder

    gif = _gif_bomb(tmp_path / "bomb.gif", side=3000, frames=8)
    budget = 2 * 3000 * 3000 + 1
    decoder = IsolatedDecoder(isolate=True)
    try:
        img = decoder("read_image_frames", gif, max_frames=32, max_item_pixels=budget, hard_limit_s=120)
    finally:
        decoder.close()
    assert img.n_frames == 8 and sorted(img.frames) == [0, 7]
    assert "2 of 8 frames" in img.note and "pixel budget" in img.note
    assert 0 < decoder.peak_rss_bytes < 2 * GiB
    from faketrace.datasets.media import ImageTooLarge, read_image_frames

    with pytest.raises(ImageTooLarge, match="above the item's pixel budget"):
        read_image_frames(gif, max_frames=1, max_item_pixels=3000 * 3000 - 1)


def test_a_video_of_huge_frames_samples_fewer_frames(tmp_path):
    from faketrace.datasets.media import read_video_frames

    video = _big_video(tmp_path / "big.mp4", side=1024, frames=8)
    v = read_video_frames(video, 32, max_item_pixels=3 * 1024 * 1024)
    assert v.decoded_frames == 8 and len(v.frames) == 3 and v.sampled == [0, 4, 7]
    assert "3 of 8 frames" in v.note and v.error is None
    assert len(read_video_frames(video, 32, max_item_pixels=None).frames) == 8  # no budget: every frame


def test_a_decoder_past_its_memory_cap_is_killed_and_reported(tmp_path):
    from faketrace.datasets.media import IsolatedDecoder, ResourceLimit

    gif = _gif_bomb(tmp_path / "bomb.gif", side=6000, frames=4)
    decoder = IsolatedDecoder(isolate=True, max_rss_bytes=250 << 20)
    try:
        with pytest.raises(ResourceLimit, match="above the limit of 250 MiB"):
            decoder("read_image_frames", gif, max_frames=4, max_item_pixels=None, hard_limit_s=120)
        # The next item decodes in a fresh process.
        small = _gif_bomb(tmp_path / "small.gif", side=64, frames=2)
        assert len(decoder("read_image_frames", small, max_frames=2, hard_limit_s=60).frames) == 2
    finally:
        decoder.close()


def test_a_decoder_killed_by_the_system_is_a_resource_limit_not_a_crash(scan_ckpt, evidence, tmp_path, monkeypatch):
    folder = tmp_path / "ev"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes((evidence["loose"] / "photo_real.jpg").read_bytes())
    monkeypatch.setenv("FAKETRACE_FAULT", "in_decoder_process@2:kill")  # SIGKILL, as the OOM killer sends
    case = tmp_path / "case"
    scan([folder], case, scan_ckpt, "report.enabled=false")
    _, items = results(case)
    got = {r["rel_path"]: (r["status"], r.get("reason") or "") for r in items.values()}
    assert got["b.jpg"][0] == "resource_limit" and "killed by the system" in got["b.jpg"][1]
    assert got["a.jpg"][0] == got["c.jpg"][0] == "scanned"


# -- 7: size before hashing; hashing streamed within a time budget; the closing check by stat ----------
def test_a_huge_file_is_refused_by_size_and_its_hashing_is_bounded_in_time(scan_ckpt, evidence, tmp_path):
    folder = tmp_path / "ev"
    folder.mkdir()
    sparse(folder / "huge.mp4", 10 * GiB, b"\x00\x00\x00\x18ftypmp42")
    (folder / "photo.jpg").write_bytes((evidence["loose"] / "photo_real.jpg").read_bytes())
    case = tmp_path / "case"
    t0 = time.perf_counter()
    summary = scan([folder], case, scan_ckpt, "scan.hash_time_limit_s=1", "report.enabled=false")
    assert time.perf_counter() - t0 < 120  # a full hash of 10 GiB twice took over a minute
    _, items = results(case)
    huge = items["0/huge.mp4"]
    assert huge["status"] == "oversized" and huge["sha256"] is None and huge["size_bytes"] == 10 * GiB
    assert "above the limit" in huge["reason"] and "hashing stopped after" in huge["reason"]
    assert items["0/photo.jpg"]["status"] == "scanned" and items["0/photo.jpg"]["sha256"]
    custody = json.loads((case / "custody.json").read_text())
    integrity = custody["evidence_integrity"]
    assert integrity["all_unchanged"] and integrity["checked_by_stat"] == 1 and "time budget" in integrity["algorithm"]
    assert summary["evidence_unchanged"] is True


def test_the_closing_check_by_size_mtime_and_inode_is_stated_in_custody(scan_ckpt, evidence, tmp_path):
    photo = evidence["loose"] / "photo_real.jpg"
    case = tmp_path / "case"
    scan([photo], case, scan_ckpt, "scan.verify=stat", "report.enabled=false")
    integrity = json.loads((case / "custody.json").read_text())["evidence_integrity"]
    assert integrity["verification"] == "stat" and integrity["all_unchanged"] is True
    assert "modification time" in integrity["algorithm"] and "not its content" in integrity["algorithm"]
    rows = (case / "input_hashes.csv").read_text().splitlines()
    assert rows[1].endswith(",not re-hashed,True,size+mtime+inode")


# -- 8: extreme aspect ratios --------------------------------------------------------------------------
def test_extreme_aspect_ratios_get_a_clear_status(scan_ckpt, tmp_path):
    from PIL import Image

    folder = tmp_path / "ev"
    folder.mkdir()
    Image.new("RGB", (65535, 1), (90, 90, 90)).save(folder / "wide.png")
    Image.new("RGB", (1, 65535), (90, 90, 90)).save(folder / "tall.png")
    Image.new("RGB", (3000, 20), (90, 90, 90)).save(folder / "strip.png")
    case = tmp_path / "case"
    scan([folder], case, scan_ckpt, "report.enabled=false")
    _, items = results(case)
    for name, size in (("wide.png", "65535x1"), ("tall.png", "1x65535"), ("strip.png", "3000x20")):
        r = items[f"0/{name}"]
        assert r["status"] == "unsupported" and r["reason"].startswith(size) and "not assessed" in r["reason"], r
        assert r["sha256"] and r["decode"]["width"] * r["decode"]["height"] == int(size.split("x")[0]) * int(
            size.split("x")[1])


def test_the_face_detector_takes_a_frame_that_scales_to_under_a_pixel():
    import numpy as np

    from faketrace.datasets.faces import build_detector

    detector = build_detector("retinaface", max_side=640)
    assert detector.detect([np.zeros((1, 65535, 3), np.uint8)]) == [[]]


# -- 11: access times ----------------------------------------------------------------------------------
def test_the_scan_leaves_access_times_of_files_and_folders_unchanged(scan_ckpt, evidence, tmp_path):
    import shutil

    root = tmp_path / "ev"
    shutil.copytree(evidence["telegram"], root / "ChatExport")
    shutil.copytree(evidence["html"], root / "HtmlExport")
    (root / "loose").mkdir()
    (root / "loose" / "photo.jpg").write_bytes((evidence["loose"] / "photo_real.jpg").read_bytes())
    old = 978307200 * 10**9  # 2001-01-01: relatime updates any access time older than a day
    paths = [root, *root.rglob("*")]
    for p in paths:
        st = os.stat(p)
        os.utime(p, ns=(old, st.st_mtime_ns))
    before = {p: os.stat(p).st_atime_ns for p in paths}
    case = tmp_path / "case"
    scan([root], case, scan_ckpt)
    changed = [str(p.relative_to(root)) for p in paths if os.stat(p).st_atime_ns != before[p]]
    assert changed == []
    custody = json.loads((case / "custody.json").read_text())
    if os.geteuid() == 0:
        assert "access times unchanged" in custody["access_times"]


# -- all of it at once: every input accounted for, memory bounded ---------------------------------------
@pytest.mark.slow
def test_a_mixed_hostile_folder_is_scanned_whole_within_2_gb(scan_ckpt, evidence, tmp_path):
    """One folder holding every hostile input above, scanned by `evaluate.py` as an analyst runs it:
    each input has its item with the expected status, and the peak resident memory of the scan
    process and of its decoder processes stays under 2 GB (measured by the scan, from getrusage
    and /proc VmHWM, and recorded in scan_summary.json)."""
    from PIL import Image

    photo = (evidence["loose"] / "photo_real.jpg").read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text('{"name": "SECRET", "messages": []}')
    root = tmp_path / "seized"
    root.mkdir()
    (root / os.fsdecode(b"\xff\xfe.jpg")).write_bytes(photo)
    (root / "rtl_\u202egpj.exe").write_bytes(photo)
    (root / "two\nlines.jpg").write_bytes(photo)
    _gif_bomb(root / "bomb.gif")
    _big_video(root / "big.mp4")
    Image.new("RGB", (65535, 1)).save(root / "wide.png")
    Image.new("RGB", (1, 65535)).save(root / "tall.png")
    sparse(root / "huge.bin", 10 * GiB, b"\x00\x00\x00\x18ftypmp42")
    (root / "link.jpg").symlink_to(outside / "secret.json")
    huge_export = _export_with_photo(root / "ChatExport_huge", photo)
    sparse(huge_export / "result.json", 6 * GiB, b'{"messages": [')
    linked_export = _export_with_photo(root / "ChatExport_link", photo)
    (linked_export / "result.json").symlink_to(outside / "secret.json")
    inf_export = _export_with_photo(root / "ChatExport_inf", photo)
    (inf_export / "result.json").write_text('{"name": "G", "messages": [{"id": 1, "photo": "photos/p.jpg", '
                                            '"width": 1e309}]}')
    expected = {"\\xff\\xfe.jpg": "scanned", "rtl_\\u202egpj.exe": "scanned", "two\\x0alines.jpg": "scanned",
                "bomb.gif": "no_face", "big.mp4": "no_face", "wide.png": "unsupported", "tall.png": "unsupported",
                "huge.bin": "oversized", "link.jpg": "refused",
                "ChatExport_huge/result.json": "error", "ChatExport_huge/photos/p.jpg": "scanned",
                "ChatExport_link/result.json": "refused", "ChatExport_link/photos/p.jpg": "scanned",
                "ChatExport_inf/photos/p.jpg": "scanned"}
    case = tmp_path / "case"
    run = evaluate(*scan_args([root], case, scan_ckpt, "allow_unvalidated=true", "scan.hash_time_limit_s=2"))
    assert run.returncode == 3, run.stderr[-3000:]
    header, items = results(case)
    assert {r["rel_path"]: r["status"] for r in items.values()} == expected, \
        {r["rel_path"]: r.get("reason") for r in items.values() if r["status"] != expected.get(r["rel_path"])}
    assert all(r.get("reason") for r in items.values() if r["status"] not in ("scanned", "no_face"))
    assert items["0/bomb.gif"]["decode"]["frames_note"].startswith("1 of ")  # 1 frame of 64 M pixels fits 64 M
    assert items["0/big.mp4"]["decode"]["frames_read"] == 3 and "3 of 4 frames" in items["0/big.mp4"]["decode"]["frames_note"]
    summary = strict_json((case / "scan_summary.json").read_text())
    used = summary["resources"]
    print(f"peak resident memory: scan {used['scan_peak_rss_bytes'] / 1e9:.2f} GB, "
          f"decoder {used['decoder_peak_rss_bytes'] / 1e9:.2f} GB")
    assert 0 < used["scan_peak_rss_bytes"] < 2e9 and 0 < used["decoder_peak_rss_bytes"] < 2e9, used
    for line in (case / "scan_results.jsonl").read_text().splitlines():
        strict_json(line)
    assert "SECRET" not in (case / "report.json").read_text()
    assert summary["evidence_unchanged"] is True
