"""Capture-warning lists, the navigation badge and closing a warning by exception."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal.audit.services import record
from portal.auth.access import current_actor, require, signed_in_user
from portal.auth.roles import Permission
from portal.db import db, utcnow
from portal.warnings import services
from portal.warnings.models import WarningLevel

bp = Blueprint("warnings", __name__, url_prefix="/warnings")

LEVEL_BADGE = {1: "info", 2: "warning", 3: "danger"}
LISTED_ACTION = "warnings.listed"


def _wants_fragment() -> bool:
    from portal.app import _wants_fragment as wants

    return wants()


def _context(**extra: object) -> dict[str, object]:
    return {
        "levels": list(WarningLevel), "level_badge": LEVEL_BADGE, "views": services.VIEWS,
        "level_names": {int(v): v.label for v in WarningLevel},
        "level_options": [(int(v), v.label) for v in WarningLevel],
        "states": services.STATES, "elapsed": services.format_elapsed, "now": utcnow(),
        "can_capture": current_user.is_authenticated and current_user.can(Permission.CAPTURE), **extra,
    }


def _filter_options(result: services.WarningList) -> dict[str, object]:
    return {
        "department_options": [(d.id, "\u3000" * d.depth + d.name) for d in result.departments],
        "window_options": [(w.id, f"{w.department.name} {w.name}") for w in result.windows],
    }


@bp.get("/")
@require(Permission.WARNINGS)
def index() -> str:
    user = signed_in_user()
    query = services.WarningQuery.from_args(request.args, user)
    try:
        result = services.list_warnings(user, query)
    except services.OutOfScope:
        abort(404)
    record(LISTED_ACTION, actor=current_actor(), object_type="capture_warning", object_id=query.view,
           detail={"department_id": result.department.id if result.department else None,
                   "window_id": result.window.id if result.window else None, "level": query.level,
                   "state": query.state, "page": query.page, "total": result.total})
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    context = _context(result=result, query=query, args=args,
                       can_except=user.can(Permission.WARNING_EXCEPTION), **_filter_options(result))
    if _wants_fragment():
        return render_template("warnings/_list.html", **context)
    return render_template("warnings/index.html", **context)


@bp.post("/<int:warning_id>/exception")
@require(Permission.WARNING_EXCEPTION)
def record_exception(warning_id: int) -> tuple[str, int] | str | Response:
    """Close by exception; HTMX gets the row back, a plain form post a redirect to the list."""
    user = signed_in_user()
    try:
        warning = services.warning_in_scope(user, warning_id)
    except services.OutOfScope:
        abort(404)
    reason = request.form.get("reason", "")
    try:
        services.record_exception(warning, reason, user, current_actor())
    except services.WarningError as exc:
        db.session.rollback()
        if not _wants_fragment():
            flash(exc.message, "error")
            return redirect(url_for("warnings.index"))
        warning = services.warning_in_scope(user, warning_id)
        return render_template(
            "warnings/_row.html", w=warning, error=exc.message, reason=reason, can_except=True, **_context()
        ), exc.status
    if not _wants_fragment():
        flash(f"已记录例外并关闭业务 {warning.business.serial} 的预警。", "success")
        return redirect(url_for("warnings.index"))
    return render_template("warnings/_row.html", w=warning, can_except=True, just_closed=True, **_context())


@bp.get("/badge")
def badge() -> tuple[str, int]:
    """The open-warning count for the navigation; polled with X-Portal-Poll (no activity).
    Answers 286 (htmx: stop polling) when the user may not see warnings."""
    if not current_user.is_authenticated or not current_user.can(Permission.WARNINGS):
        return "", 286
    count = services.badge_count(signed_in_user())
    return render_template("warnings/_badge.html", count=count), 200
