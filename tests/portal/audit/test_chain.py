"""The hash chain, signed checkpoints and verification, tampered with through direct SQL."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from gmcrypto.envelope import envelope_to_bytes, sign_envelope
from gmcrypto.sm2 import PrivateKey
from portal.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from portal.audit.services import (
    CHECKPOINT_PURPOSE,
    GENESIS_HASH,
    chain_hash,
    checkpoint_if_due,
    create_checkpoint,
    iter_checkpoint_envelopes,
    record,
    verify_chain,
)
from portal.db import db


def _sql(stmt, **params):  # type: ignore[no-untyped-def]
    """Tamper outside the application and commit, as an attacker with database access would."""
    db.session.execute(text(stmt) if isinstance(stmt, str) else stmt, params)
    db.session.commit()
    db.session.expunge_all()


def test_record_links_every_entry_to_the_previous_one(app, fill):
    seqs = fill(5)
    assert seqs == [1, 2, 3, 4, 5]
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    assert entries[0].prev_hash == GENESIS_HASH
    for before, entry in itertools.pairwise(entries):
        assert entry.prev_hash == before.entry_hash
        assert entry.entry_hash == chain_hash(entry.prev_hash, entry)
    head = db.session.get(AuditHead, 1)
    assert (head.seq, head.head_hash) == (5, entries[-1].entry_hash)


def test_empty_and_intact_logs_verify(app, fill):
    empty = verify_chain()
    assert empty.ok and empty.entries_checked == 0
    fill(12)
    result = verify_chain(batch_size=5)  # several batches
    assert result.ok, result.reason
    assert (result.entries_checked, result.head_seq, result.first_bad_seq) == (12, 12, None)


def test_checkpoint_every_n_entries_is_signed_by_the_portal_key(app, fill, checkpoint_every):
    from portal.keys import key_provider

    checkpoint_every(4)
    fill(10)
    checkpoints = db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
    assert [c.seq for c in checkpoints] == [4, 8]
    envelope = json.loads(checkpoints[0].envelope)
    entry4 = db.session.get(AuditEntry, 4)
    assert envelope["purpose"] == CHECKPOINT_PURPOSE
    assert envelope["signer"] == key_provider().public_key.key_id()
    assert envelope["payload"]["seq"] == 4
    assert envelope["payload"]["head_hash"] == entry4.entry_hash == checkpoints[0].head_hash
    result = verify_chain()
    assert result.ok and result.checkpoints_checked == 2


def test_checkpoint_if_due_follows_the_clock(app, fill, checkpoint_every):
    checkpoint_every(0)  # time-based only
    now = datetime.now(UTC)
    assert checkpoint_if_due(now) is None  # nothing logged yet
    fill(3)
    first = checkpoint_if_due(now)
    assert first is not None and first.seq == 3
    db.session.commit()
    assert checkpoint_if_due(now + timedelta(minutes=5)) is None  # not due yet
    assert checkpoint_if_due(now + timedelta(minutes=61)) is None  # due, but nothing new
    fill(2)
    second = checkpoint_if_due(now + timedelta(minutes=61))
    assert second is not None and second.seq == 5
    db.session.commit()
    assert verify_chain().checkpoints_checked == 2


def test_create_checkpoint_does_not_duplicate(app, fill, checkpoint_every):
    checkpoint_every(0)
    fill(2)
    assert create_checkpoint() is not None
    assert create_checkpoint() is None
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 1


HASHED_COLUMNS = [
    ("at", datetime(2020, 1, 1, tzinfo=UTC)),
    ("actor_kind", "system"),
    ("user_id", 999),
    ("username", "mallory"),
    ("department_id", 42),
    ("action", "auth.login"),
    ("outcome", "denied"),
    ("object_type", "user"),
    ("object_id", "T9999"),
    ("reason", "nothing happened"),
    ("detail", '{"i":0}'),
    ("ip", "192.0.2.1"),
]


@pytest.mark.parametrize(("column", "value"), HASHED_COLUMNS, ids=[c for c, _ in HASHED_COLUMNS])
def test_an_edit_of_any_field_is_detected(app, fill, column, value):
    fill(6)
    _sql(update(AuditEntry).where(AuditEntry.seq == 3).values({column: value}))
    result = verify_chain(batch_size=2)
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "entry 3 was altered" in result.reason
    assert result.entries_checked == 2


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(app, fill):
    fill(6)
    entry = db.session.get(AuditEntry, 3)
    entry.reason = "covered up"
    forged = chain_hash(entry.prev_hash, entry)
    db.session.rollback()
    _sql("UPDATE audit_entry SET reason = 'covered up', entry_hash = :h WHERE seq = 3", h=forged)
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 4
    assert "does not link to entry 3" in result.reason


def test_a_consistently_rewritten_chain_is_caught_by_a_signed_checkpoint(
    app, fill, checkpoint_every
):
    checkpoint_every(5)
    fill(8)  # checkpoint at 5
    # The attacker edits entry 2 and recomputes every later hash and the head: without the
    # portal's private key only the checkpoint can tell.
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
    entries[1].reason = "rewritten"
    prev = entries[0].entry_hash
    hashes = {}
    for entry in entries[1:]:
        entry.prev_hash = prev
        prev = chain_hash(prev, entry)
        hashes[entry.seq] = (entry.prev_hash, prev, entry.reason)
    db.session.rollback()
    for seq, (prev_hash, entry_hash, reason) in hashes.items():
        db.session.execute(
            update(AuditEntry).where(AuditEntry.seq == seq)
            .values(prev_hash=prev_hash, entry_hash=entry_hash, reason=reason)
        )
    _sql(update(AuditHead).where(AuditHead.id == 1).values(head_hash=prev))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 5
    assert "differs from the signed checkpoint" in result.reason


def test_a_deleted_entry_leaves_a_gap(app, fill):
    fill(7)
    _sql("DELETE FROM audit_entry WHERE seq = 4")
    result = verify_chain(batch_size=3)
    assert not result.ok and result.first_bad_seq == 4
    assert "entry 4 is missing (deleted)" in result.reason


def test_a_deleted_first_entry_is_detected(app, fill):
    fill(3)
    _sql(delete(AuditEntry).where(AuditEntry.seq == 1))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 1


def test_an_inserted_entry_with_a_valid_looking_hash_lies_beyond_the_head(app, fill):
    fill(4)
    last = db.session.get(AuditEntry, 4)
    fake = AuditEntry(
        seq=5, at=datetime.now(UTC), actor_kind="user", user_id=1, username="mallory",
        department_id=None, action="capture.page_added", outcome="success", object_type="",
        object_id="", reason="", detail="{}", ip="", prev_hash=last.entry_hash,
    )
    fake.entry_hash = chain_hash(last.entry_hash, fake)
    values = {c.name: getattr(fake, c.name) for c in AuditEntry.__table__.columns}
    db.session.expunge_all()
    _sql(AuditEntry.__table__.insert().values(**values))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 5
    assert "beyond the chain head" in result.reason


def test_an_entry_replaced_in_the_middle_is_detected(app, fill):
    fill(5)
    row = dict(db.session.execute(
        select(AuditEntry.__table__).where(AuditEntry.seq == 3)
    ).mappings().one())
    row["action"] = "auth.logout"
    db.session.rollback()
    db.session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
    _sql(AuditEntry.__table__.insert().values(**row))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 3


def test_a_truncated_tail_is_detected_by_the_head_row(app, fill):
    fill(9)
    _sql("DELETE FROM audit_entry WHERE seq > 6")
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 7
    assert "truncated tail" in result.reason


def test_a_truncated_tail_with_a_rewound_head_is_detected_by_a_checkpoint(
    app, fill, checkpoint_every
):
    checkpoint_every(4)
    fill(9)  # checkpoints at 4 and 8
    six = db.session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == 6))
    _sql(delete(AuditEntry).where(AuditEntry.seq > 6))
    _sql(update(AuditHead).where(AuditHead.id == 1).values(seq=6, head_hash=six))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 7
    assert "proves it held at least 8 entries" in result.reason


def _forge(payload: dict, key: PrivateKey) -> str:
    return envelope_to_bytes(sign_envelope(payload, key, CHECKPOINT_PURPOSE)).decode()


def test_a_checkpoint_signed_by_another_key_is_rejected(app, fill, checkpoint_every):
    checkpoint_every(3)
    fill(4)
    cp = db.session.scalar(select(AuditCheckpoint))
    forged = _forge(json.loads(cp.envelope)["payload"], PrivateKey.generate())
    _sql(update(AuditCheckpoint).where(AuditCheckpoint.id == cp.id).values(envelope=forged))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 3
    assert "invalid signature" in result.reason and "unknown signer" in result.reason


def test_a_checkpoint_with_an_altered_payload_is_rejected(app, fill, checkpoint_every):
    checkpoint_every(3)
    fill(4)
    cp = db.session.scalar(select(AuditCheckpoint))
    envelope = json.loads(cp.envelope)
    envelope["payload"]["at"] = "2020-01-01T00:00:00.000000+00:00"
    _sql(update(AuditCheckpoint).where(AuditCheckpoint.id == cp.id)
         .values(envelope=json.dumps(envelope)))
    result = verify_chain()
    assert not result.ok and "bad signature" in result.reason


def test_a_checkpoint_row_column_edit_is_rejected(app, fill, checkpoint_every):
    checkpoint_every(3)
    fill(4)
    _sql(update(AuditCheckpoint).values(head_hash="f" * 64))
    result = verify_chain()
    assert not result.ok and "differs from its signed payload" in result.reason


def test_a_forged_checkpoint_beyond_the_log_is_reported_as_forged(app, fill, checkpoint_every):
    checkpoint_every(0)
    fill(3)
    forged = _forge({"seq": 10, "head_hash": "a" * 64, "at": "x"}, PrivateKey.generate())
    _sql(AuditCheckpoint.__table__.insert().values(
        seq=10, head_hash="a" * 64, at=datetime.now(UTC), envelope=forged))
    result = verify_chain()
    assert not result.ok and result.first_bad_seq == 10
    assert "invalid signature" in result.reason


def test_exported_checkpoints_catch_what_the_database_no_longer_shows(
    app, fill, checkpoint_every
):
    """A database administrator truncates the tail, rewinds the head and deletes the checkpoints:
    only the copy kept off the host tells."""
    checkpoint_every(5)
    fill(12)  # checkpoints 5, 10
    exported = list(iter_checkpoint_envelopes())
    assert [e["payload"]["seq"] for e in exported] == [5, 10]
    assert [e["payload"]["seq"] for e in iter_checkpoint_envelopes(since=5)] == [10]
    seven = db.session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == 7))
    _sql(delete(AuditEntry).where(AuditEntry.seq > 7))
    _sql(delete(AuditCheckpoint).where(AuditCheckpoint.seq > 7))
    _sql(update(AuditHead).where(AuditHead.id == 1).values(seq=7, head_hash=seven))
    assert verify_chain().ok  # the database alone looks consistent
    result = verify_chain(checkpoints=exported, checkpoints_source="off-host.jsonl")
    assert not result.ok and result.first_bad_seq == 8
    assert "off-host.jsonl" in result.reason and "truncated tail" in result.reason


def test_an_exported_checkpoint_missing_from_the_database_is_reported(
    app, fill, checkpoint_every
):
    checkpoint_every(5)
    fill(7)
    exported = list(iter_checkpoint_envelopes())
    _sql(delete(AuditCheckpoint))
    result = verify_chain(checkpoints=exported)
    assert not result.ok and result.first_bad_seq == 5
    assert "missing from the database" in result.reason


def test_verification_sees_entries_appended_while_it_runs(app, fill, monkeypatch):
    """A concurrent append between the last batch and the head check is not a false alarm."""
    from portal.audit import services

    fill(3)
    appended: list[int] = []
    real_rows = services._Verifier._rows_after

    def rows_then_append(self, seq):  # type: ignore[no-untyped-def]
        yield from real_rows(self, seq)
        if not appended:  # another process commits an entry after our last batch
            late = record("test.late")
            db.session.commit()
            appended.append(late.seq)

    monkeypatch.setattr(services._Verifier, "_rows_after", rows_then_append)
    result = verify_chain()
    assert result.ok, result.reason
    assert result.entries_checked == 4 and appended == [4]


@pytest.mark.parametrize("every", [0, 4])
def test_verification_queries_in_batches_not_per_row(app, fill, checkpoint_every, every):
    from sqlalchemy import event

    checkpoint_every(every)
    fill(30)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        result = verify_chain(batch_size=10)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert result.ok and result.checkpoints_checked == (30 // every if every else 0)
    assert len(statements) <= 12, statements  # 4 entry batches + checkpoints + head + checks
