"""The standalone predictor: no torch, and the scan's scores on raw demo media."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.predict import EXIT_ITEMS_FAILED, EXIT_REFUSED, main
from faketrace.forensics.scan import EXIT_ITEMS_FAILED as SCAN_EXIT_ITEMS_FAILED
from faketrace.forensics.scan import scan_from_config
from faketrace.forensics.scoring import STATUSES

from .conftest import REPO, compose_config, resolved

register_case_resolver()

# Runs the predictor's command with torch (and what needs it) made unimportable.
NO_TORCH = """
import importlib.abc, sys
BLOCKED = ("torch", "torchvision", "timm", "lightning")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the predictor must not need it")
sys.meta_path.insert(0, Block())
from faketrace.forensics.predict import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
import os
assert os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] == "64000000"
sys.exit(code)
"""


@pytest.fixture(scope="module")
def calibrated(demo_data, tmp_path_factory):
    """A tiny model trained on the small demo and calibrated on validation (temperature and thresholds)."""
    from faketrace.engine.evaluate import calibrate_checkpoint
    from faketrace.engine.export import export_checkpoint
    from faketrace.engine.train import train

    out = tmp_path_factory.mktemp("predict_train")
    last = train(resolved(compose_config("train", demo_data["overrides"] + ["model=tiny", "debug=fast"],
                                         output_dir=out)))["last_ckpt"]
    ckpt = out / "calibrated.ckpt"
    calibrate_checkpoint(resolved(compose_config("calibrate", demo_data["overrides"] + [
        f"ckpt_path={last}", f"out_path={ckpt}", "fit_on=all", "num_workers=0"], output_dir=out / "cal")))
    export_checkpoint(resolved(compose_config("export", demo_data["overrides"] + [
        f"ckpt_path={ckpt}", "verify.n_images=8", f"out_dir={out / 'export'}"], output_dir=out / "e")))
    return {"ckpt": ckpt, "export": out / "export"}


@pytest.fixture(scope="module")
def raw_media(demo_data, tmp_path_factory):
    """The demo's raw test-split media as generated (videos and stills), plus hostile files."""
    root = tmp_path_factory.mktemp("raw") / "media"
    index = demo_data["index"]
    test = index[index["split"] == "test"].sort_values("id")
    for row in test.itertuples():
        dst = root / row.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(demo_data["cfg"].data.root) / row.path, dst)
    video = root / test[test.media_type == "video"].iloc[0]["path"]
    (root / "hostile").mkdir()
    (root / "hostile" / "empty.jpg").write_bytes(b"")
    (root / "hostile" / "notes.jpg").write_text("not an image\n")
    (root / "hostile" / "truncated.mp4").write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    # A PNG that declares 10000 x 10000 pixels (above the limit) with one tiny data chunk.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10000, 10000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    (root / "hostile" / "bomb.png").write_bytes(bomb)
    return {"root": root, "n_media": len(test)}


@pytest.fixture(scope="module")
def predicted(calibrated, raw_media, tmp_path_factory):
    """The predictor's command on the raw media, in a fresh process where torch cannot be imported."""
    out = tmp_path_factory.mktemp("predicted") / "results.jsonl"
    run = subprocess.run([sys.executable, "-c", NO_TORCH, str(calibrated["export"]), str(raw_media["root"]),
                          "--allow-unvalidated", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    return {"returncode": run.returncode, "stderr": run.stderr,
            "items": {r["item_id"]: r for r in map(json.loads, out.read_text().splitlines())} if out.exists() else {}}


def test_predictor_runs_without_torch_and_gives_every_item_a_status(predicted, raw_media):
    # The blocker works: the training stack cannot be imported under it.
    blocked = subprocess.run([sys.executable, "-c", NO_TORCH.split("from faketrace")[0]
                              + "import faketrace.engine.checkpoint"], cwd=REPO, capture_output=True, text=True)
    assert blocked.returncode != 0 and "torch is blocked" in blocked.stderr
    assert predicted["returncode"] == EXIT_ITEMS_FAILED == SCAN_EXIT_ITEMS_FAILED, predicted["stderr"][-3000:]
    items = predicted["items"]
    assert len(items) == raw_media["n_media"] + 4 and all(r["status"] in STATUSES for r in items.values())
    hostile = {Path(r["rel_path"]).name: r for r in items.values() if r["rel_path"].startswith("hostile/")}
    assert hostile["empty.jpg"]["status"] == "empty" and hostile["notes.jpg"]["status"] == "unsupported"
    assert hostile["truncated.mp4"]["status"] == "decode_error"
    assert hostile["bomb.png"]["status"] == "oversized" and "above the limit" in hostile["bomb.png"]["reason"]
    scored = [r for r in items.values() if r["status"] == "scanned"]
    assert len(scored) >= raw_media["n_media"] - 2
    assert {r["score"]["level"] for r in scored} == {"frame", "video"}  # stills and videos
    for r in scored:
        assert 0 <= r["score"]["probability"] <= 1 and len(r["sha256"]) == 64
        assert r["warning"].startswith("NOT VALIDATED FOR CASEWORK")
        assert "fitted on validation data" in r["bands"]["source"]


def test_predictor_scores_equal_the_scan_on_raw_media(predicted, calibrated, raw_media, tmp_path):
    """The scan (PyTorch checkpoint, the package's detector) and the predictor (ONNX, the export's detector)."""
    case = tmp_path / "case"
    cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{raw_media['root']}]", "case.id=PARITY",
                                      "case.operator=pytest", f"case.dir={case}", "scan.progress=false",
                                      f"ckpt_path={calibrated['ckpt']}", "allow_unvalidated=true"], output_dir=case)
    scan_from_config(resolved(cfg))
    scanned = {r["item_id"]: r for r in map(json.loads, (case / "scan_results.jsonl").read_text().splitlines()[1:])}
    items = predicted["items"]
    assert scanned.keys() == items.keys()
    compared = 0
    for key, s in scanned.items():
        p = items[key]
        assert (p["status"], p.get("reason"), p.get("sha256")) == (s["status"], s.get("reason"), s.get("sha256")), key
        if s["status"] != "scanned":
            continue
        assert abs(p["score"]["probability"] - s["score"]["probability"]) <= 1e-4, key
        assert [f["box"] for f in p["faces"]] == [f["box"] for f in s["faces"]], key
        for fp, fs in zip(p["faces"], s["faces"], strict=True):
            assert abs(fp["logit"] - fs["logit"]) <= 1e-4
        assert p["score"]["level"] == s["score"]["level"] and p["decode"] == s["decode"]
        compared += 1
    assert compared >= raw_media["n_media"] - 2


def test_predictor_checks_the_folder_and_the_casework_flag_before_scoring(calibrated, raw_media, tmp_path, capsys):
    photo = next(p for p in sorted(raw_media["root"].rglob("*.jpg")) if "hostile" not in p.parts)
    assert main([str(calibrated["export"]), str(photo)]) == EXIT_REFUSED
    assert "not fit for casework" in capsys.readouterr().err
    assert main([str(calibrated["export"]), str(tmp_path / "nothing.jpg"), "--allow-unvalidated"]) == EXIT_REFUSED
    tampered = tmp_path / "export"
    shutil.copytree(calibrated["export"], tampered)
    with open(tampered / "face_detector.onnx", "ab") as fh:
        fh.write(b"\0")
    assert main([str(tampered), str(photo), "--allow-unvalidated"]) == EXIT_REFUSED
    assert "face_detector.onnx: SHA-256 differs" in capsys.readouterr().err
    # A card (not itself hashed) that names a detector outside the folder: refused, nothing read there.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(calibrated["export"], elsewhere)
    card = json.loads((elsewhere / "model_card.json").read_text())
    card["spec"]["face"]["detector"]["file"] = "../export/face_detector.onnx"
    (elsewhere / "model_card.json").write_text(json.dumps(card))
    assert main([str(elsewhere), str(photo), "--allow-unvalidated"]) == EXIT_REFUSED
    assert "is not one of the files model_card.json lists" in capsys.readouterr().err
    out = tmp_path / "one.jsonl"
    assert main([str(calibrated["export"]), str(photo), "--allow-unvalidated", "--out", str(out)]) == 0
    (result,) = map(json.loads, out.read_text().splitlines())
    assert result["status"] == "scanned" and result["score"]["level"] == "frame"


# -- one model contract: the checkpoint, the export card and the predictor agree ----------------------

def _without_shipped_file(spec):
    """The card's spec names the detector file the folder ships; the checkpoint's has none to name."""
    import dataclasses

    detector = dataclasses.replace(spec.face.detector, file=None)
    return spec.replace(face=dataclasses.replace(spec.face, detector=detector))


def test_checkpoint_export_card_and_predictor_agree_on_the_spec(calibrated):
    from faketrace.datasets.face_pipeline import PreprocessSpec
    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.forensics.predict import load_predictor
    from faketrace.forensics.scoring import load_torch_model
    from faketrace.models.card import load_export
    from faketrace.models.spec import card_spec, checkpoint_spec

    ckpt = load_checkpoint(calibrated["ckpt"])
    in_ckpt = checkpoint_spec(ckpt)
    in_card = card_spec(load_export(calibrated["export"]))
    predictor = load_predictor(calibrated["export"], allow_unvalidated=True)
    try:
        assert in_card.face.detector.file == "face_detector.onnx"
        assert _without_shipped_file(in_card) == in_ckpt
        assert predictor.model.spec == in_card
        assert load_torch_model(calibrated["ckpt"], device="cpu").spec == in_ckpt
        # What the predictor's scorer actually runs: the checkpoint's face pipeline, every face kept.
        scorer_spec = predictor.scorer.spec
        assert scorer_spec == PreprocessSpec.from_dict({**in_ckpt.face_pipeline_dict(), "face_policy": "all"})
        assert predictor.scorer.options.video_rule == in_ckpt.video.rule
        assert predictor.scorer.options.frames_per_video == in_ckpt.video.frames_per_video
    finally:
        predictor.close()


def _legacy_checkpoint(ckpt: dict) -> dict:
    """A checkpoint in the layout engine/train.py wrote before the model spec (preprocessing + model_spec)."""
    from faketrace.models.spec import ModelSpec

    spec = ModelSpec.from_dict(ckpt.pop("spec"))
    arch = ckpt.pop("architecture")
    pipe = {**spec.face_pipeline_dict(), "every_k": 10}
    d = spec.face.detector
    legacy_input = {"input_size": spec.input.side, "mean": list(spec.input.mean), "std": list(spec.input.std),
                    "interpolation": "bicubic", "channels": "RGB", "layout": "NCHW",
                    "value_range": "0..1 then (x - mean) / std"}
    ckpt["preprocessing"] = {"level": "face", "face": pipe, "frames_per_video_eval": spec.video.frames_per_video,
                             "detector": {"name": d.name, "package": d.package, "version": d.version,
                                          "weights_sha256": d.weights_sha256, "score_threshold": d.score_threshold,
                                          "nms_threshold": d.nms_threshold, "max_side": d.max_side},
                             "input": legacy_input, "aggregation": spec.video.rule}
    ckpt["model_spec"] = {**arch, "input": legacy_input}
    # The training domain lived in the data record then (media, faces, description).
    ckpt["data"] = {**ckpt["data"], "domain": {"media": list(spec.domain.media), "faces": spec.domain.faces,
                                               "description": spec.domain.notes}}
    return ckpt


def _legacy_card(card: dict) -> dict:
    """model_card.json as version 2 wrote it (face_preprocessing, face_detector, video_aggregation, ...)."""
    from faketrace.models.spec import ModelSpec

    spec = ModelSpec.from_dict(card.pop("spec"))
    d = spec.face.detector
    training = card["training"]
    card["training"] = {**training, "data": {**training["data"], "domain": {
        "media": list(spec.domain.media), "faces": spec.domain.faces, "description": spec.domain.notes}}}
    return {**card, "model_card_version": 2,
            "input": {"input_size": spec.input.side, "mean": list(spec.input.mean), "std": list(spec.input.std),
                      "interpolation": "bicubic", "channels": "RGB", "layout": "NCHW"},
            "face_preprocessing": {**spec.face_pipeline_dict(), "every_k": 10},
            "face_detector": {"name": d.name, "package": d.package, "version": d.version,
                              "weights_sha256": d.weights_sha256, "score_threshold": d.score_threshold,
                              "nms_threshold": d.nms_threshold, "max_side": d.max_side, "file": d.file,
                              "sha256": d.weights_sha256},
            "image_preprocessing": None, "frames_per_video": spec.video.frames_per_video,
            "video_aggregation": spec.video.rule}


def test_checkpoints_and_exports_written_before_the_spec_still_load_and_score(calibrated, raw_media, tmp_path):
    import dataclasses

    import torch

    from faketrace.engine.checkpoint import load_checkpoint
    from faketrace.forensics.predict import load_predictor
    from faketrace.forensics.scoring import load_torch_model
    from faketrace.models.card import load_export
    from faketrace.models.spec import checkpoint_spec

    raw = torch.load(calibrated["ckpt"], map_location="cpu", weights_only=True)
    legacy_ckpt = tmp_path / "legacy.ckpt"
    torch.save(_legacy_checkpoint(dict(raw)), legacy_ckpt)
    legacy_export = tmp_path / "legacy_export"
    shutil.copytree(calibrated["export"], legacy_export)
    card = json.loads((legacy_export / "model_card.json").read_text())
    (legacy_export / "model_card.json").write_text(json.dumps(_legacy_card(card)))

    new = checkpoint_spec(load_checkpoint(calibrated["ckpt"]))
    # Old records named the backbone's pretrained interpolation, but every crop was resized
    # bilinearly: the migrated spec says what was done.
    expected = new.replace(input=dataclasses.replace(new.input, interpolation="bilinear"))

    def as_expected(spec):
        # Old checkpoints did not record the training split's methods (old cards did, in their splits).
        assert (spec.trained_on.datasets, spec.trained_on.synthetic) == (("demo",), True)
        return spec.replace(trained_on=new.trained_on) == expected

    migrated = load_checkpoint(legacy_ckpt)
    assert "preprocessing" not in migrated and migrated["architecture"] == raw["architecture"]
    assert as_expected(checkpoint_spec(migrated))
    assert as_expected(load_torch_model(legacy_ckpt, device="cpu").spec)
    load_export(legacy_export)  # its files' hashes still check (the card lists every file but itself)
    old, current = (load_predictor(p, allow_unvalidated=True) for p in (legacy_export, calibrated["export"]))
    try:
        assert as_expected(_without_shipped_file(old.model.spec))
        photo = next(p for p in sorted(raw_media["root"].rglob("*")) if p.suffix in (".jpg", ".png")
                     and "hostile" not in p.parts)
        a, b = old.scorer.score_file(photo), current.scorer.score_file(photo)
        assert a["status"] == b["status"]
        if new.input.side == new.face.crop_size:  # no resize: the interpolation cannot matter
            assert a.get("score") == b.get("score")
    finally:
        old.close()
        current.close()


def test_signed_exports_in_the_predictor_and_the_scan(calibrated, raw_media, tmp_path, capsys):
    """Signatures required: the signed folder scores and its signer is in custody; the same folder
    altered with recomputed hashes, and an unsigned one, are refused (models/signing.py)."""
    from faketrace.models.card import file_hashes
    from faketrace.models.signing import ExportSignatureError, generate_keypair, sign_export

    photo = next(p for p in sorted(raw_media["root"].rglob("*.jpg")) if "hostile" not in p.parts)
    key_id = generate_keypair(tmp_path / "lab.key", tmp_path / "lab.pub")
    signed = tmp_path / "signed"
    shutil.copytree(calibrated["export"], signed)
    sign_export(signed, tmp_path / "lab.key", "Test lab")
    required = ["--allow-unvalidated", "--require-signature", "--trusted-key", str(tmp_path / "lab.pub")]
    assert main([str(signed), str(photo), "--out", str(tmp_path / "one.jsonl"), *required]) == 0
    assert f"model signature: verified, signer 'Test lab', key {key_id}" in capsys.readouterr().err
    assert main([str(calibrated["export"]), str(photo), *required]) == EXIT_REFUSED
    assert "is not signed" in capsys.readouterr().err
    altered = tmp_path / "altered"
    shutil.copytree(signed, altered)
    with open(altered / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    card = json.loads((altered / "model_card.json").read_text())
    card["files"] = file_hashes(altered)
    (altered / "model_card.json").write_text(json.dumps(card))
    assert main([str(altered), str(photo), *required]) == EXIT_REFUSED
    assert "changed after it was signed" in capsys.readouterr().err

    def scan(model_dir, case):
        cfg = compose_config("evaluate", ["mode=scan", f"inputs=[{photo}]", "case.id=SIGNED", "case.operator=pytest",
                                          f"case.dir={case}", "scan.progress=false", f"model_dir={model_dir}",
                                          "allow_unvalidated=true", "report.enabled=false",
                                          "scan.model_signatures.required=true",
                                          f"scan.model_signatures.trusted_keys=[{tmp_path / 'lab.pub'}]"],
                             output_dir=case)
        return scan_from_config(resolved(cfg))

    assert scan(signed, tmp_path / "case")["exit_status"] == 0
    custody = json.loads((tmp_path / "case" / "custody.json").read_text())
    assert custody["model"]["signature"]["status"] == "verified"
    assert (custody["model"]["signature"]["signer"], custody["model"]["signature"]["key_id"]) == ("Test lab", key_id)
    for folder, why in ((altered, "changed after it was signed"), (calibrated["export"], "is not signed")):
        with pytest.raises(ExportSignatureError, match=why):
            scan(folder, tmp_path / f"case-{folder.name}")
    with pytest.raises(ExportSignatureError, match="checkpoint carries no signature"):
        resolved_cfg = resolved(compose_config("evaluate", [
            "mode=scan", f"inputs=[{photo}]", "case.id=X", "case.operator=pytest", f"case.dir={tmp_path / 'c3'}",
            f"ckpt_path={calibrated['ckpt']}", "scan.model_signatures.required=true",
            f"scan.model_signatures.trusted_keys=[{tmp_path / 'lab.pub'}]"], output_dir=tmp_path / "c3"))
        scan_from_config(resolved_cfg)
