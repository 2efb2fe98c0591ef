"""The case report: contents, redaction of every written picture, hashes, copies, provenance, browser."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from faketrace.forensics import perceptual
from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.redact import redact, sharpness
from faketrace.forensics.scan import scan_from_config

from .conftest import compose_config, resolved, results, scan_cfg, tree_snapshot

register_case_resolver()
ALL_VERDICTS = "report.heatmaps_for=[likely_manipulated,inconclusive,no_evidence_of_manipulation]"


# -- PDQ ------------------------------------------------------------------------------------------
def pattern_images() -> list[np.ndarray]:
    """Deterministic pictures (no decoder involved) whose PDQ the reference C++ implementation computed."""
    out = []
    for h, w, fx, fy in [(240, 320, 3, 5), (97, 61, 7, 2), (1080, 720, 11, 13)]:
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        r = 127.5 + 127.5 * np.sin(2 * np.pi * fx * x / w) * np.cos(2 * np.pi * fy * y / h)
        g = (x * 255.0 / w + y * 97.0 / h) % 256
        b = ((x // 17 + y // 23) % 2) * 200.0
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return out


# Hashes and qualities of pattern_images() from Facebook's C++ PDQ (through the `pdqhash` bindings,
# built once outside the project for this check): our implementation agrees bit for bit.
REFERENCE_PDQ = [("eebababeaebababeaebababf00150260288aaa6aaaaa4a2a56aa55aa554a4556", 100),
                 ("d593d167425743873c78992d2cdacb6664ba93a7ae9a6aa796b915a8514a5552", 100),
                 ("2eaabaae28aaba2eaababaaa2aaaaaaa2aaaaa2aaaaa4a2ad6aa55aad54a55d6", 100)]


def test_pdq_matches_the_reference_implementation():
    for img, (expected, quality) in zip(pattern_images(), REFERENCE_PDQ, strict=True):
        got = perceptual.pdq(img)
        assert (got.hash_hex, got.quality) == (expected, quality)


def test_pdq_survives_recompression_and_separates_different_pictures():
    import io

    from PIL import Image

    a, b, _ = pattern_images()
    buf = io.BytesIO()
    Image.fromarray(a).resize((200, 150)).save(buf, "JPEG", quality=40)
    again = np.asarray(Image.open(buf).convert("RGB"))
    assert perceptual.hamming(perceptual.pdq(a).hash_hex, perceptual.pdq(again).hash_hex) <= 31
    assert perceptual.hamming(perceptual.pdq(a).hash_hex, perceptual.pdq(b).hash_hex) > 31
    flat = perceptual.pdq(np.full((50, 50, 3), 128, np.uint8))
    assert flat.quality < perceptual.MIN_QUALITY and not flat.usable
    words = np.stack([perceptual.hex_to_words(h) for h, _ in REFERENCE_PDQ])
    d = perceptual.distance_matrix(words, words)
    assert d[0, 1] == perceptual.hamming(REFERENCE_PDQ[0][0], REFERENCE_PDQ[1][0]) and d[2, 2] == 0


def test_duplicate_groups_join_chains_and_ignore_low_quality():
    from faketrace.forensics.report import duplicate_groups

    base = int(REFERENCE_PDQ[0][0], 16)
    near = f"{base ^ ((1 << 20) - 1):064x}"  # 20 bits away
    near2 = f"{int(near, 16) ^ (((1 << 20) - 1) << 100):064x}"  # 20 more: 40 from base, 20 from near
    recs = [{"item_id": "a", "sha256": "1", "pdq": [{"hash": REFERENCE_PDQ[0][0], "quality": 90, "frame_index": 0}]},
            {"item_id": "b", "sha256": "2", "pdq": [{"hash": near, "quality": 90, "frame_index": 0}]},
            {"item_id": "c", "sha256": "3", "pdq": [{"hash": near2, "quality": 90, "frame_index": 0}]},
            {"item_id": "d", "sha256": "4", "pdq": [{"hash": near, "quality": 20, "frame_index": 0}]},
            {"item_id": "e", "sha256": "1", "pdq": []}]
    (group,) = duplicate_groups(recs, 31, 50)
    assert group["items"] == ["a", "b", "c", "e"]  # d's hash is too poor to match; e is the same file as a
    assert {lk["basis"] for lk in group["links"]} == {"PDQ", "same SHA-256"}


def test_redaction_blurs_far_below_the_sharpness_of_a_face():
    img = pattern_images()[0]
    assert sharpness(redact(img)) < 0.01 * sharpness(img)
    assert redact(img).shape == img.shape


# -- the report of the mixed evidence folder ------------------------------------------------------
@pytest.fixture(scope="module")
def case(scan_ckpt, evidence, tmp_path_factory):
    """The scan issue's mixed folder scanned with the PyTorch checkpoint; the report comes with the scan."""
    before = tree_snapshot(evidence["root"])
    case_dir = tmp_path_factory.mktemp("report") / "case"
    summary = scan_from_config(scan_cfg(evidence["inputs"], case_dir, [f"ckpt_path={scan_ckpt}",
                                                                        "allow_unvalidated=true"], [ALL_VERDICTS]))
    assert tree_snapshot(evidence["root"]) == before  # the report wrote nothing beside the evidence
    return {"dir": case_dir, "summary": summary, "report": json.loads((case_dir / "report.json").read_text())}


def by_path(report: dict) -> dict:
    return {r["item_id"]: r for r in report["items"]}


def test_report_of_the_mixed_folder(case, evidence):
    d, report = case["dir"], case["report"]
    assert case["summary"]["report"]["html"] == str(d / "report.html")
    assert report["report_version"] == 1 and report["redacted"] is True
    assert report["warning"].startswith("NOT VALIDATED FOR CASEWORK") and report["fit_for_casework"] is False
    _, scan_items = results(d)
    items = by_path(report)
    assert items.keys() == scan_items.keys()
    assert all(items[k]["status"] == r["status"] for k, r in scan_items.items())

    # Heatmaps (Grad-CAM from the checkpoint) on each scored item's most suspicious face, whose
    # crop, rebuilt by the face pipeline, gets the logit the scan stored.
    scored = [r for r in items.values() if r["status"] == "scanned"]
    assert len(scored) >= 5
    for r in scored:
        hm = r["heatmap"]
        assert hm["method"] == "grad_cam" and (d / hm["file"]).is_file(), hm
        assert hm["crop_matches_scan"] is True and abs(hm["logit_rebuilt"] - hm["logit_scan"]) <= 1e-3
        # Drawn over the whole (blurred) frame, with the face box and a colour scale beside it in the page.
        assert len(hm["face_box_px"]) == 4 and hm["colour_scale"]["high"] == 1.0
        frame = next(f for f in r["frames"] if f["frame_index"] == hm["frame_index"])
        assert (hm["width"], hm["height"]) == (frame["width"], frame["height"])  # thumbnail_px = heatmap_px
        assert r["frames"] and all((d / f["file"]).is_file() for f in r["frames"])
        assert sum(face["most_suspicious"] for f in r["frames"] for face in f["faces"]) == 1
    video = items["0/sub/clip_fake.mp4"]
    assert len(video["timeline"]) > 1 and len(video["pdq"]) > 1
    assert (d / "report.html").read_text().count('aria-label="colour scale"') == len(scored)

    # Copies: the same bytes in the loose folder and the Telegram export; a re-compressed, resized
    # copy by PDQ; the same photo in the JSON and the HTML export.
    groups = {g["group"]: set(g["items"]) for g in report["duplicate_groups"]}
    group_of = {i: g for g, members in groups.items() for i in members}
    assert group_of["0/photo_real.jpg"] == group_of["1/files/unreferenced.jpg"] == group_of["0/photo_real_copy.jpg"]
    assert group_of["1/photos/photo_1@20-11-2026_10-00-00.jpg"] == group_of["2/photos/photo_7@21-11-2026_09-00-00.jpg"]
    copy_link = [lk for g in report["duplicate_groups"] for lk in g["links"]
                 if "0/photo_real_copy.jpg" in (lk["a"], lk["b"])]
    assert copy_link and all(lk["basis"] == "PDQ" and 0 < lk["pdq_distance"] <= 31 for lk in copy_link)
    assert items["0/photo_real.jpg"]["duplicate_group"] == group_of["0/photo_real.jpg"]

    # Provenance read offline: no manifest in any of these files, EXIF summary present.
    assert report["settings"]["c2pa"]["remote_manifest_fetch"] is False
    for r in scored:
        assert r["provenance"]["c2pa"]["state"] in ("absent", "not_checked") and "metadata" in r["provenance"]

    # Plain language: the calibrated bands with their validation error rates in words.
    words = " ".join(report["plain_language"]["thresholds"])
    assert re.search(r"about \d+ in 100 real items \(videos and still images\) of the validation set were flagged", words)
    assert "NOT FIT FOR CASEWORK" in report["plain_language"]["fitness_for_casework"]

    # hashes.csv: MD5 and SHA-256 of every file read, PDQ of images and of sampled video frames.
    rows = list(csv.DictReader((d / "hashes.csv").open()))
    for item_id, r in items.items():
        if not r.get("sha256"):
            continue
        mine = [x for x in rows if x["item_id"] == item_id]
        assert {x["algorithm"] for x in mine} >= {"md5", "sha256"}
        assert [x["hash"] for x in mine if x["algorithm"] == "sha256"] == [r["sha256"]]
    video_pdq = [x for x in rows if x["item_id"] == "0/sub/clip_fake.mp4" and x["algorithm"] == "pdq"]
    assert len(video_pdq) > 1 and all(x["frame_index"] != "" and 0 <= int(x["pdq_quality"]) <= 100 for x in video_pdq)
    assert [x["hash"] for x in rows if x["item_id"] == "0/photo_real.jpg" and x["algorithm"] == "pdq"] == \
        [items["0/photo_real.jpg"]["pdq"][0]["hash"]]
    table = list(csv.DictReader((d / "items.csv").open()))
    assert [x["item_id"] for x in table] == [r["item_id"] for r in report["items"]]

    # Every report file's SHA-256 is in the case store's audit log.
    import sqlite3

    with sqlite3.connect(d / "case.sqlite") as db:
        audit = dict(db.execute("SELECT path, sha256 FROM audit").fetchall())
    for name in ("report.json", "report.html", "items.csv", "hashes.csv"):
        assert audit[name] == hashlib.sha256((d / name).read_bytes()).hexdigest()
    media = [p for p in (d / "report_media").rglob("*") if p.is_file()]
    assert media and all(audit[p.relative_to(d).as_posix()] == hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in media)

    html = (d / "report.html").read_text()
    import html as html_lib

    assert "default-src 'none'" in html_lib.unescape(html) and "NOT VALIDATED FOR CASEWORK" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)


def image_files(folder: Path) -> list[Path]:
    """Every file in the folder whose bytes are an image, whatever its name."""
    from faketrace.datasets.media import sniff_media_type

    return [p for p in sorted(folder.rglob("*")) if p.is_file() and sniff_media_type(p) == "image"]


def decode(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def unblurred_face_crops(case_dir: Path, report: dict, size: int) -> list[np.ndarray]:
    """The faces the report shows, cut unblurred from the evidence at the size the report writes them."""
    import cv2

    from faketrace.datasets.media import read_image_frames, read_video_frames
    from faketrace.forensics.report import evidence_path

    crops = []
    for r in report["items"]:
        if r["status"] != "scanned":
            continue
        path = evidence_path(r)
        frames = (read_image_frames(path).frames if r["media_type"] == "image"
                  else read_video_frames(path, 8).frames)
        face = r["most_suspicious_face"]
        frame = frames.get(face["frame_index"]) if face["frame_index"] in frames else next(iter(frames.values()))
        x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
        crop = frame[max(0, y0):y1, max(0, x0):x1]
        crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return crops


def test_every_picture_in_the_case_folder_is_blurred(case):
    """Sharpness (variance of the Laplacian) of every image file in the case folder, and of every
    picture embedded in report.html, against the unblurred face crops of the same items."""
    d, report = case["dir"], case["report"]
    written = image_files(d)
    assert len(written) >= 10
    reference = unblurred_face_crops(d, report, 240)
    ref = float(np.median([sharpness(c) for c in reference]))
    measured = {p.relative_to(d).as_posix(): sharpness(decode(p.read_bytes())) for p in written}
    html = (d / "report.html").read_text()
    embedded = re.findall(r"data:image/[a-z]+;base64,([A-Za-z0-9+/=]+)", html)
    assert len(embedded) == len(written)
    measured.update({f"report.html#{i}": sharpness(decode(base64.b64decode(b))) for i, b in enumerate(embedded)})
    worst = max(measured, key=measured.get)
    print(f"unblurred face crops: median sharpness {ref:.1f}; written pictures: max {measured[worst]:.2f} ({worst})")
    assert ref > 50
    assert measured[worst] < 0.05 * ref, measured
    # The pictures in the page are the files in report_media, byte for byte.
    files = {base64.b64encode(p.read_bytes()).decode() for p in written}
    assert set(embedded) <= files


def test_unredacted_rerender_says_so_and_known_hashes_match(case, tmp_path):
    from faketrace.forensics.report import report_from_config

    d = tmp_path / "case"
    shutil.copytree(case["dir"], d)
    items = by_path(case["report"])
    fake = items["1/photos/photo_1@20-11-2026_10-00-00.jpg"]
    known = tmp_path / "known.csv"
    near = f"{int(fake['pdq'][0]['hash'], 16) ^ 0b1011:064x}"  # 3 bits away: a re-encoded copy of a known picture
    known.write_text("algorithm,hash,label\n"
                     f"md5,{items['0/photo_real.jpg']['md5']},case 17 exhibit\npdq,{near},hotline list\n")
    cfg = resolved(compose_config("case_report", [f"case_dir={d}", "report.redact=false", f"report.known_hashes={known}",
                                                  ALL_VERDICTS], output_dir=d / "report_runs" / "x"))
    report = report_from_config(cfg)
    assert report["redacted"] is False
    html = (d / "report.html").read_text()
    assert "UNREDACTED" in html and 'class="redaction off"' in html
    assert "UNREDACTED" in report["redaction"]["note"]
    got = by_path(report)
    assert [m["label"] for m in got["0/photo_real.jpg"]["known_hash_matches"]] == ["case 17 exhibit"]
    pdq_match = got["1/photos/photo_1@20-11-2026_10-00-00.jpg"]["known_hash_matches"]
    assert pdq_match[0]["algorithm"] == "pdq" and pdq_match[0]["distance"] == 3
    assert report["summary"]["known_hash_matches"] >= 2  # the copies of those files match too
    # Unblurred pictures are much sharper than the redacted ones of the same items.
    item = got["0/photo_real.jpg"]
    sharp = sharpness(decode((d / item["frames"][0]["file"]).read_bytes()))
    blurred = sharpness(decode((case["dir"] / by_path(case["report"])["0/photo_real.jpg"]["frames"][0]["file"]).read_bytes()))
    assert sharp > 20 * blurred


def test_onnx_export_heatmaps_use_its_checked_weights_or_occlusion(demo_data, scan_ckpt, evidence, tmp_path):
    """An export's heatmaps: Grad-CAM through its hash-checked weights.safetensors (cheap), occlusion on request."""
    from faketrace.engine.export import export_checkpoint

    export = tmp_path / "export"
    export_checkpoint(resolved(compose_config("export", demo_data["overrides"] + [
        f"ckpt_path={scan_ckpt}", "verify.n_images=8", f"out_dir={export}"], output_dir=tmp_path / "e")))

    def heatmap(case, *extra):
        scan_from_config(scan_cfg([evidence["loose"] / "sub"], case, [f"model_dir={export}", "allow_unvalidated=true",
                                                                      *extra], [ALL_VERDICTS]))
        report = json.loads((case / "report.json").read_text())
        (item,) = report["items"]
        assert sharpness(decode((case / item["heatmap"]["file"]).read_bytes())) < 5
        return report, item["heatmap"]

    report, hm = heatmap(tmp_path / "auto")
    assert hm["method"] == "grad_cam" and hm["crop_matches_scan"] is True
    assert "weights.safetensors" in report["settings"]["heatmap_source"]
    report, hm = heatmap(tmp_path / "occlusion", "report.heatmap_method=occlusion")
    assert hm["method"] == "occlusion" and hm["forward_passes"] > 10 and hm["crop_matches_scan"] is True

    # Weights that are not the card's are never parsed: the report falls back to occlusion and says why.
    weights = export / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    report, hm = heatmap(tmp_path / "tampered")
    assert hm["method"] == "occlusion"
    assert any("differs from the SHA-256" in n for n in report["notes"])


# -- C2PA -----------------------------------------------------------------------------------------
def test_c2pa_states_are_read_offline(evidence, tmp_path):
    from faketrace.forensics.provenance import C2paChecker, summarise_store

    checker = C2paChecker()
    assert checker.describe()["remote_manifest_fetch"] is False and checker.error is None
    assert checker.check(evidence["loose"] / "photo_real.jpg") == {"state": "absent"}
    assert checker.check(evidence["loose"] / "notes.jpg")["state"] == "not_checked"
    # The mapping of the reader's validation state (manifests built by the C2PA SDK's own tests).
    assert summarise_store({"validation_state": "Trusted"})["state"] == "present_valid"
    assert summarise_store({"validation_state": "Valid"})["state"] == "present_untrusted"
    invalid = summarise_store({"validation_state": "Invalid",
                               "validation_status": [{"code": "assertion.dataHash.mismatch"}]})
    assert invalid["state"] == "invalid" and invalid["failures"] == ["assertion.dataHash.mismatch"]


# -- the page in a browser ------------------------------------------------------------------------
def test_report_opens_offline_in_chromium_with_no_request(case, tmp_path):
    from .chromium import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is needed for the browser test (.ci/run installs it with apt-get)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    d, report = case["dir"], case["report"]
    page = (d / "report.html").resolve().as_uri()
    with Chromium(binary) as browser:
        session = browser.open(page)
        rows = browser.evaluate(session, "Array.from(document.querySelectorAll('#items-table tbody tr'))"
                                         ".filter(r => r.offsetHeight > 0).length")
        articles = browser.evaluate(session, "Array.from(document.querySelectorAll('article'))"
                                             ".filter(a => a.offsetHeight > 0).length")
        images = browser.evaluate(session, "Array.from(document.querySelectorAll('image'))"
                                           ".map(i => i.getAttribute('href'))")
        drawn = browser.evaluate(session, "Array.from(document.querySelectorAll('svg.pic'))"
                                          ".filter(s => s.getBoundingClientRect().width > 50).length")
        # Sorting by probability works (the inline script runs under the page's CSP).
        browser.evaluate(session, "document.querySelectorAll('#items-table th')[4].click()")
        order = browser.evaluate(session, "Array.from(document.querySelectorAll('#items-table tbody tr'))"
                                          ".map(r => r.cells[4].getAttribute('data-sort'))")
        browser.screenshot(session, str(tmp_path / "report_top.png"))
        browser.evaluate(session, "document.getElementById('details').scrollIntoView()")
        browser.screenshot(session, str(tmp_path / "report_items.png"))
        requests = browser.requests(session)
        console = browser.console(session)
    shots = os.environ.get("FAKETRACE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for p in tmp_path.glob("report_*.png"):
            shutil.copy(p, Path(shots) / p.name)
    print(f"screenshots: {tmp_path}/report_top.png, report_items.png")
    scanned = sum(r["status"] == "scanned" for r in report["items"])
    assert rows == len(report["items"]) and articles == scanned and drawn == len(images)
    # Every picture in the page is one of the redacted files of report_media.
    files = {base64.b64encode(p.read_bytes()).decode() for p in (d / "report_media").rglob("*.jpg")}
    assert images and all(src.startswith("data:image/jpeg;base64,") and src.split(",", 1)[1] in files
                          for src in images)
    # No network request: the only URLs are the page itself and its inline data: pictures.
    others = [u for u in requests if not u.startswith("data:") and u != page]
    assert requests[0] == page and others == [], others
    assert not any("Content Security Policy" in c for c in console), console
    probabilities = [float(x) for x in order if x]
    assert len(probabilities) == scanned and probabilities == sorted(probabilities)


# -- the HTML template --------------------------------------------------------------------------------
HOSTILE = '<script>alert(1)</script>"onload="x'


def minimal_report(tmp_path: Path) -> dict:
    """The smallest report.json the page renders: one scanned item with a picture, one failure, hostile names."""
    from PIL import Image

    (tmp_path / "report_media").mkdir()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(tmp_path / "report_media" / "f.jpg")
    scanned = {"seq": 1, "item_id": f"0/{HOSTILE}.jpg", "rel_path": f"{HOSTILE}.jpg", "status": "scanned",
               "verdict": "inconclusive", "verdict_reason": f"between the bands {HOSTILE}", "probability": 0.5,
               "level": "frame", "rule": None, "source": "file", "input": "/evidence", "media_type": "image",
               "n_faces": 1, "sha256": "a" * 64, "md5": "b" * 32, "size_bytes": 1234,
               "frames": [{"file": "report_media/f.jpg", "width": 40, "height": 30, "frame_index": 0,
                           "faces": [{"box": [1, 2, 20, 25], "most_suspicious": True, "probability": 0.5}]}],
               "telegram": [{"chat_name": HOSTILE, "message_id": 7, "date_utc": "2026-11-21T09:00:00Z",
                             "from": "Sender", "from_id": None, "text": HOSTILE}],
               "notes": [HOSTILE]}
    failed = {"seq": 2, "item_id": "0/broken.mp4", "rel_path": "broken.mp4", "status": "decode_error",
              "reason": HOSTILE, "source": "file", "input": "/evidence", "media_type": None}
    return {"report_version": 1, "generated_utc": "2026-12-04T00:00:00Z", "warning": f"NOT VALIDATED {HOSTILE}",
            "redacted": True, "redaction": {"method": "Gaussian blur"}, "case": {"id": HOSTILE, "operator": "op"},
            "tool": {"version": "0.1.0", "git_sha": None}, "items": [scanned, failed],
            "summary": {"items": 2, "by_verdict": {"inconclusive": 1}, "by_status": {"scanned": 1, "decode_error": 1},
                        "duplicate_groups": 0, "known_hash_matches": 0, "evidence_unchanged": True, "warnings": []},
            "plain_language": {k: f"{k} {HOSTILE}" for k in ("fitness_for_casework", "model", "inconclusive",
                                                             "no_evidence", "no_face", "heatmaps", "duplicates",
                                                             "hashes")} | {"thresholds": [HOSTILE]},
            "duplicate_groups": [], "custody": {"evidence_integrity": {"items_hashed": 2, "all_unchanged": True}},
            "model": {"path": HOSTILE, "sha256": "c" * 64}, "settings": {"c2pa": "offline"}, "notes": []}


def test_the_html_template_escapes_everything_from_the_evidence_and_its_csp_allows_only_its_own_code(tmp_path):
    import html as html_lib

    from faketrace.forensics.report_html import CSS, JS, render_html

    page = render_html(minimal_report(tmp_path), tmp_path)
    assert "<script>alert" not in page and '"onload="' not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10  # name, chat, text, notes, reason, case, ...
    assert "<script>" + JS + "</script>" in page and "<style>" + CSS + "</style>" in page  # our code, unescaped
    csp = html_lib.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    for code in (CSS, JS):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert csp.startswith("default-src 'none'") and len(re.findall(r"<script\b", page)) == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    # A value the report leaves null prints as nothing, never as "None".
    assert ">None<" not in page and "(None)" not in page
    assert 'href="data:image/jpeg;base64,' in page and 'href="#item-1"' in page
