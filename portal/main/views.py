"""The home page: each role lands on its first navigation entry."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import login_required
from werkzeug.wrappers import Response

from portal.auth.access import signed_in_user
from portal.main.navigation import navigation_for

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def home() -> str | Response:
    groups = navigation_for(signed_in_user())
    endpoints = [item.endpoint for _, items in groups for item in items]
    if "stats.index" in endpoints:  # supervisors start on their dashboard
        return redirect(url_for("stats.index"))
    if endpoints:
        return redirect(url_for(endpoints[0]))
    return render_template("main/home.html")


@bp.route("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    return {"status": "ok"}, 200
