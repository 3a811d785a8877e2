"""The clerk's capture screen: open a business by serial, scan or upload each material, check the
pages as they arrive, confirm; supplemental capture with versions and a reason.

Thin views: parse the request, check the permission, call `portal.capture.services`, render the
workspace (or a job box) for HTMX, redirect otherwise. A `CaptureError` rolls the transaction back
and is shown in place with its status.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from portal.archive.services import NotFound, business_in_scope
from portal.audit.services import record
from portal.auth.access import current_actor, require, signed_in_user
from portal.auth.roles import Permission
from portal.capture import services
from portal.capture.models import CaptureKind, JobState, PageSource, ScanJob, SupplementMode, SupplementReason
from portal.capture.services import CaptureError
from portal.db import db, utcnow
from portal.org.models import Window
from portal.registry.models import Business
from portal.scoping import scope_for
from portal.storage.watermark import watermark_text

bp = Blueprint("capture", __name__, url_prefix="/capture")

P = Permission
WINDOW_KEY = "capture_window_id"
POLL_HEADER = "X-Portal-Poll"


def _wants_fragment() -> bool:
    from portal.app import _wants_fragment as wants

    return wants()


def _business(business_id: int) -> Business:
    try:
        return business_in_scope(scope_for(signed_in_user()), business_id)
    except NotFound:
        record("capture.business_viewed", actor=current_actor(), outcome="denied", object_type="business",
               object_id=str(business_id), detail={"why": "not in scope"})
        abort(404)


def _forbidden(needs: Permission) -> CaptureError:
    record("security.forbidden", actor=current_actor(), outcome="denied",
           detail={"path": request.path, "needs": [needs.value]})
    return CaptureError("forbidden", f"needs {needs.value}", "您没有权限执行此操作。", 403)


def _need_for(kind: CaptureKind) -> None:
    """Initial capture needs CAPTURE, supplemental capture SUPPLEMENT."""
    needs = P.CAPTURE if kind == CaptureKind.INITIAL else P.SUPPLEMENT
    if not signed_in_user().can(needs):
        raise _forbidden(needs)


def _windows(business: Business, requested: int | None = None) -> tuple[list[Window], Window | None]:
    windows = services.office_windows(business)
    return windows, services.choose_window(windows, requested, session.get(WINDOW_KEY), signed_in_user().window_id)


def _context(business: Business, *, material_id: int | None = None, replace: int | None = None,
             error: str | None = None, notice: str | None = None) -> dict[str, Any]:
    windows, window = _windows(business)
    screen = services.capture_screen(business, material_id=material_id, window=window, windows=windows,
                                     replace_page_id=replace)
    user = signed_in_user()
    return {
        "screen": screen, "error": error, "notice": notice, "reasons": list(SupplementReason),
        "modes": SupplementMode, "JobState": JobState, "PageSource": PageSource,
        "can_capture": user.can(P.CAPTURE), "can_supplement": user.can(P.SUPPLEMENT),
        "can_upload": user.can(P.BROWSER_UPLOAD),
        "window_busy": services.window_busy(window) if window is not None else None,
    }


def _render(business: Business, *, fragment: bool, status: int = 200, **kwargs: Any) -> tuple[str, int]:
    template = "capture/_workspace.html" if fragment else "capture/business.html"
    return render_template(template, **_context(business, **kwargs)), status


def _failed(business_id: int, exc: CaptureError, material_id: int | None) -> tuple[str, int]:
    db.session.rollback()
    business = _business(business_id)
    return _render(business, fragment=_wants_fragment(), status=exc.status, material_id=material_id,
                   error=exc.message_zh)


def _done(business: Business, material_id: int | None, notice: str | None = None) -> Any:
    if _wants_fragment():
        return _render(business, fragment=True, material_id=material_id, notice=notice)
    if notice:
        flash(notice, "success")
    return redirect(url_for(".business", business_id=business.id, material=material_id))


def _job(business: Business, job_id: int) -> ScanJob:
    try:
        return services.job_of(business, job_id)
    except CaptureError:
        abort(404)


def _box(business: Business, job: ScanJob, *, status: int = 200, error: str | None = None) -> Any:
    if not _wants_fragment():
        if error:
            flash(error, "error")
        return redirect(url_for(".business", business_id=business.id, material=job.material_id))
    return render_template("capture/_job.html", jv=services.job_view(job), business=business, error=error,
                           JobState=JobState, PageSource=PageSource), status


# Opening a business --------------------------------------------------------------------------------


@bp.get("/")
@require(P.CAPTURE, P.SUPPLEMENT)
def index() -> str:
    user = signed_in_user()
    return render_template("capture/index.html", recent=services.recent_businesses(user.id, scope_for(user)))


@bp.post("/open")
@require(P.CAPTURE, P.SUPPLEMENT)
def open_serial() -> Any:
    serial = request.form.get("serial", "")
    try:
        business, fetched = services.open_business(scope_for(signed_in_user()), serial)
    except CaptureError as exc:
        if exc.code != "business_quarantined":  # keep the quarantine row for the administrator
            db.session.rollback()
        record("capture.business_opened", actor=current_actor(),
               outcome="denied" if exc.code == "business_out_of_scope" else "failure", object_type="business",
               object_id=serial.strip()[:64], detail={"code": exc.code})
        if _wants_fragment():
            return render_template("capture/_serial_feedback.html", error=exc.message_zh), exc.status
        user = signed_in_user()
        return render_template("capture/index.html", error=exc.message_zh, serial=serial,
                               recent=services.recent_businesses(user.id, scope_for(user))), exc.status
    record("capture.business_opened", actor=current_actor(), object_type="business", object_id=business.serial,
           detail={"fetched": fetched})
    target = url_for(".business", business_id=business.id)
    if _wants_fragment():
        response = Response("", 200)
        response.headers["HX-Location"] = json.dumps({"path": target, "target": "body"})
        return response
    return redirect(target, 303)


# The business's capture screen ---------------------------------------------------------------------


@bp.get("/business/<int:business_id>")
@require(P.CAPTURE, P.SUPPLEMENT)
def business(business_id: int) -> tuple[str, int]:
    item = _business(business_id)
    material_id = request.args.get("material", type=int)
    replace = request.args.get("replace", type=int)
    fragment = _wants_fragment() and request.headers.get("HX-Target") == "workspace"
    if not fragment:
        record("capture.business_viewed", actor=current_actor(), object_type="business", object_id=item.serial)
    return _render(item, fragment=fragment, material_id=material_id, replace=replace)


@bp.post("/business/<int:business_id>/window")
@require(P.CAPTURE, P.SUPPLEMENT)
def choose_window(business_id: int) -> Any:
    item = _business(business_id)
    material_id = request.form.get("material", type=int)
    window_id = request.form.get("window", type=int)
    if window_id not in {w.id for w in services.office_windows(item)}:
        return _failed(business_id, CaptureError("bad_window", "not a window of this office",
                                                 "所选窗口不属于本登记点。"), material_id)
    session[WINDOW_KEY] = window_id
    return _done(item, material_id)


@bp.get("/windows/<int:window_id>/state")
@require(P.CAPTURE, P.SUPPLEMENT)
def window_state(window_id: int) -> tuple[str, int]:
    window = db.session.get(Window, window_id)
    if window is None or not scope_for(signed_in_user()).allows(window.department_id):
        abort(404)
    return render_template("capture/_window_state.html", status=services.window_status(window)), 200


def _capture_params(item: Business) -> dict[str, Any]:
    """kind, mode, page to replace and reason from the form; checks the permission of the kind."""
    form = request.form
    kind = CaptureKind.SUPPLEMENTAL if form.get("kind") == CaptureKind.SUPPLEMENTAL.value else CaptureKind.INITIAL
    _need_for(kind)
    try:
        mode = SupplementMode(form.get("mode", SupplementMode.APPEND.value))
    except ValueError:
        mode = SupplementMode.APPEND
    try:
        reason = SupplementReason(form["reason"]) if form.get("reason") else None
    except ValueError:
        reason = None
    replace_id = form.get("replaces", type=int)
    replaces = services.business_page(item, replace_id) if replace_id else None
    return {"kind": kind, "mode": mode, "replaces": replaces, "reason": reason,
            "reason_text": form.get("reason_text", "")[:200]}


def _chosen_window(item: Business) -> Window:
    _, window = _windows(item, request.form.get("window", type=int))
    if window is None:
        raise CaptureError("no_window", "the office has no window", "本登记点尚未配置窗口，无法采集。", 409)
    return window


@bp.post("/business/<int:business_id>/materials/<int:material_id>/scan")
@require(P.CAPTURE, P.SUPPLEMENT)
def scan(business_id: int, material_id: int) -> Any:
    item = _business(business_id)
    try:
        params = _capture_params(item)
        material = services.checklist_material(item, material_id)
        services.request_capture(business=item, material=material, window=_chosen_window(item),
                                 actor=current_actor(), **params)
    except CaptureError as exc:
        return _failed(business_id, exc, material_id)
    return _done(item, material_id)


@bp.post("/business/<int:business_id>/materials/<int:material_id>/upload")
@require(P.BROWSER_UPLOAD)
def upload(business_id: int, material_id: int) -> Any:
    item = _business(business_id)
    settings = current_app.config["SETTINGS"]
    try:
        try:
            files = [services.UploadedFile(f.filename or "", f.read(settings.max_upload_bytes + 1))
                     for f in request.files.getlist("files")]
        except RequestEntityTooLarge:
            raise CaptureError("too_large", "request too large",
                               f"上传的文件总大小超过限制（{settings.max_upload_bytes // (1024 * 1024)} MB），"
                               "请分批上传。", 413) from None
        params = _capture_params(item)
        material = services.checklist_material(item, material_id)
        job = services.browser_upload(business=item, material=material, window=_chosen_window(item),
                                      actor=current_actor(), files=files, max_bytes=settings.max_upload_bytes,
                                      max_pixels=settings.max_image_pixels, **params)
    except CaptureError as exc:
        return _failed(business_id, exc, material_id)
    return _done(item, material_id, notice=f"已上传 {job.pages_received} 页，请核对后确认。")


# A job and its staging area ------------------------------------------------------------------------


@bp.get("/business/<int:business_id>/jobs/<int:job_id>/box")
@require(P.CAPTURE, P.SUPPLEMENT)
def job_box(business_id: int, job_id: int) -> Any:
    """The job's box; polled every second while the job runs (X-Portal-Poll: not user activity).
    Unchanged → 204 (no swap). Ended → the whole workspace (so the scan buttons and the checklist
    update too) with 286, which stops the polling. `watch=1` (a scan running for a material the
    clerk is not looking at) only waits for the end: 204 until then."""
    item = _business(business_id)
    job = _job(item, job_id)
    polled = bool(request.headers.get(POLL_HEADER))
    active = job.state in services.ACTIVE_STATES
    if active and polled and (request.args.get("watch") or request.args.get("key") == services.poll_key(job)):
        return Response(status=204)
    view = services.job_view(job)
    if active:
        return render_template("capture/_job.html", jv=view, business=item, JobState=JobState,
                               PageSource=PageSource), 200
    if polled and _wants_fragment():
        html, _ = _render(item, fragment=True, material_id=job.material_id)
        response = Response(html, 286)
        response.headers["HX-Retarget"] = "#workspace"
        response.headers["HX-Reswap"] = "outerHTML"
        return response
    return _box(item, job)


def _job_action(business_id: int, job_id: int) -> tuple[Business, ScanJob]:
    item = _business(business_id)
    job = _job(item, job_id)
    _need_for(job.kind)
    return item, job


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/cancel")
@require(P.CAPTURE, P.SUPPLEMENT)
def cancel(business_id: int, job_id: int) -> Any:
    material_id = None
    try:
        item, job = _job_action(business_id, job_id)
        material_id = job.material_id
        services.cancel_job(job, current_actor())
    except CaptureError as exc:
        return _failed(business_id, exc, material_id)
    return _done(item, material_id)


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/retry")
@require(P.CAPTURE, P.SUPPLEMENT)
def retry(business_id: int, job_id: int) -> Any:
    material_id = None
    try:
        item, job = _job_action(business_id, job_id)
        material_id = job.material_id
        services.retry_job(item, job, _chosen_window(item), current_actor())
    except CaptureError as exc:
        return _failed(business_id, exc, material_id)
    return _done(item, material_id)


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/confirm")
@require(P.CAPTURE, P.SUPPLEMENT)
def confirm(business_id: int, job_id: int) -> Any:
    material_id = None
    try:
        _, job = _job_action(business_id, job_id)
        material_id = job.material_id
        result = services.confirm_job(job, current_actor(), utcnow())
    except CaptureError as exc:
        return _failed(business_id, exc, material_id)
    notice = f"“{result.job.material.name}”已确认 {len(result.confirmed)} 页。"
    if result.superseded:
        notice += f" 被替换的 {len(result.superseded)} 页已保留为历史版本。"
    return _done(result.business, material_id, notice=notice)


def _page_action(business_id: int, job_id: int, page_id: int, action: str) -> Any:
    item = _business(business_id)
    job = _job(item, job_id)
    try:
        _need_for(job.kind)
        actor = current_actor()
        if action == "rotate":
            services.rotate_page(job, page_id, request.form.get("degrees", 0, type=int), actor)
        elif action == "move":
            services.move_page(job, page_id, request.form.get("step", 0, type=int), actor)
        else:
            services.discard_page(job, page_id, actor)
    except CaptureError as exc:
        db.session.rollback()
        item = _business(business_id)
        return _box(item, _job(item, job_id), status=exc.status, error=exc.message_zh)
    return _box(item, job)


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/pages/<int:page_id>/rotate")
@require(P.CAPTURE, P.SUPPLEMENT)
def rotate(business_id: int, job_id: int, page_id: int) -> Any:
    return _page_action(business_id, job_id, page_id, "rotate")


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/pages/<int:page_id>/move")
@require(P.CAPTURE, P.SUPPLEMENT)
def move(business_id: int, job_id: int, page_id: int) -> Any:
    return _page_action(business_id, job_id, page_id, "move")


@bp.post("/business/<int:business_id>/jobs/<int:job_id>/pages/<int:page_id>/discard")
@require(P.CAPTURE, P.SUPPLEMENT)
def discard(business_id: int, job_id: int, page_id: int) -> Any:
    return _page_action(business_id, job_id, page_id, "discard")


@bp.get("/business/<int:business_id>/pages/<int:page_id>/image")
@require(P.CAPTURE, P.SUPPLEMENT)
def page_image(business_id: int, page_id: int) -> Response:
    """A page's thumbnail or display image with the viewer's watermark; never cached."""
    item = _business(business_id)
    try:
        page = services.business_page(item, page_id)
    except CaptureError:
        abort(404)
    size = "display" if request.args.get("size") == "display" else "thumb"
    user = signed_in_user()
    data, intact = services.page_image(page, size, watermark_text(user.full_name, user.badge_number, utcnow()))
    if not intact:
        record("capture.integrity_failed", actor=current_actor(), outcome="failure", object_type="captured_page",
               object_id=str(page.id), detail={"business": item.serial, "sm3": page.content_sm3})
    elif size == "display":
        record("capture.page_viewed", actor=current_actor(), object_type="captured_page", object_id=str(page.id),
               detail={"business": item.serial})
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, no-store"
    return response
