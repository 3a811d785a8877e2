"""Capture warnings (未采集预警): set-based evaluation, exceptions and the scoped lists.

A business is *due* when it is not withdrawn, its required materials are not all captured and the
trigger time of its type (accepted or finished, `BusinessType.warning_trigger`) lies at least
T1 (reminder) minutes in the past; T2 makes it a warning, T3 an escalation. Evaluation is a
handful of SQL statements over the whole table (or one business), never a Python loop:

1. in one pass, close open warnings of withdrawn businesses (WITHDRAWN) and of captured ones
   (CAPTURED), and keep the department and clerk of the others in step with their business;
2. raise the level of open warnings whose next threshold has passed (levels never drop);
3. open a warning for every due business without an open one, unless a supervisor closed one by
   exception while the business was at its current version (an exception stays closed until
   the business changes: every sync or capture bumps `Business.version`).

At most one open warning per business is enforced by a partial unique index; an insert racing
another evaluation does nothing (ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)

from portal.audit.services import Actor, record
from portal.auth.models import User
from portal.auth.roles import Permission
from portal.capture.models import CapturedPage
from portal.db import UTCDateTime, db, expire_loaded, utcnow
from portal.dictionary.models import BusinessType, WarningTrigger
from portal.org.models import Department, Window
from portal.registry.models import Business, BusinessStatus, CaptureState
from portal.scoping import Scope, scope_for
from portal.warnings.models import CaptureWarning, WarningClosure, WarningLevel

log = logging.getLogger(__name__)

EXCEPTION_ACTION = "warnings.exception_recorded"
REASON_MIN, REASON_MAX = 4, 500
PAGE_SIZE = 50
CHUNK = 1000  # business ids per evaluation statement
MASS_CHANGE = 5000  # warnings opened or closed by one evaluation that call for fresh planner statistics
INCOMPLETE_STATES = (CaptureState.NONE, CaptureState.PARTIAL)


class WarningError(Exception):
    """A request about a warning that cannot be honoured; `message` is Chinese, for the user."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


# Evaluation ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TypeRule:
    id: int
    trigger: WarningTrigger
    reminder: int
    warning: int
    escalation: int


def _type_rules() -> list[_TypeRule]:
    rows = db.session.execute(
        select(
            BusinessType.id, BusinessType.warning_trigger, BusinessType.reminder_after_minutes,
            BusinessType.warning_after_minutes, BusinessType.escalation_after_minutes,
        )
    ).all()
    return [_TypeRule(r[0], WarningTrigger(r[1]), r[2], r[3], r[4]) for r in rows]


def _trigger_time(rules: Sequence[_TypeRule]) -> ColumnElement[Any]:
    """The time the thresholds count from: accepted_at or finished_at, by the business's type."""
    finished = [r.id for r in rules if r.trigger == WarningTrigger.FINISHED]
    if not finished:
        return Business.accepted_at
    return case((Business.business_type_id.in_(finished), Business.finished_at), else_=Business.accepted_at)


def _level_at(rules: Sequence[_TypeRule], now: datetime) -> ColumnElement[int]:
    """The level a business deserves at `now` (0 = none), with the cut-offs computed in Python
    per business type so that the SQL is a plain comparison on both databases."""
    whens = []
    for rule in rules:
        t0 = Business.finished_at if rule.trigger == WarningTrigger.FINISHED else Business.accepted_at
        whens.append((
            Business.business_type_id == rule.id,
            case(
                (t0 <= now - timedelta(minutes=rule.escalation), int(WarningLevel.ESCALATION)),
                (t0 <= now - timedelta(minutes=rule.warning), int(WarningLevel.WARNING)),
                (t0 <= now - timedelta(minutes=rule.reminder), int(WarningLevel.REMINDER)),
                else_=0,
            ),
        ))
    return case(*whens, else_=0)


def _incomplete() -> ColumnElement[bool]:
    """Required materials missing (a type that requires nothing is never incomplete)."""
    return and_(
        Business.capture_state.in_(INCOMPLETE_STATES), Business.required_captured < Business.required_count
    )


@dataclass
class EvaluationCounts:
    opened: int = 0
    raised: int = 0
    closed_captured: int = 0
    closed_withdrawn: int = 0
    moved: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _run(now: datetime, business_ids: Sequence[int] | None) -> EvaluationCounts:
    """Evaluate the businesses (all when `business_ids` is None)."""
    db.session.flush()
    counts = EvaluationCounts()
    rules = _type_rules()
    W = CaptureWarning
    open_ = W.closed_at.is_(None)

    def for_business(stmt: Any) -> Any:
        return stmt if business_ids is None else stmt.where(Business.id.in_(business_ids))

    # One pass over the open warnings and their businesses: close what was withdrawn or captured,
    # follow a business that moved to another department or clerk.
    withdrawn = Business.status == BusinessStatus.WITHDRAWN
    captured = ~_incomplete()
    closure = case((withdrawn, WarningClosure.WITHDRAWN.value), (captured, WarningClosure.CAPTURED.value))
    closing = or_(withdrawn, captured)
    table = W.__table__
    stmt = (
        update(table)
        .where(
            table.c.closed_at.is_(None), table.c.business_id == Business.id,
            or_(closing, table.c.department_id != Business.department_id, table.c.clerk_code != Business.clerk_code),
        )
        .values(
            closed_at=case((closing, literal(now, UTCDateTime()))), closure=closure,
            closed_business_version=case((closing, Business.version)),
            department_id=Business.department_id, clerk_code=Business.clerk_code,
        )
        .returning(table.c.closure)
    )
    for (why,) in db.session.execute(for_business(stmt)).all():
        if why == WarningClosure.WITHDRAWN.value:
            counts.closed_withdrawn += 1
        elif why == WarningClosure.CAPTURED.value:
            counts.closed_captured += 1
        else:
            counts.moved += 1
    if not rules:
        return counts
    level = _level_at(rules, now)
    raised = (
        update(W)
        .where(open_, W.business_id == Business.id, W.level < int(WarningLevel.ESCALATION), level > W.level)
        .values(level=level, level_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    counts.raised = db.session.execute(for_business(raised)).rowcount or 0

    # NOT IN (subquery), not NOT EXISTS: PostgreSQL hashes the subquery once before inserting.
    # A correlated anti-join re-scanned the table this INSERT grows whenever the planner believed
    # it empty (the first run: 17 s instead of 2 s for 30,000 warnings).
    has_open = Business.id.in_(select(W.business_id).where(open_))
    excepted = tuple_(Business.id, Business.version).in_(
        select(W.business_id, W.closed_business_version).where(
            W.closure == WarningClosure.EXCEPTION, W.closed_business_version.is_not(None))
    )
    stamp = literal(now, UTCDateTime())
    due = select(
        Business.id, Business.department_id, Business.clerk_code, level, stamp, stamp,
        _trigger_time(rules), literal(""),
    ).where(
        Business.status != BusinessStatus.WITHDRAWN, _incomplete(), level >= int(WarningLevel.REMINDER),
        ~has_open, ~excepted,
    )
    columns = [
        "business_id", "department_id", "clerk_code", "level", "opened_at", "level_changed_at",
        "due_since", "exception_reason",
    ]
    stmt = _insert_ignoring_conflicts().from_select(columns, for_business(due))
    # rowcount of an INSERT is only kept when asked for (SQLAlchemy 2.x).
    counts.opened = max(0, db.session.execute(stmt.execution_options(preserve_rowcount=True)).rowcount or 0)
    return counts


def _insert_ignoring_conflicts() -> Any:
    name = db.session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(CaptureWarning.__table__).on_conflict_do_nothing()
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(CaptureWarning.__table__).on_conflict_do_nothing()
    return insert(CaptureWarning.__table__)


def evaluate_all(now: datetime | None = None) -> dict[str, int]:
    """Evaluate every business of the city in a few statements; flushes, the caller commits."""
    counts = _run(now or utcnow(), None)
    expire_loaded(CaptureWarning)
    if counts.opened + counts.closed_captured + counts.closed_withdrawn >= MASS_CHANGE \
            and db.session.get_bind().dialect.name == "postgresql":
        # Planner statistics from before a mass change (the first run, a lowered threshold) made
        # the next evaluation take 20 s instead of 1 s at a million businesses; autovacuum would
        # catch up only later. ANALYZE of this table takes milliseconds.
        db.session.execute(text("ANALYZE capture_warning"))
    return counts.as_dict()


def evaluate_business(business: Business, now: datetime | None = None) -> CaptureWarning | None:
    """Evaluate one business now (after a capture completed or the business changed) and return
    its open warning, if any. Flushes, never commits."""
    _run(now or utcnow(), [business.id])
    expire_loaded(CaptureWarning, {business.id}, key="business_id")
    return open_warning(business.id)


def evaluate_businesses(business_ids: Sequence[int], now: datetime | None = None) -> dict[str, int]:
    """Evaluate these businesses now, after a sync or capture changed them: close what was
    withdrawn or captured, follow a move, raise or (re)open what is due. CHUNK ids per statement."""
    now = now or utcnow()
    ids = sorted(set(business_ids))
    total = EvaluationCounts()
    for start in range(0, len(ids), CHUNK):
        counts = _run(now, ids[start:start + CHUNK])
        for name, value in counts.as_dict().items():
            setattr(total, name, getattr(total, name) + value)
    expire_loaded(CaptureWarning, set(ids), key="business_id")
    return total.as_dict()


def evaluate_all_job(app: Flask) -> dict[str, int]:
    """The scheduler's job: evaluate every business and commit."""
    with app.app_context():
        try:
            counts = evaluate_all()
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        finally:
            db.session.remove()
    log.info("capture warnings evaluated: %s", counts)
    return counts


def open_warning(business_id: int) -> CaptureWarning | None:
    return db.session.scalar(
        select(CaptureWarning).where(CaptureWarning.business_id == business_id, CaptureWarning.closed_at.is_(None))
    )


# Exceptions ---------------------------------------------------------------------------------------


def record_exception(warning: CaptureWarning, reason: str, user: User, actor: Actor,
                     now: datetime | None = None) -> CaptureWarning:
    """Close an open warning by a supervisor's exception with a reason (audited)."""
    if not user.can(Permission.WARNING_EXCEPTION):
        raise WarningError("您没有权限以例外方式关闭预警。", 403)
    reason = " ".join((reason or "").split())
    if len(reason) < REASON_MIN:
        raise WarningError(f"请填写例外原因（至少 {REASON_MIN} 个字）。")
    if len(reason) > REASON_MAX:
        raise WarningError(f"例外原因不能超过 {REASON_MAX} 个字。")
    now = now or utcnow()
    business = warning.business
    db.session.flush()
    done = db.session.execute(
        update(CaptureWarning)
        .where(CaptureWarning.id == warning.id, CaptureWarning.closed_at.is_(None))
        .values(
            closed_at=now, closure=WarningClosure.EXCEPTION, closed_by_id=user.id,
            exception_reason=reason, closed_business_version=business.version,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.expire(warning)
    if not done:
        raise WarningError("该预警已关闭，无需再处理。", 409)
    record(
        EXCEPTION_ACTION, actor=actor, object_type="capture_warning", object_id=str(warning.id),
        reason=reason,
        detail={"business": business.serial, "level": int(warning.level), "department_id": warning.department_id},
    )
    return warning


# Lists --------------------------------------------------------------------------------------------


VIEWS = {"mine": "我的预警", "window": "按窗口", "department": "按部门"}
STATES = {"open": "未关闭", "closed": "已关闭", "all": "全部"}


@dataclass(frozen=True)
class WarningQuery:
    view: str = "department"
    department_id: int | None = None
    window_id: int | None = None
    level: int | None = None
    state: str = "open"
    page: int = 1

    @classmethod
    def from_args(cls, args: Any, user: User) -> WarningQuery:
        default_view = "department" if user.can(Permission.WARNING_EXCEPTION) or not user.registry_clerk_code \
            else "mine"
        view = args.get("view", default_view)
        level = args.get("level", type=int)
        state = args.get("state", "open")
        return cls(
            view=view if view in VIEWS else default_view,
            department_id=args.get("department", type=int),
            window_id=args.get("window", type=int),
            level=level if level in {int(v) for v in WarningLevel} else None,
            state=state if state in STATES else "open",
            page=max(1, min(args.get("page", 1, type=int) or 1, 10_000)),
        )


@dataclass
class WarningList:
    query: WarningQuery
    items: list[CaptureWarning]
    total: int
    level_counts: dict[int, int]
    department: Department | None = None
    window: Window | None = None
    notice: str = ""
    pages: int = 1
    departments: list[Department] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)


class OutOfScope(Exception):
    """A department or window outside the user's subtree (shown as 404)."""


def _window_filter(window: Window) -> ColumnElement[bool]:
    """Warnings "at a window": the business's registry clerk works at it, or pages of the business
    were captured there."""
    clerks = select(User.registry_clerk_code).where(
        User.window_id == window.id, User.registry_clerk_code.is_not(None), User.registry_clerk_code != ""
    )
    captured_here = exists().where(
        CapturedPage.business_id == CaptureWarning.business_id, CapturedPage.window_id == window.id
    )
    return or_(CaptureWarning.clerk_code.in_(clerks.scalar_subquery()), captured_here)


def scoped_warnings(user: User, query: WarningQuery) -> tuple[Select[Any], WarningList]:
    """The statement selecting the warnings the query asks for, always within the user's scope."""
    scope = scope_for(user)
    stmt = scope.apply(select(CaptureWarning), CaptureWarning.department_id)
    result = WarningList(query=query, items=[], total=0, level_counts={})
    if query.view == "mine":
        if not user.registry_clerk_code:
            result.notice = "您的账号未关联登记系统民警编号，无法列出“我的预警”，请联系系统管理员。"
            stmt = stmt.where(literal(False))
        else:
            stmt = stmt.where(CaptureWarning.clerk_code == user.registry_clerk_code)
    elif query.view == "window":
        window_id = query.window_id or user.window_id
        window = db.session.get(Window, window_id) if window_id else None
        if window_id and (window is None or not scope.allows(window.department_id)):
            raise OutOfScope
        if window is None:
            result.notice = "请选择窗口。"
            stmt = stmt.where(literal(False))
        else:
            result.window = window
            stmt = stmt.where(_window_filter(window))
    else:
        department = db.session.get(Department, query.department_id or user.department_id)
        if department is None or not scope.allows(department.id):
            raise OutOfScope
        result.department = department
        stmt = Scope(department.path).apply(stmt, CaptureWarning.department_id)
    if query.state == "open":
        stmt = stmt.where(CaptureWarning.closed_at.is_(None))
    elif query.state == "closed":
        stmt = stmt.where(CaptureWarning.closed_at.is_not(None))
    return stmt, result


def list_warnings(user: User, query: WarningQuery) -> WarningList:
    stmt, result = scoped_warnings(user, query)
    base = stmt.subquery()
    result.level_counts = {
        int(level): n
        for level, n in db.session.execute(
            select(base.c.level, func.count()).group_by(base.c.level)
        )
    }
    if query.level is not None:
        stmt = stmt.where(CaptureWarning.level == query.level)
        result.total = result.level_counts.get(query.level, 0)
    else:
        result.total = sum(result.level_counts.values())
    result.pages = max(1, math.ceil(result.total / PAGE_SIZE))
    page = min(query.page, result.pages)
    order = (
        (CaptureWarning.level.desc(), CaptureWarning.due_since, CaptureWarning.id)
        if query.state == "open"
        else (CaptureWarning.opened_at.desc(), CaptureWarning.id.desc())
    )
    result.items = list(
        db.session.scalars(stmt.order_by(*order).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).unique()
    )
    scope = scope_for(user)
    result.departments = list(
        db.session.scalars(scope.apply(select(Department), Department.id).order_by(Department.path))
    )
    result.windows = list(
        db.session.scalars(
            scope.apply(select(Window), Window.department_id).where(Window.active.is_(True))
            .order_by(Window.department_id, Window.code)
        )
    )
    return result


def warning_in_scope(user: User, warning_id: int) -> CaptureWarning:
    stmt = scope_for(user).apply(
        select(CaptureWarning).where(CaptureWarning.id == warning_id), CaptureWarning.department_id
    )
    warning = db.session.scalar(stmt)
    if warning is None:
        raise OutOfScope
    return warning


def open_counts_by_level(scope: Scope) -> dict[int, int]:
    stmt = scope.apply(
        select(CaptureWarning.level, func.count()).where(CaptureWarning.closed_at.is_(None)),
        CaptureWarning.department_id,
    ).group_by(CaptureWarning.level)
    counts = {int(v): 0 for v in WarningLevel}
    counts.update({int(level): n for level, n in db.session.execute(stmt)})
    return counts


def badge_count(user: User) -> int:
    """Open warnings for the navigation badge: a clerk's own, a supervisor's whole subtree."""
    stmt = scope_for(user).apply(
        select(func.count()).select_from(CaptureWarning).where(CaptureWarning.closed_at.is_(None)),
        CaptureWarning.department_id,
    )
    if not user.can(Permission.WARNING_EXCEPTION) and user.registry_clerk_code:
        stmt = stmt.where(CaptureWarning.clerk_code == user.registry_clerk_code)
    return int(db.session.scalar(stmt) or 0)


def most_severe(scope: Scope, limit: int = 10) -> list[CaptureWarning]:
    """The open warnings a dashboard lists first: highest level, longest overdue."""
    stmt = scope.apply(
        select(CaptureWarning).where(CaptureWarning.closed_at.is_(None)), CaptureWarning.department_id
    ).order_by(CaptureWarning.level.desc(), CaptureWarning.due_since, CaptureWarning.id).limit(limit)
    return list(db.session.scalars(stmt).unique())


def format_elapsed(since: datetime | None, now: datetime | None = None) -> str:
    """"3天4小时", "5小时12分", "8分钟" since `since`."""
    if since is None:
        return "—"
    minutes = max(0, int(((now or utcnow()) - since).total_seconds() // 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{mins}分"
    return f"{mins}分钟"
