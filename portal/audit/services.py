"""Appending to and reading the tamper-evident audit log.

Every entry stores SM3(previous hash ‖ canonical entry). Appends are serialised by updating the
single `audit_head` row first: the UPDATE takes the row lock on PostgreSQL and the write lock on
SQLite, so two writers can never fork the chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from gmcrypto.envelope import canonical
from gmcrypto.sm3 import sm3_hex
from portal.audit.models import AuditEntry, AuditHead
from portal.db import db, utcnow

GENESIS_HASH = "0" * 64


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
    def system(cls) -> Actor:
        return cls("system", None, "system")


def entry_payload(entry: AuditEntry) -> dict[str, Any]:
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


def chain_hash(prev_hash: str, entry: AuditEntry) -> str:
    return sm3_hex(bytes.fromhex(prev_hash) + canonical(entry_payload(entry)))


def _claim_next_seq() -> tuple[int, str]:
    stmt = (
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.head_hash)
    )
    row = db.session.execute(stmt).first()
    if row is None:
        db.session.add(AuditHead(id=1, seq=0, head_hash=GENESIS_HASH))
        db.session.flush()
        row = db.session.execute(stmt).first()
    assert row is not None
    return int(row[0]), str(row[1])


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
    """Append one entry to the chain (flushed in the caller's transaction)."""
    actor = actor or Actor.system()
    seq, prev_hash = _claim_next_seq()
    entry = AuditEntry(
        seq=seq,
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
        prev_hash=prev_hash,
    )
    entry.entry_hash = chain_hash(prev_hash, entry)
    db.session.add(entry)
    db.session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(head_hash=entry.entry_hash, updated_at=entry.at)
    )
    db.session.flush()
    return entry
