"""Agent update packages: accepted only with a valid SM2 signature from the pinned release key
and a version newer than the running one.

The release manager signs a package offline with `python -m scanner_agent.updates sign`; the
portal only stores and serves package + envelope; the agent verifies before using it.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from gmcrypto.envelope import sign_envelope, verify_envelope
from gmcrypto.errors import InvalidSignature
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.sm3 import sm3_hex

PURPOSE = "agent-update"


class UpdateRejected(Exception):
    pass


def parse_version(text: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(\.\d+){0,3}", text or ""):
        raise UpdateRejected(f"malformed version {text!r}")
    return tuple(int(part) for part in text.split("."))


def sign_update(package: bytes, filename: str, version: str, key: PrivateKey) -> dict[str, Any]:
    parse_version(version)
    return sign_envelope({"version": version, "filename": filename, "size": len(package),
                          "sm3": sm3_hex(package)}, key, PURPOSE)


def verify_update(package: bytes, envelope: dict[str, Any], release_key: PublicKey,
                  current_version: str) -> dict[str, Any]:
    try:
        payload = verify_envelope(envelope, lambda kid: release_key if kid == release_key.key_id() else None,
                                  PURPOSE)
    except InvalidSignature as exc:
        raise UpdateRejected(f"signature: {exc}") from None
    if payload.get("size") != len(package) or payload.get("sm3") != sm3_hex(package):
        raise UpdateRejected("the package does not match its signed size and SM3")
    if parse_version(str(payload.get("version"))) <= parse_version(current_version):
        raise UpdateRejected(f"version {payload.get('version')} is not newer than {current_version}")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sign an agent update package (release manager)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sign")
    p.add_argument("package", type=Path)
    p.add_argument("--version", required=True)
    p.add_argument("--key", type=Path, required=True, help="release SM2 private key (PEM)")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    envelope = sign_update(args.package.read_bytes(), args.package.name, args.version,
                           PrivateKey.from_pem(args.key.read_bytes()))
    args.out.write_text(json.dumps(envelope, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"signed {args.package.name} {args.version} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
