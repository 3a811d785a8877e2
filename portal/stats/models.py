"""The statistics' own summary of each business (统计摘要)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base


class CaptureSummary(Base):
    """One narrow row per business with everything the workload statistics count, so a year of
    a city is a scan of ~60-byte rows instead of the wide `business` table joined to its pages.

    Derived data only: `portal.stats.summary` writes it from `business` and `captured_page` when
    a business changes (capture confirmation, registry sync) and a scheduler job repairs any row
    whose `business_version` lags behind its business. Nothing else writes it.
    """

    __tablename__ = "capture_summary"
    __table_args__ = (
        Index("ix_capture_summary_accepted_on", "accepted_on"),
        Index("ix_capture_summary_department_accepted_on", "department_id", "accepted_on"),
        Index("ix_capture_summary_type_accepted_on", "business_type_id", "accepted_on"),
        Index("ix_capture_summary_window_accepted_on", "window_id", "accepted_on"),
    )

    business_id: Mapped[int] = mapped_column(ForeignKey("business.id"), primary_key=True)
    business_version: Mapped[int]  # Business.version this row was computed from
    accepted_on: Mapped[date]  # the local calendar day of Business.accepted_at
    department_id: Mapped[int]
    business_type_id: Mapped[int]
    # The window of capture: that of the first initial-capture page (lowest id when several),
    # else of any archived page; None while nothing is captured.
    window_id: Mapped[int | None]
    clerk_code: Mapped[str] = mapped_column(String(32))
    clerk_name: Mapped[str] = mapped_column(String(100))
    withdrawn: Mapped[bool]
    pages: Mapped[int]  # current confirmed pages (Business.page_count)
    complete: Mapped[bool]
    supplemented: Mapped[bool]  # has an archived supplemental page
    delay_seconds: Mapped[float | None]  # completed_at - accepted_at, when complete
    finished_delay_seconds: Mapped[float | None]  # completed_at - finished_at, when complete and finished
