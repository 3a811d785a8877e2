"""Keeping `CaptureSummary` (the statistics' row per business) in step with its business.

Every write is the same set-based upsert — INSERT … SELECT from `business` and its archived pages
… ON CONFLICT (business_id) DO UPDATE, touching only rows whose values differ — restricted to
a list of businesses (`refresh`), to those whose summary is missing or older than the business
(`repair`, the scheduler's safety net) or to everything (`rebuild`). A row is therefore always
recomputed from the source of truth, never incremented, so repeating a refresh is harmless and
two transactions refreshing the same business cannot double-count it.

`accepted_on` is the local calendar day with the server zone's current UTC offset (China has no
daylight-saving time); after changing the server's zone run `portal stats rebuild`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select

from portal.capture.models import CapturedPage, CaptureKind, PageStatus
from portal.db import db
from portal.registry.models import Business, BusinessStatus, CaptureState
from portal.stats.models import CaptureSummary

log = logging.getLogger(__name__)

ARCHIVED_PAGE = (PageStatus.CONFIRMED, PageStatus.SUPERSEDED)
CHUNK = 1000  # business ids per statement (bound parameters stay far below every driver's limit)
REBUILD_BATCH = 50_000  # businesses per statement of a rebuild (one id range)
REPAIR_LIMIT = 200_000  # stale summaries refreshed per repair (the next run takes the rest)


def dialect() -> str:
    return db.session.get_bind().dialect.name


def seconds_between(later: Any, earlier: Any) -> ColumnElement[float]:
    if dialect() == "postgresql":
        # date_part gives double precision (extract gives numeric, much slower to sort).
        return func.date_part("epoch", later - earlier)
    # julianday() is a double: ~50 µs of noise at today's dates, so round to milliseconds.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def utc_offset_minutes() -> int:
    """The server zone's offset now (the local calendar of the statistics)."""
    return int((datetime.now().astimezone().utcoffset() or timedelta()).total_seconds() // 60)


def _local_day(column: Any) -> ColumnElement[Any]:
    offset = utc_offset_minutes()
    if dialect() == "postgresql":
        return func.date(column + literal(timedelta(minutes=offset)))
    return func.date(column, f"{offset:+d} minutes")


def _source(business_filter: ColumnElement[bool], page_filter: ColumnElement[bool]) -> Any:
    """SELECT the summary columns of the businesses matching `business_filter`; `page_filter`
    restricts the page aggregate to the same businesses (so the planner reads only theirs)."""
    P, B = CapturedPage, Business
    pages = (
        select(
            P.business_id.label("business_id"),
            func.coalesce(
                func.min(case((P.kind == CaptureKind.INITIAL, P.window_id))), func.min(P.window_id)
            ).label("window_id"),
            func.max(case((P.kind == CaptureKind.SUPPLEMENTAL, 1), else_=0)).label("supplemented"),
        )
        .where(P.status.in_(ARCHIVED_PAGE), page_filter)
        .group_by(P.business_id)
        .subquery("archived_pages")
    )
    complete = B.capture_state == CaptureState.COMPLETE
    return (
        select(
            B.id, B.version, _local_day(B.accepted_at), B.department_id, B.business_type_id,
            pages.c.window_id, B.clerk_code, B.clerk_name, B.status == BusinessStatus.WITHDRAWN,
            B.page_count, complete, func.coalesce(pages.c.supplemented, 0) == 1,
            case((complete, seconds_between(B.completed_at, B.accepted_at))),
            case((and_(complete, B.finished_at.is_not(None)), seconds_between(B.completed_at, B.finished_at))),
        )
        .select_from(B)
        .outerjoin(pages, pages.c.business_id == B.id)
        .where(business_filter)
    )


_COLUMNS = (
    "business_id", "business_version", "accepted_on", "department_id", "business_type_id", "window_id",
    "clerk_code", "clerk_name", "withdrawn", "pages", "complete", "supplemented", "delay_seconds",
    "finished_delay_seconds",
)


def _upsert(business_filter: ColumnElement[bool], page_filter: ColumnElement[bool]) -> int:
    """Write the summaries of the matching businesses; returns the rows inserted or changed."""
    if dialect() == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = CaptureSummary.__table__
    stmt = insert(table).from_select(list(_COLUMNS), _source(business_filter, page_filter))
    changed = [c for c in _COLUMNS if c != "business_id"]
    stmt = stmt.on_conflict_do_update(
        index_elements=["business_id"],
        set_={c: stmt.excluded[c] for c in changed},
        where=or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in changed)),
    )
    result = db.session.execute(stmt.execution_options(preserve_rowcount=True))
    return max(0, result.rowcount or 0)


def refresh(business_ids: Iterable[int]) -> int:
    """Recompute the summaries of these businesses (after they changed). Flushes, never commits."""
    db.session.flush()
    ids = sorted(set(business_ids))
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        written += _upsert(Business.id.in_(chunk), CapturedPage.business_id.in_(chunk))
    return written


def stale_ids(limit: int | None = None) -> list[int]:
    """Businesses whose summary is missing or computed from an older version of the business."""
    S = CaptureSummary
    stmt = (
        select(Business.id)
        .outerjoin(S, S.business_id == Business.id)
        .where(or_(S.business_id.is_(None), S.business_version != Business.version))
        .order_by(Business.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(db.session.scalars(stmt))


def repair(limit: int = REPAIR_LIMIT) -> int:
    """Refresh the stale summaries, at most `limit` per call (the scheduler comes back)."""
    ids = stale_ids(limit)
    if ids:
        refresh(ids)
        log.info("capture summaries repaired: %d businesses", len(ids))
    return len(ids)


def rebuild(progress: Callable[[int, int], None] | None = None, commit: bool = False) -> int:
    """Recompute every summary, REBUILD_BATCH businesses (one id range) per statement; `commit`
    after each batch keeps transactions short on a large database. Returns rows written."""
    db.session.flush()
    low, high = db.session.execute(select(func.min(Business.id), func.max(Business.id))).one()
    if low is None:
        return 0
    written = 0
    for start in range(low, high + 1, REBUILD_BATCH):
        end = start + REBUILD_BATCH - 1
        written += _upsert(Business.id.between(start, end), CapturedPage.business_id.between(start, end))
        if commit:
            db.session.commit()
        if progress is not None:
            progress(min(end, high) - low + 1, high - low + 1)
    return written

