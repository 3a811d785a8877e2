"""Shared fixtures: app, client, database and factories.

The database is SQLite in a temp folder unless TEST_DATABASE_URL names another (CI runs the
suite a second time against PostgreSQL). Tests that touch the database are marked `db`
automatically, so the PostgreSQL pass can select them.
"""

from __future__ import annotations

import contextvars
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from portal.config import Settings

pytest_plugins = ["tests.portal.browser_support"]

PASSWORD = "Correct-Horse-42"
DB_FIXTURES = {"app", "db_session", "org", "client", "factory"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"):
        # PostgreSQL-only tests are not skipped on SQLite: they are not collected there at all.
        kept = [i for i in items if i.get_closest_marker("postgresql") is None]
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    for item in items:
        if DB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    if worker_id == "master":
        return url
    # One database per xdist worker, created beside the given one.
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker_id}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _schema(database_url: str) -> Iterator[None]:
    """Create the schema once per session from the models."""
    from sqlalchemy import create_engine

    import portal.models  # noqa: F401
    from portal.db import Base

    engine = create_engine(database_url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield


def make_settings(instance: Path, database_url: str, **changes: object) -> Settings:
    keys = instance / "keys"
    base = Settings(
        instance_dir=instance,
        database_url=database_url,
        data_dir=instance / "data",
        secret_key="test-secret-" + instance.name,
        master_key_file=keys / "master.key",
        portal_key_file=keys / "portal-sm2.pem",
        data_key_file=keys / "data.key",
        pbkdf2_iterations=1000,
    )
    return base.replace(**changes)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "instance", database_url)


@pytest.fixture
def app(settings: Settings, _schema: None) -> Iterator[Flask]:
    from portal.app import create_app
    from portal.db import Base, db

    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    application = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False)
    application.test_client_class = IsolatedClient
    with application.app_context():
        yield application
        db.session.rollback()
        db.session.remove()
        _truncate_all(db.engine, Base)


def _truncate_all(engine, base) -> None:  # type: ignore[no-untyped-def]
    tables = list(reversed(base.metadata.sorted_tables))
    with engine.begin() as conn:
        # DELETE is much faster than TRUNCATE on PostgreSQL for the few rows a test leaves.
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET session_replication_role = replica"))  # skip FK checks
        else:
            conn.execute(text("PRAGMA foreign_keys=OFF"))
        for table in tables:
            conn.execute(table.delete())
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET session_replication_role = DEFAULT"))
        else:
            conn.execute(text("PRAGMA foreign_keys=ON"))


@pytest.fixture
def db_session(app: Flask):  # type: ignore[no-untyped-def]
    from portal.db import db

    return db.session


class IsolatedClient(FlaskClient):
    """Runs each request in a fresh context, so it gets its own app context, `g` and database
    session, as in production, instead of sharing the test's."""

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Org:
    """Headquarters → two detachments → offices A (det 1), B (det 1) and C (det 2), a window each."""

    hq: object
    det1: object
    det2: object
    office_a: object
    office_b: object
    office_c: object
    window_a: object
    window_b: object
    window_c: object


@pytest.fixture
def org(app: Flask) -> Org:
    from portal.db import db
    from portal.dictionary.seed import seed_dictionary
    from portal.org.models import DepartmentKind as K
    from portal.org.services import create_department, create_window

    seed_dictionary()
    hq = create_department(code="HQ", name="总队", kind=K.HEADQUARTERS, parent=None)
    det1 = create_department(code="D1", name="一支队", kind=K.DETACHMENT, parent=hq)
    det2 = create_department(code="D2", name="二支队", kind=K.DETACHMENT, parent=hq)
    a = create_department(code="OA", name="甲登记点", kind=K.OFFICE, parent=det1)
    b = create_department(code="OB", name="乙登记点", kind=K.OFFICE, parent=det1)
    c = create_department(code="OC", name="丙登记点", kind=K.OFFICE, parent=det2)
    org = Org(hq, det1, det2, a, b, c,
              create_window(department=a, code="W1", name="1号窗口"),
              create_window(department=b, code="W1", name="1号窗口"),
              create_window(department=c, code="W1", name="1号窗口"))
    db.session.commit()
    return org


class Factory:
    """Builds users and businesses with sensible defaults."""

    _seq = itertools.count(1)

    def __init__(self, app: Flask, org: Org) -> None:
        self.app, self.org = app, org

    def user(self, role: str = "clerk", department: object | None = None, *, username: str | None = None,
             password: str = PASSWORD, must_change: bool = False, window: object | None = None):  # type: ignore[no-untyped-def]
        from portal.auth.roles import Role
        from portal.auth.services import create_user
        from portal.db import db

        user = create_user(
            username=username or f"{role}{next(self._seq)}", full_name=f"测试{role}",
            department=department or self.org.office_a, roles=[Role(role)], password=password,
            settings=self.app.config["SETTINGS"], badge_number=f"B{next(self._seq):05d}",
            window=window, must_change=must_change,
        )
        db.session.commit()
        return user

    def business(self, department: object | None = None, *, serial: str | None = None,
                 type_code: str = "REGISTER", **fields: object):  # type: ignore[no-untyped-def]
        from portal.db import db
        from portal.registry.records import BusinessRecord
        from portal.registry.services import apply_record

        dept = department or self.org.office_a
        values: dict[str, object] = {
            "serial": serial or f"T{next(self._seq):010d}",
            "business_type_code": type_code,
            "department_code": dept.code,  # type: ignore[attr-defined]
            "accepted_at": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
            "plate_number": "沪A12345", "owner_name": "张三",
            "owner_id_number": "310115199001011234", "phone": "13812345678",
        }
        values.update(fields)
        _, business = apply_record(BusinessRecord(**values))  # type: ignore[arg-type]
        db.session.commit()
        return business


@pytest.fixture
def factory(app: Flask, org: Org) -> Factory:
    return Factory(app, org)


def login(client: FlaskClient, username: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/login", data={"username": username, "password": password})
