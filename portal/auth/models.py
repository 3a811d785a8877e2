"""Users, their roles and password history."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.auth.roles import Permission, Role, permissions_for
from portal.db import Base, utcnow
from portal.org.models import Department, Window


class User(UserMixin, Base):
    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(100))
    badge_number: Mapped[str] = mapped_column(String(32), default="")
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    window_id: Mapped[int | None] = mapped_column(ForeignKey("window.id"))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    must_change_password: Mapped[bool] = mapped_column(default=True)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    # Rotated at every sign-in; a session cookie carrying an older token is ended
    # (one active session per user).
    session_token: Mapped[str | None] = mapped_column(String(64))
    last_login_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Registration-system clerk code, so businesses pulled from it can be attributed.
    registry_clerk_code: Mapped[str | None] = mapped_column(String(32), index=True)

    department: Mapped[Department] = relationship()
    window: Mapped[Window | None] = relationship()
    role_rows: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin",
        foreign_keys="UserRole.user_id",
    )

    @property
    def roles(self) -> set[Role]:
        return {Role(row.role) for row in self.role_rows}

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_for(self.roles)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def get_id(self) -> str:
        # The session remembers the user and the token of its sign-in (single session).
        return f"{self.id}:{self.session_token or ''}"


class UserRole(Base):
    __tablename__ = "user_role"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    role: Mapped[Role] = mapped_column(String(20))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    user: Mapped[User] = relationship(back_populates="role_rows", foreign_keys=[user_id])


class PasswordHistory(Base):
    """Hashes of earlier passwords, so a user cannot cycle back to a recent one."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
