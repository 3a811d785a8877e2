"""Protected personal data: encrypted at rest, blind-indexed for exact lookup, masked on screen."""

from __future__ import annotations

import re
from dataclasses import dataclass

from portal.keys import key_provider

ID_NUMBER = "owner_id"
PHONE = "phone"


@dataclass(frozen=True)
class Protected:
    cipher: bytes | None
    index: str | None
    masked: str


def normalize(kind: str, value: str) -> str:
    value = re.sub(r"\s+", "", value or "")
    return value.upper() if kind == ID_NUMBER else value


def mask(kind: str, value: str) -> str:
    """310***********1234 for ID numbers, 138****5678 for phones; short values fully masked."""
    value = normalize(kind, value)
    if not value:
        return ""
    if kind == ID_NUMBER and len(value) >= 8:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    if kind == PHONE and len(value) >= 7:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    return "*" * len(value)


def _aad(kind: str, serial: str) -> bytes:
    # Binds a ciphertext to its row (by the immutable serial) and column: a value copied to
    # another business or column fails to decrypt.
    return f"business|{serial}|{kind}".encode()


def protect(kind: str, serial: str, value: str | None) -> Protected:
    clear = normalize(kind, value or "")
    if not clear:
        return Protected(None, None, "")
    provider = key_provider()
    return Protected(
        provider.encrypt_field(clear, _aad(kind, serial)),
        provider.blind_index(kind, clear),
        mask(kind, clear),
    )


def blind_index(kind: str, value: str) -> str:
    return key_provider().blind_index(kind, normalize(kind, value))


def reveal(kind: str, serial: str, cipher: bytes | None) -> str:
    """The clear value. Callers must check the permission and write the audit entry."""
    if cipher is None:
        return ""
    return key_provider().decrypt_field(cipher, _aad(kind, serial))
