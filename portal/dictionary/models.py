"""The data dictionary: business types, materials, the checklist matrix and warning thresholds."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow


class Requirement(enum.StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    CONDITIONAL = "conditional"

    @property
    def label(self) -> str:
        return {"required": "必需", "optional": "可选", "conditional": "视情况"}[self.value]


class ColorMode(enum.StrEnum):
    COLOR = "color"
    GRAY = "gray"
    BW = "bw"

    @property
    def label(self) -> str:
        return {"color": "彩色", "gray": "灰度", "bw": "黑白"}[self.value]


class WarningTrigger(enum.StrEnum):
    """Which business time starts the capture-warning clock."""

    ACCEPTED = "accepted"
    FINISHED = "finished"


class BusinessType(Base):
    __tablename__ = "business_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    # Capture-warning thresholds (minutes after the trigger time).
    warning_trigger: Mapped[WarningTrigger] = mapped_column(
        enum_column(WarningTrigger), default=WarningTrigger.FINISHED
    )
    reminder_after_minutes: Mapped[int] = mapped_column(default=60)
    warning_after_minutes: Mapped[int] = mapped_column(default=240)
    escalation_after_minutes: Mapped[int] = mapped_column(default=1440)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    checklist: Mapped[list[ChecklistItem]] = relationship(
        back_populates="business_type", order_by="ChecklistItem.sort_order",
        cascade="all, delete-orphan",
    )


class Material(Base):
    """A kind of paper document, with the scan settings it is captured at."""

    __tablename__ = "material"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    color_mode: Mapped[ColorMode] = mapped_column(enum_column(ColorMode), default=ColorMode.GRAY)
    dpi: Mapped[int] = mapped_column(default=200)
    active: Mapped[bool] = mapped_column(default=True)
    sort_order: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChecklistItem(Base):
    """One cell of the checklist matrix: business type × material → requirement."""

    __tablename__ = "checklist_item"
    __table_args__ = (UniqueConstraint("business_type_id", "material_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    business_type_id: Mapped[int] = mapped_column(ForeignKey("business_type.id", ondelete="CASCADE"))
    material_id: Mapped[int] = mapped_column(ForeignKey("material.id"))
    requirement: Mapped[Requirement] = mapped_column(enum_column(Requirement))
    condition_note: Mapped[str] = mapped_column(String(200), default="")
    sort_order: Mapped[int] = mapped_column(default=0)

    business_type: Mapped[BusinessType] = relationship(back_populates="checklist")
    material: Mapped[Material] = relationship(lazy="joined")
