"""Session rules of level-3 protection: single session, idle timeout, forced password change."""

from __future__ import annotations

import time

from flask import current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, logout_user
from werkzeug.wrappers import Response

from portal.auth.access import client_ip
from portal.auth.models import User
from portal.auth.services import needs_password_change, sign_out
from portal.db import db
from portal.extensions import login_manager

# Endpoints reachable while a password change is pending.
_PASSWORD_CHANGE_OPEN = {"auth.change_password", "auth.logout", "static"}
POLL_HEADER = "X-Portal-Poll"  # polling requests do not count as user activity


@login_manager.user_loader
def load_user(user_key: str) -> User | None:
    try:
        user_id_text, token = user_key.split(":", 1)
        user = db.session.get(User, int(user_id_text))
    except ValueError:
        return None
    if user is None or not user.active:
        return None
    if not token or token != user.session_token:
        g.session_replaced = True
        return None
    return user


login_manager.login_view = "auth.login"
login_manager.login_message = "请先登录。"
login_manager.login_message_category = "warning"
login_manager.session_protection = "strong"


def _redirect_to_login() -> Response:
    target = url_for("auth.login")
    if request.headers.get("HX-Request"):
        response = Response(status=204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def enforce_session_rules() -> Response | None:
    if request.endpoint == "static":
        return None
    # Touch current_user so the loader runs and can flag a replaced session.
    _ = current_user.is_authenticated
    if getattr(g, "session_replaced", False):
        session.clear()
        flash("您的账号已在其他地方登录，本会话已结束。", "warning")
        return _redirect_to_login()
    if not current_user.is_authenticated:
        return None
    settings = current_app.config["SETTINGS"]
    now = time.time()
    last_seen = session.get("last_seen", now)
    if now - last_seen > settings.session_idle_minutes * 60:
        sign_out(current_user._get_current_object(), ip=client_ip(), why="idle timeout")
        logout_user()
        session.clear()
        flash(f"超过 {settings.session_idle_minutes} 分钟未操作，请重新登录。", "warning")
        return _redirect_to_login()
    if not request.headers.get(POLL_HEADER):
        session["last_seen"] = now
    if request.endpoint not in _PASSWORD_CHANGE_OPEN and needs_password_change(
        current_user._get_current_object(), settings
    ):
        return redirect(url_for("auth.change_password"))
    return None
