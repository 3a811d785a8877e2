"""The audit administrator's pages: search the log, see and run chain verification."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from portal.app import _wants_fragment
from portal.audit import services
from portal.auth.access import current_actor, require
from portal.auth.roles import Permission

bp = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50
OUTCOME_LABELS = {"success": "成功", "denied": "拒绝", "failure": "失败"}


@bp.route("/")
@require(Permission.AUDIT_READ)
def index() -> str:
    filters = services.AuditFilter.from_args(request.args)
    before = request.args.get("before", type=int)
    page = services.AuditPage([], None)
    if not filters.errors:
        page = services.search_entries(filters, before=before, limit=PAGE_SIZE)
        # Reading the log is itself audited.
        services.record(
            services.SEARCHED_ACTION, actor=current_actor(), object_type="audit_log",
            detail={**filters.as_detail(), **({"before": before} if before else {}),
                    "results": len(page.entries)},
        )
    args = {k: v for k, v in request.args.items() if k != "before" and v}
    context = {
        "filters": filters, "page": page, "args": args, "before": before,
        "outcome_labels": OUTCOME_LABELS,
    }
    if _wants_fragment():
        return render_template("audit/_results.html", **context)
    return render_template("audit/index.html", status=services.chain_status(), **context)


@bp.route("/verify", methods=["POST"])
@require(Permission.AUDIT_READ)
def verify() -> str | Response:
    result = services.run_verification(current_actor())
    if _wants_fragment():
        services.write_pending()  # the status shows this verification's own entry
        return render_template(
            "audit/_status.html", status=services.chain_status(), just_ran=result
        )
    if result.ok:
        flash(f"审计日志校验通过，共校验 {result.entries_checked} 条记录。", "success")
    else:
        flash(f"审计日志校验未通过：第 {result.first_bad_seq} 条记录异常。", "error")
    return redirect(url_for("audit.index"))
