"""Appending to, checkpointing, verifying and searching the tamper-evident audit log.

Every entry stores SM3(previous hash ‖ canonical entry). `record` queues an entry on the current
transaction; right before the transaction commits (a `before_commit` session event) all its
queued entries are appended at once. Appends are serialised by updating the single `audit_head`
row first: the UPDATE takes the row lock on PostgreSQL and the write lock on SQLite, so two
writers can never fork the chain, and the lock is held only for the append and the commit.
`write_pending()` appends earlier, for code that reads its own entries back before committing.

Every `audit_checkpoint_every` entries (while appending) and every `audit_checkpoint_minutes`
(`checkpoint_if_due`, called by the scheduler) the head (seq, hash, time) is signed with the
portal's SM2 key into an `AuditCheckpoint`. Checkpoints can be exported off the host; with them
`verify_chain` detects a rewritten or truncated chain even when the `audit_head` row was rewritten
along with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import BigInteger, Row, bindparam, event, exists, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from gmcrypto.envelope import (
    canonical,
    envelope_from_bytes,
    envelope_to_bytes,
    sign_envelope,
    verify_envelope,
)
from gmcrypto.errors import InvalidSignature
from gmcrypto.sm2 import PublicKey
from gmcrypto.sm3 import sm3_hex
from portal.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from portal.db import db, utcnow

GENESIS_HASH = "0" * 64
CHECKPOINT_PURPOSE = "audit-checkpoint"
VERIFIED_ACTION = "audit.verified"
SEARCHED_ACTION = "audit.searched"
OUTCOMES = ("success", "denied", "failure")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in user, a scanner agent, or the system itself."""

    kind: str
    user_id: int | None = None
    username: str = ""
    department_id: int | None = None
    ip: str = ""

    @classmethod
    def of_user(cls, user: Any, ip: str = "") -> Actor:
        return cls("user", user.id, user.username, user.department_id, ip)

    @classmethod
    def of_agent(cls, agent_id: int, key_id: str, ip: str = "") -> Actor:
        return cls("agent", None, f"agent:{agent_id}:{key_id}", None, ip)

    @classmethod
    def cli(cls) -> Actor:
        """An administrator at the command line (the operating-system account is recorded)."""
        import getpass

        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "unknown"
        return cls("system", None, f"cli:{who}"[:64])

    @classmethod
    def system(cls) -> Actor:
        return cls("system", None, "system")


class _EntryFields(Protocol):
    """An AuditEntry or a Core row with the same columns (verification streams rows)."""

    seq: int
    at: datetime
    actor_kind: str
    user_id: int | None
    username: str
    department_id: int | None
    action: str
    outcome: str
    object_type: str
    object_id: str
    reason: str
    detail: str
    ip: str


def entry_payload(entry: _EntryFields) -> dict[str, Any]:
    """The fields the hash covers, in canonical form."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(timespec="microseconds"),
        "actor_kind": entry.actor_kind,
        "user_id": entry.user_id,
        "username": entry.username,
        "department_id": entry.department_id,
        "action": entry.action,
        "outcome": entry.outcome,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "reason": entry.reason,
        "detail": entry.detail,
        "ip": entry.ip,
    }


def chain_hash(prev_hash: str, entry: _EntryFields) -> str:
    return sm3_hex(bytes.fromhex(prev_hash) + canonical(entry_payload(entry)))


def _create_head_row(session: Session) -> None:
    """Insert the single head row; tolerate a concurrent first writer doing the same."""
    values = {"id": 1, "seq": 0, "head_hash": GENESIS_HASH, "updated_at": utcnow()}
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(AuditHead).values(**values).on_conflict_do_nothing())
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(AuditHead).values(**values).on_conflict_do_nothing())
    else:
        session.add(AuditHead(**values))
        session.flush()


# Appends use Core statements on the tables: the ORM's bulk-update and unit-of-work machinery
# cost more than the database work here (measured on SQLite: ~2 ms → ~0.7 ms per entry).
_ENTRY = AuditEntry.__table__
_HEAD = AuditHead.__table__


_CLAIM = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("claimed", type_=BigInteger))
    .returning(_HEAD.c.seq, _HEAD.c.head_hash)
)
_SET_HEAD = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(head_hash=bindparam("new_head_hash"), updated_at=bindparam("new_updated_at"))
)
_INSERT_ENTRY = _ENTRY.insert()


def _claim_seqs(session: Session, count: int) -> tuple[int, str]:
    """Lock the head and move it `count` entries on; return (first claimed seq, hash before it)."""
    row = session.execute(_CLAIM, {"claimed": count}).first()
    if row is None:
        _create_head_row(session)
        row = session.execute(_CLAIM, {"claimed": count}).first()
    assert row is not None
    return int(row[0]) - count + 1, str(row[1])


def _settings() -> Any:
    return current_app.config["SETTINGS"]


# The transaction's queue -------------------------------------------------------------------------
#
# `record` only queues the entry on the session's current transaction; the session events below
# append the whole queue in one go right before the transaction commits, so the head lock is held
# for that append and the commit, not for the rest of the request. Entries of a transaction that
# rolls back are dropped; so are the entries queued inside a savepoint that rolls back (and any
# entry written inside it goes back to the queue, as the database forgot it).

_LOG_KEY = "portal.audit.log"


class AuditWriteError(RuntimeError):
    """Appending the transaction's entries failed: it must be rolled back, never committed."""


@dataclass
class _TransactionLog:
    """The entries recorded in one transaction, in order; the first `written` are in the chain."""

    entries: list[AuditEntry] = field(default_factory=list)
    written: int = 0
    # Open savepoints → (len(entries), written) when each began: restored when it rolls back.
    savepoints: dict[SessionTransaction, tuple[int, int]] = field(default_factory=dict)
    failed: bool = False  # an append broke off half-way: the transaction may not commit


def _log_of(session: Session) -> _TransactionLog:
    log = session.info.get(_LOG_KEY)
    if log is None:
        log = session.info[_LOG_KEY] = _TransactionLog()
    return log


def _write(session: Session, log: _TransactionLog) -> list[AuditEntry]:
    """Append the queued entries: one head lock, consecutive seqs, one multi-row INSERT."""
    if log.failed:
        raise AuditWriteError("an earlier audit append of this transaction failed; roll it back")
    batch = log.entries[log.written:]
    if not batch:
        return []
    log.failed = True  # until the append is complete
    seq, prev_hash = _claim_seqs(session, len(batch))
    rows = []
    for entry in batch:
        entry.seq, entry.prev_hash = seq, prev_hash
        entry.entry_hash = prev_hash = chain_hash(prev_hash, entry)
        rows.append({c.name: getattr(entry, c.name) for c in _ENTRY.columns})
        seq += 1
    session.execute(_INSERT_ENTRY, rows)
    session.execute(_SET_HEAD, {"new_head_hash": prev_hash, "new_updated_at": utcnow()})
    every = _settings().audit_checkpoint_every
    if every > 0:
        for entry in batch:
            if entry.seq % every == 0:
                # Holding the head lock: the checkpoint commits (or not) with the entry it names.
                _sign_checkpoint(session, entry.seq, entry.entry_hash, entry.at)
    log.written = len(log.entries)
    log.failed = False
    return batch


def _before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # releasing a savepoint: its entries commit with the enclosing transaction
    log = session.info.get(_LOG_KEY)
    if log is None or (log.written == len(log.entries) and not log.failed):
        return
    session.flush()  # the act's own changes first: the head lock covers the append and the commit
    _write(session, log)


def _after_commit(session: Session) -> None:
    log = session.info.get(_LOG_KEY)
    if not session.in_nested_transaction() and log is not None and log.written < len(log.entries):
        # Only possible when a root SessionTransaction is committed directly while savepoints
        # are open (the portal always commits through Session.commit()).
        logger.error("%d audit entries were committed without being written to the chain",
                     len(log.entries) - log.written)


def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    log = session.info.get(_LOG_KEY)
    if transaction.nested and log is not None:
        log.savepoints[transaction] = (len(log.entries), log.written)


def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    log = session.info.get(_LOG_KEY)
    if not previous_transaction.nested or log is None:
        return  # the end of the whole transaction is handled by _after_transaction_end
    # No mark: the log did not exist yet when the savepoint began, so it held nothing then.
    length, written = log.savepoints.pop(previous_transaction, (0, 0))
    for entry in log.entries[written:]:  # rolled back with the savepoint (if written at all)
        entry.seq = entry.prev_hash = entry.entry_hash = None  # type: ignore[assignment]
    del log.entries[length:]
    log.written = min(log.written, written)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed, rolled back or closed: the queue is done with
        session.info.pop(_LOG_KEY, None)


def _install_session_events() -> None:
    """Listen on the sessions of `db` (Flask-SQLAlchemy's session class), once per process."""
    for name, listener in (
        ("before_commit", _before_commit),
        ("after_commit", _after_commit),
        ("after_transaction_create", _after_transaction_create),
        ("after_soft_rollback", _after_soft_rollback),
        ("after_transaction_end", _after_transaction_end),
    ):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)


_install_session_events()


def record(
    action: str,
    *,
    actor: Actor | None = None,
    outcome: str = "success",
    object_type: str = "",
    object_id: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> AuditEntry:
    """Queue one entry on the current transaction: it is appended to the chain right before the
    transaction commits (or by `write_pending()`), and dropped if the transaction rolls back.

    Runs no SQL and takes no lock. The returned AuditEntry (never added to the session) carries
    the entry's fields now; `seq`, `prev_hash` and `entry_hash` are None until it is written."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    actor = actor or Actor.system()
    entry = AuditEntry(
        at=utcnow(),
        actor_kind=actor.kind,
        user_id=actor.user_id,
        username=actor.username[:64],
        department_id=actor.department_id,
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=str(object_id)[:64],
        reason=reason[:500],
        detail=json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                          default=str),
        ip=(ip or actor.ip)[:45],
    )
    session = db.session()
    if not session.in_transaction():
        session.begin()  # tie the queue to a transaction, so that a rollback drops it
    _log_of(session).entries.append(entry)
    return entry


def write_pending() -> list[AuditEntry]:
    """Append the current transaction's queued entries now and return them (with their seqs).

    For code that reads its own entries back before committing. Takes the head lock, which is
    then held until the transaction ends: call it as late as possible."""
    session = db.session()
    log = session.info.get(_LOG_KEY)
    return [] if log is None else _write(session, log)


# Checkpoints ------------------------------------------------------------------------------------


def _signing_key() -> Any:
    from portal.keys import key_provider

    return key_provider().signing_key


def _sign_checkpoint(session: Session, seq: int, head_hash: str, at: datetime) -> AuditCheckpoint:
    payload = {"seq": seq, "head_hash": head_hash, "at": at.isoformat(timespec="microseconds")}
    envelope = sign_envelope(payload, _signing_key(), CHECKPOINT_PURPOSE)
    checkpoint = AuditCheckpoint(
        seq=seq, head_hash=head_hash, at=at, envelope=envelope_to_bytes(envelope).decode("utf-8")
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def _lock_head() -> tuple[int, str] | None:
    """Take the appenders' lock without moving the head; return (seq, head hash)."""
    row = db.session.execute(
        update(_HEAD)
        .where(_HEAD.c.id == 1)
        .values(seq=_HEAD.c.seq)
        .returning(_HEAD.c.seq, _HEAD.c.head_hash)
    ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def latest_checkpoint() -> AuditCheckpoint | None:
    return db.session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1))


def create_checkpoint(now: datetime | None = None) -> AuditCheckpoint | None:
    """Sign the current head now (after this transaction's queued entries), unless it is empty or
    already checkpointed."""
    write_pending()
    head = _lock_head()
    if head is None or head[0] == 0:
        return None
    seq, head_hash = head
    if db.session.scalar(select(exists().where(AuditCheckpoint.seq == seq))):
        return None
    return _sign_checkpoint(db.session(), seq, head_hash, now or utcnow())


def checkpoint_if_due(now: datetime | None = None) -> AuditCheckpoint | None:
    """The scheduler's periodic job: checkpoint the head when the last checkpoint is older than
    `audit_checkpoint_minutes` and entries were appended since. Flushes; the caller commits."""
    now = now or utcnow()
    minutes = _settings().audit_checkpoint_minutes
    if minutes <= 0:
        return None
    head_seq = db.session.scalar(select(AuditHead.seq).where(AuditHead.id == 1))
    if not head_seq:
        return None
    last = latest_checkpoint()
    if last is not None and (last.seq >= head_seq or now - last.at < timedelta(minutes=minutes)):
        return None
    return create_checkpoint(now)


def iter_checkpoint_envelopes(since: int = 0, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
    """Signed checkpoint envelopes with seq > `since`, oldest first (for off-host export)."""
    last = since
    while True:
        rows = db.session.execute(
            select(AuditCheckpoint.seq, AuditCheckpoint.envelope)
            .where(AuditCheckpoint.seq > last)
            .order_by(AuditCheckpoint.seq)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        for seq, text in rows:
            yield json.loads(text)
            last = seq


def read_checkpoint_file(path: Path) -> list[dict[str, Any]]:
    """Envelopes from an exported JSON-lines file. Raises ValueError naming a malformed line."""
    envelopes = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                envelopes.append(envelope_from_bytes(line.strip()))
            except InvalidSignature as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
    return envelopes


# Verification -----------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    entries_checked: int
    checkpoints_checked: int
    head_seq: int
    first_bad_seq: int | None = None
    reason: str = ""
    verified_at: datetime = field(default_factory=utcnow)

    def summary(self) -> str:
        if self.ok:
            return (
                f"audit chain OK: {self.entries_checked} entries, "
                f"{self.checkpoints_checked} signed checkpoints verified (head seq {self.head_seq})"
            )
        where = f"first bad entry seq {self.first_bad_seq}" if self.first_bad_seq else "chain"
        return (
            f"audit chain FAILED at {where}: {self.reason} "
            f"({self.entries_checked} entries checked before the failure)"
        )

    def as_detail(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "head_seq": self.head_seq,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


class _ChainBroken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


@dataclass(frozen=True)
class _Checkpoint:
    seq: int
    source: str  # "database" or the exported file's name
    envelope: dict[str, Any] | None
    row_head_hash: str | None = None  # the database row's own columns, checked against the payload
    problem: str = ""  # the stored envelope could not even be parsed


class _DatabaseCheckpoints:
    """Checkpoint rows in seq order, read in batches; re-queries when drained, so checkpoints
    committed while verification runs are seen too."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.buffer: list[_Checkpoint] = []
        self.last_seq = 0
        self.exhausted = False  # drained: query again only after refresh()

    def refresh(self) -> None:
        self.exhausted = False

    def peek(self) -> _Checkpoint | None:
        if not self.buffer and not self.exhausted:
            rows = db.session.execute(
                select(AuditCheckpoint.seq, AuditCheckpoint.head_hash, AuditCheckpoint.envelope)
                .where(AuditCheckpoint.seq > self.last_seq)
                .order_by(AuditCheckpoint.seq)
                .limit(self.batch_size)
            ).all()
            for seq, head_hash, text in rows:
                try:
                    envelope: dict[str, Any] | None = envelope_from_bytes(text.encode("utf-8"))
                    problem = ""
                except InvalidSignature as exc:
                    envelope, problem = None, str(exc)
                self.buffer.append(_Checkpoint(seq, "database", envelope, head_hash, problem))
            if rows:
                self.last_seq = rows[-1][0]
            else:
                self.exhausted = True
        return self.buffer[0] if self.buffer else None

    def pop(self) -> _Checkpoint:
        return self.buffer.pop(0)


class _ExternalCheckpoints:
    def __init__(self, envelopes: Iterable[dict[str, Any]], source: str) -> None:
        items = []
        for envelope in envelopes:
            payload = envelope.get("payload") if isinstance(envelope, dict) else None
            seq = payload.get("seq") if isinstance(payload, dict) else None
            if type(seq) is not int:
                raise ValueError(f"{source}: a checkpoint envelope without an integer payload.seq")
            items.append(_Checkpoint(seq, source, envelope))
        self.items = sorted(items, key=lambda c: c.seq)
        self.index = 0

    def peek(self) -> _Checkpoint | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def pop(self) -> _Checkpoint:
        self.index += 1
        return self.items[self.index - 1]


_ENTRY_COLUMNS = (
    AuditEntry.seq, AuditEntry.at, AuditEntry.actor_kind, AuditEntry.user_id, AuditEntry.username,
    AuditEntry.department_id, AuditEntry.action, AuditEntry.outcome, AuditEntry.object_type,
    AuditEntry.object_id, AuditEntry.reason, AuditEntry.detail, AuditEntry.ip, AuditEntry.prev_hash,
    AuditEntry.entry_hash,
)


class _Verifier:
    def __init__(
        self,
        trusted_keys: Iterable[PublicKey],
        external: _ExternalCheckpoints | None,
        batch_size: int,
    ) -> None:
        self.keys = {key.key_id(): key for key in trusted_keys}
        self.database = _DatabaseCheckpoints(batch_size)
        self.external = external
        self.batch_size = batch_size
        self.last_seq = 0
        self.running_hash = GENESIS_HASH
        self.entries = 0
        self.checkpoints = 0

    def _rows_after(self, seq: int) -> Iterator[Row[Any]]:
        last = seq
        while True:
            rows = db.session.execute(
                select(*_ENTRY_COLUMNS)
                .where(AuditEntry.seq > last)
                .order_by(AuditEntry.seq)
                .limit(self.batch_size)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def _check_entry(self, row: Row[Any]) -> None:
        expected = self.last_seq + 1
        if row.seq != expected:
            if expected == 1:
                reason = f"the log starts at seq {row.seq}: entries 1..{row.seq - 1} are missing"
            else:
                reason = (
                    f"entry {expected} is missing (deleted): seq jumps from {self.last_seq} "
                    f"to {row.seq}"
                )
            raise _ChainBroken(expected, reason)
        if row.prev_hash != self.running_hash:
            raise _ChainBroken(
                row.seq,
                f"entry {row.seq} does not link to entry {row.seq - 1}: its prev_hash differs from "
                "the hash of the entry before it (an entry was inserted, replaced or rewritten)",
            )
        computed = chain_hash(self.running_hash, row)
        if computed != row.entry_hash:
            raise _ChainBroken(
                row.seq,
                f"entry {row.seq} was altered: its contents no longer match its stored hash",
            )
        self.running_hash = computed
        self.last_seq = row.seq
        self.entries += 1

    def _payload(self, checkpoint: _Checkpoint) -> dict[str, Any]:
        where = f"checkpoint for seq {checkpoint.seq} ({checkpoint.source})"
        if checkpoint.envelope is None:
            raise _ChainBroken(checkpoint.seq, f"{where} is unreadable: {checkpoint.problem}")
        try:
            payload = verify_envelope(checkpoint.envelope, self.keys.get, CHECKPOINT_PURPOSE)
        except InvalidSignature as exc:
            raise _ChainBroken(
                checkpoint.seq, f"{where} has an invalid signature (forged or altered): {exc}"
            ) from None
        if payload.get("seq") != checkpoint.seq or not isinstance(payload.get("head_hash"), str):
            raise _ChainBroken(checkpoint.seq, f"{where}: its row does not match its signed payload")
        if checkpoint.row_head_hash is not None and checkpoint.row_head_hash != payload["head_hash"]:
            raise _ChainBroken(
                checkpoint.seq, f"{where}: the row's head_hash differs from its signed payload"
            )
        return payload

    def _sources(self) -> list[_DatabaseCheckpoints | _ExternalCheckpoints]:
        return [s for s in (self.database, self.external) if s is not None]

    def _peek_checkpoint(self) -> tuple[_Checkpoint, int] | None:
        """The lowest-seq checkpoint not yet checked (database first on a tie), not consumed."""
        best: tuple[_Checkpoint, int] | None = None
        for index, source in enumerate(self._sources()):
            checkpoint = source.peek()
            if checkpoint is not None and (best is None or checkpoint.seq < best[0].seq):
                best = (checkpoint, index)
        return best

    def _pending_checkpoints(self, upto: int) -> Iterator[_Checkpoint]:
        while (peeked := self._peek_checkpoint()) is not None and peeked[0].seq <= upto:
            yield self._sources()[peeked[1]].pop()

    def _check_checkpoints_at(self, seq: int) -> None:
        seen_in_database = False
        external_only: _Checkpoint | None = None
        for checkpoint in self._pending_checkpoints(seq):
            payload = self._payload(checkpoint)
            if checkpoint.seq < seq or checkpoint.seq < 1:
                raise _ChainBroken(
                    checkpoint.seq,
                    f"checkpoint for seq {checkpoint.seq} ({checkpoint.source}) names an entry "
                    "that is not in the log",
                )
            if payload["head_hash"] != self.running_hash:
                raise _ChainBroken(
                    seq,
                    f"entry {seq} differs from the signed checkpoint ({checkpoint.source}, "
                    f"signed {payload.get('at')}): the chain up to it was rewritten",
                )
            self.checkpoints += 1
            if checkpoint.source == "database":
                seen_in_database = True
            else:
                external_only = checkpoint
        if external_only is not None and not seen_in_database:
            raise _ChainBroken(
                seq,
                f"the checkpoint for seq {seq} in {external_only.source} is missing from the "
                "database (checkpoints were deleted)",
            )

    def _check_truncation(self) -> bool:
        """After the stream ended: True to stream again (new appends), else raise or return."""
        self.database.refresh()  # checkpoints committed while we were streaming
        peeked = self._peek_checkpoint()
        if peeked is None:
            return False
        checkpoint = peeked[0]
        payload = self._payload(checkpoint)  # a forged checkpoint is reported as forged
        if self._entries_after(self.last_seq):
            return True  # appended (and checkpointed) while we were reading: keep streaming
        raise _ChainBroken(
            self.last_seq + 1,
            f"the log ends at seq {self.last_seq} but a signed checkpoint ({checkpoint.source}, "
            f"signed {payload.get('at')}) proves it held at least {checkpoint.seq} entries "
            "(truncated tail)",
        )

    def _entries_after(self, seq: int) -> bool:
        return bool(db.session.scalar(select(exists().where(AuditEntry.seq > seq))))

    def run(self) -> int:
        """Verify everything; return the head seq. Raises _ChainBroken at the first problem."""
        while True:
            for row in self._rows_after(self.last_seq):
                self._check_entry(row)
                self._check_checkpoints_at(row.seq)
            head = db.session.execute(
                select(AuditHead.seq, AuditHead.head_hash).where(AuditHead.id == 1)
            ).first()
            head_seq, head_hash = (0, GENESIS_HASH) if head is None else (int(head[0]), head[1])
            if head is None and self.last_seq > 0:
                raise _ChainBroken(None, "the audit_head row is missing")
            if head_seq > self.last_seq:
                if self._entries_after(self.last_seq):
                    continue  # appended while we were reading
                raise _ChainBroken(
                    self.last_seq + 1,
                    f"the chain head records {head_seq} entries but the log ends at seq "
                    f"{self.last_seq} (truncated tail: entries {self.last_seq + 1}..{head_seq} "
                    "are missing)",
                )
            if head_seq < self.last_seq:
                raise _ChainBroken(
                    head_seq + 1,
                    f"entries {head_seq + 1}..{self.last_seq} lie beyond the chain head "
                    f"(seq {head_seq}): they were inserted outside the application",
                )
            if head_hash != self.running_hash:
                raise _ChainBroken(
                    head_seq or None,
                    f"the chain head hash does not match entry {head_seq} (head row rewritten)",
                )
            if self._check_truncation():
                continue
            return head_seq


def verify_chain(
    *,
    trusted_keys: Iterable[PublicKey] | None = None,
    checkpoints: Iterable[dict[str, Any]] | None = None,
    checkpoints_source: str = "exported file",
    batch_size: int = 5000,
) -> VerifyResult:
    """Recompute the whole chain in seq order, `batch_size` rows at a time (constant memory).

    Checks: contiguous seq from 1, every prev_hash link and entry hash, the head row, every
    checkpoint's SM2 signature (by `trusted_keys`, default the portal's own key) and that the
    chain passes through every signed head; `checkpoints` adds exported envelopes (off-host copy).
    Stops at the first problem and names it.
    """
    if trusted_keys is None:
        from portal.keys import key_provider

        trusted_keys = [key_provider().public_key]
    external = (
        _ExternalCheckpoints(checkpoints, checkpoints_source) if checkpoints is not None else None
    )
    verifier = _Verifier(trusted_keys, external, batch_size)
    try:
        head_seq = verifier.run()
    except _ChainBroken as broken:
        return VerifyResult(
            ok=False, entries_checked=verifier.entries, checkpoints_checked=verifier.checkpoints,
            head_seq=verifier.last_seq, first_bad_seq=broken.seq, reason=broken.reason,
        )
    return VerifyResult(
        ok=True, entries_checked=verifier.entries, checkpoints_checked=verifier.checkpoints,
        head_seq=head_seq,
    )


def run_verification(actor: Actor | None = None, **options: Any) -> VerifyResult:
    """Verify the chain and record the outcome as an `audit.verified` entry (queued: written when
    the caller commits). The head lock is not held while verifying."""
    result = verify_chain(**options)
    record(
        VERIFIED_ACTION, actor=actor, outcome="success" if result.ok else "failure",
        object_type="audit_log", object_id=str(result.head_seq), reason=result.reason,
        detail=result.as_detail(),
    )
    return result


# Status and search (the audit administrator's pages) --------------------------------------------


@dataclass(frozen=True)
class ChainStatus:
    head_seq: int
    last_checkpoint: AuditCheckpoint | None
    last_verification: AuditEntry | None

    @property
    def last_verification_detail(self) -> dict[str, Any]:
        if self.last_verification is None:
            return {}
        try:
            detail = json.loads(self.last_verification.detail)
        except ValueError:
            return {}
        return detail if isinstance(detail, dict) else {}


def chain_status() -> ChainStatus:
    head_seq = db.session.scalar(select(AuditHead.seq).where(AuditHead.id == 1)) or 0
    last_verification = db.session.scalar(
        select(AuditEntry)
        .where(AuditEntry.action == VERIFIED_ACTION)
        .order_by(AuditEntry.at.desc(), AuditEntry.seq.desc())
        .limit(1)
    )
    return ChainStatus(int(head_seq), latest_checkpoint(), last_verification)


@dataclass(frozen=True)
class AuditFilter:
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    user: str = ""  # username (exact, case-insensitive) of a user, agent or "system"
    action: str = ""  # prefix, e.g. "auth." or "capture.page"
    object_type: str = ""
    object_id: str = ""
    outcome: str = ""
    errors: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditFilter:
        """Parse the search form (query-string values); problems are collected in Chinese."""
        errors: list[str] = []
        start = _parse_time(args.get("start", ""), end_of_day=False, errors=errors, label="开始时间")
        end = _parse_time(args.get("end", ""), end_of_day=True, errors=errors, label="结束时间")
        if start and end and end <= start:
            errors.append("结束时间必须晚于开始时间。")
        outcome = args.get("outcome", "").strip()
        if outcome and outcome not in OUTCOMES:
            errors.append("结果取值无效。")
            outcome = ""
        return cls(
            start=start, end=end, user=args.get("user", "").strip()[:64],
            action=args.get("action", "").strip()[:50],
            object_type=args.get("object_type", "").strip()[:30],
            object_id=args.get("object_id", "").strip()[:64], outcome=outcome,
            errors=tuple(errors),
        )

    def as_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "user": self.user, "action": self.action, "object_type": self.object_type,
            "object_id": self.object_id, "outcome": self.outcome,
        }
        return {k: v for k, v in detail.items() if v}


def _parse_time(raw: str, *, end_of_day: bool, errors: list[str], label: str) -> datetime | None:
    """"YYYY-MM-DD" or "YYYY-MM-DDTHH:MM" in the server's local time, as aware UTC.

    A date alone as the end of a range means the end of that day (exclusive next midnight)."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(f"{label}格式无效，请使用“年-月-日 时:分”。")
        return None
    if end_of_day and len(raw) == 10:
        value += timedelta(days=1)
    if value.tzinfo is None:
        value = value.astimezone()  # the server's local zone, as the pages display times
    return value.astimezone(UTC)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # pass as `before` for the next (older) page


MAX_PAGE_SIZE = 200


def search_entries(filters: AuditFilter, *, before: int | None = None, limit: int = 50) -> AuditPage:
    """Entries matching `filters`, newest first, keyset-paged by seq (`before` = exclusive)."""
    from portal.auth.models import User

    limit = max(1, min(limit, MAX_PAGE_SIZE))
    stmt = select(AuditEntry)
    if filters.start is not None:
        stmt = stmt.where(AuditEntry.at >= filters.start)
    if filters.end is not None:
        stmt = stmt.where(AuditEntry.at < filters.end)
    if filters.user:
        user_id = db.session.scalar(
            select(User.id).where(func.lower(User.username) == filters.user.lower())
        )
        if user_id is not None:
            stmt = stmt.where(AuditEntry.user_id == user_id)  # indexed
        else:
            stmt = stmt.where(AuditEntry.username == filters.user)  # agents, "system", ex-users
    if filters.action:
        stmt = stmt.where(AuditEntry.action.startswith(filters.action, autoescape=True))
    if filters.object_type:
        stmt = stmt.where(AuditEntry.object_type == filters.object_type)
    if filters.object_id:
        stmt = stmt.where(AuditEntry.object_id == filters.object_id)
    if filters.outcome:
        stmt = stmt.where(AuditEntry.outcome == filters.outcome)
    if before is not None:
        stmt = stmt.where(AuditEntry.seq < before)
    rows = list(db.session.scalars(stmt.order_by(AuditEntry.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1].seq if more and rows else None)
