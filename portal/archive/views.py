"""Archive lookup, the business archive page, the page viewer and the signed PDF export."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from gmcrypto.errors import DecryptionError
from portal.archive import services
from portal.archive.export import EXPORTED_ACTION, NothingToExport, export_archive
from portal.audit.services import record
from portal.auth.access import current_actor, require, signed_in_user
from portal.auth.models import User
from portal.auth.roles import Permission
from portal.capture.completeness import checklist_status
from portal.db import utcnow
from portal.keys import key_provider
from portal.protect import KINDS, reveal_personal
from portal.registry.models import Business
from portal.scoping import scope_for
from portal.storage.watermark import watermark_text

bp = Blueprint("archive", __name__, url_prefix="/archive")

SEARCH_FIELDS = ("serial", "plate", "vehicle_code", "owner_name", "owner_id", "business_type", "department",
                 "capture_state", "accepted_from", "accepted_to")
IMAGE_KINDS = ("display", "thumb")


def _wants_fragment() -> bool:
    from portal.app import _wants_fragment as wants

    return wants()


def _cross(source: MultiDict[str, str]) -> tuple[bool, str]:
    """Cross-department access asked for with a reason (`cross=1&reason=…`)."""
    reason = services.SearchCriteria.from_args({"reason": source.get("reason", "")}).reason
    cross = source.get("cross") in {"1", "on", "true"} and bool(reason)
    return cross, reason


def _xargs(everywhere: bool, reason: str) -> dict[str, str]:
    """Query arguments that carry a cross-department lookup on to the next page."""
    return {"cross": "1", "reason": reason} if everywhere else {}


def _business_or_404(user: User, business_id: int, cross: bool, action: str) -> Business:
    try:
        return services.business_in_scope(scope_for(user, cross_department=cross), business_id)
    except services.NotFound:
        record(action, actor=current_actor(), outcome="denied", object_type="business",
               object_id=str(business_id), detail={"why": "not in scope"})
        abort(404)


def _watermark(user: User) -> str:
    return watermark_text(user.full_name, user.badge_number, utcnow())


@bp.route("/search", methods=["GET", "POST"])
@require(Permission.LOOKUP)
def search() -> tuple[str, int]:
    user = signed_in_user()
    may_cross = user.can(Permission.LOOKUP_ALL)
    source = request.form if request.method == "POST" else request.args
    submitted = request.method == "POST" or any(source.get(name) for name in SEARCH_FIELDS)
    criteria = services.SearchCriteria.from_args(source) if submitted else services.SearchCriteria()
    result, notice, status = None, "", 200
    everywhere = False
    if criteria.errors:
        status = 422
    elif submitted and criteria.needs_reason and may_cross:
        notice = "跨部门查询须填写查询事由，事由将记入审计日志。"
    elif submitted and not criteria.has_filters:
        notice = "请至少输入一个查询条件。"
    elif submitted:
        scope = scope_for(user, cross_department=criteria.cross and bool(criteria.reason))
        everywhere = scope.everywhere
        result = services.search(scope, criteria, current_actor())
    context: dict[str, Any] = {
        "criteria": criteria, "result": result, "notice": notice, "may_cross": may_cross,
        "xargs": _xargs(everywhere, criteria.reason), "submitted": submitted,
    }
    if _wants_fragment():
        html = render_template("archive/_results.html", **context)
    else:
        options = services.search_options(scope_for(user), may_cross)
        html = render_template("archive/search.html", options=options, **context)
    return html, status


@bp.route("/business/<int:business_id>")
@require(Permission.LOOKUP)
def business(business_id: int) -> str:
    user = signed_in_user()
    cross, reason = _cross(request.args)
    item = _business_or_404(user, business_id, cross, services.VIEWED_ACTION)
    everywhere = scope_for(user, cross_department=cross).everywhere
    record(services.VIEWED_ACTION, actor=current_actor(), object_type="business", object_id=str(item.id),
           reason=reason if everywhere else "", detail={"serial": item.serial, "cross": everywhere})
    return _render_business(user, item, everywhere, reason)


def _render_business(user: User, item: Business, everywhere: bool, reason: str,
                     revealed: dict[str, str] | None = None) -> str:
    """The business page; its thumbnails get one `archive.page_viewed` entry."""
    archive = services.business_archive(item)
    current = services.current_pages(archive)
    token = ""
    if user.can(Permission.VIEW_PAGES) and current:
        grant = services.page_views(
            current_actor(), user.id, item, [row.page.id for row in current], view="thumbnails",
            cross=everywhere, reason=reason,
        )
        token = services.issue_view_token(current_app.secret_key, grant)
    return render_template(
        "archive/business.html", business=item, checklist=checklist_status(item), archive=archive,
        current=current, token=token, xargs=_xargs(everywhere, reason), revealed=revealed or {},
    )


@bp.route("/business/<int:business_id>/reveal/<kind>", methods=["POST"])
@require(Permission.LOOKUP)
def reveal(business_id: int, kind: str) -> tuple[str, int] | str:
    if kind not in KINDS:
        abort(404)
    user = signed_in_user()
    cross, reason = _cross(request.form)
    item = _business_or_404(user, business_id, cross, "personal.revealed")
    try:
        value = reveal_personal(user, item, kind, current_actor(), reason=reason if cross else "")
    except PermissionError:
        abort(403)
    except DecryptionError:
        return render_template("archive/_revealed.html", kind=kind, value=None), 422
    if _wants_fragment():
        return render_template("archive/_revealed.html", kind=kind, value=value)
    everywhere = scope_for(user, cross_department=cross).everywhere
    return _render_business(user, item, everywhere, reason, revealed={kind: value})


@bp.route("/business/<int:business_id>/viewer")
@require(Permission.VIEW_PAGES)
def viewer(business_id: int) -> str:
    user = signed_in_user()
    cross, reason = _cross(request.args)
    item = _business_or_404(user, business_id, cross, services.PAGE_VIEWED_ACTION)
    everywhere = scope_for(user, cross_department=cross).everywhere
    archive = services.business_archive(item)
    current = services.current_pages(archive)
    token = ""
    if current:
        shown = [row.page.id for m in archive for row in m.history]
        grant = services.page_views(current_actor(), user.id, item, shown, view="viewer",
                                    cross=everywhere, reason=reason)
        token = services.issue_view_token(current_app.secret_key, grant)
    wanted = request.args.get("page", type=int)
    index = next((i for i, row in enumerate(current) if row.page.id == wanted), 0)
    compare_id = request.args.get("compare", type=int)
    versions = {row.page.id: row for m in archive for row in m.history}
    compare = versions.get(compare_id) if compare_id else None
    return render_template(
        "archive/viewer.html", business=item, archive=archive, current=current, index=index,
        compare=compare, token=token, xargs=_xargs(everywhere, reason),
        items=[_viewer_item(row, token) for row in current],
    )


def _version_label(row: services.PageRow) -> str:
    state = "已替换" if row.page.status.value == "superseded" else "当前"
    return f"第 {row.page.version} 版 · {row.page.captured_at.astimezone().strftime('%Y-%m-%d %H:%M')}（{state}）"


def _viewer_item(row: services.PageRow, token: str) -> dict[str, Any]:
    """What viewer.js needs about one current page (kept in data attributes, no inline script)."""
    def src(r: services.PageRow) -> str:
        return url_for("archive.page_image", page_id=r.page.id, t=token)

    return {
        "id": row.page.id, "src": src(row),
        "label": f"{row.page.material.name} · {_version_label(row)} · {row.signature_label[0]}",
        "versions": [{"id": v.page.id, "label": _version_label(v), "src": src(v)} for v in row.versions],
    }


@bp.route("/page/<int:page_id>/image")
@require(Permission.VIEW_PAGES)
def page_image(page_id: int) -> Response:
    user = signed_in_user()
    kind = request.args.get("size", "display")
    if kind not in IMAGE_KINDS:
        abort(404)
    cross, reason = _cross(request.args)
    actor = current_actor()
    try:
        page, item = services.viewable_page(
            user, page_id, token=request.args.get("t", ""), secret=current_app.secret_key, cross=cross,
            reason=reason, actor=actor, kind=kind,
        )
    except services.NotFound:
        abort(404)
    data, intact = services.page_image_or_placeholder(page, item, kind, _watermark(user), actor)  # type: ignore[arg-type]
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Portal-Integrity"] = "ok" if intact else "failed"
    return response


@bp.route("/business/<int:business_id>/export", methods=["POST"])
@require(Permission.EXPORT)
def export(business_id: int) -> Response | tuple[str, int]:
    user = signed_in_user()
    cross, reason = _cross(request.form)
    item = _business_or_404(user, business_id, cross, EXPORTED_ACTION)
    everywhere = scope_for(user, cross_department=cross).everywhere
    try:
        bundle = export_archive(item, user, current_actor(), key_provider().signing_key, cross=everywhere,
                                reason=reason)
    except NothingToExport as exc:
        template = "errors/_error.html" if _wants_fragment() else "errors/error.html"
        return render_template(template, code=422, message=exc.message_zh), 422
    response = Response(bundle.zip_bytes(), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{bundle.zip_name}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
