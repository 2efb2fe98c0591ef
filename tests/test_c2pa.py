"""C2PA content credentials on real signed files: made with c2pa-python's own signing API and a
certificate chain generated here (root CA -> intermediate -> signer, with `cryptography`), then
read offline by forensics/provenance.py and shown in the case report.

States: present_valid (the signer chains to a configured trust anchor), present_untrusted (valid,
but the root is not configured, or none is), invalid (pixels changed after signing), absent (no
manifest: re-encoded copy, or a file that only points to a manifest on the web, not fetched).
"""

from __future__ import annotations

import datetime
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faketrace.forensics.discover import register_case_resolver
from faketrace.forensics.provenance import C2paChecker
from faketrace.forensics.scan import scan_from_config

from .conftest import scan_cfg

register_case_resolver()

C2PA_SIGNER_EKU = "1.3.6.1.5.5.7.3.4"  # emailProtection: one of the extended key uses C2PA accepts for signers


def _chain(org: str) -> dict:
    """A root CA, an intermediate CA and an ES256 signing certificate, valid for a month."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID, ObjectIdentifier

    now = datetime.datetime.now(datetime.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])

    def issue(key, subject, issuer_key, issuer, ca: bool, path_length=None):
        usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                     encipher_only=False, decipher_only=False)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(**usage), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ObjectIdentifier(C2PA_SIGNER_EKU)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = issue(root_key, name(f"{org} root CA"), root_key, name(f"{org} root CA"), True, 1)
    inter = issue(inter_key, name(f"{org} intermediate CA"), root_key, root.subject, True, 0)
    leaf = issue(leaf_key, name(f"{org} camera"), inter_key, inter.subject, False)
    pem = lambda cert: cert.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    return {"root_pem": pem(root), "chain_pem": pem(leaf) + pem(inter),
            "key_pem": leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())}


def _sign(src: bytes, mime: str, chain: dict, title: str, remote_url: str | None = None) -> bytes:
    """`src` with a C2PA manifest (a c2pa.created action) signed by `chain`'s signer."""
    import c2pa

    manifest = {"claim_generator_info": [{"name": "faketrace-tests", "version": "1"}], "title": title,
                "format": mime, "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created",
                     "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]}}]}
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain["chain_pem"],
                                                       chain["key_pem"], None))
    out = io.BytesIO()
    with signer, c2pa.Builder(manifest) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        builder.sign(signer, mime, io.BytesIO(src), out)
    return out.getvalue()


def _tamper_pixels(jpeg: bytes) -> bytes:
    """One byte of entropy-coded data changed, well after the manifest (APP11) segments."""
    data = bytearray(jpeg)
    data[-200] ^= 0x55
    return bytes(data)


@pytest.fixture(scope="module")
def credentials(evidence, tmp_path_factory):
    """Signed, untrusted, tampered, re-encoded and remote-only copies of a face photo, in one folder."""
    root = tmp_path_factory.mktemp("c2pa")
    lab, stranger = _chain("faketrace test lab"), _chain("unknown maker")
    (root / "anchors.pem").write_bytes(lab["root_pem"])
    photo = (evidence["loose"] / "photo_real.jpg").read_bytes()
    png = io.BytesIO()
    Image.open(io.BytesIO(photo)).save(png, "PNG")
    media = root / "media"
    media.mkdir()
    files = {"signed.jpg": _sign(photo, "image/jpeg", lab, "signed.jpg"),
             "signed.png": _sign(png.getvalue(), "image/png", lab, "signed.png"),
             "stranger.jpg": _sign(photo, "image/jpeg", stranger, "stranger.jpg"),
             "remote.jpg": _sign(photo, "image/jpeg", lab, "remote.jpg", remote_url="https://example.invalid/m.c2pa")}
    files["tampered.jpg"] = _tamper_pixels(files["signed.jpg"])
    resaved = io.BytesIO()
    Image.open(io.BytesIO(files["signed.jpg"])).save(resaved, "JPEG", quality=90)
    files["resaved.jpg"] = resaved.getvalue()
    for name, data in files.items():
        (media / name).write_bytes(data)
    return {"root": root, "media": media, "anchors": root / "anchors.pem"}


EXPECTED = {"signed.jpg": "present_valid", "signed.png": "present_valid", "stranger.jpg": "present_untrusted",
            "tampered.jpg": "invalid", "resaved.jpg": "absent", "remote.jpg": "absent"}


def test_c2pa_states_of_really_signed_files(credentials, evidence):
    media = credentials["media"]
    trusted = C2paChecker(credentials["anchors"])
    got = {name: trusted.check(media / name) for name in EXPECTED}
    assert {name: r["state"] for name, r in got.items()} == EXPECTED
    valid = got["signed.jpg"]
    assert valid["failures"] == [] and valid["signer"] == "faketrace test lab"
    assert valid["claim_generator"] == "faketrace-tests" and valid["actions"][0]["action"] == "c2pa.created"
    assert "signingCredential.untrusted" in got["stranger.jpg"]["failures"]
    assert got["stranger.jpg"]["signer"] == "unknown maker"
    assert got["tampered.jpg"]["failures"] == ["assertion.dataHash.mismatch"]
    assert got["tampered.jpg"]["signer"] == "faketrace test lab"  # who signed what was then altered
    # Only pointing to a manifest on the web: named, not fetched, and not called invalid.
    assert got["remote.jpg"]["remote_reference"] == "https://example.invalid/m.c2pa"
    assert "not fetched" in got["remote.jpg"]["note"]
    assert got["resaved.jpg"] == {"state": "absent"}
    # Without configured anchors nothing is "valid": a correct signature says nothing about who signed.
    untrusting = C2paChecker()
    assert untrusting.check(media / "signed.jpg")["state"] == "present_untrusted"
    assert untrusting.check(media / "tampered.jpg")["state"] == "invalid"
    # Signing added a manifest, not a pixel change: the signed PNG decodes to the photo's pixels.
    def rgb(path):
        return np.asarray(Image.open(path).convert("RGB"))

    assert np.array_equal(rgb(media / "signed.png"), rgb(evidence["loose"] / "photo_real.jpg"))


def test_the_report_shows_each_c2pa_state(credentials, scan_ckpt, tmp_path):
    case = tmp_path / "case"
    inputs = tmp_path / "evidence"
    shutil.copytree(credentials["media"], inputs)
    scan_from_config(scan_cfg([inputs], case, [f"ckpt_path={scan_ckpt}", "allow_unvalidated=true"],
                              [f"report.c2pa_trust_anchors={credentials['anchors']}"]))
    report = json.loads((case / "report.json").read_text())
    assert report["settings"]["c2pa"]["trust_anchors_configured"] is True
    assert report["settings"]["c2pa"]["remote_manifest_fetch"] is False
    states = {Path(r["rel_path"]).name: (r["provenance"] or {}).get("c2pa", {}).get("state") for r in report["items"]}
    assert states == EXPECTED, [(r["rel_path"], r["status"], r["reason"]) for r in report["items"]]
    html = (case / "report.html").read_text()
    for words in ("present valid", "present untrusted", "invalid; ", "assertion.dataHash.mismatch",
                  "signer: faketrace test lab", "signer: unknown maker"):
        assert words in html, words
    csv_rows = (case / "items.csv").read_text()
    assert "present_valid" in csv_rows and "present_untrusted" in csv_rows
