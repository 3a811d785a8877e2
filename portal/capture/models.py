"""Scan jobs and captured pages with their versions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow
from portal.dictionary.models import Material


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


class CaptureKind(enum.StrEnum):
    INITIAL = "initial"  # 采集
    SUPPLEMENTAL = "supplemental"  # 补充采集


class SupplementReason(enum.StrEnum):
    WRONG_PAGE = "wrong_page"
    MISSING_PAGE = "missing_page"
    POOR_QUALITY = "poor_quality"
    OTHER = "other"

    @property
    def label(self) -> str:
        return {
            "wrong_page": "页面错误", "missing_page": "缺页",
            "poor_quality": "图像质量差", "other": "其他",
        }[self.value]


class SupplementMode(enum.StrEnum):
    """What a job's pages do to the material when they are confirmed."""

    APPEND = "append"  # add after the current pages (initial capture always appends)
    REPLACE_PAGE = "replace_page"  # one new version of one confirmed page
    REPLACE_MATERIAL = "replace_material"  # a new set of pages replaces all current ones

    @property
    def label(self) -> str:
        return {"append": "追加页面", "replace_page": "替换单页", "replace_material": "整份替换"}[self.value]


class PageStatus(enum.StrEnum):
    STAGED = "staged"  # uploaded, awaiting the clerk's confirmation
    CONFIRMED = "confirmed"  # part of the archive (current version)
    SUPERSEDED = "superseded"  # replaced by a later version; kept forever
    DISCARDED = "discarded"  # discarded before confirmation; kept for the audit trail


class PageSource(enum.StrEnum):
    AGENT = "agent"  # signed by a window's agent
    BROWSER = "browser"  # uploaded from the browser (fallback, not agent-signed)


class ScanJob(Base):
    __tablename__ = "scan_job"
    __table_args__ = (
        Index("ix_scan_job_window_state", "window_id", "state"),
        Index("ix_scan_job_requested_by_id", "requested_by_id", "id"),  # a clerk's recent captures
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("window.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    business_id: Mapped[int] = mapped_column(ForeignKey("business.id"), index=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("material.id"))
    # None for a barcode batch the agent scanned without a job.
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    kind: Mapped[CaptureKind] = mapped_column(enum_column(CaptureKind), default=CaptureKind.INITIAL)
    reason: Mapped[SupplementReason | None] = mapped_column(enum_column(SupplementReason))
    reason_text: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[JobState] = mapped_column(enum_column(JobState), default=JobState.PENDING)
    # Where the pages come from: the window's agent, or a browser upload batch (created completed).
    source: Mapped[PageSource] = mapped_column(enum_column(PageSource), default=PageSource.AGENT)
    mode: Mapped[SupplementMode] = mapped_column(enum_column(SupplementMode), default=SupplementMode.APPEND)
    # The confirmed page a REPLACE_PAGE job replaces. A plain integer, not a foreign key: scan_job
    # and captured_page would reference each other (a cycle); pages are never deleted anyway.
    replaces_page_id: Mapped[int | None]
    options: Mapped[str] = mapped_column(Text, default="{}")  # JSON: source, color_mode, dpi
    pages_received: Mapped[int] = mapped_column(default=0)
    error_code: Mapped[str] = mapped_column(String(40), default="")
    error_message: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    material: Mapped[Material] = relationship(lazy="joined")


class CapturedPage(Base):
    """One scanned page of one material of one business.

    Pages are never updated in place or deleted: a replacement is a new row whose `supersedes_id`
    points at the old one, which becomes SUPERSEDED. `position` orders the current pages of a
    material; `version` counts replacements of that position.
    """

    __tablename__ = "captured_page"
    __table_args__ = (
        Index("ix_captured_page_business_material", "business_id", "material_id", "status"),
        Index("ix_captured_page_captured_at", "captured_at"),
        # Supplemental captures are a few per cent of pages: the statistics' reasons come from
        # this index alone (index-only scan), without reading the other 95 %.
        Index(
            "ix_captured_page_supplemental", "business_id", "status", "reason",
            postgresql_where=text("kind = 'supplemental'"), sqlite_where=text("kind = 'supplemental'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("business.id"))
    material_id: Mapped[int] = mapped_column(ForeignKey("material.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("scan_job.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("captured_page.id"))
    status: Mapped[PageStatus] = mapped_column(enum_column(PageStatus), default=PageStatus.STAGED)
    kind: Mapped[CaptureKind] = mapped_column(enum_column(CaptureKind), default=CaptureKind.INITIAL)
    reason: Mapped[SupplementReason | None] = mapped_column(enum_column(SupplementReason))
    reason_text: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[PageSource] = mapped_column(enum_column(PageSource), default=PageSource.AGENT)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    window_id: Mapped[int | None] = mapped_column(ForeignKey("window.id"))
    # The clerk who started the job; None for a barcode batch scanned without one.
    captured_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"), index=True)
    captured_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    confirmed_at: Mapped[datetime | None]
    blob_id: Mapped[int] = mapped_column(ForeignKey("image_blob.id"))
    content_sm3: Mapped[str] = mapped_column(String(64))
    byte_size: Mapped[int]
    media_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int]
    height: Mapped[int]
    dpi: Mapped[int | None]
    rotation: Mapped[int] = mapped_column(default=0)  # degrees clockwise, applied on display
    blank: Mapped[bool] = mapped_column(default=False)
    # Evidence of an agent upload: the idempotency key, sequence and the signed manifest.
    upload_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    agent_sequence: Mapped[int | None]
    manifest_envelope: Mapped[str | None] = mapped_column(Text)
    signature_verified: Mapped[bool] = mapped_column(default=False)

    material: Mapped[Material] = relationship(lazy="joined")
    supersedes: Mapped[CapturedPage | None] = relationship(remote_side=[id])
