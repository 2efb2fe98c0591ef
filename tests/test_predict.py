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
    card["face_detector"]["file"] = "../export/face_detector.onnx"
    (elsewhere / "model_card.json").write_text(json.dumps(card))
    assert main([str(elsewhere), str(photo), "--allow-unvalidated"]) == EXIT_REFUSED
    assert "is not one of the files model_card.json lists" in capsys.readouterr().err
    out = tmp_path / "one.jsonl"
    assert main([str(calibrated["export"]), str(photo), "--allow-unvalidated", "--out", str(out)]) == 0
    (result,) = map(json.loads, out.read_text().splitlines())
    assert result["status"] == "scanned" and result["score"]["level"] == "frame"


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
