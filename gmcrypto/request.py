"""Signing and checking HTTP requests with the signed envelope (agent ⇄ portal).

The envelope payload binds method, path (with query), time, a fresh nonce and the SM3 of the
body; it travels base64url-encoded in the ``X-Agent-Envelope`` header. The receiver checks the
signature, then that every bound value matches the request it actually got, then freshness
and nonce uniqueness (which need state and are therefore the caller's job).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from .envelope import envelope_from_bytes, envelope_to_bytes, sign_envelope, verify_envelope
from .errors import InvalidSignature
from .sm2 import PublicKey, Signer
from .sm3 import sm3_hex

HEADER = "X-Agent-Envelope"
PURPOSE = "agent-request"


@dataclass(frozen=True)
class SignedRequest:
    signer: str
    timestamp: int
    nonce: str


def sign_request(key: Signer, method: str, path: str, body: bytes, now: int | None = None) -> str:
    """The header value for one request."""
    payload = {
        "method": method.upper(),
        "path": path,
        "ts": int(time.time()) if now is None else now,
        "nonce": secrets.token_hex(16),
        "body_sm3": sm3_hex(body),
    }
    envelope = sign_envelope(payload, key, PURPOSE)
    return base64.urlsafe_b64encode(envelope_to_bytes(envelope)).decode("ascii")


def verify_request(
    header: str | None,
    method: str,
    path: str,
    body: bytes,
    resolve_key: Callable[[str], PublicKey | None],
) -> SignedRequest:
    """Check signature and binding; raises InvalidSignature with an English reason."""
    if not header:
        raise InvalidSignature(f"missing {HEADER} header")
    try:
        raw = base64.urlsafe_b64decode(header.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidSignature(f"{HEADER} is not base64url") from None
    envelope = envelope_from_bytes(raw)
    payload = verify_envelope(envelope, resolve_key, PURPOSE)
    if payload.get("method") != method.upper():
        raise InvalidSignature("signed method does not match the request")
    if payload.get("path") != path:
        raise InvalidSignature("signed path does not match the request")
    if payload.get("body_sm3") != sm3_hex(body):
        raise InvalidSignature("signed body hash does not match the request body")
    ts, nonce = payload.get("ts"), payload.get("nonce")
    if type(ts) is not int or not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise InvalidSignature("signed time or nonce is malformed")
    return SignedRequest(envelope["signer"], ts, nonce)
