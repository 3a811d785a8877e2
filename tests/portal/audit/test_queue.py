"""`record` queues entries on the transaction; they are appended in one go right before it commits.

The head lock is therefore taken at commit (or by `write_pending()`), never by `record` itself;
entries of a rolled-back transaction or savepoint are never written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import event, select, text

from portal.audit.models import AuditCheckpoint, AuditEntry
from portal.audit.services import (
    AuditWriteError,
    record,
    verify_chain,
    write_pending,
)
from portal.db import db


def _stored() -> list[tuple[int, str]]:
    return [tuple(row) for row in db.session.execute(  # type: ignore[misc]
        select(AuditEntry.seq, AuditEntry.action).order_by(AuditEntry.seq)
    )]


class _Statements:
    """The SQL the engine runs while the `with` block runs."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _count(self, conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        self.seen.append(" ".join(statement.split()).lower())

    def __enter__(self) -> _Statements:
        event.listen(db.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(db.engine, "before_cursor_execute", self._count)

    def touching(self, table: str) -> list[str]:
        return [s for s in self.seen if table in s]


def test_record_runs_no_sql_and_the_commit_appends_once(app: Flask) -> None:
    record("test.first")  # creates the head row
    db.session.commit()
    with _Statements() as during_record:
        entries = [record("test.queued", detail={"i": i}) for i in range(5)]
    assert during_record.seen == []
    assert all(e.seq is None and e.entry_hash is None for e in entries)
    assert entries[0].action == "test.queued" and entries[3].detail == '{"i":3}'  # fields set at once
    with _Statements() as during_commit:
        db.session.commit()
    # One claim and one head update for all five; the rows go in one INSERT.
    assert len(during_commit.touching("update audit_head")) == 2
    assert len(during_commit.touching("insert into audit_entry")) == 1
    assert [e.seq for e in entries] == [2, 3, 4, 5, 6]
    assert _stored() == [(1, "test.first")] + [(n, "test.queued") for n in range(2, 7)]
    assert entries[1].prev_hash == entries[0].entry_hash
    result = verify_chain()
    assert result.ok and result.entries_checked == 6


def test_a_rolled_back_transaction_writes_nothing(app: Flask) -> None:
    record("test.rolled_back")
    db.session.rollback()
    db.session.commit()
    assert _stored() == []
    # With no transaction open yet, `record` begins one, so the rollback still drops the entry.
    db.session.commit()
    record("test.rolled_back_too")
    db.session.rollback()
    kept = record("test.kept")
    db.session.commit()
    assert _stored() == [(1, "test.kept")] and kept.seq == 1


def test_closing_the_session_drops_the_queue(app: Flask) -> None:
    record("test.closed")
    db.session.close()
    record("test.after_close")
    db.session.commit()
    assert _stored() == [(1, "test.after_close")]


def test_unknown_outcome_is_refused_when_recorded(app: Flask) -> None:
    with pytest.raises(ValueError, match="outcome"):
        record("test.bad", outcome="maybe")
    db.session.commit()
    assert _stored() == []


@pytest.fixture
def audited_routes(app: Flask) -> Iterator[None]:
    """Routes that record three entries and then succeed, fail with 500, or raise."""

    def three() -> None:
        for step in ("first", "second", "third"):
            record(f"test.request.{step}")

    @app.route("/_test/audited/<how>")
    def audited(how: str) -> tuple[str, int]:
        three()
        if how == "raise":
            raise RuntimeError("the view failed")
        return how, 500 if how == "error" else 200

    app.config["PROPAGATE_EXCEPTIONS"] = False
    yield


def test_entries_of_a_failed_request_are_not_written(app: Flask, client, audited_routes) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/_test/audited/error").status_code == 500
    assert client.get("/_test/audited/raise").status_code == 500
    db.session.rollback()
    assert _stored() == []


def test_a_requests_entries_get_consecutive_seqs_and_verify(app: Flask, client, audited_routes) -> None:  # type: ignore[no-untyped-def]
    record("test.before")
    db.session.commit()
    assert client.get("/_test/audited/ok").status_code == 200
    assert client.get("/_test/audited/error").status_code == 500
    assert client.get("/_test/audited/ok").status_code == 200
    db.session.rollback()
    assert _stored() == [(1, "test.before")] + [
        (seq, f"test.request.{step}")
        for seq, step in zip(range(2, 8), ["first", "second", "third"] * 2, strict=True)
    ]
    result = verify_chain()
    assert result.ok and result.entries_checked == 7


def test_checkpoints_due_inside_one_append_are_all_signed(app: Flask, checkpoint_every) -> None:  # type: ignore[no-untyped-def]
    checkpoint_every(2)
    for i in range(5):
        record("test.batch", detail={"i": i})
    db.session.commit()
    checkpoints = db.session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)).all()
    assert [(c.seq, c.head_hash) for c in checkpoints] == [
        (seq, db.session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == seq)))
        for seq in (2, 4)
    ]
    result = verify_chain()
    assert result.ok and result.checkpoints_checked == 2


def test_write_pending_appends_before_the_commit(app: Flask) -> None:
    first = record("test.early")
    written = write_pending()
    assert written == [first] and first.seq == 1
    assert _stored() == [(1, "test.early")]  # visible to this transaction before it commits
    assert write_pending() == []  # nothing left to write
    second = record("test.late")
    db.session.commit()
    assert second.seq == 2 and _stored() == [(1, "test.early"), (2, "test.late")]
    assert verify_chain().ok


def test_savepoints(app: Flask) -> None:
    """A rolled-back savepoint drops what was recorded in it; a released one keeps it."""
    record("test.outer")
    with pytest.raises(RuntimeError), db.session.begin_nested():
        record("test.in_rolled_back_savepoint")
        raise RuntimeError
    with db.session.begin_nested():
        record("test.in_released_savepoint")
        with pytest.raises(RuntimeError), db.session.begin_nested():
            record("test.in_inner_rolled_back_savepoint")
            raise RuntimeError
    record("test.after")
    assert _stored() == []  # releasing a savepoint does not append
    db.session.commit()
    assert _stored() == [(1, "test.outer"), (2, "test.in_released_savepoint"), (3, "test.after")]
    assert verify_chain().ok


def test_entries_written_inside_a_rolled_back_savepoint_are_written_again(app: Flask) -> None:
    """The database forgot what `write_pending()` wrote inside the savepoint: entries recorded
    before the savepoint go back to the queue (and commit), those recorded inside it are dropped."""
    before = record("test.before_savepoint")
    with pytest.raises(RuntimeError), db.session.begin_nested():
        record("test.inside")
        write_pending()
        assert before.seq == 1 and len(_stored()) == 2
        raise RuntimeError
    assert before.seq is None and _stored() == []
    db.session.commit()
    assert before.seq == 1 and _stored() == [(1, "test.before_savepoint")]
    assert verify_chain().ok


def test_a_failed_append_never_commits(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal.audit import services

    def broken(prev_hash: str, entry: object) -> str:
        raise OSError("disk on fire")

    record("test.doomed")
    monkeypatch.setattr(services, "chain_hash", broken)
    with pytest.raises(OSError):
        db.session.commit()
    monkeypatch.undo()
    with pytest.raises(AuditWriteError):
        db.session.commit()  # the half-done append is not committed by trying again
    db.session.rollback()
    record("test.next")
    db.session.commit()
    assert _stored() == [(1, "test.next")]
    assert verify_chain().ok


def _append_from_another_session(app: Flask, action: str) -> list[BaseException]:
    """Commit one entry from another app context (its own session and connection); return what
    went wrong there."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                if db.engine.dialect.name == "postgresql":
                    db.session.execute(text("SET LOCAL lock_timeout = '3s'"))  # fail, never hang
                record(action)
                db.session.commit()
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the other session is still waiting"
    return errors


def test_record_does_not_take_the_head_lock(app: Flask) -> None:
    """While one transaction holds recorded entries, another one appends and commits."""
    mine = [record("test.first_session", detail={"i": i}) for i in range(2)]
    assert _append_from_another_session(app, "test.second_session") == []
    db.session.commit()
    assert [e.seq for e in mine] == [2, 3]
    assert _stored() == [(1, "test.second_session"), (2, "test.first_session"),
                         (3, "test.first_session")]
    assert verify_chain().ok


@pytest.mark.postgresql
def test_write_pending_holds_the_head_lock_until_the_commit(app: Flask) -> None:
    """The counterpart of the test above: once written, other appenders wait for this commit."""
    record("test.first_session")
    write_pending()
    errors = _append_from_another_session(app, "test.second_session")
    assert len(errors) == 1 and "lock timeout" in str(errors[0])
    db.session.commit()
    assert _stored() == [(1, "test.first_session")]
