"""The one signed-envelope format of the system.

Agent requests, upload manifests, audit checkpoints, exported archives and update packages
are all::

    {"v": 1, "alg": "SM2-with-SM3", "purpose": "<what it is for>",
     "signer": "<key_id of the signing key>", "payload": {...},
     "sig": "<base64 DER SM2 signature over canonical(everything but sig)>"}

``purpose`` is signed, so a signature made for one use (say an upload manifest) can never be
replayed as another (say an update package). :func:`canonical` is the byte form that is
signed; it is deliberately strict so that every party serialises a payload identically.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from .errors import InvalidSignature
from .sm2 import PublicKey, Signer

VERSION = 1
ALGORITHM = "SM2-with-SM3"
_FIELDS = frozenset({"v", "alg", "purpose", "signer", "payload", "sig"})
MAX_DEPTH = 64


def _check(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("payload nested too deeply")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise ValueError("floats are not allowed in signed payloads (use int or str)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"payload keys must be str, got {type(key).__name__}")
            _check(item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check(item, depth + 1)
        return
    raise ValueError(f"type {type(value).__name__} is not allowed in signed payloads")


def canonical(payload: dict) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 (not ASCII-escaped).

    Only dict (str keys), list/tuple, str, int, bool and None are allowed; anything else,
    floats in particular, raises ``ValueError`` because its text form is not unambiguous.
    """
    if not isinstance(payload, dict):
        raise ValueError("payload must be a dict")
    _check(payload)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("payload contains unpaired surrogates") from None


def _signed_part(v: int, alg: str, purpose: str, signer: str, payload: dict) -> bytes:
    return canonical({"v": v, "alg": alg, "purpose": purpose, "signer": signer, "payload": payload})


def sign_envelope(payload: dict, key: Signer, purpose: str) -> dict:
    """Sign ``payload`` for ``purpose`` with ``key`` (a :class:`~gmcrypto.sm2.PrivateKey`)."""
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("purpose must be a non-empty str")
    signer = key.public_key().key_id()
    message = _signed_part(VERSION, ALGORITHM, purpose, signer, payload)
    return {
        "v": VERSION,
        "alg": ALGORITHM,
        "purpose": purpose,
        "signer": signer,
        "payload": payload,
        "sig": base64.b64encode(key.sign(message)).decode("ascii"),
    }


def verify_envelope(
    envelope: dict, resolve_key: Callable[[str], PublicKey | None], purpose: str
) -> dict:
    """Verify an envelope for ``purpose`` and return its payload.

    ``resolve_key`` maps a signer key id to the trusted public key, or ``None`` if the
    signer is unknown (or revoked). Raises :class:`InvalidSignature` with an English reason.
    """
    if not isinstance(envelope, dict):
        raise InvalidSignature("envelope must be a JSON object")
    keys = set(envelope)
    if keys != _FIELDS:
        missing = sorted(_FIELDS - keys)
        extra = sorted(str(k) for k in keys - _FIELDS)
        raise InvalidSignature(f"malformed envelope (missing {missing}, unexpected {extra})")
    v = envelope["v"]
    if type(v) is not int or v != VERSION:
        raise InvalidSignature(f"unsupported envelope version {v!r}")
    if envelope["alg"] != ALGORITHM:
        raise InvalidSignature(f"unsupported signature algorithm {envelope['alg']!r}")
    got_purpose = envelope["purpose"]
    if not isinstance(got_purpose, str):
        raise InvalidSignature("envelope purpose must be a string")
    if got_purpose != purpose:
        raise InvalidSignature(f"envelope purpose is {got_purpose!r}, expected {purpose!r}")
    signer = envelope["signer"]
    if not isinstance(signer, str) or not signer:
        raise InvalidSignature("envelope signer must be a non-empty string")
    payload = envelope["payload"]
    if not isinstance(payload, dict):
        raise InvalidSignature("envelope payload must be a JSON object")
    sig_text = envelope["sig"]
    if not isinstance(sig_text, str):
        raise InvalidSignature("envelope sig must be a base64 string")
    try:
        signature = base64.b64decode(sig_text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidSignature("envelope sig is not valid base64") from None
    public = resolve_key(signer)
    if public is None:
        raise InvalidSignature(f"unknown signer {signer!r}")
    if public.key_id() != signer:
        raise InvalidSignature(f"resolved key does not match signer {signer!r}")
    try:
        message = _signed_part(v, ALGORITHM, purpose, signer, payload)
    except ValueError as exc:
        raise InvalidSignature(f"envelope payload is not canonical JSON: {exc}") from None
    if not public.verify(message, signature):
        raise InvalidSignature(f"bad signature from signer {signer!r}")
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _reject_float(text: str) -> Any:
    raise ValueError("floats are not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def envelope_to_bytes(envelope: dict) -> bytes:
    """Serialise an envelope as canonical JSON (for files, HTTP bodies, archives)."""
    return canonical(envelope)


def envelope_from_bytes(data: bytes) -> dict:
    """Parse :func:`envelope_to_bytes` output. Structure is checked by :func:`verify_envelope`;
    this only guarantees a JSON object without floats or duplicate keys."""
    try:
        text = bytes(data).decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidSignature(f"envelope is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidSignature("envelope must be a JSON object")
    return obj
