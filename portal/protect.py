"""Protected personal data: encrypted at rest, blind-indexed for exact lookup, masked on screen.

- cipher: SM4-GCM under the field key, AAD "business|<serial>|<kind>": a ciphertext copied to
  another business or into the other column fails to decrypt;
- index: HMAC-SM3 of the normalised value under a per-kind key, for exact lookup only;
- masked: what every screen shows (310***********1234, 138****5678);
- the clear value only through `reveal_personal`, which checks the permission and the user's
  department scope and writes a `personal.revealed` audit entry either way.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from portal.keys import key_provider

ID_NUMBER = "owner_id"
PHONE = "phone"
KINDS = (ID_NUMBER, PHONE)
REVEALED_ACTION = "personal.revealed"


@dataclass(frozen=True)
class Protected:
    cipher: bytes | None
    index: str | None
    masked: str


def normalize(kind: str, value: str) -> str:
    """The canonical form that is encrypted and indexed.

    NFKC first, so full-width digits and letters typed with a Chinese IME (３１０…Ｘ) equal their
    ASCII forms; whitespace always goes; ID numbers are upper-cased (the check character X);
    phone numbers also lose the separators people type (138-1234-5678, (021) 1234 5678).
    """
    value = unicodedata.normalize("NFKC", value or "")
    value = re.sub(r"\s+", "", value)
    if kind == ID_NUMBER:
        return value.upper()
    if kind == PHONE:
        return re.sub(r"[-()（）.]", "", value)
    return value


def _mask_middle(value: str, head: int, tail: int) -> str:
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail:]


def mask(kind: str, value: str) -> str:
    """310***********1234 for ID numbers, 138****5678 for mobile phones.

    Shorter values keep less, so that most of a value is always hidden: an 8–14 character ID
    (passport, old formats) shows its first and last character, a 7–10 digit landline its first
    two and last two digits; anything shorter is fully masked.
    """
    value = normalize(kind, value)
    if not value:
        return ""
    if kind == ID_NUMBER:
        if len(value) >= 15:
            return _mask_middle(value, 3, 4)
        if len(value) >= 8:
            return _mask_middle(value, 1, 1)
    if kind == PHONE:
        if len(value) >= 11:
            return _mask_middle(value, 3, 4)
        if len(value) >= 7:
            return _mask_middle(value, 2, 2)
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
    """The clear value. Callers must check the permission and write the audit entry
    (`reveal_personal` does both)."""
    if cipher is None:
        return ""
    return key_provider().decrypt_field(cipher, _aad(kind, serial))


_COLUMNS = {ID_NUMBER: "owner_id_cipher", PHONE: "phone_cipher"}


def reveal_personal(user: Any, business: Any, kind: str, actor: Any, reason: str = "") -> str:
    """The clear ID or phone number of `business` for `user`, audited as `personal.revealed`.

    Allowed when the user holds REVEAL_PERSONAL and the business lies in the departments the
    user may look up; otherwise the denial is audited and PermissionError raised. A value that
    fails to decrypt (copied or altered ciphertext) is audited as a failure and re-raised.
    """
    from gmcrypto.errors import DecryptionError
    from portal.audit.services import record
    from portal.auth.roles import Permission
    from portal.scoping import scope_for

    if kind not in _COLUMNS:
        raise ValueError(f"unknown personal-data kind {kind!r}")
    audit = {
        "actor": actor, "object_type": "business", "object_id": business.serial,
        "reason": reason, "detail": {"kind": kind},
    }
    if not user.can(Permission.REVEAL_PERSONAL):
        record(REVEALED_ACTION, outcome="denied", **audit)
        raise PermissionError("no permission to reveal personal data")
    if not scope_for(user, cross_department=True).allows(business.department_id):
        record(REVEALED_ACTION, outcome="denied", **{**audit, "detail": {
            "kind": kind, "why": "outside the user's departments"}})
        raise PermissionError("the business is outside the user's departments")
    try:
        value = reveal(kind, business.serial, getattr(business, _COLUMNS[kind]))
    except DecryptionError:
        record(REVEALED_ACTION, outcome="failure", **{**audit, "detail": {
            "kind": kind, "why": "ciphertext failed authentication"}})
        raise
    record(REVEALED_ACTION, **audit)
    return value
