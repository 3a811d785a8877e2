"""The sysadmin's registration-system page: sync status, recent runs, quarantine, "sync now"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from portal.app import _wants_fragment
from portal.audit.services import record
from portal.auth.access import current_actor, require
from portal.auth.roles import Permission
from portal.db import db
from portal.registry import services
from portal.registry.adapters import adapter_from_app
from portal.registry.models import QuarantinedRecord
from portal.registry.options import registry_options
from portal.registry.sync import SyncBusy, sync_configured_source

bp = Blueprint("registry", __name__, url_prefix="/registry")


def human_duration(value: timedelta | float | None) -> str:
    """1.4 秒 / 3 分 20 秒 / 2 小时 5 分 / 3 天 4 小时."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 60:
        return f"{seconds:.1f} 秒"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} 分 {sec} 秒"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} 小时 {minutes} 分"
    days, hours = divmod(hours, 24)
    return f"{days} 天 {hours} 小时"


bp.add_app_template_filter(human_duration, "registry_duration")


def _overview() -> services.StatusOverview:
    adapter = adapter_from_app(interactive=True)
    return services.status_overview(
        "http", adapter.label if adapter is not None else "", configured=adapter is not None
    )


def _context(**extra: Any) -> dict[str, Any]:
    return {"o": _overview(), "options": registry_options(), **extra}


@bp.get("/")
@require(Permission.ADMIN_REGISTRY)
def status() -> str:
    return render_template("registry/status.html", **_context())


@bp.post("/sync")
@require(Permission.ADMIN_REGISTRY)
def sync_now() -> Response | tuple[str, int]:
    """Run one sync inside the request, bounded by PORTAL_REGISTRY_SYNC_NOW_SECONDS."""
    actor = current_actor()
    options = registry_options()
    code, kind = 200, "success"
    try:
        result = sync_configured_source(interactive=True, time_limit=options.sync_now_seconds, commit=False)
    except SyncBusy:
        result, message, code, kind = None, "另一个同步正在进行，请稍后刷新本页查看结果。", 409, "warning"
    else:
        if result is None:
            message, code, kind = "未配置登记系统地址（PORTAL_REGISTRY_URL），无法同步。", 422, "error"
        elif not result.ok:
            message, kind = "同步失败：登记系统无法访问或返回了错误，详见下方“最近错误”。", "error"
        else:
            message = (f"同步完成：读取 {result.records_in} 条，新增 {result.created} 条，更新 {result.updated} 条，"
                       f"失败 {result.failed} 条，隔离 {result.quarantined} 条。")
            if result.partial:
                message += f"已达到 {options.sync_now_seconds} 秒的时限，其余记录将由定时同步继续。"
    record(
        "registry.sync_requested", actor=actor, outcome="failure" if kind == "error" else "success",
        object_type="sync_run", object_id=str(result.run_id) if result else "",
        detail={"ok": result.ok, "partial": result.partial, "records_in": result.records_in,
                "created": result.created, "updated": result.updated, "failed": result.failed,
                "quarantined": result.quarantined, "error": result.error[:300]} if result else {"message": message},
    )
    if not _wants_fragment():
        flash(message, kind)
        return redirect(url_for("registry.status"))
    return render_template("registry/_sync_result.html", message=message, kind=kind, **_context()), code


@bp.post("/health")
@require(Permission.ADMIN_REGISTRY)
def health() -> Response | str:
    adapter = adapter_from_app(interactive=True)
    ok = adapter.health() if adapter is not None else None
    if not _wants_fragment():
        flash({None: "未配置登记系统地址。", True: "登记系统连接正常。", False: "无法连接登记系统。"}[ok],
              "success" if ok else "error")
        return redirect(url_for("registry.status"))
    return render_template("registry/_health.html", ok=ok)


def _row_response(row_id: int, action: str) -> Response | tuple[str, int]:
    actor = current_actor()
    error, outcome = "", ""
    try:
        if action == "retry":
            _, outcome = services.retry_quarantined(row_id, actor)
        else:
            services.dismiss_quarantined(row_id, actor, request.form.get("reason", ""))
            outcome = "dismissed"
    except services.QuarantineError as exc:
        error = str(exc)
    row = db.session.get(QuarantinedRecord, row_id)
    if not _wants_fragment():
        flash(error or "已处理。", "error" if error else "success")
        return redirect(url_for("registry.status"))
    if row is None:
        return render_template("errors/_error.html", code=404, message=error), 404
    item = services.quarantine_items([row])[0]
    return render_template("registry/_quarantine_row.html", item=item, error=error, outcome=outcome), (
        422 if error else 200
    )


@bp.post("/quarantine/<int:row_id>/retry")
@require(Permission.ADMIN_REGISTRY)
def quarantine_retry(row_id: int) -> Response | tuple[str, int]:
    return _row_response(row_id, "retry")


@bp.post("/quarantine/<int:row_id>/dismiss")
@require(Permission.ADMIN_REGISTRY)
def quarantine_dismiss(row_id: int) -> Response | tuple[str, int]:
    return _row_response(row_id, "dismiss")
