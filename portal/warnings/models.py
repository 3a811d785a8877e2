"""Capture warnings (未采集预警)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow
from portal.registry.models import Business


class WarningLevel(enum.IntEnum):
    REMINDER = 1  # 提醒
    WARNING = 2  # 预警
    ESCALATION = 3  # 督办

    @property
    def label(self) -> str:
        return {1: "提醒", 2: "预警", 3: "督办"}[int(self)]


class WarningClosure(enum.StrEnum):
    CAPTURED = "captured"  # the business became complete
    EXCEPTION = "exception"  # a supervisor recorded an exception with a reason
    WITHDRAWN = "withdrawn"  # the business was withdrawn upstream

    @property
    def label(self) -> str:
        return {"captured": "已完成采集", "exception": "例外关闭", "withdrawn": "业务已退办"}[self.value]


class CaptureWarning(Base):
    """An open or closed warning about one business. At most one open warning per business;
    closed ones stay as history (a changed business may reopen with a new row).

    The evaluation in `portal.warnings.services` is set-based; the partial unique index makes
    "at most one open warning per business" hold even when the scheduler and a request evaluate
    the same business at once (the loser's insert does nothing).
    """

    __tablename__ = "capture_warning"
    __table_args__ = (
        Index("ix_capture_warning_open_department", "closed_at", "department_id", "level"),
        Index("ix_capture_warning_business", "business_id", "closed_at"),
        # The dashboard and the lists show open warnings most severe first: read in index order.
        Index(
            "ix_capture_warning_open_severity", text("level DESC"), "due_since", "id",
            postgresql_where=text("closed_at IS NULL"), sqlite_where=text("closed_at IS NULL"),
        ),
        Index(
            "uq_capture_warning_open_business", "business_id", unique=True,
            postgresql_where=text("closed_at IS NULL"), sqlite_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("business.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
    clerk_code: Mapped[str] = mapped_column(String(32), default="", index=True)
    level: Mapped[int] = mapped_column(default=WarningLevel.REMINDER)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    level_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_since: Mapped[datetime]  # the trigger time the thresholds count from
    closed_at: Mapped[datetime | None]
    closure: Mapped[WarningClosure | None] = mapped_column(enum_column(WarningClosure))
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    exception_reason: Mapped[str] = mapped_column(String(500), default="")
    # Business.version when the warning was closed: an exception stays closed until the business
    # changes (a sync or a capture bumps the version), then a new warning may open.
    closed_business_version: Mapped[int | None]

    business: Mapped[Business] = relationship(lazy="joined")
    closed_by = relationship("User")
