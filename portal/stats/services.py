"""Workload statistics (工作量统计) and the supervisor dashboard.

Every figure is computed in SQL with GROUP BY over the businesses *accepted* in the period (the
cohort), within the user's department subtree (`portal.scoping`) and the chosen department. The
tables read `CaptureSummary` — one narrow row per business kept in step by
`portal.stats.summary` — so a year of a city is one scan of small rows, never the wide
`business` table joined to eight million pages:

- businesses: accepted in the period, withdrawn ones excluded;
- captured: with at least one confirmed page; complete: every required material captured;
- pages: the pages of the archive (current confirmed versions, `Business.page_count`);
- on time: complete within T1 (the reminder threshold of the type) after the trigger time
  (accepted or finished, as configured for the type; not yet finished counts as on time);
- supplemented: businesses with at least one supplemental page (rate over captured businesses),
  and the supplemental pages by reason (confirmed, including versions later superseded);
- capture delay: completed_at − accepted_at of complete businesses, median and p90 with linear
  interpolation (`percentile_cont`) from a histogram in display units (minutes under a day,
  hours beyond): exact when a unit holds one distinct delay, else off by at most the wider of
  the units of the two delays it interpolates between (a minute, or an hour beyond a day).

A business belongs to a window by its capture: the window of its first initial-capture page
(lowest window id when several), so businesses never captured have no window.

Days, weeks (Monday first) and months are the server's local calendar (`accepted_on`, see
`portal.stats.summary`). The dashboard's figures for today read the live tables (indexed by time)."""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.exc import OperationalError

from portal.agents.models import Agent, AgentStatus
from portal.auth.models import User
from portal.capture.models import CapturedPage, CaptureKind, SupplementReason
from portal.db import db, utcnow
from portal.dictionary.models import BusinessType, WarningTrigger
from portal.org.models import Department, Window
from portal.registry.models import Business, BusinessStatus
from portal.scoping import Scope, scope_for
from portal.stats.models import CaptureSummary as Summary
from portal.stats.summary import ARCHIVED_PAGE, dialect
from portal.warnings.services import most_severe, open_counts_by_level

AGENT_OFFLINE_SECONDS = 90
S = TypeVar("S", bound=Select[Any])
TOTAL = "\x00total"  # the whole cohort in the percentile map (no group key looks like it)
DAY_SECONDS = 86_400
DEFAULT_TIMEOUT_MS = 25_000  # below the web workers' timeout: a clear message, never a timeout page


class StatsError(Exception):
    """A statistics request that cannot be answered; `message` is Chinese."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class OutOfScope(Exception):
    """A department or window outside the user's subtree (404)."""


class Dimension(enum.StrEnum):
    DEPARTMENT = "department"
    WINDOW = "window"
    CLERK = "clerk"
    BUSINESS_TYPE = "type"
    DEPARTMENT_TYPE = "department_type"  # a row per department and business type
    PERIOD = "period"

    @property
    def label(self) -> str:
        return {"department": "部门", "window": "窗口", "clerk": "经办民警", "type": "业务类型",
                "department_type": "部门×业务类型", "period": "时间"}[self.value]


class Granularity(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def label(self) -> str:
        return {"day": "按日", "week": "按周", "month": "按月"}[self.value]

    @property
    def max_days(self) -> int:
        return {"day": 366, "week": 3 * 366, "month": 10 * 366}[self.value]


MAX_RANGE_DAYS = 10 * 366
RANGES = {
    "today": "今天", "yesterday": "昨天", "this_week": "本周", "this_month": "本月",
    "last_30": "最近 30 天", "this_year": "今年", "custom": "自定义",
}


def local_midnight(day: date) -> datetime:
    """The UTC instant of local midnight starting `day` (the server's zone)."""
    return datetime.combine(day, time.min).astimezone()


def local_today(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone().date()


def _parse_date(raw: str, label: str, errors: list[str]) -> date | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        errors.append(f"{label}格式无效，请使用“年-月-日”，例如 2026-11-02。")
        return None


@dataclass(frozen=True)
class StatsQuery:
    start: date
    end: date  # inclusive
    range: str = "this_month"
    dimension: Dimension = Dimension.DEPARTMENT
    granularity: Granularity = Granularity.DAY
    department_id: int | None = None
    window_id: int | None = None
    business_type_id: int | None = None
    errors: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, Any], today: date | None = None) -> StatsQuery:
        today = today or local_today()
        errors: list[str] = []
        preset = args.get("range") or ("custom" if args.get("start") or args.get("end") else "this_month")
        if preset not in RANGES:
            errors.append("统计时段取值无效。")
            preset = "this_month"
        start, end = _preset_bounds(preset, today)
        if preset == "custom":
            start = _parse_date(args.get("start", ""), "开始日期", errors)
            end = _parse_date(args.get("end", ""), "结束日期", errors)
            if not errors and (start is None or end is None):
                errors.append("请填写开始日期和结束日期。")
        try:
            dimension = Dimension(args.get("by") or Dimension.DEPARTMENT)
        except ValueError:
            errors.append("统计维度取值无效。")
            dimension = Dimension.DEPARTMENT
        try:
            granularity = Granularity(args.get("granularity") or Granularity.DAY)
        except ValueError:
            errors.append("时间粒度取值无效。")
            granularity = Granularity.DAY
        start, end = start or today, end or today
        if not errors:
            days = (end - start).days + 1
            if end < start:
                errors.append("结束日期不能早于开始日期。")
            elif dimension == Dimension.PERIOD and days > granularity.max_days:
                errors.append(
                    f"{granularity.label}统计的时间范围不能超过 {granularity.max_days} 天（当前 {days} 天），"
                    "请缩小范围或改用更粗的时间粒度。"
                )
            elif days > MAX_RANGE_DAYS:
                errors.append(f"统计的时间范围不能超过 {MAX_RANGE_DAYS} 天（当前 {days} 天）。")
        return cls(
            start=start, end=end, range=preset, dimension=dimension, granularity=granularity,
            department_id=_int(args.get("department")), window_id=_int(args.get("window")),
            business_type_id=_int(args.get("type")), errors=tuple(errors),
        )

    @property
    def start_at(self) -> datetime:
        return local_midnight(self.start)

    @property
    def end_at(self) -> datetime:
        """Exclusive end: local midnight after the last day."""
        return local_midnight(self.end + timedelta(days=1))

    def as_args(self, **changes: Any) -> dict[str, Any]:
        """Query-string arguments reproducing this query (for links, drill-down and exports)."""
        args: dict[str, Any] = {"range": self.range, "by": self.dimension.value}
        if self.range == "custom":
            args.update(start=self.start.isoformat(), end=self.end.isoformat())
        if self.dimension == Dimension.PERIOD:
            args["granularity"] = self.granularity.value
        if self.department_id:
            args["department"] = self.department_id
        if self.window_id:
            args["window"] = self.window_id
        if self.business_type_id:
            args["type"] = self.business_type_id
        args.update(changes)
        return {k: v for k, v in args.items() if v not in (None, "")}


def _int(raw: Any) -> int | None:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _preset_bounds(preset: str, today: date) -> tuple[date | None, date | None]:
    if preset == "today":
        return today, today
    if preset == "yesterday":
        return today - timedelta(days=1), today - timedelta(days=1)
    if preset == "this_week":
        return today - timedelta(days=today.weekday()), today
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_30":
        return today - timedelta(days=29), today
    if preset == "this_year":
        return today.replace(month=1, day=1), today
    return None, None


# Result -------------------------------------------------------------------------------------------


@dataclass
class StatsRow:
    key: Any
    label: str
    businesses: int = 0
    captured: int = 0
    complete: int = 0
    pages: int = 0
    on_time: int = 0
    supplemented: int = 0
    median_delay: float | None = None  # seconds
    p90_delay: float | None = None
    drill: dict[str, Any] | None = None

    @property
    def key_text(self) -> str:
        """The key as an HTML attribute ("12-3" for a department and a type)."""
        if self.key is None:
            return ""
        return "-".join(map(str, self.key)) if isinstance(self.key, tuple) else str(self.key)

    @staticmethod
    def _rate(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def completeness_rate(self) -> float | None:
        return self._rate(self.complete, self.businesses)

    @property
    def on_time_rate(self) -> float | None:
        return self._rate(self.on_time, self.businesses)

    @property
    def supplemental_rate(self) -> float | None:
        return self._rate(self.supplemented, self.captured)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # count, rate, duration


COLUMNS: tuple[Column, ...] = (
    Column("businesses", "业务数", "count"),
    Column("captured", "已采集业务", "count"),
    Column("complete", "完整采集业务", "count"),
    Column("completeness_rate", "完整率", "rate"),
    Column("pages", "采集页数", "count"),
    Column("on_time_rate", "时限内完成率", "rate"),
    Column("supplemented", "补充采集业务", "count"),
    Column("supplemental_rate", "补充采集率", "rate"),
    Column("median_delay", "采集时长中位数", "duration"),
    Column("p90_delay", "采集时长 P90", "duration"),
)


@dataclass(frozen=True)
class ReasonRow:
    reason: str
    label: str
    pages: int
    businesses: int


@dataclass
class StatsResult:
    query: StatsQuery
    root: Department
    window: Window | None
    rows: list[StatsRow]
    total: StatsRow
    reasons: list[ReasonRow]
    breadcrumbs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    business_type: BusinessType | None = None

    @property
    def empty(self) -> bool:
        return self.total.businesses == 0

    def parameters(self) -> list[tuple[str, str]]:
        """The query in words (the first page of an export)."""
        q = self.query
        items = [
            ("统计时段", f"{q.start.isoformat()} 至 {q.end.isoformat()}（{RANGES.get(q.range, q.range)}）"),
            ("统计维度", q.dimension.label + (f"（{q.granularity.label}）" if q.dimension == Dimension.PERIOD else "")),
            ("部门范围", f"{self.root.name}及下级部门"),
        ]
        if self.window is not None:
            items.append(("窗口", f"{self.window.department.name} {self.window.name}"))
        if self.business_type is not None:
            items.append(("业务类型", self.business_type.name))
        items.append(("口径", "按受理时间统计业务；不含已退办业务；页数为当前有效页；补充采集页数含已被替换的历史版本"))
        return items


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时"
    if hours:
        return f"{hours}小时{mins}分"
    return f"{mins}分钟"


def format_rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True)
class DelayBucket:
    """Complete businesses whose capture delay falls in one display unit, and their mean delay."""

    bucket: int
    count: int
    mean: float


def bucket_percentile(buckets: Sequence[DelayBucket], q: float) -> float | None:
    """percentile_cont (linear interpolation between the closest ranks) over the delays of
    `buckets` (sorted by bucket), each delay taken as its bucket's mean: exact whenever a bucket
    holds one distinct delay; otherwise each delay is off by less than its bucket's width, so the
    result by at most the wider of the two buckets it interpolates between."""
    total = sum(b.count for b in buckets)
    if not total:
        return None
    position = q * (total - 1)
    lower = math.floor(position)

    def value_at(rank: int) -> float:
        seen = 0
        for b in buckets:
            seen += b.count
            if rank < seen:
                return b.mean
        return buckets[-1].mean

    low, high = value_at(lower), value_at(min(lower + 1, total - 1))
    return low + (high - low) * (position - lower)


def merge_buckets(groups: Iterable[Sequence[DelayBucket]]) -> list[DelayBucket]:
    """The buckets of several groups as one (counts added, means weighted)."""
    counts: dict[int, int] = defaultdict(int)
    sums: dict[int, float] = defaultdict(float)
    for group in groups:
        for b in group:
            counts[b.bucket] += b.count
            sums[b.bucket] += b.mean * b.count
    return [DelayBucket(k, counts[k], sums[k] / counts[k]) for k in sorted(counts)]


# SQL building blocks ------------------------------------------------------------------------------


def _period_key(day: Any, granularity: Granularity) -> ColumnElement[str]:
    """'YYYY-MM-DD' (day, and the Monday of a week) or 'YYYY-MM' of a local calendar day."""
    if dialect() == "postgresql":
        if granularity == Granularity.DAY:
            return func.to_char(day, "YYYY-MM-DD")
        if granularity == Granularity.WEEK:
            return func.to_char(func.date_trunc("week", day), "YYYY-MM-DD")
        return func.to_char(day, "YYYY-MM")
    if granularity == Granularity.DAY:
        return func.strftime("%Y-%m-%d", day)
    if granularity == Granularity.WEEK:
        return func.date(day, "weekday 0", "-6 days")
    return func.strftime("%Y-%m", day)


def period_keys(start: date, end: date, granularity: Granularity) -> list[str]:
    """Every bucket between start and end (inclusive), in the keys `_period_key` produces."""
    keys: list[str] = []
    if granularity == Granularity.DAY:
        day = start
        while day <= end:
            keys.append(day.isoformat())
            day += timedelta(days=1)
    elif granularity == Granularity.WEEK:
        day = start - timedelta(days=start.weekday())
        while day <= end:
            keys.append(day.isoformat())
            day += timedelta(days=7)
    else:
        year, month = start.year, start.month
        while (year, month) <= (end.year, end.month):
            keys.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


def _statement_settings() -> None:
    """PostgreSQL: a time limit below the web workers' (a clear message, never a timeout page),
    and no JIT compilation, which costs these sub-second scans more than it saves."""
    if dialect() == "postgresql":
        ms = int(current_app.config.get("STATS_STATEMENT_TIMEOUT_MS", DEFAULT_TIMEOUT_MS))
        db.session.execute(text(f"SET LOCAL statement_timeout = {ms}"))
        db.session.execute(text("SET LOCAL jit = off"))


@dataclass
class _Plan:
    """The pieces of one statistics query over the cohort's summary rows (`CaptureSummary`).
    Every statement goes through `select`, whose cohort holds the user's scope
    (`portal.scoping`) narrowed to the chosen department's subtree."""

    scope: Scope
    root: Department
    cohort: list[ColumnElement[bool]]
    key: ColumnElement[Any] | None = None
    extra: list[ColumnElement[Any]] = field(default_factory=list)
    # Maps the SQL key to the row it adds up into, when that is coarser (a department into the
    # child of the root that holds it): grouping by the plain column is the cheapest scan, and
    # counts and delay histograms add up.
    fold: dict[Any, Any] | None = None
    second: ColumnElement[Any] | None = None  # a second grouping column (department × type)

    def group_columns(self, folded: bool = False) -> list[ColumnElement[Any]]:
        """The SQL grouping; `folded`: with the fold done in SQL (a CASE over constant lists),
        worth its per-row cost where it divides many groups (the delay histogram)."""
        if self.key is None:
            return [literal(None)]
        first = self.key
        if folded and self.fold is not None:
            members: dict[Any, list[Any]] = defaultdict(list)
            for key, group in self.fold.items():
                members[group].append(key)
            whens = [(self.key.in_(keys), literal(group)) for group, keys in members.items()]
            first = case(*whens, else_=literal(self.root.id)) if whens else literal(self.root.id)
        return [first] if self.second is None else [first, self.second]

    def group_of(self, *keys: Any) -> Any:
        """The row a result row of the SQL grouping adds into (a tuple with a second column)."""
        first = keys[0] if self.fold is None else self.fold.get(keys[0], self.root.id)
        return first if self.second is None else (first, *keys[1:])

    def select(self, *columns: Any) -> Select[Any]:
        """SELECT columns FROM the cohort's summary rows (the scope is part of the cohort)."""
        return select(*columns).select_from(Summary).where(*self.cohort)


def _plan(scope: Scope, root: Department, query: StatsQuery, dimension: Dimension | None,
          granularity: Granularity) -> _Plan:
    plan = _Plan(scope, root, [
        Summary.accepted_on >= query.start, Summary.accepted_on <= query.end, Summary.withdrawn.is_(False),
    ])
    departments = scope.resolved_condition(Summary.department_id, within=root.path)
    if departments is not None:
        plan.cohort.append(departments)
    if query.business_type_id:
        plan.cohort.append(Summary.business_type_id == query.business_type_id)
    if query.window_id:
        plan.cohort.append(Summary.window_id == query.window_id)
    if dimension in (Dimension.DEPARTMENT, Dimension.DEPARTMENT_TYPE):
        plan.key, plan.fold = Summary.department_id, _department_fold(root)
        if dimension == Dimension.DEPARTMENT_TYPE:
            plan.second = Summary.business_type_id
    elif dimension == Dimension.WINDOW:
        plan.key = Summary.window_id
    elif dimension == Dimension.CLERK:
        plan.key = Summary.clerk_code
        plan.extra = [func.max(Summary.clerk_name).label("clerk_name")]
    elif dimension == Dimension.BUSINESS_TYPE:
        plan.key = Summary.business_type_id
    elif dimension == Dimension.PERIOD:
        plan.key = _period_key(Summary.accepted_on, granularity)
    return plan


def _children(root: Department) -> list[Department]:
    return list(db.session.scalars(
        select(Department).where(Department.parent_id == root.id).order_by(Department.code)
    ))


def _department_fold(root: Department) -> dict[int, int]:
    """Each department of the subtree rolls up into the child of `root` that holds it;
    `root`'s own businesses stay on `root` (not in the map)."""
    fold: dict[int, int] = {}
    children = _children(root)
    for department_id, path in db.session.execute(
        select(Department.id, Department.path).where(Department.path.startswith(root.path, autoescape=True))
    ):
        for child in children:
            if path.startswith(child.path):
                fold[department_id] = child.id
    return fold


def _on_time() -> ColumnElement[int]:
    """1 when complete within T1 (the reminder threshold of the type) after the trigger time
    (accepted, or finished as configured; not yet finished counts as on time). The thresholds
    come from the dictionary at query time, so changing them needs no recomputation."""
    whens = []
    for bt_id, trigger, reminder in db.session.execute(
        select(BusinessType.id, BusinessType.warning_trigger, BusinessType.reminder_after_minutes)
    ):
        limit = reminder * 60
        if WarningTrigger(trigger) == WarningTrigger.FINISHED:
            within = or_(Summary.finished_delay_seconds.is_(None), Summary.finished_delay_seconds <= limit)
        else:
            within = Summary.delay_seconds <= limit
        whens.append((and_(Summary.business_type_id == bt_id, within), 1))
    if not whens:
        return literal(0)
    return case(*whens, else_=0)


def _aggregate(plan: _Plan) -> Select[Any]:
    """Counts by group key: one pass over the cohort's narrow summary rows."""
    S = Summary
    columns: list[Any] = [
        func.count().label("businesses"),
        func.coalesce(func.sum(case((S.pages > 0, 1), else_=0)), 0).label("captured"),
        func.coalesce(func.sum(case((S.complete, 1), else_=0)), 0).label("complete"),
        func.coalesce(func.sum(S.pages), 0).label("pages"),
        func.coalesce(func.sum(case((S.complete, _on_time()), else_=0)), 0).label("on_time"),
        func.coalesce(func.sum(case((S.supplemented, 1), else_=0)), 0).label("supplemented"),
    ]
    groups = plan.group_columns()
    keys = [column.label(f"key{n}") for n, column in enumerate(groups)]
    return plan.select(*keys, *columns, *plan.extra).group_by(*groups)


def _delay_bucket() -> ColumnElement[float]:
    """The display unit of a capture delay (`format_duration`): its minute under a day, its
    hour beyond (1440 + hours past the first day)."""
    delay = Summary.delay_seconds
    return case(
        # Multiplying by a float keeps the arithmetic in doubles (a division would be NUMERIC).
        (delay < DAY_SECONDS, func.floor(delay * (1 / 60))),
        else_=1440 + func.floor((delay - DAY_SECONDS) * (1 / 3600)),
    )


COUNTS = ("businesses", "captured", "complete", "pages", "on_time", "supplemented")


def _counts(plan: _Plan) -> dict[Any, dict[str, Any]]:
    """The aggregate's rows by group key (folded, see `_Plan.fold`)."""
    groups: dict[Any, dict[str, Any]] = {}
    for record in db.session.connection().execute(_aggregate(plan)):
        values = dict(record._mapping)
        group = plan.group_of(*(values.pop(f"key{n}") for n in range(len(plan.group_columns()))))
        if group in groups:
            for name in COUNTS:
                groups[group][name] += int(values[name])
        else:
            groups[group] = values | {name: int(values[name]) for name in COUNTS}
    return groups


def _percentiles(plan: _Plan) -> dict[Any, tuple[float | None, float | None]]:
    """Median and p90 capture delay of the complete businesses per group key and for the whole
    cohort (`TOTAL`). The database returns a histogram — per key and display unit, the count
    and mean delay (a hash aggregate, no sort of every delay) — and the percentiles are
    interpolated from it (`bucket_percentile`): exact when a unit holds one distinct delay,
    otherwise off by at most the wider of the two units it interpolates between."""
    keys = plan.group_columns(folded=True)
    bucket = _delay_bucket()
    stmt = plan.select(*keys, bucket, func.count(), func.avg(Summary.delay_seconds)).where(
        Summary.complete.is_(True)).group_by(*keys, bucket)
    groups: dict[Any, list[DelayBucket]] = defaultdict(list)
    # Core rows (no ORM row processing): up to some ten thousand of them.
    for *group, unit, count, mean in db.session.connection().execute(stmt):
        groups[group[0] if len(group) == 1 else tuple(group)].append(DelayBucket(int(unit), int(count), float(mean)))
    result: dict[Any, tuple[float | None, float | None]] = {}
    for group, buckets in groups.items():
        buckets.sort(key=lambda b: b.bucket)
        result[group] = (bucket_percentile(buckets, 0.5), bucket_percentile(buckets, 0.9))
    everything = merge_buckets(groups.values())
    result[TOTAL] = (bucket_percentile(everything, 0.5), bucket_percentile(everything, 0.9))
    return result


def _reasons(plan: _Plan) -> list[ReasonRow]:
    """Supplemental pages and businesses by reason over the cohort (archived pages, including
    versions later superseded), through the partial index on supplemental pages."""
    P = CapturedPage
    stmt = (
        plan.select(P.reason, func.count(), func.count(distinct(P.business_id)))
        .join(P, P.business_id == Summary.business_id)
        .where(Summary.supplemented.is_(True), P.kind == CaptureKind.SUPPLEMENTAL, P.status.in_(ARCHIVED_PAGE))
        .group_by(P.reason)
    )
    pages: dict[str, int] = {}
    businesses: dict[str, int] = {}
    for reason, n_pages, n_businesses in db.session.execute(stmt):
        code = reason.value if reason else ""
        pages[code], businesses[code] = int(n_pages), int(n_businesses)
    reasons = [ReasonRow(r.value, r.label, pages.get(r.value, 0), businesses.get(r.value, 0))
               for r in SupplementReason]
    if pages.get(""):
        reasons.append(ReasonRow("", "未注明", pages[""], businesses[""]))
    return reasons


def _row_from(values: dict[str, Any], key: Any, label: str) -> StatsRow:
    return StatsRow(key=key, label=label, **{name: values[name] for name in COUNTS})


# The statistics table ------------------------------------------------------------------------------


def resolve_root(user: User, query: StatsQuery) -> tuple[Scope, Department, Window | None]:
    """The user's scope, the department the table is about and the window, checked against the
    scope (OutOfScope when outside)."""
    scope = scope_for(user)
    root = db.session.get(Department, query.department_id or user.department_id)
    if root is None or not scope.allows(root.id):
        raise OutOfScope
    window = None
    if query.window_id:
        window = db.session.get(Window, query.window_id)
        if window is None or not scope.allows(window.department_id) \
                or not Scope(root.path).allows(window.department_id):
            raise OutOfScope
    return scope, root, window


def workload(user: User, query: StatsQuery) -> StatsResult:
    """The statistics table for `query` within the user's scope."""
    if query.errors:
        raise StatsError("；".join(query.errors))
    scope, root, window = resolve_root(user, query)
    _statement_settings()
    try:
        return _workload(user, query, scope, root, window)
    except OperationalError as exc:
        if "statement timeout" in str(exc) or "canceling statement" in str(exc):
            db.session.rollback()
            raise StatsError("统计查询超时，请缩小时间范围或部门范围后重试。", 503) from None
        raise


def _workload(user: User, query: StatsQuery, scope: Scope, root: Department, window: Window | None) -> StatsResult:
    plan = _plan(scope, root, query, query.dimension, query.granularity)
    by_key = _counts(plan)
    rows = _label_rows(query, root, window, by_key)
    # Every business of the cohort is in exactly one group: the total is their sum.
    total = StatsRow(key=None, label="合计")
    for name in COUNTS:
        setattr(total, name, sum(values[name] for values in by_key.values()))
    percentiles = _percentiles(plan)
    total.median_delay, total.p90_delay = percentiles.get(TOTAL, (None, None))
    for row in rows:
        row.median_delay, row.p90_delay = percentiles.get(row.key, (None, None))
    return StatsResult(
        query=query, root=root, window=window, rows=rows, total=total,
        reasons=_reasons(plan), breadcrumbs=_breadcrumbs(user, query, root, window),
        business_type=db.session.get(BusinessType, query.business_type_id) if query.business_type_id else None,
    )


def _label_rows(query: StatsQuery, root: Department, window: Window | None,
                by_key: dict[Any, dict[str, Any]]) -> list[StatsRow]:
    def build(key: Any, label: str, drill: dict[str, Any] | None = None, keep_empty: bool = False) -> StatsRow | None:
        record = by_key.get(key)
        if record is None:
            return StatsRow(key=key, label=label, drill=drill) if keep_empty else None
        row = _row_from(record, key, label)
        row.drill = drill
        return row

    rows: list[StatsRow | None] = []
    dimension = query.dimension
    if dimension == Dimension.DEPARTMENT:
        parents = set(db.session.scalars(select(Department.parent_id).where(Department.parent_id.is_not(None))))
        for child in _children(root):
            drill = query.as_args(by="department" if child.id in parents else "window", department=child.id,
                                  window=None)
            rows.append(build(child.id, child.name, drill, keep_empty=child.active))
        rows.append(build(root.id, f"{root.name}（本级）"))
    elif dimension == Dimension.DEPARTMENT_TYPE:
        parents = set(db.session.scalars(select(Department.parent_id).where(Department.parent_id.is_not(None))))
        types = business_types()
        for department, own in [(child, False) for child in _children(root)] + [(root, True)]:
            name = f"{department.name}（本级）" if own else department.name
            by = "department" if department.id in parents else "window"
            for bt in types:
                drill = None if own else query.as_args(by=by, department=department.id, window=None, type=bt.id)
                rows.append(build((department.id, bt.id), f"{name} · {bt.name}", drill))
    elif dimension == Dimension.WINDOW:
        windows = db.session.scalars(
            Scope(root.path).apply(select(Window), Window.department_id).order_by(Window.department_id, Window.code)
        ).all()
        for w in windows:
            drill = query.as_args(by="clerk", window=w.id, department=root.id)
            rows.append(build(w.id, f"{w.department.name} {w.name}", drill, keep_empty=w.active and window is None))
        rows.append(build(None, "未采集（无窗口）"))
    elif dimension == Dimension.CLERK:
        codes = [k for k in by_key if k]
        names = dict(db.session.execute(
            select(User.registry_clerk_code, User.full_name).where(User.registry_clerk_code.in_(codes))
        ).all()) if codes else {}
        ordered = sorted(by_key, key=lambda k: (-by_key[k]["businesses"], k or ""))
        for code in ordered:
            label = names.get(code) or by_key[code]["clerk_name"] or code or "（未记录经办人）"
            if code and label != code:
                label = f"{label}（{code}）"
            rows.append(build(code, label))
    elif dimension == Dimension.BUSINESS_TYPE:
        for bt in db.session.scalars(select(BusinessType).order_by(BusinessType.sort_order, BusinessType.id)):
            rows.append(build(bt.id, bt.name, keep_empty=bt.active))
    else:
        suffix = {"day": "", "week": " 起一周", "month": ""}[query.granularity.value]
        for key in period_keys(query.start, query.end, query.granularity):
            rows.append(build(key, key + suffix, keep_empty=True))
    return [r for r in rows if r is not None]


def _breadcrumbs(user: User, query: StatsQuery, root: Department,
                 window: Window | None) -> list[tuple[str, dict[str, Any]]]:
    ids = [int(x) for x in root.path.strip("/").split("/") if x]
    departments = {d.id: d for d in db.session.scalars(select(Department).where(Department.id.in_(ids)))}
    home = user.department.path
    crumbs = []
    for department_id in ids:
        d = departments.get(department_id)
        if d is not None and d.path.startswith(home):
            crumbs.append((d.name, query.as_args(by="department", department=d.id, window=None)))
    if window is not None:
        crumbs.append((window.name, query.as_args(by="clerk", department=root.id, window=window.id)))
    return crumbs


# Dashboard ---------------------------------------------------------------------------------------


@dataclass
class Dashboard:
    today: date
    accepted_today: int
    pages_today: int
    businesses_captured_today: int
    completed_today: int
    warning_levels: dict[int, int]
    severe_warnings: list[Any]
    trend_labels: list[str]
    trend_completeness: list[float | None]
    trend_on_time: list[float | None]
    busiest_windows: list[tuple[str, int, int]]  # label, pages, businesses
    offline_agents: list[Agent]
    generated_at: datetime

    def chart_data(self) -> dict[str, Any]:
        return {
            "labels": self.trend_labels,
            "datasets": [
                {"label": "完整率（%）", "data": self.trend_completeness},
                {"label": "时限内完成率（%）", "data": self.trend_on_time},
            ],
        }


def dashboard(user: User, now: datetime | None = None) -> Dashboard:
    now = now or utcnow()
    scope = scope_for(user)
    today = local_today(now)
    start = local_midnight(today)
    accepted_today = db.session.scalar(scope.apply(
        select(func.count()).select_from(Business).where(
            Business.accepted_at >= start, Business.status != BusinessStatus.WITHDRAWN),
        Business.department_id,
    )) or 0
    completed_today = db.session.scalar(scope.apply(
        select(func.count()).select_from(Business).where(Business.completed_at >= start),
        Business.department_id,
    )) or 0
    P = CapturedPage
    pages_today, businesses_today = db.session.execute(scope.apply(
        select(func.count(), func.count(distinct(P.business_id)))
        .select_from(P).join(Business, Business.id == P.business_id)
        .where(P.captured_at >= start, P.status.in_(ARCHIVED_PAGE)),
        Business.department_id,
    )).one()
    busiest = db.session.execute(scope.apply(
        select(Window, func.count(P.id).label("pages"), func.count(distinct(P.business_id)))
        .select_from(P).join(Window, Window.id == P.window_id)
        .where(P.captured_at >= start, P.status.in_(ARCHIVED_PAGE)),
        Window.department_id,
    ).group_by(Window.id).order_by(text("pages DESC"), Window.id).limit(5)).all()
    offline = list(db.session.scalars(scope.apply(
        select(Agent).join(Window, Window.id == Agent.window_id).where(
            Agent.status == AgentStatus.ACTIVE, Window.active.is_(True),
            or_(Agent.last_heartbeat_at.is_(None),
                Agent.last_heartbeat_at < now - timedelta(seconds=AGENT_OFFLINE_SECONDS)),
        ),
        Window.department_id,
    ).order_by(Agent.last_heartbeat_at.is_(None).desc(), Agent.last_heartbeat_at, Agent.id)).unique())
    trend = _trend(user, today)
    return Dashboard(
        today=today, accepted_today=int(accepted_today), pages_today=int(pages_today),
        businesses_captured_today=int(businesses_today), completed_today=int(completed_today),
        warning_levels=open_counts_by_level(scope), severe_warnings=most_severe(scope, 10),
        trend_labels=[r.key[5:] for r in trend],
        trend_completeness=[_pct(r.completeness_rate) for r in trend],
        trend_on_time=[_pct(r.on_time_rate) for r in trend],
        busiest_windows=[(f"{w.department.name} {w.name}", int(n), int(b)) for w, n, b in busiest],
        offline_agents=offline, generated_at=now,
    )


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 1)


def _trend(user: User, today: date) -> list[StatsRow]:
    query = StatsQuery(start=today - timedelta(days=29), end=today, range="last_30",
                       dimension=Dimension.PERIOD, granularity=Granularity.DAY)
    scope, root, window = resolve_root(user, query)
    plan = _plan(scope, root, query, Dimension.PERIOD, Granularity.DAY)
    return _label_rows(query, root, window, _counts(plan))


def business_types() -> list[BusinessType]:
    return list(db.session.scalars(select(BusinessType).order_by(BusinessType.sort_order, BusinessType.id)))


def scope_departments(user: User) -> list[Department]:
    """The departments a user may pick (their subtree), in tree order."""
    return list(db.session.scalars(
        scope_for(user).apply(select(Department), Department.id).order_by(Department.path)
    ))

