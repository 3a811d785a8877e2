"""Sign-in, lockout, password changes and account creation. No request or session here."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from portal.audit.services import Actor, record
from portal.auth.models import PasswordHistory, User, UserRole
from portal.auth.passwords import hash_password, policy_problems, verify_password
from portal.auth.roles import Role, check_role_combination
from portal.config import Settings
from portal.db import db, utcnow
from portal.org.models import Department, Window


class AuthError(Exception):
    """A sign-in or account problem, with a message fit for the clerk (Chinese)."""


@dataclass
class SignInResult:
    user: User | None
    error: str | None = None


# A constant hash to spend the same time on unknown usernames as on known ones.
_DUMMY_HASH: dict[int, str] = {}


def _dummy_hash(iterations: int) -> str:
    if iterations not in _DUMMY_HASH:
        _DUMMY_HASH[iterations] = hash_password(secrets.token_hex(8), iterations)
    return _DUMMY_HASH[iterations]


def find_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def sign_in(username: str, password: str, settings: Settings, ip: str = "") -> SignInResult:
    """Check credentials, apply lockout, rotate the session token (one active session)."""
    now = utcnow()
    user = find_user(username)
    generic = "用户名或密码错误。"
    if user is None or not user.active:
        verify_password(password, _dummy_hash(settings.pbkdf2_iterations))
        record(
            "auth.login", outcome="denied", ip=ip,
            detail={"username": username[:64], "why": "unknown or inactive user"},
        )
        return SignInResult(None, generic)
    actor = Actor.of_user(user)
    if user.locked_until and user.locked_until > now:
        record("auth.login", actor=actor, outcome="denied", ip=ip, detail={"why": "locked"})
        local = user.locked_until.astimezone().strftime("%H:%M")
        return SignInResult(None, f"账户因多次密码错误已被锁定，请于 {local} 后重试或联系安全管理员。")
    if not verify_password(password, user.password_hash):
        user.failed_logins += 1
        detail: dict[str, object] = {"why": "bad password", "failures": user.failed_logins}
        if user.failed_logins >= settings.lockout_threshold:
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.failed_logins = 0
            detail["locked_minutes"] = settings.lockout_minutes
            record("security.account_locked", actor=actor, outcome="denied", ip=ip, detail=detail)
            db.session.flush()
            return SignInResult(
                None, f"密码连续错误 {settings.lockout_threshold} 次，账户已锁定 {settings.lockout_minutes} 分钟。"
            )
        record("auth.login", actor=actor, outcome="denied", ip=ip, detail=detail)
        db.session.flush()
        left = settings.lockout_threshold - user.failed_logins
        return SignInResult(None, f"{generic}再错 {left} 次账户将被锁定。")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    replaced = user.session_token is not None
    user.session_token = secrets.token_hex(16)
    record("auth.login", actor=actor, ip=ip, detail={"replaced_session": replaced})
    db.session.flush()
    return SignInResult(user)


def sign_out(user: User, ip: str = "", why: str = "logout") -> None:
    user.session_token = None
    record("auth.logout", actor=Actor.of_user(user), ip=ip, detail={"why": why})
    db.session.flush()


def password_expired(user: User, settings: Settings, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return user.password_changed_at + timedelta(days=settings.password_max_age_days) < now


def needs_password_change(user: User, settings: Settings) -> bool:
    return user.must_change_password or password_expired(user, settings)


def check_new_password(user: User | None, username: str, password: str, settings: Settings) -> list[str]:
    problems = policy_problems(
        password, username, settings.password_min_length, settings.password_min_classes
    )
    if user is not None and not problems:
        recent = db.session.scalars(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
            .limit(settings.password_history)
        ).all()
        if any(verify_password(password, h) for h in [user.password_hash, *recent]):
            problems.append(f"新密码不能与最近 {settings.password_history} 次使用过的密码相同。")
    return problems


def _set_password(user: User, password: str, settings: Settings, must_change: bool) -> None:
    if user.password_hash:
        db.session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))
    user.password_hash = hash_password(password, settings.pbkdf2_iterations)
    user.password_changed_at = utcnow()
    user.must_change_password = must_change


def change_password(user: User, current: str, new: str, settings: Settings, ip: str = "") -> list[str]:
    """The user's own change. Returns problems (Chinese); empty when changed."""
    actor = Actor.of_user(user)
    if not verify_password(current, user.password_hash):
        record("auth.password_change", actor=actor, outcome="denied", ip=ip, detail={"why": "bad current"})
        return ["当前密码不正确。"]
    problems = check_new_password(user, user.username, new, settings)
    if problems:
        record("auth.password_change", actor=actor, outcome="denied", ip=ip, detail={"why": "policy"})
        return problems
    _set_password(user, new, settings, must_change=False)
    record("auth.password_change", actor=actor, ip=ip)
    db.session.flush()
    return []


def reset_password(user: User, new: str, settings: Settings, by: Actor) -> list[str]:
    """A security administrator's reset: the user must change it at next sign-in."""
    problems = check_new_password(None, user.username, new, settings)
    if problems:
        return problems
    _set_password(user, new, settings, must_change=True)
    user.failed_logins = 0
    user.locked_until = None
    user.session_token = None
    record("security.password_reset", actor=by, object_type="user", object_id=str(user.id),
           detail={"username": user.username})
    db.session.flush()
    return []


def unlock(user: User, by: Actor) -> None:
    user.failed_logins = 0
    user.locked_until = None
    record("security.account_unlocked", actor=by, object_type="user", object_id=str(user.id),
           detail={"username": user.username})
    db.session.flush()


def create_user(
    *,
    username: str,
    full_name: str,
    department: Department,
    roles: list[Role],
    password: str,
    settings: Settings,
    badge_number: str = "",
    window: Window | None = None,
    by: Actor | None = None,
    must_change: bool = True,
) -> User:
    """Create an account. Raises AuthError (Chinese) on duplicates, policy or role conflicts."""
    username = username.strip()
    if not username or len(username) > 64 or not username.replace("_", "").replace(".", "").isalnum():
        raise AuthError("用户名只能包含字母、数字、下划线和点，长度 1–64。")
    if find_user(username) is not None:
        raise AuthError(f"用户名“{username}”已存在。")
    conflict = check_role_combination(roles)
    if conflict:
        raise AuthError(conflict)
    problems = check_new_password(None, username, password, settings)
    if problems:
        raise AuthError(" ".join(problems))
    if window is not None and window.department_id != department.id:
        raise AuthError("所选窗口不属于该用户的部门。")
    user = User(
        username=username, full_name=full_name.strip() or username, badge_number=badge_number.strip(),
        department=department, window=window, password_hash="",
    )
    _set_password(user, password, settings, must_change=must_change)
    user.role_rows = [UserRole(role=Role(r).value, granted_by_id=by.user_id if by else None) for r in roles]
    db.session.add(user)
    db.session.flush()
    record("admin.user_created", actor=by or Actor.system(), object_type="user", object_id=str(user.id),
           detail={"username": username, "roles": sorted(Role(r).value for r in roles),
                   "department": department.code})
    return user
