"""The forensic scan through the real configs: mixed evidence, statuses, custody, resumption, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faketrace.forensics.discover import CaseDirError, register_case_resolver
from faketrace.forensics.scan import EXIT_ITEMS_FAILED, UnvalidatedModelError, scan_from_config
from faketrace.forensics.scoring import STATUSES
from faketrace.models.spec import ModelSpec, VideoSpec, checkpoint_spec

from .conftest import compose_config, resolved, results, scan_cfg, tree_snapshot

register_case_resolver()


def test_scan_of_mixed_evidence_gives_every_item_a_status_and_leaves_evidence_untouched(scan_ckpt, evidence,
                                                                                      tmp_path):
    before = tree_snapshot(evidence["root"])
    model = [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]
    summary = scan_from_config(scan_cfg(evidence["inputs"], tmp_path / "case", model))
    header, items = results(tmp_path / "case")
    assert tree_snapshot(evidence["root"]) == before  # bytes, sizes, mtimes; no new file anywhere
    assert summary["exit_status"] == EXIT_ITEMS_FAILED and summary["evidence_unchanged"] is True
    assert all(r["status"] in STATUSES for r in items.values())
    status = {k: r["status"] for k, r in items.items()}
    assert status["0/empty.jpg"] == "empty"
    assert status["0/notes.jpg"] == "unsupported"
    assert status["0/truncated_index_at_end.mp4"] == "decode_error"
    partial = items["0/truncated_index_at_start.mp4"]
    assert partial["status"] in ("scanned", "no_face") and partial["decode"]["partial"] is True
    assert partial["decode"]["frames_decoded"] < partial["decode"]["frames_claimed"]
    for key in ("0/sub/clip_fake.mp4", "0/photo_real.jpg", "0/animation.gif"):
        r = items[key]
        assert r["status"] == "scanned", r
        assert r["verdict"] in ("likely_manipulated", "inconclusive", "no_evidence_of_manipulation")
        assert 0 <= r["score"]["probability"] <= 1 and r["n_faces_detected"] >= 1
        assert len(r["sha256"]) == 64 and len(r["md5"]) == 32 and r["size_bytes"] > 0
        assert r["warning"].startswith("NOT VALIDATED FOR CASEWORK")
    assert items["0/animation.gif"]["score"]["level"] == "video" and items["0/animation.gif"]["decode"]["n_frames"] == 4
    assert items["0/sub/clip_fake.mp4"]["score"]["rule"] == "mean"
    assert items["0/photo_real.jpg"]["score"]["level"] == "frame"
    # Scores are rounded to 6 decimals; bands come from the thresholds fitted on validation data.
    p = items["0/photo_real.jpg"]["score"]["probability"]
    assert p == round(p, 6)
    assert "fitted on validation data" in header["model"]["bands"]["item"]["source"]

    # Telegram JSON: each file tied to its message; placeholders missing; escaping paths refused.
    tg = {r["rel_path"]: r for r in items.values() if r["input_index"] == 1}
    photo = tg["photos/photo_1@20-11-2026_10-00-00.jpg"]
    ctx = photo["telegram"][0]
    assert (ctx["message_id"], ctx["from"], ctx["chat_name"], ctx["text"]) == (101, "Sender A", "Group", "look here")
    assert ctx["date_utc"] == "2026-11-20T10:00:00Z"  # from date_unixtime, not the local `date`
    assert tg["video_files/video_2@20-11-2026_10-05-00.mp4"]["telegram"][0]["forwarded_from"] == "Channel X"
    assert tg["files/unreferenced.jpg"]["telegram"] is None and tg["files/unreferenced.jpg"]["status"] == "scanned"
    refs = [r for r in tg.values() if r["rel_path"].startswith("#message/")]
    by_msg = {r["telegram"][0]["message_id"]: r for r in refs}
    assert by_msg[103]["status"] == "missing" and "File not included" in by_msg[103]["reason"]
    assert by_msg[104]["status"] == "refused" and by_msg[106]["status"] == "refused"
    assert by_msg[106]["telegram"][0]["date_local_no_zone"] == "2021-03-01T09:00:00"
    assert "result.json" not in tg
    # Telegram HTML: structure files are not items; the photo is, with its message read from the
    # page; a photo that was not downloaded is missing; the analyst is told how to export JSON.
    html = {r["rel_path"]: r for r in items.values() if r["input_index"] == 2}
    assert set(html) == {"photos/photo_7@21-11-2026_09-00-00.jpg", "#message/None/8/photo/0"}
    (ctx,) = html["photos/photo_7@21-11-2026_09-00-00.jpg"]["telegram"]
    assert (ctx["chat_name"], ctx["message_id"], ctx["from"], ctx["via_bot"], ctx["text"]) == \
        ("Class 9b", 7, "Sender D", "@some_bot", "who is this")
    assert ctx["date_utc"] == "2026-11-21T09:00:00Z" and ctx["export_form"] == "html"
    missing = html["#message/None/8/photo/0"]
    assert missing["status"] == "missing" and "Not included" in missing["reason"]
    assert missing["telegram"][0]["from"] == "Sender D" and missing["telegram"][0]["reply_to_message_id"] == 7
    assert any("Machine-readable JSON" in w for w in summary["warnings"])

    custody = json.loads((tmp_path / "case" / "custody.json").read_text())
    assert custody["case"] == {"id": "TEST-1", "operator": "pytest", "directory": str((tmp_path / "case").resolve())}
    assert custody["model"]["sha256"] and custody["model"]["fit_for_casework"] is False
    assert custody["evidence_integrity"]["all_unchanged"] is True
    assert custody["evidence_integrity"]["items_hashed"] == sum(1 for r in items.values() if r.get("sha256"))
    assert custody["session"]["exit_status"] == EXIT_ITEMS_FAILED and custody["session"]["ended_utc"].endswith("Z")
    assert custody["warning"].startswith("NOT VALIDATED") and "inputs:" in custody["config"]
    assert custody["tool"]["versions"]["torch"]

    # Re-running the same case redoes nothing and gives the same results; a fresh case gives them too.
    again = scan_from_config(scan_cfg(evidence["inputs"], tmp_path / "case", model))
    assert again["scanned_this_session"] == 0 and again["already_done"] == len(items)
    assert results(tmp_path / "case")[1] == items
    scan_from_config(scan_cfg(evidence["inputs"], tmp_path / "fresh", model))
    assert results(tmp_path / "fresh")[1] == items
    sessions = json.loads((tmp_path / "case" / "custody.json").read_text())["sessions"]
    assert [s["session"] for s in sessions] == [1, 2]


def test_unvalidated_model_needs_explicit_permission(scan_ckpt, evidence, tmp_path):
    with pytest.raises(UnvalidatedModelError, match="allow_unvalidated=true"):
        scan_from_config(scan_cfg([evidence["loose"]], tmp_path / "case", [f"ckpt_path={scan_ckpt}"]))
    assert not (tmp_path / "case" / "case.sqlite").exists()


def test_case_directory_among_the_evidence_is_refused_before_anything_is_written(scan_ckpt, evidence, tmp_path):
    inside = evidence["loose"] / "case"
    cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{evidence['loose']}]", "case.id=X", "case.operator=Y",
                                      f"case.dir={inside}", f"ckpt_path={scan_ckpt}"])
    with pytest.raises(Exception, match="inside the input folder"):
        _ = cfg.hydra.run.dir  # what Hydra resolves before it creates the run directory
    beside = evidence["loose"].parent / "photo.jpg"
    with pytest.raises(CaseDirError, match="folder of the input file"):
        scan_from_config(scan_cfg([evidence["loose"] / "photo_real.jpg"], evidence["loose"] / "c",
                                  [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]))
    assert not inside.exists() and not beside.exists() and not (evidence["loose"] / "c").exists()


def test_onnx_export_scans_like_the_checkpoint(demo_data, scan_ckpt, evidence, tmp_path):
    from faketrace.engine.export import export_checkpoint

    export_checkpoint(resolved(compose_config("export", demo_data["overrides"] + [
        f"ckpt_path={scan_ckpt}", "verify.n_images=8", f"out_dir={tmp_path / 'export'}"], output_dir=tmp_path / "e")))
    inputs = [evidence["loose"] / "sub", evidence["telegram"]]
    scan_from_config(scan_cfg(inputs, tmp_path / "torch", [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]))
    scan_from_config(scan_cfg(inputs, tmp_path / "onnx", [f"model_dir={tmp_path / 'export'}",
                                                          "allow_unvalidated=true"]))
    header_t, torch_items = results(tmp_path / "torch")
    header_o, onnx_items = results(tmp_path / "onnx")
    assert header_o["model"]["kind"] == "onnx" and header_t["model"]["kind"] == "pytorch"
    assert torch_items.keys() == onnx_items.keys()
    scored = [k for k, r in torch_items.items() if r["status"] == "scanned"]
    assert len(scored) >= 3
    for k in scored:
        a, b = torch_items[k], onnx_items[k]
        assert abs(a["score"]["probability"] - b["score"]["probability"]) <= 1e-4
        assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]


def test_scan_sees_the_crops_evaluation_saw(demo_data, scan_ckpt, tmp_path):
    """Same frames, same detector, same crops: the scan's largest-face logits equal evaluation's."""
    import torch

    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.engine.evaluate import score_split

    ckpt = load_checkpoint(scan_ckpt)
    frames = score_split(ckpt, resolved(compose_config("evaluate", demo_data["overrides"] + [
        f"ckpt_path={scan_ckpt}"])).data, "test", 16, 0, torch.device("cpu"))
    video_id = sorted(frames[frames["media_type"] == "video"]["video_id"].unique())[0] \
        if "media_type" in frames else sorted(frames["video_id"].unique())[0]
    path = Path(demo_data["cfg"].data.root) / demo_data["index"].set_index("id").loc[video_id, "path"]
    scan_from_config(scan_cfg([path], tmp_path / "case", [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]))
    _, items = results(tmp_path / "case")
    (item,) = items.values()
    largest = {f["frame_index"]: f["logit"] for f in item["faces"] if f["face_rank"] == 0}
    expected = frames[frames["video_id"] == video_id].set_index("frame_index")["logit"]
    assert sorted(largest) == sorted(expected.index)
    np.testing.assert_allclose([largest[i] for i in expected.index], expected.to_numpy(), atol=1e-5)
    # ...and the item's calibrated probability is evaluation's calibrated video score.
    from faketrace.engine.calibration import calibrated_videos

    one = frames[frames["video_id"] == video_id]
    assert len(set(largest)) == len(item["faces"])  # one face per frame: max over faces = the largest face
    _, videos = calibrated_videos(one, checkpoint_spec(ckpt).video.rule, ckpt["calibration"])
    assert item["score"]["probability"] == pytest.approx(float(videos["score"].iloc[0]), abs=2e-6)


def test_numpy_model_input_matches_the_evaluation_transform():
    from faketrace.datasets.face_pipeline import model_input
    from faketrace.datasets.transforms import apply, eval_transform

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(3)]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours = model_input(crops, 64, mean, std)
    theirs = np.stack([apply(eval_transform(64, mean, std), c, None).numpy() for c in crops])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


# -- the scan as an analyst runs it: a separate process --------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def scan_command(inputs, case_dir: Path, ckpt: Path, *extra: str) -> list[str]:
    import sys

    listed = ",".join(str(p) for p in inputs)
    return [sys.executable, "evaluate.py", "mode=scan", f"inputs=[{listed}]", f"ckpt_path={ckpt}",
            "allow_unvalidated=true", "case.id=TEST-2", "case.operator=pytest", f"case.dir={case_dir}",
            "scan.progress=false", *extra]


def run(cmd: list[str], env_extra: dict | None = None, prefix: list[str] = ()):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "FAKETRACE_FAULT"}
    env.update(env_extra or {})
    return subprocess.run([*prefix, *cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def inet_connects(trace: Path) -> list[str]:
    """connect() calls of the AF_INET and AF_INET6 families in an strace -f log."""
    return [line for line in trace.read_text().splitlines() if "connect(" in line and "AF_INET" in line]


@pytest.mark.slow
def test_scan_makes_no_network_connection(scan_ckpt, evidence, tmp_path):
    import shutil
    import sys

    strace = shutil.which("strace")
    assert strace, "strace is needed (.ci/run installs it with apt-get)"
    # The control: the same tracing does see a connection attempt when a process makes one.
    control = tmp_path / "control.txt"
    probe = ("import socket; s = socket.socket(); s.settimeout(1)\n"
             "try: s.connect(('127.0.0.1', 9))\nexcept OSError: pass")
    run([sys.executable, "-c", probe], prefix=[strace, "-f", "-e", "trace=connect", "-o", str(control)])
    assert len(inet_connects(control)) == 1

    trace = tmp_path / "trace.txt"
    proc = run(scan_command(evidence["inputs"], tmp_path / "case", scan_ckpt),
               prefix=[strace, "-f", "-e", "trace=connect", "-o", str(trace)])
    assert proc.returncode == EXIT_ITEMS_FAILED, proc.stderr[-3000:]
    assert (tmp_path / "case" / "scan_results.jsonl").is_file()
    assert inet_connects(trace) == []


@pytest.mark.slow
def test_killed_scan_resumes_without_redoing_or_losing_items(scan_ckpt, evidence, tmp_path):
    inputs = [evidence["loose"], evidence["telegram"]]
    reference = tmp_path / "reference"
    assert run(scan_command(inputs, reference, scan_ckpt)).returncode == EXIT_ITEMS_FAILED
    _, expected = results(reference)

    case = tmp_path / "case"
    # Killed (no clean-up at all) after the 5th item was scored and before it was stored.
    killed = run(scan_command(inputs, case, scan_ckpt), {"FAKETRACE_FAULT": "scan_before_item_stored@5:exit"})
    assert killed.returncode == 77, killed.stderr[-3000:]
    import sqlite3

    with sqlite3.connect(case / "case.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 4
    custody = json.loads((case / "custody.json").read_text())
    assert custody["session"]["ended_utc"] is None  # the record of the interrupted session survives

    resumed = run(scan_command(inputs, case, scan_ckpt))
    assert resumed.returncode == EXIT_ITEMS_FAILED, resumed.stderr[-3000:]
    summary = json.loads((case / "scan_summary.json").read_text())
    assert summary["already_done"] == 4 and summary["scanned_this_session"] == len(expected) - 4
    assert results(case)[1] == expected
    sessions = json.loads((case / "custody.json").read_text())["sessions"]
    assert [s["ended"] for s in sessions] == ["interrupted (no end recorded)", "normally"]


@pytest.mark.slow
def test_memory_stays_flat_over_ten_thousand_items(scan_ckpt, tmp_path):
    """RSS slope between 2,000 and 10,000 small faceless images: under 20 MB over the 8,000 items."""
    from PIL import Image

    evidence = tmp_path / "many"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    for i in range(10_000):
        folder = evidence / f"{i // 1000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        img = base.copy()
        img[0, 0] = (i % 256, i // 256 % 256, 7)  # every file distinct
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    case = tmp_path / "case"
    # The report is not part of this measurement (its own tests cover it); the scan loop is.
    proc = run(scan_command([evidence], case, scan_ckpt, "scan.progress_every=500", "report.enabled=false"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (case / "progress.jsonl").read_text().splitlines()]
    items = np.array([r["items_this_session"] for r in rows])
    rss = np.array([r["rss_bytes"] for r in rows], np.float64)
    window = items >= 2000
    assert items.max() == 10_000 and window.sum() >= 10
    slope = np.polyfit(items[window], rss[window], 1)[0]  # bytes per item
    print(f"RSS slope {slope:.1f} B/item: {slope * 8000 / 1e6:.2f} MB from 2,000 to 10,000 items")
    assert slope * 8000 < 20e6, f"memory grows {slope * 8000 / 1e6:.1f} MB from 2,000 to 10,000 items"
    summary = json.loads((case / "scan_summary.json").read_text())
    assert summary["by_status"] == {"no_face": 10_000}


def test_python_level_connections_fail_during_a_scan():
    import socket

    from faketrace.forensics.custody import Offline as _Offline

    _Offline.enter()
    try:
        with pytest.raises(ConnectionRefusedError, match="no network"):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
    finally:
        _Offline.active = False
    with pytest.raises(OSError) as refused:  # outside a scan the hook is inert: the port is just closed
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    assert "no network" not in str(refused.value)


# -- image-level models in the scan -----------------------------------------------------------------

@pytest.fixture(scope="module")
def image_ckpt(scan_ckpt, tmp_path_factory):
    """An image-level checkpoint (whole-image 64-px tiles, max rule) made from the tiny model's weights."""
    from faketrace.datasets.image_pipeline import ImageSpec
    from faketrace.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(scan_ckpt)
    ckpt.pop("format")
    face = checkpoint_spec(ckpt)
    ckpt["spec"] = ModelSpec(level="image", input=face.input, image=ImageSpec(tile_size=64, aggregation="max"),
                             video=VideoSpec(frames_per_video=None, rule="mean")).to_dict()
    # Declared as a scenes model (still images without faces), as the image-level demo's is.
    ckpt["data"] = {**ckpt["data"], "domain": {"media": ["still"], "faces": "absent"}}
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("image_model") / "image.ckpt")


@pytest.fixture(scope="module")
def faceless_and_face(evidence, tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("mixed_images")
    rng = np.random.default_rng(1)
    for i, size in enumerate(((100, 150), (64, 64), (40, 90))):  # below, at and above one tile
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"scene_{i}.png")
    (folder / "face.jpg").write_bytes((evidence["loose"] / "photo_real.jpg").read_bytes())
    return folder


def test_image_level_model_scores_every_image_with_or_without_faces(image_ckpt, faceless_and_face, tmp_path):
    import torch
    from PIL import Image

    from faketrace.datasets.image_pipeline import ImageSpec, image_model_input
    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.engine.inference import model_from_checkpoint

    scan_from_config(scan_cfg([faceless_and_face], tmp_path / "case", [f"ckpt_path={image_ckpt}",
                                                                       "allow_unvalidated=true"]))
    header, items = results(tmp_path / "case")
    assert header["model"]["level"] == "image" and len(items) == 4
    ckpt = load_checkpoint(image_ckpt)
    model = model_from_checkpoint(ckpt)
    for r in items.values():
        assert r["status"] == "scanned" and r["decided_by"] == "image" and "faces" not in r
        level = r["image_level"]
        image = np.asarray(Image.open(faceless_and_face / r["rel_path"]).convert("RGB"))
        x, boxes = image_model_input(image, ImageSpec(tile_size=64), checkpoint_spec(ckpt).input)
        with torch.no_grad():
            cal = ckpt["calibration"]
            probs = torch.sigmoid(model(torch.from_numpy(x)) / cal["temperature"] + cal.get("bias", 0.0)).numpy()
        assert level["tiles"]["boxes"] == [list(b) for b in boxes]
        np.testing.assert_allclose(level["tiles"]["probabilities"], probs, atol=1e-5)
        assert r["score"]["probability"] == pytest.approx(float(probs.max()), abs=1e-5)  # the max rule
        covered = np.zeros(image.shape[:2], bool)
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] = True
        assert covered.all()


def test_face_and_image_models_together_report_both_and_the_deciding_one(scan_ckpt, image_ckpt, faceless_and_face,
                                                                        tmp_path):
    scan_from_config(scan_cfg([faceless_and_face], tmp_path / "case", [
        f"ckpt_path={scan_ckpt}", f"image_ckpt_path={image_ckpt}", "allow_unvalidated=true"]))
    header, items = results(tmp_path / "case")
    assert header["model"]["level"] == "face" and header["image_model"]["level"] == "image"
    assert "training domain" in header["combination"]
    face = items["0/face.jpg"]
    assert face["status"] == "scanned" and face["faces"]
    # The image-level model was trained on scenes without faces (its data's domain): it never decides
    # a face, and the item's `why` says so beside both scores.
    image = next(o for o in face["opinions"] if o["model"] == "image")
    assert not image["in_domain"] and "without faces" in image["outside_domain"][0]
    assert face["decided_by"] == "face" and face["verdict"] == face["face_level"]["verdict"]
    assert f"{face['image_level']['score']['probability']:.3f}" in face["why"] and "not used" in face["why"]
    for name in ("scene_0.png", "scene_1.png", "scene_2.png"):
        r = items[f"0/{name}"]
        assert r["status"] == "scanned" and r["decided_by"] == "image"
        assert r["face_level"]["status"] == "no_face" and r["score"] == r["image_level"]["score"]


def test_a_full_disk_stops_the_scan_keeps_stored_items_and_a_rerun_completes(scan_ckpt, evidence, tmp_path,
                                                                             monkeypatch):
    """SQLite's own full-disk error (SQLITE_FULL, from a page limit on the store), then a full disk while
    the results file is written (ENOSPC at an atomic-write fault point), then a run with space."""
    import faketrace.forensics.scan as scan_module
    from faketrace.datasets.faults import FAULT_ENV
    from faketrace.forensics.case_store import CaseStore, CaseStoreError

    class FillingStore(CaseStore):
        def __init__(self, case_dir):
            super().__init__(case_dir)
            pages = self.db.execute("PRAGMA page_count").fetchone()[0]
            self.db.execute(f"PRAGMA max_page_count = {pages + 3}")  # room for a few results only

    inputs, model = [evidence["loose"]], [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"]
    scan_from_config(scan_cfg(inputs, tmp_path / "reference", model))
    _, expected = results(tmp_path / "reference")

    case = tmp_path / "case"
    monkeypatch.setattr(scan_module, "CaseStore", FillingStore)
    with pytest.raises(CaseStoreError) as full:
        scan_from_config(scan_cfg(inputs, case, model))
    monkeypatch.setattr(scan_module, "CaseStore", CaseStore)
    store = CaseStore(case)
    kept = sum(store.counts().values())
    store.close()
    assert 0 < kept < len(expected)
    message = str(full.value)
    assert "could not store the result of item 0/" in message and "(the disk is full)" in message, message
    assert f"the {kept} item results stored before are kept" in message and "re-run the same command" in message

    monkeypatch.setenv(FAULT_ENV, "atomic_after_tmp_written/scan_results.jsonl:enospc")
    with pytest.raises(OSError, match=f"while writing {case / 'scan_results.jsonl'}"):
        scan_from_config(scan_cfg(inputs, case, model))
    monkeypatch.delenv(FAULT_ENV)
    assert not (case / "scan_results.jsonl").exists()

    summary = scan_from_config(scan_cfg(inputs, case, model))
    assert summary["already_done"] == len(expected) and summary["scanned_this_session"] == 0
    assert results(case)[1] == expected


# -- Telegram exports: HTML context, exports inside folders, broken exports ------------------------
def _items(inputs) -> dict:
    from faketrace.forensics.discover import describe_inputs, iter_items

    return {i.rel_path: i for i in iter_items(describe_inputs(inputs))}


def test_html_export_pages_give_each_photo_its_message(tmp_path):
    from .conftest import telegram_html_message, telegram_html_page

    root = tmp_path / "ChatExport_2026-11-22"
    for d in ("photos", "css", "js"):
        (root / d).mkdir(parents=True)
    for name in ("photo_1@22-11-2026_08-00-00.jpg", "photo 2.jpg", "photo_3.jpg"):
        (root / "photos" / name).write_bytes(b"\xff\xd8\xff")
    (root / "messages.html").write_text(telegram_html_page("Room", [
        telegram_html_message(1, "22.11.2026 08:00:00 UTC-05:00", "Alice",
                              '<a class="photo_wrap clearfix pull_left" href="photos/photo_1@22-11-2026_08-00-00.jpg">'
                              '<img src="photos/photo_1@22-11-2026_08-00-00_thumb.jpg"/></a>',
                              'see <a href="https://example.org/x">this</a><br>now'),
        telegram_html_message(2, "22.11.2026 08:01:00 UTC-05:00", "Bob",
                              '<a class="photo_wrap clearfix pull_left" href="../../outside.jpg">x</a>',
                              forwarded_from="Channel Y"),
    ]), encoding="utf-8")
    # The second page continues the chat: a joined message keeps Bob as its sender; an older client
    # wrote the time without its UTC offset; a percent-encoded file name.
    (root / "messages2.html").write_text(telegram_html_page("Room", [
        telegram_html_message(3, "22.11.2026 08:02:00", None,
                              '<a class="photo_wrap clearfix pull_left" href="photos/photo%202.jpg">x</a>'),
    ]), encoding="utf-8")
    items = _items([root])
    assert set(items) == {"photos/photo_1@22-11-2026_08-00-00.jpg", "photos/photo 2.jpg", "photos/photo_3.jpg",
                          "#message/None/2/photo/0"}
    (first,) = items["photos/photo_1@22-11-2026_08-00-00.jpg"].telegram
    assert (first["from"], first["date_utc"], first["utc_offset"], first["text"], first["page"]) == \
        ("Alice", "2026-11-22T13:00:00Z", "-05:00", "see this now", "messages.html")
    refused = items["#message/None/2/photo/0"]
    assert refused.status == "refused" and "leaves the export folder" in refused.reason
    assert refused.telegram[0]["forwarded_from"] == "Channel Y"
    assert refused.telegram[0]["forwarded_date"]["date_utc"] == "2026-11-19T08:00:00Z"
    (third,) = items["photos/photo 2.jpg"].telegram
    assert (third["from"], third["date_local_no_zone"], third["page"]) == ("Bob", "2026-11-22T08:02:00", "messages2.html")
    assert "from_inferred" in third and "date_utc" not in third
    assert items["photos/photo_3.jpg"].telegram == []  # in the folder, in no message: still an item


def test_an_export_inside_a_folder_is_read_as_an_export(evidence):
    """A seized disk holds exports among other files: their media keep the message context."""
    items = _items([evidence["root"]])
    photo = items["ChatExport_2026-11-20/photos/photo_1@20-11-2026_10-00-00.jpg"]
    assert photo.source == "telegram_json" and photo.telegram[0]["message_id"] == 101
    assert items["ChatExport_2026-11-21/photos/photo_7@21-11-2026_09-00-00.jpg"].telegram[0]["from"] == "Sender D"
    assert items["ChatExport_2026-11-20/#message/555/103/file/0"].status == "missing"
    assert not any(k.endswith(("result.json", "messages.html")) or "/css/" in k for k in items)
    assert items["loose/photo_real.jpg"].source == "folder"


def test_a_broken_result_json_costs_the_context_not_the_media(tmp_path):
    root = tmp_path / "ChatExport_2026-11-23"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "photo_1.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "result.json").write_text('{"messages": [{"id": 1, "photo": "photos/photo_1.jpg"}', encoding="utf-8")
    items = _items([root])
    assert items["photos/photo_1.jpg"].path is not None and items["photos/photo_1.jpg"].status is None
    broken = items["result.json"]
    assert broken.status == "error" and "cannot read" in broken.reason and "without" in broken.reason


def test_a_scan_never_imports_wandb(scan_ckpt, evidence, tmp_path):
    """The analyst path has no use for an experiment tracker that can phone home: not even imported."""
    import subprocess
    import sys

    from .conftest import REPO

    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'wandb')))\n"
             "sys.argv = ['evaluate.py', *sys.argv[1:]]\n"
             "runpy.run_path('evaluate.py', run_name='__main__')\n")
    run = subprocess.run([sys.executable, "-c", probe, "mode=scan", f"inputs=[{evidence['loose'] / 'photo_real.jpg'}]",
                          f"ckpt_path={scan_ckpt}", "allow_unvalidated=true", "case.id=W", "case.operator=pytest",
                          f"case.dir={tmp_path / 'case'}", "scan.progress=false", "report.enabled=false"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert (tmp_path / "case" / "scan_summary.json").is_file(), run.stderr[-3000:]
    assert "LOADED []" in run.stdout, run.stdout[-2000:]
