"""Businesses pulled from the registration system, and the bookkeeping of the sync."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow
from portal.dictionary.models import BusinessType
from portal.org.models import Department


class BusinessStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # 受理
    FINISHED = "finished"  # 办结
    WITHDRAWN = "withdrawn"  # 退办/作废: stops counting for warnings

    @property
    def label(self) -> str:
        return {"accepted": "已受理", "finished": "已办结", "withdrawn": "已退办"}[self.value]


class CaptureState(enum.StrEnum):
    NONE = "none"
    PARTIAL = "partial"
    COMPLETE = "complete"

    @property
    def label(self) -> str:
        return {"none": "未采集", "partial": "部分采集", "complete": "已完整"}[self.value]


class Business(Base):
    """One registration transaction, identified by its serial number (流水号).

    Owner ID number and phone exist only as SM4-GCM ciphertext (bound to row and column),
    an HMAC-SM3 blind index for exact lookup, and a masked display form.
    The capture columns are a summary kept current by `portal.capture.services`.
    """

    __tablename__ = "business"
    __table_args__ = (
        Index("ix_business_department_accepted", "department_id", "accepted_at"),
        Index("ix_business_type_accepted", "business_type_id", "accepted_at"),
        Index("ix_business_state_department", "capture_state", "department_id"),
        Index("ix_business_accepted", "accepted_at"),
        Index(
            "ix_business_owner_name_prefix", "owner_name",
            postgresql_ops={"owner_name": "text_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    business_type_id: Mapped[int] = mapped_column(ForeignKey("business_type.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
    plate_number: Mapped[str] = mapped_column(String(20), default="", index=True)
    vehicle_code: Mapped[str] = mapped_column(String(40), default="", index=True)
    owner_name: Mapped[str] = mapped_column(String(100), default="")
    owner_id_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    owner_id_index: Mapped[str | None] = mapped_column(String(64), index=True)
    owner_id_masked: Mapped[str] = mapped_column(String(40), default="")
    phone_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_masked: Mapped[str] = mapped_column(String(40), default="")
    clerk_code: Mapped[str] = mapped_column(String(32), default="", index=True)
    clerk_name: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[BusinessStatus] = mapped_column(enum_column(BusinessStatus), default=BusinessStatus.ACCEPTED)
    accepted_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    source_updated_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Capture summary
    capture_state: Mapped[CaptureState] = mapped_column(enum_column(CaptureState), default=CaptureState.NONE)
    required_count: Mapped[int] = mapped_column(default=0)
    required_captured: Mapped[int] = mapped_column(default=0)
    page_count: Mapped[int] = mapped_column(default=0)
    first_captured_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None] = mapped_column(index=True)
    # Optimistic concurrency for edits of the capture summary by two clerks at once.
    version: Mapped[int] = mapped_column(default=1)

    business_type: Mapped[BusinessType] = relationship(lazy="joined")
    department: Mapped[Department] = relationship(lazy="joined")

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class SyncRun(Base):
    """One run of a registration-system sync or import, for the status page."""

    __tablename__ = "sync_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # http, file, simulator, on_demand
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    records_in: Mapped[int] = mapped_column(default=0)
    records_created: Mapped[int] = mapped_column(default=0)
    records_updated: Mapped[int] = mapped_column(default=0)
    records_failed: Mapped[int] = mapped_column(default=0)
    watermark_before: Mapped[datetime | None]
    watermark_after: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")


class SyncState(Base):
    """The watermark of an incremental sync source."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    watermark: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None]


class QuarantinedRecord(Base):
    """A source record that could not be applied (unknown type/department); held for an admin."""

    __tablename__ = "quarantined_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), index=True)
    reason: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    sync_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id"))

    resolved_by = relationship("User")
