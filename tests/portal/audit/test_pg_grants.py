"""On PostgreSQL the application's role may append to the audit log but never rewrite it.

PostgreSQL only (it runs in the PostgreSQL pass: TEST_DATABASE_URL=postgresql+psycopg://…).
The test creates a throwaway login role, applies `pg_grants_sql` as the schema owner, connects
as that role and runs the portal's own `record()` through it, then shows that UPDATE, DELETE
and TRUNCATE of audit rows are refused.
"""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import create_engine, exc, make_url, select, text

from portal.audit.pg_roles import pg_grants_sql

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pg_role(app):  # type: ignore[no-untyped-def]
    from portal.db import db

    assert db.engine.dialect.name == "postgresql"
    role = f"audit_app_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
    with db.engine.connect() as conn:
        conn.exec_driver_sql(pg_grants_sql(role))
        conn.commit()
    try:
        yield role, password
    finally:
        db.session.remove()
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))


def _engine_as(role: str, password: str, admin_url: str):  # type: ignore[no-untyped-def]
    """An engine that logs in as `role`: over the admin URL's socket/host with the password, else
    over TCP on localhost (a socket with peer authentication refuses other role names)."""
    url = make_url(admin_url).set(username=role, password=password)
    candidates = [url]
    if url.query.get("host") or not url.host:
        candidates.append(url.set(host="127.0.0.1", query={}))
    last: Exception | None = None
    for candidate in candidates:
        engine = create_engine(candidate)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("select current_user")).scalar() == role
            return engine
        except exc.OperationalError as error:
            last = error
            engine.dispose()
    pytest.fail(f"cannot log in as the test role {role}: {last}")


def test_the_application_role_can_only_append(app, pg_role, database_url):
    from portal.app import create_app
    from portal.audit.services import record, verify_chain
    from portal.db import db

    role, password = pg_role
    engine = _engine_as(role, password, database_url)
    role_url = engine.url.render_as_string(hide_password=False)
    engine.dispose()

    # The portal itself, connected as the role, appends entries and checkpoints.
    settings = app.config["SETTINGS"].replace(database_url=role_url, audit_checkpoint_every=2)
    as_role = create_app(settings, TESTING=True)
    with as_role.app_context():
        assert db.session.execute(text("select current_user")).scalar() == role
        for i in range(3):
            record("test.as_app_role", detail={"i": i})
        db.session.commit()
        assert verify_chain().ok
        db.session.remove()
        db.engine.dispose()

    role_engine = create_engine(role_url)
    refused = {
        "UPDATE audit_entry SET reason = 'x' WHERE seq = 1",
        "DELETE FROM audit_entry WHERE seq = 3",
        "TRUNCATE audit_entry",
        "UPDATE audit_checkpoint SET head_hash = 'x'",
        "DELETE FROM audit_checkpoint",
        "DELETE FROM audit_head",
        "INSERT INTO audit_head (id, seq, head_hash, updated_at) VALUES (2, 0, 'x', now())",
        "UPDATE audit_head SET id = 5",
    }
    try:
        for statement in sorted(refused):
            with role_engine.connect() as conn, pytest.raises(exc.ProgrammingError) as info:
                conn.execute(text(statement))
            assert "permission denied" in str(info.value), statement
        with role_engine.connect() as conn:  # reading is allowed
            assert conn.execute(text("SELECT count(*) FROM audit_entry")).scalar() == 3
    finally:
        role_engine.dispose()

    from portal.audit.models import AuditCheckpoint, AuditEntry

    db.session.rollback()
    assert db.session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all() == [1, 2, 3]
    assert db.session.scalars(select(AuditCheckpoint.seq)).all() == [2]
