"""Archive lookup and the business archive page."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from portal.archive import services
from portal.audit.services import record
from portal.auth.access import current_actor, require, signed_in_user
from portal.auth.roles import Permission
from portal.capture.completeness import checklist_status
from portal.scoping import scope_for

bp = Blueprint("archive", __name__, url_prefix="/archive")


@bp.route("/business/<int:business_id>")
@require(Permission.LOOKUP)
def business(business_id: int) -> str:
    user = signed_in_user()
    cross = request.args.get("cross") == "1"
    reason = request.args.get("reason", "").strip()
    if cross and not reason:
        cross = False
    scope = scope_for(user, cross_department=cross)
    try:
        item = services.business_in_scope(scope, business_id)
    except services.NotFound:
        record("archive.viewed", actor=current_actor(), outcome="denied", object_type="business",
               object_id=str(business_id), detail={"why": "not in scope"})
        abort(404)
    record("archive.viewed", actor=current_actor(), object_type="business", object_id=str(item.id),
           reason=reason if cross else "", detail={"serial": item.serial, "cross": scope.everywhere})
    return render_template("archive/business.html", business=item, checklist=checklist_status(item))
