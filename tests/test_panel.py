"""Shipped published detectors in the scan (a panel) and a lab's validation flow, through the real configs."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.scan import UnvalidatedModelError, scan_from_config

from .conftest import compose_config, resolved, results, scan_cfg

register_case_resolver()


def _landmarks_installed() -> bool:
    if importlib.util.find_spec("dlib") is None:
        return False
    from faketrace.datasets.dlib_models import find_model

    try:
        find_model("shape_predictor_68")
    except FileNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def panel_evidence(demo_data, tmp_path_factory):
    """Two stills with faces and one 40-frame video (a face drifting slowly): enough frames for LRNet."""
    import av
    import cv2

    from faketrace.datasets.media import read_image_frames

    root = tmp_path_factory.mktemp("panel_evidence")
    index = demo_data["index"]
    raw = Path(demo_data["cfg"].data.root)
    stills = index[index.media_type == "image"].sort_values("id")
    for label in (0, 1):
        src = raw / stills[stills.label == label].iloc[0]["path"]
        (root / f"still_{label}{src.suffix}").write_bytes(src.read_bytes())
    frame = next(iter(read_image_frames(raw / stills.iloc[0]["path"]).frames.values()))
    frame = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # faces above LRNet's 64 px
    h, w = frame.shape[:2]
    h, w = h - h % 2, w - w % 2
    with av.open(str(root / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(40):
            shifted = np.roll(frame[:h, :w], shift=(i // 4, i // 5), axis=(0, 1))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(shifted), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return root


def test_published_models_scan_as_a_panel_with_not_applicable(panel_evidence, tmp_path):
    case = tmp_path / "case"
    cfg = scan_cfg([panel_evidence], case, ["published=[meso4_df,lrnet_ffpp]", "allow_unvalidated=true"])
    scan_from_config(cfg)
    header, items = results(case)
    assert [m["name"] for m in header["panel"]] == ["meso4_df", "lrnet_ffpp"]
    lrnet = header["panel"][1]
    assert lrnet["landmark_calibration"]["calibration_ported"] is True and lrnet["landmark_calibration"]["parameters"]
    assert all(not m["fit_for_casework"] for m in header["panel"])
    assert header["model"]["kind"] == "published"
    by_name = {r["rel_path"]: r for r in items.values()}
    for name in ("still_0", "still_1"):
        r = next(v for k, v in by_name.items() if k.startswith(name))
        assert r["panel"]["lrnet_ffpp"]["status"] == "not_applicable"
        assert "still" in r["panel"]["lrnet_ffpp"]["reason"]
        assert r["not_applicable"] == ["lrnet_ffpp"]
        if r["panel"]["meso4_df"]["status"] == "scanned":  # the only model that judged it decides
            assert r["decided_by"] == "meso4_df" and r["verdict"] == r["panel"]["meso4_df"]["verdict"]
            assert "lrnet_ffpp: not applicable" in r["why"]
    clip = by_name["clip.mp4"]["panel"]["lrnet_ffpp"]
    if _landmarks_installed():
        assert clip["status"] in ("scanned", "no_face"), clip
        if clip["status"] == "scanned":
            assert 0.0 <= clip["score"]["probability"] <= 1.0 and clip["score"]["rule"] == "vote"
            # the publisher's landmark calibration ran, and the record says what it did
            assert clip["landmark_calibration"]["calibrated"] is True
            assert 0.0 <= clip["landmark_calibration"]["tracked_point_fraction"] <= 1.0
    else:
        assert clip["status"] == "not_applicable" and "landmark stage" in clip["reason"]
    report = json.loads((case / "report.json").read_text())
    assert report["fit_for_casework"] is False
    assert {m["name"] for m in report["panel"]} == {"meso4_df", "lrnet_ffpp"}
    assert all("NOT VALIDATED" in (m["casework_note"] or "") or m["validation"] is None for m in report["panel"])
    rows = list(csv.DictReader((case / "items.csv").open()))
    assert all("lrnet_ffpp:" in r["panel"] and "meso4_df:" in r["panel"] for r in rows if r["status"] == "scanned")
    html = (case / "report.html").read_text()
    assert "NOT VALIDATED FOR CASEWORK" in html and "lrnet_ffpp" in html


def test_published_models_need_permission_until_validated(panel_evidence, tmp_path):
    cfg = scan_cfg([panel_evidence], tmp_path / "case", ["published=[meso4_df]"])
    with pytest.raises(UnvalidatedModelError, match="meso4_df|published weights"):
        scan_from_config(cfg)


@pytest.mark.slow
def test_only_the_validation_flow_makes_a_model_fit_for_casework(panel_evidence, tmp_path):
    from faketrace.forensics.validation import run_validation

    labels = panel_evidence / "labels.csv"
    stills = sorted(p.name for p in panel_evidence.glob("still_*"))
    labels.write_text("path,label\n" + "".join(f"{n},{n.split('_')[1][0]}\n" for n in stills))
    base = ["published=[meso4_df]", f"labels={labels}", "operator=pytest", "n_resamples=50"]

    def validate(out: Path, *extra: str) -> dict:
        return run_validation(resolved(compose_config("validate", [*base, f"out_dir={out}", *extra],
                                                      output_dir=out.parent)))

    few = validate(tmp_path / "few")  # the documented minimum (100 per class) is not met
    assert few["fit_for_casework"] is False and few["counts"]["real"] == 1 and few["counts"]["fake"] == 1
    entry_few = Path(few["copy"])
    assert entry_few.name == "meso4_df.yaml" and (entry_few.parent / "NOTICE").is_file()
    cfg = scan_cfg([panel_evidence], tmp_path / "case_few", ["published=[meso4_df]",
                                                              f"scan.validated_dir={entry_few.parent.parent}"])
    with pytest.raises(UnvalidatedModelError):
        scan_from_config(cfg)
    scored = few["counts"]["scored_real"], few["counts"]["scored_fake"]
    if scored != (1, 1):
        pytest.fail(f"the demo stills must each have a face for this test: scored {scored}")
    ok = validate(tmp_path / "ok", "min_real=1", "min_fake=1")
    assert ok["fit_for_casework"] is True and len(ok["set_sha256"]) == 64
    assert ok["metrics"]["n_real"] == 1 and "calibration" in ok
    case = tmp_path / "case_ok"
    scan_from_config(scan_cfg([panel_evidence], case, ["published=[meso4_df]",
                                                       f"scan.validated_dir={tmp_path / 'ok'}"]))
    header, _ = results(case)
    assert header["warning"] is None and header["panel"][0]["fit_for_casework"] is True
    assert header["panel"][0]["card"]["validation"]["operator"] == "pytest"
    report = json.loads((case / "report.json").read_text())
    assert report["fit_for_casework"] is True and report["panel"][0]["validation"]["set_sha256"] == ok["set_sha256"]
