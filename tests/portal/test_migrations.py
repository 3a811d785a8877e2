"""The migration head builds exactly the schema the models declare (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, create_engine, inspect, text
from sqlalchemy.engine import make_url

import portal.models  # noqa: F401
from portal.db import Base, UTCDateTime
from tests.conftest import make_settings

pytestmark = pytest.mark.db


@pytest.fixture
def empty_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        return
    name = f"{url.database}_mig"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):  # type: ignore[no-untyped-def]
    if isinstance(metadata_type, UTCDateTime):
        return inspected_type.__class__.__name__.upper() not in {"DATETIME", "TIMESTAMP"}
    return None


def test_upgrade_head_matches_models(empty_database: str, tmp_path: Path) -> None:
    from flask_migrate import upgrade

    from portal.app import create_app

    app = create_app(make_settings(tmp_path / "instance", empty_database))
    with app.app_context():
        upgrade()
        from portal.db import db

        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": _compare_type})
            diff = compare_metadata(context, Base.metadata)
            inspector = inspect(conn)
            # Autogenerate skips expression indexes: compare every table's index names too.
            built = {(t, i["name"]) for t in inspector.get_table_names() for i in inspector.get_indexes(t)}
        db.engine.dispose()
    # Alembic cannot compare expression indexes (it reports them removed and added again): they
    # are left to the name check below.
    expression_indexes = {i.name for t in Base.metadata.tables.values() for i in t.indexes
                          if any(not isinstance(e, Column) for e in i.expressions)}
    diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and d[1].name in expression_indexes)]
    assert diff == [], f"models and migrations differ: {diff}"
    declared = {(t.name, i.name) for t in Base.metadata.tables.values() for i in t.indexes}
    assert declared <= built, f"indexes the migrations do not build: {declared - built}"
