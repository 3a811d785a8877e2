"""The tamper-evident audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow


class AuditEntry(Base):
    """One audited act. `entry_hash` = SM3(prev_hash ‖ canonical entry); `seq` has no gaps.

    Never updated or deleted by the application (on PostgreSQL its role may only INSERT).
    """

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_at", "at"),
        Index("ix_audit_entry_user_at", "user_id", "at"),
        Index("ix_audit_entry_action_at", "action", "at"),
        Index("ix_audit_entry_object", "object_type", "object_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_kind: Mapped[str] = mapped_column(String(10))  # user, agent, system
    user_id: Mapped[int | None]
    username: Mapped[str] = mapped_column(String(64), default="")
    department_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(50))
    outcome: Mapped[str] = mapped_column(String(10), default="success")  # success, denied, failure
    object_type: Mapped[str] = mapped_column(String(30), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    ip: Mapped[str] = mapped_column(String(45), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement of the chain head (seq, hash, time) for off-host keeping."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    envelope: Mapped[str] = mapped_column(Text)


class AuditHead(Base):
    """One row holding the chain head; appenders lock it (SELECT … FOR UPDATE) to serialise."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
