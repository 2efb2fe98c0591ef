"""Sign export folders with the lab's Ed25519 key, and check them (models/signing.py, docs/export.md).

    python scripts/sign_export.py keygen --private lab.key --public lab.pub [--passphrase-env VAR]
    python scripts/sign_export.py sign EXPORT_DIR --key lab.key --signer "Lab name" [--passphrase-env VAR]
    python scripts/sign_export.py verify EXPORT_DIR --trusted-key lab.pub [--trusted-key other.pub ...]

`sign` checks every file against model_card.json first, then writes model_card.sig. A scan with
scan.model_signatures.required=true and trusted_keys=[lab.pub] then accepts only such folders.
Exit status 0 on success, 2 when refused.
"""

import argparse
import os
import sys

from faketrace.models.signing import SignaturePolicy, check_signature, generate_keypair, sign_export


def _passphrase(var: str | None) -> bytes | None:
    if not var:
        return None
    if not os.environ.get(var):
        raise ValueError(f"--passphrase-env {var}: that environment variable is empty or unset")
    return os.environ[var].encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="write a new Ed25519 key pair (never overwrites)")
    keygen.add_argument("--private", required=True, help="private key file to create (mode 0600)")
    keygen.add_argument("--public", required=True, help="public key file to create (what trusted lists hold)")
    keygen.add_argument("--passphrase-env", help="encrypt the private key with the passphrase in this variable")
    sign = sub.add_parser("sign", help="sign an export folder")
    sign.add_argument("export_dir")
    sign.add_argument("--key", required=True, help="the private key file")
    sign.add_argument("--signer", required=True, help="who releases the model (recorded in every custody record)")
    sign.add_argument("--passphrase-env", help="the private key's passphrase is in this variable")
    verify = sub.add_parser("verify", help="check a folder's signature against trusted public keys")
    verify.add_argument("export_dir")
    verify.add_argument("--trusted-key", action="append", required=True, metavar="PEM")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            kid = generate_keypair(args.private, args.public, _passphrase(args.passphrase_env))
            print(f"key {kid}: private {args.private}, public {args.public}")
        elif args.command == "sign":
            statement = sign_export(args.export_dir, args.key, args.signer, _passphrase(args.passphrase_env))
            print(f"signed {args.export_dir}: signer {statement['signer']!r}, key {statement['key_id']}, "
                  f"model card SHA-256 {statement['card_sha256']}")
        else:
            check = check_signature(args.export_dir, SignaturePolicy.from_paths(True, args.trusted_key))
            print(f"verified {args.export_dir}: signer {check.signer!r}, key {check.key_id}, signed {check.signed_utc}")
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
