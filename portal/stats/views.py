"""The supervisor dashboard, the statistics table with drill-down, and its exports."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_login import current_user

from portal.audit.services import record
from portal.auth.access import current_actor, require, signed_in_user
from portal.auth.roles import Permission
from portal.db import db, utcnow
from portal.stats import exports, services
from portal.warnings.models import WarningLevel
from portal.warnings.services import format_elapsed

bp = Blueprint("stats", __name__, url_prefix="/stats")

EXPORTED_ACTION = "stats.exported"
VIEWED_ACTION = "stats.viewed"  # a statistics table answered (not the dashboard's polls)
DASHBOARD_ACTION = "stats.dashboard_viewed"  # the dashboard page opened (its polls are not audited)
LEVEL_BADGE = {1: "info", 2: "warning", 3: "danger"}


def _wants_fragment() -> bool:
    from portal.app import _wants_fragment as wants

    return wants()


def _poll_seconds() -> int:
    return int(current_app.config.get("PORTAL_POLL_SECONDS", 15))


def _dashboard_context() -> dict[str, object]:
    board = services.dashboard(signed_in_user())
    return {
        "board": board, "levels": list(WarningLevel), "level_badge": LEVEL_BADGE,
        "level_names": {int(v): v.label for v in WarningLevel}, "elapsed": format_elapsed,
        "poll_seconds": _poll_seconds(), "chart_data": board.chart_data(),
    }


@bp.get("/")
@require(Permission.STATISTICS)
def index() -> str:
    context = _dashboard_context()
    record(DASHBOARD_ACTION, actor=current_actor(), object_type="statistics", object_id="dashboard")
    return render_template("stats/index.html", **context)


@bp.get("/live")
def live() -> tuple[str, int]:
    """The dashboard's parts as out-of-band swaps, polled with X-Portal-Poll.
    Answers 286 (htmx: stop polling) when the user may no longer see statistics."""
    if not current_user.is_authenticated or not current_user.can(Permission.STATISTICS):
        return "", 286
    return render_template("stats/_live.html", **_dashboard_context()), 200


def _report_context(query: services.StatsQuery) -> dict[str, object]:
    user = signed_in_user()
    return {
        "query": query, "columns": services.COLUMNS, "ranges": services.RANGES,
        "dimension_options": [(d.value, d.label) for d in services.Dimension],
        "granularity_options": [(g.value, g.label) for g in services.Granularity],
        "department_options": [
            (d.id, "\u3000" * d.depth + d.name) for d in services.scope_departments(user)
        ],
        "type_options": [(t.id, t.name) for t in services.business_types()],
        "format_rate": services.format_rate, "format_duration": services.format_duration,
    }


@bp.get("/report")
@require(Permission.STATISTICS)
def report() -> tuple[str, int]:
    query = services.StatsQuery.from_args(request.args)
    context = _report_context(query)
    status, result, error = 200, None, ""
    try:
        result = services.workload(signed_in_user(), query)
    except services.OutOfScope:
        abort(404)
    except services.StatsError as exc:
        status, error = exc.status, exc.message
    else:
        record(VIEWED_ACTION, actor=current_actor(), object_type="statistics", object_id=query.dimension.value,
               detail=_audit_detail(query, len(result.rows)))
    template = "stats/_report.html" if _wants_fragment() else "stats/report.html"
    return render_template(template, result=result, error=error, **context), status


def _audit_detail(query: services.StatsQuery, rows: int) -> dict[str, object]:
    return {**query.as_args(), "start": query.start.isoformat(), "end": query.end.isoformat(), "rows": rows}


@bp.get("/export.<fmt>")
@require(Permission.STATISTICS)
def export(fmt: str) -> Response | tuple[str, int]:
    if fmt not in exports.MEDIA_TYPES:
        abort(404)
    user = signed_in_user()
    query = services.StatsQuery.from_args(request.args)
    try:
        result = services.workload(user, query)
        generated_at = utcnow()
        body = exports.to_xlsx(result, user, generated_at) if fmt == "xlsx" else exports.to_pdf(
            result, user, generated_at)
    except services.OutOfScope:
        abort(404)
    except services.StatsError as exc:
        db.session.rollback()
        return render_template("stats/report.html", result=None, error=exc.message,
                               **_report_context(query)), exc.status
    except exports.FontMissing as exc:
        current_app.logger.error("PDF export impossible: %s", exc)
        return render_template("stats/report.html", result=None,
                               error="服务器缺少中文字体，无法导出 PDF，请联系系统管理员。",
                               **_report_context(query)), 500
    record(EXPORTED_ACTION, actor=current_actor(), object_type="statistics", object_id=query.dimension.value,
           detail={"format": fmt, **_audit_detail(query, len(result.rows))})
    response = Response(body, mimetype=exports.MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{exports.filename(result, fmt)}"'
    response.headers["Cache-Control"] = "no-store"
    return response
