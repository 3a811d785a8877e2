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
    if groups:
        return redirect(url_for(groups[0][1][0].endpoint))
    return render_template("main/home.html")


@bp.route("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    return {"status": "ok"}, 200
