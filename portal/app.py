"""The application factory."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal.config import Settings
from portal.extensions import csrf, db, htmx, login_manager, migrate
from portal.paths import resource_dir

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the portal. `settings` defaults to the environment; `overrides` are Flask config."""
    settings = settings or Settings.from_env()
    app = Flask(
        "portal",
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
        instance_path=str(settings.instance_dir),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="portal_session",
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the (idle-limited) session
        WTF_CSRF_HEADERS=["X-CSRFToken"],
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        SETTINGS=settings,
    )
    app.config.update(overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    migrate.init_app(
        app, db, directory=str(resource_dir("migrations")),
        render_as_batch=True, compare_type=True, render_item=_render_migration_item,
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)

    import portal.models  # noqa: F401  (complete metadata)

    _register_blueprints(app)
    _register_request_hooks(app)
    _register_error_pages(app)
    _register_template_helpers(app)

    from portal.cli import register_commands

    register_commands(app)
    return app


def _render_migration_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our column types as plain SQLAlchemy types so migrations never import the app."""
    from portal.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def _register_blueprints(app: Flask) -> None:
    from portal.admin.views import bp as admin_bp
    from portal.agents.api import bp as agent_api_bp
    from portal.agents.views import bp as agents_bp
    from portal.archive.views import bp as archive_bp
    from portal.audit.views import bp as audit_bp
    from portal.auth.views import bp as auth_bp
    from portal.capture.views import bp as capture_bp
    from portal.main.views import bp as main_bp
    from portal.registry.views import bp as registry_bp
    from portal.stats.views import bp as stats_bp
    from portal.warnings.views import bp as warnings_bp

    for bp in (main_bp, auth_bp, admin_bp, audit_bp, archive_bp, agents_bp, agent_api_bp, warnings_bp,
               stats_bp, capture_bp, registry_bp):
        app.register_blueprint(bp)


def _register_request_hooks(app: Flask) -> None:
    from portal.auth.session import enforce_session_rules

    app.before_request(enforce_session_rules)

    @app.after_request
    def commit_and_harden(response: Response) -> Response:
        # One transaction per request: what the view flushed commits when it answered below 500.
        if response.status_code < 500:
            db.session.commit()
        else:
            db.session.rollback()
        _security_headers(response)
        return response


def _security_headers(response: Response) -> None:
    h = response.headers
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    )
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if response.mimetype == "text/html":
        h.setdefault("Cache-Control", "no-store")
    h.add("Vary", "HX-Request")


def _register_error_pages(app: Flask) -> None:
    messages = {
        400: "请求无效。",
        403: "您没有权限执行此操作。",
        404: "未找到该页面或记录。",
        405: "不支持该请求方式。",
        413: "上传的文件过大。",
        500: "系统内部错误，请稍后重试或联系管理员。",
    }

    def render_error(code: int, message: str | None = None) -> tuple[str, int]:
        db.session.rollback() if code >= 500 else None
        template = "errors/_error.html" if _wants_fragment() else "errors/error.html"
        return render_template(template, code=code, message=message or messages[code]), code

    for code in messages:
        app.register_error_handler(code, lambda e, c=code: render_error(c))

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError) -> tuple[str, int]:
        from portal.audit.services import record

        record("security.csrf_rejected", outcome="denied", detail={"path": request.path})
        return render_error(400, "页面已过期或安全令牌无效，请刷新页面后重试。")


def _wants_fragment() -> bool:
    """HTMX requests that are not boosted navigations and not history restores get fragments."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def _register_template_helpers(app: Flask) -> None:
    from portal.auth.roles import Permission, Role
    from portal.main.navigation import navigation_for

    app.jinja_env.globals.update(
        Permission=Permission, Role=Role, navigation_for=navigation_for, wants_fragment=_wants_fragment
    )

    @app.context_processor
    def inject_globals() -> dict[str, Any]:
        return {"request_id": getattr(g, "request_id", "")}
