"""Fixtures of the administration tests: one signed-in client per role, audit look-ups."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import Factory, login

HX = {"HX-Request": "true"}  # a plain (not boosted) HTMX request: the view answers a fragment


@pytest.fixture
def sign_in(app: Flask, factory: Factory) -> Callable[..., FlaskClient]:
    """sign_in("sysadmin") → a client signed in as a new user with that role."""

    def _sign_in(role: str, **kwargs: object) -> FlaskClient:
        if role in {"sysadmin", "secadmin", "auditadmin"}:
            kwargs.setdefault("department", factory.org.hq)
        user = factory.user(role, **kwargs)  # type: ignore[arg-type]
        client = app.test_client()
        response = login(client, user.username)
        assert response.status_code == 302, response.get_data(as_text=True)
        client.user = user  # type: ignore[attr-defined]
        return client

    return _sign_in


@pytest.fixture
def sysadmin(sign_in: Callable[..., FlaskClient]) -> FlaskClient:
    return sign_in("sysadmin")


@pytest.fixture
def secadmin(sign_in: Callable[..., FlaskClient]) -> FlaskClient:
    return sign_in("secadmin")


def audit_entries(action: str, outcome: str | None = None) -> list:  # type: ignore[type-arg]
    from portal.audit.models import AuditEntry
    from portal.db import db

    stmt = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
    if outcome is not None:
        stmt = stmt.where(AuditEntry.outcome == outcome)
    return list(db.session.scalars(stmt))


def text(response) -> str:  # type: ignore[no-untyped-def]
    return response.get_data(as_text=True)
