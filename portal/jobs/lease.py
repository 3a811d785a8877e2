"""Named leases in the `scheduler_lease` table: the scheduler's leader lease and job locks.

A lease is one row (name, holder, expires_at). Acquiring or renewing is a single conditional
UPDATE ("mine, or expired") and, when no row exists yet, an INSERT that does nothing on conflict:
on PostgreSQL the UPDATE takes the row lock and re-checks its condition after a concurrent
writer commits; SQLite serialises writers. Either way two holders can never both get it.

The functions run on whatever they are given: a Connection from `engine.begin()` (its own short
transaction, what the scheduler and the CLI use) or the request's session (the lease then commits
or rolls back with the request's work).

Expiry is judged by the clock of the host that asks: keep hosts NTP-synchronised and the lease
time far above any skew.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from portal.db import utcnow
from portal.jobs.models import SchedulerLease


def new_holder_id(role: str = "scheduler") -> str:
    """Who holds a lease: host, process and a random part (a restarted process is a new holder)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{role}:{secrets.token_hex(3)}"[:100]


def _insert_if_absent(conn: Any, values: dict[str, Any]) -> int:
    bind = getattr(conn, "dialect", None) or conn.get_bind().dialect
    if bind.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(SchedulerLease).values(**values).on_conflict_do_nothing(index_elements=["name"])
        stmt = stmt.returning(SchedulerLease.name)
    elif bind.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(SchedulerLease).values(**values).on_conflict_do_nothing(index_elements=["name"])
        stmt = stmt.returning(SchedulerLease.name)
    else:  # pragma: no cover - other dialects: a plain INSERT that fails on a duplicate
        stmt = insert(SchedulerLease).values(**values).returning(SchedulerLease.name)
    # RETURNING rather than rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING here.
    return len(conn.execute(stmt).all())


def try_acquire(
    conn: Any, name: str, holder: str, ttl: timedelta, *, now: datetime | None = None
) -> datetime | None:
    """Take or renew the lease `name` for `holder` until now + ttl.

    Returns the new expiry, or None while another holder's lease has not expired.
    """
    now = now or utcnow()
    expires = now + ttl
    updated = conn.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == name,
               or_(SchedulerLease.holder == holder, SchedulerLease.expires_at <= now))
        .values(holder=holder, expires_at=expires)
        .returning(SchedulerLease.name)
        .execution_options(synchronize_session=False)
    ).all()
    if len(updated) == 1:
        return expires
    if _insert_if_absent(conn, {"name": name, "holder": holder, "expires_at": expires}) == 1:
        return expires
    return None


def release(conn: Any, name: str, holder: str) -> bool:
    """Give the lease up (only if `holder` still holds it)."""
    deleted = conn.execute(
        delete(SchedulerLease)
        .where(SchedulerLease.name == name, SchedulerLease.holder == holder)
        .returning(SchedulerLease.name)
        .execution_options(synchronize_session=False)
    ).all()
    return len(deleted) == 1


def current_holder(conn: Any, name: str, *, now: datetime | None = None) -> tuple[str, datetime] | None:
    """(holder, expiry) of an unexpired lease, else None."""
    now = now or utcnow()
    row = conn.execute(
        select(SchedulerLease.holder, SchedulerLease.expires_at).where(SchedulerLease.name == name)
    ).first()
    if row is None:
        return None
    expires = row[1]
    if expires.tzinfo is None:  # a Core row from a raw connection is still typed: aware UTC
        raise ValueError("lease expiry without time zone")
    return (row[0], expires) if expires > now else None
