"""DER forms of SM2 signatures (GB/T 35276 / RFC 5480 style) and ciphertexts (GM/T 0009)."""

from __future__ import annotations

from . import _asn1
from ._curve import N

RAW_HEADER = 1 + 64 + 32  # 04 || x || y || C3, then C2


def signature_to_der(r: int, s: int) -> bytes:
    return _asn1.sequence(_asn1.integer(r), _asn1.integer(s))


def signature_from_der(der: bytes) -> tuple[int, int]:
    """Strictly parse SEQUENCE { r INTEGER, s INTEGER } with r, s in [1, n-1]."""
    items = _asn1.parse_sequence(der)
    if len(items) != 2:
        raise _asn1.DERError("signature must hold exactly two integers")
    r = _asn1.decode_integer(_asn1.expect(items[0], _asn1.INTEGER))
    s = _asn1.decode_integer(_asn1.expect(items[1], _asn1.INTEGER))
    if not (0 < r < N and 0 < s < N):
        raise _asn1.DERError("signature integers out of range")
    return r, s


def ciphertext_raw_to_der(raw: bytes) -> bytes:
    """04||x||y||C3||C2 to SEQUENCE { x INTEGER, y INTEGER, C3 OCTET STRING, C2 OCTET STRING }."""
    if len(raw) <= RAW_HEADER or raw[0] != 4:
        raise _asn1.DERError("raw SM2 ciphertext must be 04||x||y||C3||C2 with a non-empty C2")
    x = int.from_bytes(raw[1:33], "big")
    y = int.from_bytes(raw[33:65], "big")
    return _asn1.sequence(
        _asn1.integer(x),
        _asn1.integer(y),
        _asn1.octet_string(raw[65:97]),
        _asn1.octet_string(raw[97:]),
    )


def ciphertext_der_to_raw(der: bytes) -> bytes:
    """Reverse :func:`ciphertext_raw_to_der` (the form ``openssl pkeyutl -encrypt`` writes)."""
    items = _asn1.parse_sequence(der)
    if len(items) != 4:
        raise _asn1.DERError("SM2 ciphertext must hold four elements")
    x = _asn1.decode_integer(_asn1.expect(items[0], _asn1.INTEGER))
    y = _asn1.decode_integer(_asn1.expect(items[1], _asn1.INTEGER))
    c3 = _asn1.expect(items[2], _asn1.OCTET_STRING)
    c2 = _asn1.expect(items[3], _asn1.OCTET_STRING)
    if x.bit_length() > 256 or y.bit_length() > 256:
        raise _asn1.DERError("C1 coordinate too large")
    if len(c3) != 32 or not c2:
        raise _asn1.DERError("C3 must be 32 bytes and C2 non-empty")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big") + c3 + c2
