"""Department tree and registration windows."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, enum_column, utcnow


class DepartmentKind(enum.StrEnum):
    HEADQUARTERS = "headquarters"  # 总队
    DETACHMENT = "detachment"  # 支队
    OFFICE = "office"  # 大队/登记点

    @property
    def label(self) -> str:
        return {"headquarters": "总队", "detachment": "支队", "office": "大队/登记点"}[self.value]


class Department(Base):
    """A node of the department tree.

    `path` is a materialised path of ids ("/1/4/9/") so that a subtree is one indexed prefix
    match; it is maintained by `portal.org.services` whenever a department is created or moved.
    """

    __tablename__ = "department"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[DepartmentKind] = mapped_column(
        enum_column(DepartmentKind)
    )
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    path: Mapped[str] = mapped_column(String(255), index=True, default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped[Department | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Department]] = relationship(back_populates="parent", order_by="Department.code")
    windows: Mapped[list[Window]] = relationship(back_populates="department", order_by="Window.code")

    @property
    def depth(self) -> int:
        return max(self.path.count("/") - 2, 0)


class Window(Base):
    """A registration counter. It belongs to an office and has at most one active agent."""

    __tablename__ = "window"
    __table_args__ = (Index("ix_window_department_code", "department_id", "code", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    department: Mapped[Department] = relationship(back_populates="windows")
