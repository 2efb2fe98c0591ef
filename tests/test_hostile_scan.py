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
