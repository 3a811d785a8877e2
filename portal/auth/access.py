"""Permission checks for views, and the audit actor of the current request."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, request
from flask_login import current_user, login_required

from portal.audit.services import Actor, record
from portal.auth.models import User
from portal.auth.roles import Permission

F = TypeVar("F", bound=Callable[..., Any])


def client_ip() -> str:
    # Behind a reverse proxy, configure werkzeug's ProxyFix (docs/operations.md); never trust
    # X-Forwarded-For here directly.
    return request.remote_addr or ""


def current_actor() -> Actor:
    if current_user.is_authenticated:
        return Actor.of_user(current_user, client_ip())
    return Actor("anonymous", ip=client_ip())


def signed_in_user() -> User:
    user = current_user._get_current_object()
    assert isinstance(user, User)
    return user


def require(*permissions: Permission) -> Callable[[F], F]:
    """Allow the view when the user holds any of `permissions`; otherwise 403 and an audit entry."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not any(current_user.can(p) for p in permissions):
                record(
                    "security.forbidden", actor=current_actor(), outcome="denied",
                    detail={"path": request.path, "needs": sorted(p.value for p in permissions)},
                )
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator
