"""Signed export folders (models/signing.py): an altered model with recomputed hashes is refused
when signatures are required, an unsigned one too, a signed one passes, and the signer is recorded."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys

import pytest

from faketrace.forensics.scoring import load_onnx_model
from faketrace.models.card import SIGNATURE_FILE, ExportIntegrityError, file_hashes, load_export
from faketrace.models.signing import (
    ExportSignatureError,
    SignaturePolicy,
    check_signature,
    generate_keypair,
    sign_export,
)

from .conftest import REPO


def _onnx_bytes(weight: float = 3.0) -> bytes:
    """A real (tiny) ONNX graph: logit = image + W."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [4], [0.0, 1.0, 2.0, weight])
    graph = helper.make_graph([helper.make_node("Add", ["image", "W"], ["logit"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [4])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def _write_card(folder, **extra) -> None:
    """model_card.json listing every file's hash, as engine/export.py writes it."""
    card = {"name": "tiny", "level": "face", **extra, "files": file_hashes(folder)}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))


def _export(folder):
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(_onnx_bytes())
    (folder / "MODEL_CARD.md").write_text("# Model card: tiny\n")
    _write_card(folder)
    return folder


def _alter_and_rehash(folder) -> None:
    """What an attacker who can write the folder does: change a weight, recompute every hash."""
    (folder / "model.onnx").write_bytes(_onnx_bytes(weight=30.0))
    card = json.loads((folder / "model_card.json").read_text())
    card["files"] = file_hashes(folder)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2))


@pytest.fixture
def keys(tmp_path):
    lab = generate_keypair(tmp_path / "lab.key", tmp_path / "lab.pub")
    other = generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    return {"lab": lab, "other": other, "dir": tmp_path}


def test_altered_model_with_recomputed_hashes_passes_the_card_but_not_the_signature(tmp_path, keys):
    folder = _export(tmp_path / "export")
    sign_export(folder, keys["dir"] / "lab.key", "Lab A")
    required = SignaturePolicy.from_paths(True, [keys["dir"] / "lab.pub"])
    assert check_signature(folder, required).status == "verified"
    _alter_and_rehash(folder)
    load_export(folder)  # the card's own hashes are satisfied: the attack the signature is for
    with pytest.raises(ExportSignatureError, match="changed after it was signed"):
        check_signature(folder, required)
    # A signature that is present is checked even when none is required: a broken one is refused.
    with pytest.raises(ExportSignatureError, match="changed after it was signed"):
        check_signature(folder, SignaturePolicy())


def test_unsigned_and_untrusted_folders_are_refused_when_signatures_are_required(tmp_path, keys):
    required = SignaturePolicy.from_paths(True, [keys["dir"] / "lab.pub"])
    unsigned = _export(tmp_path / "unsigned")
    with pytest.raises(ExportSignatureError, match="is not signed"):
        check_signature(unsigned, required)
    assert check_signature(unsigned, SignaturePolicy()).status == "unsigned"
    stranger = _export(tmp_path / "stranger")
    sign_export(stranger, keys["dir"] / "other.key", "Someone else")
    with pytest.raises(ExportSignatureError, match="not on this scan's trusted-key list"):
        check_signature(stranger, required)
    # Not required: a valid signature by an unknown key is reported as such, never as verified.
    seen = check_signature(stranger, SignaturePolicy())
    assert (seen.status, seen.signer, seen.key_id) == ("signed_not_checked", "Someone else", keys["other"])
    with pytest.raises(ValueError, match="no trusted key"):
        SignaturePolicy.from_paths(True, [])


def test_forged_statement_files_and_extra_files_are_refused(tmp_path, keys):
    required = SignaturePolicy.from_paths(True, [keys["dir"] / "lab.pub"])
    folder = _export(tmp_path / "export")
    sign_export(folder, keys["dir"] / "lab.key", "Lab A")
    record = json.loads((folder / SIGNATURE_FILE).read_text())
    # The signer's name is part of what was signed.
    forged = {**record, "statement": {**record["statement"], "signer": "Lab B"}}
    (folder / SIGNATURE_FILE).write_text(json.dumps(forged))
    with pytest.raises(ExportSignatureError, match="does not verify"):
        check_signature(folder, required)
    # A trusted key's bytes pasted into someone else's signature do not make it the lab's.
    other = _export(tmp_path / "other")
    sign_export(other, keys["dir"] / "other.key", "Lab A")
    swapped = json.loads((other / SIGNATURE_FILE).read_text())
    swapped["public_key"] = record["public_key"]
    (other / SIGNATURE_FILE).write_text(json.dumps(swapped))
    with pytest.raises(ExportSignatureError, match="names key .* but carries key"):
        check_signature(other, required)
    (folder / SIGNATURE_FILE).write_text("{not json")
    with pytest.raises(ExportSignatureError, match="not a readable export signature"):
        check_signature(folder, required)
    # Signed, then a file added: the signed card does not list it.
    added = _export(tmp_path / "added")
    sign_export(added, keys["dir"] / "lab.key", "Lab A")
    (added / "extra.onnx").write_bytes(_onnx_bytes())
    with pytest.raises(ExportIntegrityError, match="extra.onnx: in the folder but not listed"):
        check_signature(added, required)


def test_signing_checks_the_folder_first_and_keys_are_private(tmp_path, keys):
    folder = _export(tmp_path / "export")
    (folder / "model.onnx").write_bytes(_onnx_bytes(weight=9.0))  # differs from the card
    with pytest.raises(ExportIntegrityError, match="SHA-256 differs"):
        sign_export(folder, keys["dir"] / "lab.key", "Lab A")
    assert not (folder / SIGNATURE_FILE).exists()
    assert stat.S_IMODE((keys["dir"] / "lab.key").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        generate_keypair(keys["dir"] / "lab.key", tmp_path / "new.pub")
    # A passphrase-protected key needs its passphrase.
    generate_keypair(tmp_path / "locked.key", tmp_path / "locked.pub", passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "locked.key").read_bytes()
    good = _export(tmp_path / "good")
    with pytest.raises(ValueError, match="not a readable private key"):
        sign_export(good, tmp_path / "locked.key", "Lab A", passphrase=b"wrong")
    sign_export(good, tmp_path / "locked.key", "Lab A", passphrase=b"correct horse")
    assert check_signature(good, SignaturePolicy.from_paths(True, [tmp_path / "locked.pub"])).status == "verified"


def test_the_scan_loader_refuses_before_onnx_runtime_and_records_the_signer(tmp_path, keys, monkeypatch):
    import onnxruntime

    required = SignaturePolicy.from_paths(True, [keys["dir"] / "lab.pub"])
    signed = _export(tmp_path / "signed")
    sign_export(signed, keys["dir"] / "lab.key", "Lab A")
    altered = _export(tmp_path / "altered")
    sign_export(altered, keys["dir"] / "lab.key", "Lab A")
    _alter_and_rehash(altered)
    unsigned = _export(tmp_path / "unsigned")
    real_session = onnxruntime.InferenceSession

    def refuse(*args, **kwargs):
        raise AssertionError("an InferenceSession was created for a refused folder")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    for folder, why in ((altered, "changed after it was signed"), (unsigned, "is not signed")):
        with pytest.raises(ExportSignatureError, match=why):
            load_onnx_model(folder, signatures=required)
    monkeypatch.setattr(onnxruntime, "InferenceSession", real_session)
    # The signed folder gets past the signature to its card's model spec (this toy card has none).
    with pytest.raises(Exception) as refused:
        load_onnx_model(signed, signatures=required)
    assert not isinstance(refused.value, ExportIntegrityError), refused.value


def test_sign_export_command_round_trip(tmp_path):
    folder = _export(tmp_path / "export")
    script = [sys.executable, str(REPO / "scripts" / "sign_export.py")]

    def run(*args):
        return subprocess.run(script + [str(a) for a in args], capture_output=True, text=True, cwd=REPO,
                              env={"LAB_PASS": "s3cret", "PATH": "/usr/bin:/bin"}, timeout=120)

    made = run("keygen", "--private", tmp_path / "lab.key", "--public", tmp_path / "lab.pub",
               "--passphrase-env", "LAB_PASS")
    assert made.returncode == 0, made.stderr
    signed = run("sign", folder, "--key", tmp_path / "lab.key", "--signer", "Lab A", "--passphrase-env", "LAB_PASS")
    assert signed.returncode == 0, signed.stderr
    card_sha = hashlib.sha256((folder / "model_card.json").read_bytes()).hexdigest()
    assert card_sha in signed.stdout
    verified = run("verify", folder, "--trusted-key", tmp_path / "lab.pub")
    assert verified.returncode == 0 and "'Lab A'" in verified.stdout, verified.stderr
    _alter_and_rehash(folder)
    refused = run("verify", folder, "--trusted-key", tmp_path / "lab.pub")
    assert refused.returncode == 2 and "changed after it was signed" in refused.stderr
