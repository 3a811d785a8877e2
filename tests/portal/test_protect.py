"""Protected personal data: encryption bound to row and column, blind index, masking, reveal."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gmcrypto.errors import DecryptionError
from portal.audit.models import AuditEntry
from portal.audit.services import Actor, write_pending
from portal.db import db
from portal.protect import (
    ID_NUMBER,
    PHONE,
    Protected,
    blind_index,
    mask,
    normalize,
    protect,
    reveal,
    reveal_personal,
)

ID = "310115199001011234"


def test_round_trip(app):
    p = protect(ID_NUMBER, "S1", ID)
    assert p.cipher is not None and ID.encode() not in p.cipher
    assert reveal(ID_NUMBER, "S1", p.cipher) == ID
    assert p.masked == "310***********1234"
    assert p.index == blind_index(ID_NUMBER, ID)
    # Fresh nonce every time: equal values do not give equal ciphertexts.
    assert protect(ID_NUMBER, "S1", ID).cipher != p.cipher


def test_empty_values_store_nothing(app):
    assert protect(PHONE, "S1", None) == protect(PHONE, "S1", "  ") == Protected(None, None, "")
    assert reveal(PHONE, "S1", None) == ""


def test_a_cipher_copied_to_another_business_fails(app):
    cipher = protect(ID_NUMBER, "S1", ID).cipher
    with pytest.raises(DecryptionError):
        reveal(ID_NUMBER, "S2", cipher)


def test_a_cipher_copied_to_another_column_fails(app):
    cipher = protect(PHONE, "S1", "13812345678").cipher
    with pytest.raises(DecryptionError):
        reveal(ID_NUMBER, "S1", cipher)


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        (ID_NUMBER, "310115199001011234", "310***********1234"),
        (ID_NUMBER, "31011519900101123x", "310***********123X"),
        (ID_NUMBER, "310115900101123", "310********1123"),  # 15-digit old format
        (ID_NUMBER, "E12345678", "E*******8"),  # passport: most of it hidden
        (ID_NUMBER, "1234567", "*******"),
        (PHONE, "13812345678", "138****5678"),
        (PHONE, "138-1234-5678", "138****5678"),
        (PHONE, "87654321", "87****21"),  # landline: never shown whole
        (PHONE, "1234567", "12***67"),
        (PHONE, "110", "***"),
        (PHONE, "", ""),
    ],
)
def test_masking(kind, value, masked):
    assert mask(kind, value) == masked
    shown = sum(1 for c in masked if c != "*")
    assert shown <= len(masked) - (len(masked) + 1) // 3  # at least a third always hidden


@pytest.mark.parametrize(
    "variant",
    ["31011519900101123X", "31011519900101123x", " 310115 19900101 123x ",
     "３１０１１５１９９００１０１１２３ｘ", "310115\t19900101123X\n"],
)
def test_blind_index_normalises_id_numbers(app, variant):
    assert normalize(ID_NUMBER, variant) == "31011519900101123X"
    assert blind_index(ID_NUMBER, variant) == blind_index(ID_NUMBER, "31011519900101123X")


def test_blind_index_is_exact_and_per_kind(app):
    base = blind_index(ID_NUMBER, ID)
    assert len(base) == 64
    assert blind_index(ID_NUMBER, ID[:-1] + "5") != base
    assert blind_index(PHONE, ID) != base  # the same digits in another column do not match
    assert blind_index(PHONE, "138 1234-5678") == blind_index(PHONE, "13812345678")


def _reveals() -> list[AuditEntry]:
    write_pending()  # entries are appended at commit; these tests read them before committing
    return list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "personal.revealed").order_by(AuditEntry.seq)
    ))


def test_reveal_personal_with_permission_is_audited(app, factory):
    supervisor = factory.user("supervisor", factory.org.det1)
    business = factory.business(factory.org.office_a)
    actor = Actor.of_user(supervisor, "10.0.0.5")
    assert reveal_personal(supervisor, business, ID_NUMBER, actor, reason="核对") == ID
    assert reveal_personal(supervisor, business, PHONE, actor) == "13812345678"
    entries = _reveals()
    assert [(e.outcome, e.object_id, e.username) for e in entries] == [
        ("success", business.serial, supervisor.username)] * 2
    assert entries[0].reason == "核对" and '"kind":"owner_id"' in entries[0].detail
    assert entries[0].ip == "10.0.0.5"


def test_reveal_personal_without_permission_is_denied_and_audited(app, factory):
    clerk = factory.user("clerk")
    business = factory.business()
    with pytest.raises(PermissionError):
        reveal_personal(clerk, business, ID_NUMBER, Actor.of_user(clerk))
    (entry,) = _reveals()
    assert entry.outcome == "denied" and entry.username == clerk.username


def test_reveal_personal_outside_the_users_departments_is_denied(app, factory):
    supervisor = factory.user("supervisor", factory.org.det1)
    elsewhere = factory.business(factory.org.office_c)  # detachment 2
    with pytest.raises(PermissionError):
        reveal_personal(supervisor, elsewhere, PHONE, Actor.of_user(supervisor))
    (entry,) = _reveals()
    assert entry.outcome == "denied" and "outside" in entry.detail


def test_reveal_personal_of_a_moved_cipher_fails_and_is_audited(app, factory):
    supervisor = factory.user("supervisor", factory.org.det1)
    a = factory.business(serial="S0000000001")
    b = factory.business(serial="S0000000002", owner_id_number="110101198001010011")
    b.owner_id_cipher = a.owner_id_cipher  # copied by someone with database access
    with pytest.raises(DecryptionError):
        reveal_personal(supervisor, b, ID_NUMBER, Actor.of_user(supervisor))
    (entry,) = _reveals()
    assert entry.outcome == "failure"


def test_reveal_personal_rejects_unknown_kinds(app, factory):
    supervisor = factory.user("supervisor")
    with pytest.raises(ValueError):
        reveal_personal(supervisor, factory.business(), "owner_name", Actor.of_user(supervisor))
