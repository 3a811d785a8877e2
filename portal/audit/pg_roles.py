"""PostgreSQL privileges that make the audit log append-only for the application's role.

The schema belongs to an owner role that runs the migrations; the portal connects as a separate
application role. That role reads and writes the ordinary tables, but on the audit tables it may
only SELECT and INSERT (and move the single `audit_head` row forward): it can never UPDATE,
DELETE or TRUNCATE an entry or a checkpoint. `portal audit pg-grants --role NAME` prints the
script; docs/operations-audit.md explains where it fits.
"""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
AUDIT_TABLES = ("audit_entry", "audit_checkpoint", "audit_head")


def _quote(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid PostgreSQL {what} name {name!r}")
    return '"' + name + '"'


def pg_grants_sql(role: str, schema: str = "public") -> str:
    """The idempotent GRANT/REVOKE script for `role` (run it as the schema owner after every
    migration, since new tables need their grants too)."""
    r = _quote(role, "role")
    s = _quote(schema, "schema")
    audit = ", ".join(f"{s}.{t}" for t in AUDIT_TABLES)
    # Identifiers are checked against _IDENTIFIER and quoted above: no injection.
    return f"""\
-- Privileges of the portal's application role {r} in schema {s}.
-- Run as the owner of the schema (the role that runs `portal db upgrade`), after every upgrade.
BEGIN;
GRANT USAGE ON SCHEMA {s} TO {r};
-- Ordinary tables: read and write (no TRUNCATE, no DDL).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};
-- The audit log is append-only for the application.
REVOKE ALL ON {audit} FROM PUBLIC;
REVOKE ALL ON {audit} FROM {r};
GRANT SELECT, INSERT ON {s}.audit_entry TO {r};
GRANT SELECT, INSERT ON {s}.audit_checkpoint TO {r};
-- Appends serialise on the single head row: the role moves it forward, never inserts or deletes.
GRANT SELECT, UPDATE (seq, head_hash, updated_at) ON {s}.audit_head TO {r};
INSERT INTO {s}.audit_head (id, seq, head_hash, updated_at)
    VALUES (1, 0, '{"0" * 64}', now() AT TIME ZONE 'UTC')
    ON CONFLICT (id) DO NOTHING;
COMMIT;
"""  # noqa: S608  (identifiers are validated and quoted above)
