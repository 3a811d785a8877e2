"""Appends from several threads, each with its own app context and session, never fork the chain.

On SQLite the database is a file (see tests/conftest.py), so the threads really contend for the
write lock; on PostgreSQL for the `audit_head` row lock.
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from portal.audit.models import AuditCheckpoint, AuditEntry
from portal.audit.services import record, verify_chain
from portal.db import db
from portal.keys import key_provider

THREADS = 6
PER_THREAD = 15


def test_concurrent_appends_are_contiguous_and_verify(app, checkpoint_every):
    checkpoint_every(7)  # checkpoints are signed inside contended appends too
    key_provider()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        try:
            barrier.wait()
            for i in range(PER_THREAD):
                with app.app_context():
                    entry = record("test.concurrent", detail={"thread": number, "i": i})
                    db.session.commit()
                    seq = entry.seq
                with lock:
                    seqs.append(seq)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    total = THREADS * PER_THREAD
    assert sorted(seqs) == list(range(1, total + 1))  # every claimed seq unique, no gaps
    stored = db.session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
    assert stored == list(range(1, total + 1))
    forks = db.session.scalar(
        select(func.count()).select_from(
            select(AuditEntry.prev_hash).group_by(AuditEntry.prev_hash)
            .having(func.count() > 1).subquery()
        )
    )
    assert forks == 0  # no two entries share a predecessor
    assert db.session.scalar(select(func.count()).select_from(AuditCheckpoint)) == total // 7
    result = verify_chain()
    assert result.ok, result.reason
    assert result.entries_checked == total
