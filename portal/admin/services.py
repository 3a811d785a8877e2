"""Account administration (system administrator) and role, password and policy administration
(security administrator). Plain arguments, no request or session; flush, never commit.

Separation of duties (等保三级 三员分立), as enforced here and by the Role→Permission map:

- The system administrator keeps accounts: creates them, edits name, badge, department and
  default window, deactivates and reactivates them. At creation an account gets exactly one
  initial *business* role (clerk, supervisor or viewer) so a new colleague can start work at
  once; the system administrator can never grant an administrator role and cannot change roles
  afterwards. The system administrator cannot deactivate their own account or an administrator's.
- The security administrator assigns roles (including the three administrator roles, which stay
  mutually exclusive), resets passwords and unlocks accounts, but cannot change their own roles
  or reset their own password (that is the ordinary password change).
- Neither can capture or look up archives, and neither can read the audit log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from portal.audit.services import Actor, record
from portal.auth import services as auth_services
from portal.auth.models import User, UserRole
from portal.auth.passwords import policy_problems
from portal.auth.roles import ADMIN_ROLES, Permission, Role, check_role_combination
from portal.config import Settings
from portal.db import db, utcnow
from portal.org.models import Department, Window

# The only roles the system administrator may give, once, when creating an account.
INITIAL_ROLES: tuple[Role, ...] = (Role.CLERK, Role.SUPERVISOR, Role.VIEWER)
SEARCH_LIMIT = 500


class AdminError(Exception):
    """An administration act that is not allowed, with a Chinese message."""


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def is_admin_account(user: User) -> bool:
    return bool(user.roles & ADMIN_ROLES)


# -- generated passwords ------------------------------------------------------------------------

_LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o: the password is read off the screen
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
_DIGITS = "23456789"  # no 0, 1
_SYMBOLS = "-_#@%+="


def generate_password(settings: Settings, username: str = "") -> str:
    """A random password that meets the policy, using all four character classes."""
    length = max(settings.password_min_length, 12)
    pool = _LOWER + _UPPER + _DIGITS + _SYMBOLS
    rng = secrets.SystemRandom()
    while True:
        chars = [rng.choice(s) for s in (_LOWER, _UPPER, _DIGITS, _SYMBOLS)]
        chars += [rng.choice(pool) for _ in range(length - len(chars))]
        rng.shuffle(chars)
        password = "".join(chars)
        if not policy_problems(password, username, settings.password_min_length,
                               settings.password_min_classes):
            return password


# -- accounts (system administrator) -------------------------------------------------------------


def search_accounts(query: str = "", department_id: int | None = None, state: str = "") -> list[User]:
    """Accounts matching username, name or badge (substring), in a department, in a state."""
    stmt = select(User).order_by(User.username).limit(SEARCH_LIMIT)
    query = query.strip()
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(or_(
            func.lower(User.username).like(like), func.lower(User.full_name).like(like),
            func.lower(User.badge_number).like(like),
        ))
    if department_id is not None:
        stmt = stmt.where(User.department_id == department_id)
    if state == "active":
        stmt = stmt.where(User.active.is_(True))
    elif state == "inactive":
        stmt = stmt.where(User.active.is_(False))
    elif state == "locked":
        stmt = stmt.where(User.locked_until > utcnow())
    elif state == "admins":
        admin_ids = select(UserRole.user_id).where(UserRole.role.in_([r.value for r in ADMIN_ROLES]))
        stmt = stmt.where(User.id.in_(admin_ids))
    return list(db.session.scalars(stmt))


def _department(department_id: int | None) -> Department:
    department = db.session.get(Department, department_id) if department_id is not None else None
    if department is None:
        raise AdminError("请选择有效的部门。")
    if not department.active:
        raise AdminError(f"部门“{department.name}”已停用。")
    return department


def _window(window_id: int | None, department: Department) -> Window | None:
    if window_id is None:
        return None
    window = db.session.get(Window, window_id)
    if window is None or window.department_id != department.id:
        raise AdminError("所选窗口不属于该部门。")
    if not window.active:
        raise AdminError(f"窗口“{window.name}”已停用。")
    return window


def _check_profile(full_name: str, badge_number: str) -> tuple[str, str]:
    full_name, badge_number = full_name.strip(), badge_number.strip()
    if not full_name:
        raise AdminError("姓名不能为空。")
    if len(full_name) > 100:
        raise AdminError("姓名不能超过 100 个字符。")
    if len(badge_number) > 32:
        raise AdminError("警号不能超过 32 个字符。")
    return full_name, badge_number


@dataclass
class CreatedAccount:
    user: User
    generated_password: str | None  # shown once; None when the administrator typed one


def create_account(
    *,
    username: str,
    full_name: str,
    badge_number: str,
    department_id: int | None,
    window_id: int | None,
    role: str,
    settings: Settings,
    by: Actor,
    password: str = "",
) -> CreatedAccount:
    """Create an account with one initial business role; it must change its password at once."""
    try:
        initial = Role(role)
    except ValueError:
        raise AdminError("请选择初始角色。") from None
    if initial not in INITIAL_ROLES:
        record("admin.user_created", actor=by, outcome="denied", object_type="user",
               detail={"username": username.strip()[:64], "role": initial.value,
                       "why": "sysadmin cannot grant an administrator role"})
        raise AdminError("系统管理员只能授予窗口民警、科所队领导或查档人员角色；"
                         "管理员角色由安全管理员分配。")
    full_name, badge_number = _check_profile(full_name, badge_number)
    department = _department(department_id)
    window = _window(window_id, department)
    generated = None
    if not password:
        password = generated = generate_password(settings, username.strip())
    try:
        user = auth_services.create_user(
            username=username, full_name=full_name, department=department, roles=[initial],
            password=password, settings=settings, badge_number=badge_number, window=window, by=by,
            must_change=True,
        )
    except auth_services.AuthError as exc:
        raise AdminError(str(exc)) from None
    return CreatedAccount(user, generated)


def update_account(
    user: User, *, full_name: str, badge_number: str, department_id: int | None,
    window_id: int | None, by: Actor,
) -> None:
    full_name, badge_number = _check_profile(full_name, badge_number)
    department = user.department if department_id == user.department_id else _department(department_id)
    if window_id is not None and window_id == user.window_id and user.window is not None \
            and user.window.department_id == department.id:
        window: Window | None = user.window  # unchanged, even if since deactivated
    else:
        window = _window(window_id, department)
    before = _profile(user)
    user.full_name, user.badge_number = full_name, badge_number
    user.department, user.window = department, window
    after = _profile(user)
    if after == before:
        return
    db.session.flush()
    record("admin.user_updated", actor=by, object_type="user", object_id=str(user.id),
           detail={"username": user.username,
                   "before": {k: v for k, v in before.items() if after[k] != v},
                   "after": {k: v for k, v in after.items() if before[k] != v}})


def _profile(user: User) -> dict[str, object]:
    return {
        "full_name": user.full_name, "badge_number": user.badge_number,
        "department": user.department.code, "window": user.window.code if user.window else None,
    }


def set_account_active(user: User, active: bool, by: Actor) -> None:
    if user.active == active:
        return
    if user.id == by.user_id:
        raise AdminError("不能停用自己的账号。")
    if not active and is_admin_account(user):
        raise AdminError("系统管理员不能停用管理员账号；请由安全管理员先调整其角色。")
    if active and not user.department.active:
        raise AdminError(f"该账号所属部门“{user.department.name}”已停用，请先调整部门。")
    user.active = active
    if not active:
        user.session_token = None  # end a running session at its next request
    db.session.flush()
    record("admin.user_reactivated" if active else "admin.user_deactivated", actor=by,
           object_type="user", object_id=str(user.id), detail={"username": user.username})


# -- roles, passwords, unlock (security administrator) -------------------------------------------


def change_roles(user: User, role_values: list[str], by: Actor) -> bool:
    """Give `user` exactly these roles (the one place roles change). False when nothing changed.

    Rows are changed by difference: replacing the whole collection would make the unit of work
    INSERT the new rows before it DELETEs the old ones, breaking uq(user_id, role) whenever a
    role is kept (e.g. clerk → clerk + supervisor).
    """
    try:
        roles = {Role(v) for v in role_values}
    except ValueError:
        raise AdminError("角色无效。") from None
    before = user.roles
    if roles == before:
        return False
    problem = check_role_combination(roles)
    if problem is None and by.user_id == user.id:
        problem = "不能修改自己的角色。"
    if problem is not None:
        record("security.roles_changed", actor=by, outcome="denied", object_type="user",
               object_id=str(user.id),
               detail={"username": user.username, "wanted": sorted(r.value for r in roles),
                       "why": problem})
        raise AdminError(problem)
    for row in [r for r in user.role_rows if Role(r.role) not in roles]:
        user.role_rows.remove(row)  # delete-orphan
    db.session.flush()
    for role in sorted(roles - before):
        user.role_rows.append(UserRole(role=role.value, granted_by_id=by.user_id))
    user.session_token = None  # new rights take effect at the next sign-in
    db.session.flush()
    record("security.roles_changed", actor=by, object_type="user", object_id=str(user.id),
           detail={"username": user.username, "before": sorted(r.value for r in before),
                   "after": sorted(r.value for r in roles)})
    return True


def reset_user_password(user: User, settings: Settings, by: Actor) -> str:
    """Set a generated password (shown once); the user must change it at next sign-in."""
    if user.id == by.user_id:
        raise AdminError("不能重置自己的密码，请使用“修改密码”。")
    password = generate_password(settings, user.username)
    problems = auth_services.reset_password(user, password, settings, by)
    if problems:  # cannot happen with a generated password, but never show a bad one
        raise AdminError(" ".join(problems))
    return password


def unlock_account(user: User, by: Actor) -> None:
    if not is_locked(user) and not user.failed_logins:
        raise AdminError("该账号当前未被锁定。")
    auth_services.unlock(user, by)


# -- security policy (read-only view of the settings) ---------------------------------------------

P = Permission
PERMISSION_LABELS: dict[Permission, str] = {
    P.CAPTURE: "影像采集", P.SUPPLEMENT: "补充采集", P.BROWSER_UPLOAD: "浏览器上传",
    P.LOOKUP: "本部门档案查询", P.LOOKUP_ALL: "跨部门档案查询", P.VIEW_PAGES: "查看影像",
    P.EXPORT: "导出档案", P.REVEAL_PERSONAL: "查看完整个人信息", P.WARNINGS: "采集预警",
    P.WARNING_EXCEPTION: "预警例外关闭", P.STATISTICS: "工作量统计", P.ADMIN_ORG: "部门与窗口",
    P.ADMIN_DICTIONARY: "数据字典", P.ADMIN_USERS: "用户账号", P.ADMIN_REGISTRY: "登记系统同步",
    P.SECURITY_ROLES: "角色分配", P.SECURITY_PASSWORDS: "密码重置与解锁",
    P.SECURITY_AGENTS: "扫描终端注册", P.SECURITY_POLICY: "安全策略", P.AUDIT_READ: "审计日志",
}


@dataclass(frozen=True)
class PolicyRow:
    label: str
    value: str
    env: str
    note: str = ""


def security_policy(settings: Settings) -> list[PolicyRow]:
    return [
        PolicyRow("密码最小长度", f"{settings.password_min_length} 位", "PORTAL_PASSWORD_MIN_LENGTH"),
        PolicyRow("密码字符类别", f"至少 {settings.password_min_classes} 类",
                  "PORTAL_PASSWORD_MIN_CLASSES", "大写字母、小写字母、数字、符号"),
        PolicyRow("密码最长使用期限", f"{settings.password_max_age_days} 天",
                  "PORTAL_PASSWORD_MAX_AGE_DAYS", "到期后登录时强制修改"),
        PolicyRow("禁止重复使用的历史密码", f"最近 {settings.password_history} 次",
                  "PORTAL_PASSWORD_HISTORY"),
        PolicyRow("登录失败锁定阈值", f"连续 {settings.lockout_threshold} 次",
                  "PORTAL_LOCKOUT_THRESHOLD"),
        PolicyRow("锁定时长", f"{settings.lockout_minutes} 分钟", "PORTAL_LOCKOUT_MINUTES",
                  "安全管理员可提前解锁"),
        PolicyRow("会话空闲超时", f"{settings.session_idle_minutes} 分钟",
                  "PORTAL_SESSION_IDLE_MINUTES", "超时自动退出；同一账号仅允许一个会话"),
        PolicyRow("密码散列迭代次数", f"{settings.pbkdf2_iterations:,}", "PORTAL_PBKDF2_ITERATIONS",
                  "PBKDF2-HMAC-SM3"),
        PolicyRow("仅通过 HTTPS 发送会话 Cookie", "是" if settings.secure_cookies else "否",
                  "PORTAL_SECURE_COOKIES", "部署在 HTTPS 之后时应设为 true"),
    ]
