"""Ed25519 signatures on export folders: who released this model, and has it changed since.

The model card lists the SHA-256 of every file of an export folder, so checking the card checks
the folder; but anyone who alters a file can recompute the hashes and rewrite the card. A
signature closes that gap: the lab's private key signs a statement naming the card's SHA-256, the
signer and the time, and the statement, the signature and the public key travel in the folder as
`model_card.sig`. A scan that requires signatures accepts a folder only when

1. the signature verifies against the public key in the file (the folder is what was signed),
2. that key is on the scan's trusted-key list (the signer is one the lab trusts), and
3. the card's SHA-256 is the one signed and every file matches the card (models/card.py).

Keys are the lab's own: `scripts/sign_export.py keygen` writes a private key (PKCS#8 PEM, mode
0600, encrypted when a passphrase is given) and its public key (SubjectPublicKeyInfo PEM), which
is what trusted-key lists hold. No certificates, no network, no time-stamping authority: a key is
trusted because the lab put its file on the list.

Torch-free (cryptography, json, hashlib): the standalone predictor uses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from faketrace.models.card import CARD_FILE, SIGNATURE_FILE, ExportIntegrityError, check_files

STATEMENT_FORMAT = "faketrace-export-signature/1"


class ExportSignatureError(ExportIntegrityError):
    """An export folder whose signature is missing, broken, or made by a key that is not trusted."""


@dataclass(frozen=True)
class TrustedKey:
    key_id: str  # "ed25519:" + SHA-256 of the raw 32-byte public key
    label: str  # the key file's name: which of the lab's keys this is
    path: str
    raw: bytes


@dataclass(frozen=True)
class SignatureCheck:
    """What custody and the report say about a model folder's signature."""

    status: str  # verified | signed_not_checked | unsigned
    signer: str | None = None
    key_id: str | None = None
    trusted_key: str | None = None  # the trusted-key file that matched
    signed_utc: str | None = None
    card_sha256: str | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SignaturePolicy:
    """`required`: refuse any model folder that is not signed by one of `trusted_keys`."""

    required: bool = False
    trusted_keys: tuple[TrustedKey, ...] = ()

    @classmethod
    def from_paths(cls, required: bool, trusted_key_files) -> SignaturePolicy:
        keys = tuple(load_public_key(p) for p in (trusted_key_files or ()))
        if required and not keys:
            raise ValueError("model signatures are required but no trusted key was given: list the lab's public "
                             "key files (scripts/sign_export.py keygen writes them)")
        return cls(bool(required), keys)


# -- keys -----------------------------------------------------------------------------------------
def key_id(raw_public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw_public).hexdigest()


def _raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_keypair(private_path: str | Path, public_path: str | Path, passphrase: bytes | None = None) -> str:
    """Write a new Ed25519 key pair; returns its key id. Never overwrites an existing file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; a key is never overwritten (move it away first)")
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    # Created 0600 from the start: the private key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(_raw_public(key.public_key()))


def load_private_key(path: str | Path, passphrase: bytes | None = None):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: an {type(key).__name__}; export folders are signed with Ed25519 keys")
    return key


def load_public_key(path: str | Path) -> TrustedKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"trusted key {path}: not a readable PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"trusted key {path}: an {type(key).__name__}, not an Ed25519 public key")
    raw = _raw_public(key)
    return TrustedKey(key_id(raw), path.name, str(path.resolve()), raw)


# -- signing and verifying ------------------------------------------------------------------------
def _canonical(statement: dict) -> bytes:
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _card_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / CARD_FILE).read_bytes()).hexdigest()


def sign_export(folder: str | Path, private_key_path: str | Path, signer: str,
                passphrase: bytes | None = None) -> dict:
    """Check the folder against its card, then write `model_card.sig`; returns the signed statement.

    The folder is checked first: signing a folder whose files already differ from its card would
    vouch for something nobody exported.
    """
    from faketrace.models.card import load_export

    folder = Path(folder)
    if not signer or not signer.strip():
        raise ValueError("name the signer (the lab or person releasing the model)")
    load_export(folder)
    key = load_private_key(private_key_path, passphrase)
    raw = _raw_public(key.public_key())
    statement = {"format": STATEMENT_FORMAT, "card_file": CARD_FILE, "card_sha256": _card_sha256(folder),
                 "signer": signer.strip(), "key_id": key_id(raw),
                 "signed_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    signature = key.sign(_canonical(statement))
    record = {"statement": statement, "algorithm": "Ed25519",
              "public_key": base64.b64encode(raw).decode(), "signature": base64.b64encode(signature).decode()}
    tmp = folder / (SIGNATURE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / SIGNATURE_FILE)
    return statement


def _read_signature(folder: Path) -> dict:
    sig_path = folder / SIGNATURE_FILE
    try:
        record = json.loads(sig_path.read_text(encoding="utf-8"))
        statement = record["statement"]
        raw = base64.b64decode(record["public_key"], validate=True)
        signature = base64.b64decode(record["signature"], validate=True)
        if record.get("algorithm") != "Ed25519" or statement.get("format") != STATEMENT_FORMAT:
            raise ValueError(f"algorithm {record.get('algorithm')!r}, format {statement.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExportSignatureError(f"{sig_path}: not a readable export signature ({exc})") from exc
    return {"statement": statement, "raw": raw, "signature": signature}


def _verify_record(folder: Path, record: dict) -> None:
    """The signature is the key's over this statement, and the statement names this card."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    statement, raw = record["statement"], record["raw"]
    if statement.get("key_id") != key_id(raw):
        raise ExportSignatureError(f"{folder / SIGNATURE_FILE}: the statement names key {statement.get('key_id')} "
                                   f"but carries key {key_id(raw)}")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(record["signature"], _canonical(statement))
    except (InvalidSignature, ValueError) as exc:
        raise ExportSignatureError(f"{folder / SIGNATURE_FILE}: the signature does not verify: the statement "
                                   "was changed after signing") from exc
    actual = _card_sha256(folder)
    if statement.get("card_sha256") != actual:
        raise ExportSignatureError(f"{folder / CARD_FILE} has SHA-256 {actual}, but the signature was made over "
                                   f"{statement.get('card_sha256')}: the model card (and so the folder) was changed "
                                   "after it was signed")


def check_signature(folder: str | Path, policy: SignaturePolicy) -> SignatureCheck:
    """Verify an export folder's signature under `policy`; raise ExportSignatureError to refuse it.

    Required: the folder must carry a valid signature by a trusted key, and every file must match
    the signed card. Not required: an unsigned folder passes as `unsigned`; a signature that is
    present is still verified (a broken one means the folder changed after signing, and is
    refused), and reported `verified` when its key is on the list, else `signed_not_checked`.
    """
    folder = Path(folder)
    if not (folder / CARD_FILE).is_file():
        raise ExportIntegrityError(f"{folder} has no {CARD_FILE}: not a faketrace export folder")
    if not (folder / SIGNATURE_FILE).is_file():
        if policy.required:
            raise ExportSignatureError(f"{folder} is not signed ({SIGNATURE_FILE} missing) and this scan accepts "
                                       "only models signed by a trusted key (scripts/sign_export.py sign)")
        return SignatureCheck("unsigned", note="no signature; only the model card's own hashes were checked")
    record = _read_signature(folder)
    _verify_record(folder, record)
    statement = record["statement"]
    trusted = next((k for k in policy.trusted_keys if k.raw == record["raw"]), None)
    if trusted is None and policy.required:
        raise ExportSignatureError(
            f"{folder} is signed by {statement.get('signer')!r} with key {statement['key_id']}, which is not on "
            f"this scan's trusted-key list ({', '.join(k.label for k in policy.trusted_keys)})")
    card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    if not isinstance(card, dict) or not isinstance(card.get("files"), dict):
        raise ExportIntegrityError(f"{folder / CARD_FILE} lists no files to check")
    check_files(folder, card["files"])  # the signed card vouches for the files only if they match it
    common = dict(signer=statement.get("signer"), key_id=statement["key_id"], signed_utc=statement.get("signed_utc"),
                  card_sha256=statement["card_sha256"])
    if trusted is None:
        return SignatureCheck("signed_not_checked", **common,
                              note="a valid signature by a key not on this scan's trusted-key list")
    return SignatureCheck("verified", trusted_key=trusted.path, **common,
                          note=f"signed by a trusted key ({trusted.label}); every file matches the signed card")
