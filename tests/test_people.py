"""People of interest: enrolment and its refusals, matching on distinct real faces, face swaps and
"undressed" edits matched, the person's report section, timeline and hash-only takedown package.

The faces are US government official portraits (public domain; tests/data/people/SOURCE.md): the
demo generator's pseudo-identities are one person to a face-recognition model, so they cannot show
a non-match.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from faketrace.datasets.demo_people import face_swap, make_people_evidence, undress
from faketrace.datasets.face_embedding import DlibFaceEmbedder
from faketrace.datasets.faces import build_detector
from faketrace.forensics.people import ReferenceRefused, enrol, policy_for

PORTRAITS = Path(__file__).parent / "data" / "people"
REF = PORTRAITS / "biden_portrait.jpg"  # her reference photo (the person searched for)
SAME = PORTRAITS / "biden_arms_crossed.jpg"  # the same person, another photograph
OTHER = PORTRAITS / "obama_2012.jpg"  # somebody else


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def save(path: Path, img: np.ndarray, quality: int = 92) -> Path:
    from faketrace.datasets.demo_people import write_jpeg

    return write_jpeg(path, img, quality)


@pytest.fixture(scope="module")
def detector():
    return build_detector("retinaface", threads=1)


@pytest.fixture(scope="module")
def embedder():
    return DlibFaceEmbedder()


def largest(detector, img):
    return max(detector.detect([img])[0], key=lambda f: f.area)


def person_folder(tmp_path: Path, *photos: Path) -> Path:
    folder = tmp_path / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    return folder


def embed_largest(detector, embedder, img):
    return embedder.embed(img, [largest(detector, img).box])[0]


# -- embedding and alignment ----------------------------------------------------------------------
def test_scan_faces_embed_like_dlibs_own_pipeline(detector, embedder):
    """RetinaFace box -> dlib box -> dlib 5-point -> chip lands within 0.1 of dlib's HOG-to-chip pipeline."""
    import dlib

    from faketrace.datasets.dlib_models import find_model

    hog, sp5 = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(find_model("shape_predictor_5")))
    for path in (REF, SAME, OTHER):
        img = rgb(path)
        rect = max(hog(img, 1), key=lambda r: r.area())
        native = np.asarray(embedder.net.compute_face_descriptor(img, sp5(img, rect)))
        ours = embed_largest(detector, embedder, img)
        assert np.linalg.norm(native - ours) < 0.1, path.name
    spec = embedder.describe()
    files = {f["role"]: f for f in spec["model_files"]}
    assert files["face_recognition_resnet"]["licence"].startswith("public domain")
    assert files["shape_predictor_5"]["commercial_use"] is True
    assert len(files["face_recognition_resnet"]["sha256"]) == 64


def test_same_person_matches_other_person_does_not(detector, embedder, tmp_path):
    policy = policy_for(0.01, 0.05)
    person = enrol("P1", "Reference", person_folder(tmp_path, REF), "test", detector, embedder)
    d_same = np.linalg.norm(person.references - embed_largest(detector, embedder, rgb(SAME)), axis=1).min()
    d_other = np.linalg.norm(person.references - embed_largest(detector, embedder, rgb(OTHER)), axis=1).min()
    assert policy.decide(float(d_same)) == "match", d_same
    assert policy.decide(float(d_other)) is None, d_other


def test_a_face_swap_and_an_undressed_image_keep_her_face_and_match(detector, embedder, tmp_path):
    policy = policy_for(0.01, 0.05)
    person = enrol("P1", "Reference", person_folder(tmp_path, REF), "test", detector, embedder)
    swapped = face_swap(rgb(SAME), rgb(OTHER), detector)  # her face on somebody else's head and body
    undressed = undress(rgb(SAME), detector)
    for name, img in (("face swap", swapped), ("undressed", undressed)):
        d = float(np.linalg.norm(person.references - embed_largest(detector, embedder, img), axis=1).min())
        assert policy.decide(d) == "match", (name, d)
    # The match follows the face, not the head and body it was pasted onto: their owner does not match.
    other = enrol("P2", "Other", person_folder(tmp_path / "o", OTHER), "test", detector, embedder)
    d = float(np.linalg.norm(other.references - embed_largest(detector, embedder, swapped), axis=1).min())
    assert policy.decide(d) is None, d


# -- refusals -------------------------------------------------------------------------------------
def test_reference_folders_that_cannot_be_trusted_are_refused_saying_which_photo(detector, embedder, tmp_path):
    noise = np.random.default_rng(1).integers(0, 255, (240, 240, 3), np.uint8)
    two = np.concatenate([rgb(REF)[:300, :300], rgb(OTHER)[:300, :300]], 1)
    folder = person_folder(tmp_path, REF)
    save(folder / "landscape.jpg", noise)
    save(folder / "group.jpg", two)
    (folder / "notes.txt").write_text("not a photo")
    with pytest.raises(ReferenceRefused) as err:
        enrol("P1", "Reference", folder, "test", detector, embedder)
    msg = str(err.value)
    assert "landscape.jpg: no face found" in msg
    assert "group.jpg: 2 faces" in msg and "not clear" in msg
    assert "notes.txt: not a photo" in msg
    assert "biden_portrait.jpg" not in msg  # the good photo is not blamed

    small = tmp_path / "small"
    save(small / "tiny.jpg", cv2.resize(rgb(REF), None, fx=0.3, fy=0.3))
    with pytest.raises(ReferenceRefused, match=r"tiny.jpg: the face is \d+ px, under the 80 px"):
        enrol("P1", "Reference", small, "test", detector, embedder)
    with pytest.raises(ReferenceRefused, match="people_consent is required"):
        enrol("P1", "Reference", person_folder(tmp_path / "c", REF), "  ", detector, embedder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReferenceRefused, match="holds no photo"):
        enrol("P1", "Reference", tmp_path / "empty", "test", detector, embedder)


def test_a_folder_mixing_two_people_is_refused(detector, embedder, tmp_path):
    from faketrace.forensics.people import check_consistent

    person = enrol("P1", "Reference", person_folder(tmp_path, REF, OTHER), "test", detector, embedder)
    with pytest.raises(ReferenceRefused, match="may show different people"):
        check_consistent(person, policy_for(0.01, 0.05))


def test_threshold_comes_from_the_target_rate_and_too_fine_a_target_is_refused():
    p = policy_for(0.01, 0.05)
    assert p.threshold <= 0.6 and p.uncertain_threshold >= p.threshold
    assert p.basis["impostor_pairs"] >= 100 and p.basis["identities"] >= 2
    cal = json.loads((Path(__file__).parents[1] / "forensics" / "people_calibration.json").read_text())
    imp = np.asarray(cal["impostor_distances_sorted"])
    assert (imp <= p.uncertain_threshold).mean() <= 0.05  # the measured rate honours the target
    with pytest.raises(ValueError, match="finer than the calibration can resolve"):
        policy_for(1e-6, 0.05)


# -- the scan, the person's section, the takedown package -----------------------------------------
@pytest.mark.slow
def test_scan_finds_her_items_reports_her_timeline_and_writes_a_hash_only_takedown(scan_ckpt, detector, tmp_path):
    from faketrace.forensics.scan import scan_from_config

    from .conftest import results, scan_cfg

    made = make_people_evidence(tmp_path / "people", detector)  # two chat exports, built from the portraits
    chat_a, chat_b = made["inputs"]
    ref = made["reference"]
    ref_photo = ref / "portrait.jpg"
    case = tmp_path / "case"
    extra = [f"people={{Jane_Doe:{ref}}}", "people_consent='written consent, 2026-12-01'", "scan.bands={lower:0,upper:0}"]
    summary = scan_from_config(scan_cfg([chat_a, chat_b], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
                                        extra))
    assert summary["report"] and not summary["report"].get("error"), summary["report"]
    header, items = results(case)
    hits = {k: r["people"]["matches"] for k, r in items.items()}
    matched = {k for k, m in hits.items() if m and m[0]["decision"] == "match"}
    assert matched == set(made["her_items"]), hits  # the face swap, its re-compressed copy, the undressed one
    assert hits[made["somebody_else"]] == []  # the other man: no match, and no distance kept for him
    assert all("people" not in f for f in items[made["somebody_else"]]["faces"])

    # Nothing of her reference photos and no embedding of a non-matching face is in the case folder.
    ref_bytes = ref_photo.read_bytes()
    for p in case.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert ref_bytes not in data and ref_photo.name.encode() not in data, p
    import sqlite3

    con = sqlite3.connect(case / "case.sqlite")
    people_meta = json.loads(con.execute("SELECT value FROM meta WHERE key='people'").fetchone()[0])
    assert [len(p["references"]) for p in people_meta] == [1] and "path" not in json.dumps(people_meta)
    for (result,) in con.execute("SELECT result FROM items"):
        assert "embedding" not in result  # no face's embedding is stored with an item
    custody = json.loads((case / "custody.json").read_text())
    poi = custody["people_of_interest"]
    assert poi["consent_or_legal_basis"] == "written consent, 2026-12-01"
    assert poi["persons"][0]["reference_photos"][0]["sha256"] == __import__("hashlib").sha256(ref_bytes).hexdigest()

    report = json.loads((case / "report.json").read_text())
    section = report["people"]["persons"][0]
    assert section["label"] == "P1" and "Jane" not in json.dumps(report)  # pseudonymised by default
    assert section["counts"]["match"] == 3
    assert section["expected_false_hits"]["faces_compared"] == report["people"]["faces_compared"] >= 4
    assert "not an identification" in report["people"]["not_identification"].lower()
    assert any("Korean" in x for x in report["people"]["known_limits"])
    events = section["timeline"]["events"]
    times = [e["time_utc"] for e in events]
    assert times == sorted(times) and len(events) == 3
    assert events[0]["chat"] == "Trading room" and "forwarded from Channel Z" in events[0]["event"]
    assert any("outside this evidence" in n for n in section["timeline"]["notes"])
    copy_event = next(e for e in events if e["item_id"] == "0/photos/photo_5.jpg")
    assert copy_event["event"].startswith("re-posted") and copy_event["copy"] == events[0]["copy"]

    rows = list(csv.DictReader(open(case / section["takedown"]["csv"])))
    assert {r["signal_type"] for r in rows} == {"photo_md5", "pdq"}
    by_item = {r["item_id"]: r for r in report["items"]}
    md5s = {r["signal_value"] for r in rows if r["signal_type"] == "photo_md5"}
    assert md5s == {by_item[k]["md5"] for k in matched}  # her three items; the other man's photo is not there
    # ...although it is a PDQ near-duplicate of the face swap made from it: left out, and said so.
    assert [x["item_id"] for x in section["takedown"]["near_duplicates_left_out"]] == [made["somebody_else"]]
    for path in (case / section["takedown"]["csv"], case / section["takedown"]["json"]):
        raw = path.read_bytes()
        assert b"\xff\xd8\xff" not in raw and b"\x89PNG" not in raw and len(raw) < 20000
        assert b"Jane" not in raw and b"photos/" not in raw  # no name, no evidence path
    html = (case / "report.html").read_text()
    assert 'id="people"' in html and "Not an identification" in html
    assert (case / "people.csv").read_text().count("\n") == 1 + 3

    # The people searched for and the thresholds are part of the case: no resuming it with others.
    from faketrace.forensics.case_store import CaseStoreError

    with pytest.raises(CaseStoreError, match="other inputs, model or settings"):
        scan_from_config(scan_cfg([chat_a, chat_b], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
                                  [*extra, "people_match.target_fmr=0.02"]))


def test_timeline_orders_by_message_time_and_says_where_a_picture_came_from():
    from faketrace.forensics.people_report import timeline

    def item(item_id, group, *messages):
        return {"item_id": item_id, "decision": "match", "verdict": "likely_manipulated", "duplicate_group": group,
                "sha256": item_id * 8, "telegram": list(messages)}

    items = [
        item("a", "G1", {"date_utc": "2026-11-20T12:00:00Z", "chat_name": "Class 9b", "message_id": 9, "from": "A"}),
        item("b", "G1", {"date_utc": "2026-11-20T09:00:00Z", "chat_name": "Room", "message_id": 2, "from": "B",
                         "forwarded_from": "Channel Z"}),
        item("c", None, {"date_local_no_zone": "2021-03-01T09:00:00", "chat_name": "Old", "message_id": 1}),
        item("d", None),
    ]
    t = timeline(items)
    assert [e["item_id"] for e in t["events"]] == ["b", "a", "c"]  # UTC in order, then the time without a zone
    assert t["events"][0]["event"].startswith("first appearance") and "Channel Z" in t["events"][0]["event"]
    assert t["events"][1]["event"].startswith("re-posted (first seen 2026-11-20T09:00:00Z in Room)")
    assert t["items_without_message"] == ["d"] and t["copies"] == 2
    assert any("without a time zone" in n for n in t["notes"]) and any("outside this evidence" in n for n in t["notes"])


def test_a_video_face_track_is_embedded_a_few_times_not_every_frame():
    from types import SimpleNamespace

    from faketrace.forensics.people import PeopleMatcher

    def chosen(frame, track, side):
        return SimpleNamespace(frame_index=frame, track_id=track,
                               face=SimpleNamespace(box=np.array([0, 0, side, side], np.float32)))

    faces = [chosen(f, 0, 100) for f in range(32)] + [chosen(f, 1, 30) for f in range(32)] + [chosen(5, 2, 80)]
    matcher = PeopleMatcher([], embedder=None, policy=policy_for(0.01, 0.05), faces_per_track=4)
    picked = matcher.faces_to_embed(faces)
    assert [faces[i].frame_index for i in picked if faces[i].track_id == 0] == [0, 10, 21, 31]  # spread over time
    assert not [i for i in picked if faces[i].track_id == 1]  # 30 px faces are too small to compare
    assert [faces[i].track_id for i in picked].count(2) == 1


@pytest.mark.slow
def test_with_an_image_level_model_only_faces_are_found_for_her_alone(scan_ckpt, detector, tmp_path):
    """No face-level model: the scan detects faces just to compare them with her, and still finds her items."""
    from faketrace.datasets.image_pipeline import ImageSpec
    from faketrace.engine.checkpoint import load_checkpoint, save_checkpoint
    from faketrace.forensics.scan import scan_from_config
    from faketrace.models.spec import ModelSpec, VideoSpec, checkpoint_spec

    from .conftest import results, scan_cfg

    ckpt = load_checkpoint(scan_ckpt)  # the tiny model's weights as an image-level (tile) model
    ckpt.pop("format")
    ckpt["spec"] = ModelSpec(level="image", input=checkpoint_spec(ckpt).input,
                             image=ImageSpec(tile_size=64, aggregation="max"),
                             video=VideoSpec(frames_per_video=None, rule="mean")).to_dict()
    image_ckpt = save_checkpoint(ckpt, tmp_path / "image.ckpt")
    made = make_people_evidence(tmp_path / "people", detector)
    case = tmp_path / "case"
    scan_from_config(scan_cfg(made["inputs"], case, [f"ckpt_path={image_ckpt}", "allow_unvalidated=true"],
                              [f"people={{Jane_Doe:{made['reference']}}}", "people_consent=test"]))
    _, items = results(case)
    matched = {k for k, r in items.items() if (r.get("people") or {}).get("matches")}
    assert matched == set(made["her_items"])
    assert items[made["somebody_else"]]["people"]["faces_compared"] == 1
