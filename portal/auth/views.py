"""Sign-in, sign-out and password change."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.wrappers import Response

from portal.auth import services
from portal.auth.access import client_ip, signed_in_user

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("main.home"))
    settings = current_app.config["SETTINGS"]
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if not username or not password:
            error = "请输入用户名和密码。"
        else:
            result = services.sign_in(username, password, settings, ip=client_ip())
            if result.user is not None:
                session.clear()
                login_user(result.user)
                session["last_seen"] = time.time()
                return redirect(url_for("main.home"))
            error = result.error
    return render_template(
        "auth/login.html", error=error, username=username, demo=settings.demo
    )


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Response:
    services.sign_out(signed_in_user(), ip=client_ip())
    logout_user()
    session.clear()
    flash("您已安全退出。", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> str | Response:
    settings = current_app.config["SETTINGS"]
    user = signed_in_user()
    problems: list[str] = []
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            problems = ["两次输入的新密码不一致。"]
        else:
            problems = services.change_password(
                user, request.form.get("current_password", ""), new, settings, ip=client_ip()
            )
        if not problems:
            flash("密码已修改。", "success")
            return redirect(url_for("main.home"))
    reason = None
    if user.must_change_password:
        reason = "首次登录或密码被重置，请先设置新密码。"
    elif services.password_expired(user, settings):
        reason = f"密码已超过 {settings.password_max_age_days} 天未修改，请设置新密码。"
    return render_template(
        "auth/change_password.html", problems=problems, reason=reason, settings=settings
    )
