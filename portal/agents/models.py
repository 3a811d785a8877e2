"""Scanner agents, their enrolment codes, replay protection and update packages."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow
from portal.org.models import Window


class AgentStatus(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Agent(Base):
    """A counter PC's agent, bound to a window by its SM2 public key."""

    __tablename__ = "agent"

    id: Mapped[int] = mapped_column(primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("window.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    status: Mapped[AgentStatus] = mapped_column(enum_column(AgentStatus), default=AgentStatus.ACTIVE)
    hostname: Mapped[str] = mapped_column(String(100), default="")
    version: Mapped[str] = mapped_column(String(20), default="")
    scanner_model: Mapped[str] = mapped_column(String(100), default="")
    scanner_state: Mapped[str] = mapped_column(String(40), default="")
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    last_sequence: Mapped[int] = mapped_column(default=0)

    window: Mapped[Window] = relationship(lazy="joined")


class EnrolmentCode(Base):
    """A single-use, expiring code an administrator gives to the person installing an agent.
    Only the SM3 of the code is stored."""

    __tablename__ = "enrolment_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("window.id"))
    code_sm3: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))

    window: Mapped[Window] = relationship()


class AgentNonce(Base):
    """Nonces seen from an agent within the clock-skew window (replay protection)."""

    __tablename__ = "agent_nonce"
    __table_args__ = (
        UniqueConstraint("agent_id", "nonce"),
        Index("ix_agent_nonce_seen_at", "seen_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentUpdate(Base):
    """A signed agent update package offered for download."""

    __tablename__ = "agent_update"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(20), unique=True)
    filename: Mapped[str] = mapped_column(String(200))
    package: Mapped[bytes] = mapped_column(LargeBinary)
    envelope: Mapped[str] = mapped_column(Text)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
