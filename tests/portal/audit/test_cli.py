"""`portal audit verify | checkpoint | export-checkpoints | pg-grants`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update

from portal.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from portal.db import db


@pytest.fixture
def run(app):  # type: ignore[no-untyped-def]
    from portal.audit.cli import register

    register(app.cli)
    runner = app.test_cli_runner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(args=["audit", *args])

    return invoke


def test_verify_passes_and_records_the_result(run, fill):
    fill(5)
    result = run("verify")
    assert result.exit_code == 0, result.output
    assert "audit chain OK: 5 entries" in result.output
    verified = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.verified"))
    assert verified is not None and verified.outcome == "success"
    assert verified.username.startswith("cli:")
    assert json.loads(verified.detail)["entries_checked"] == 5


def test_verify_fails_and_names_the_first_bad_entry(run, fill):
    fill(6)
    db.session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(action="x.y"))
    db.session.commit()
    result = run("verify", "--no-record")
    assert result.exit_code == 1
    assert "FAILED at first bad entry seq 4" in result.output
    assert "entry 4 was altered" in result.output
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "audit.verified")) is None


def test_export_then_verify_against_the_file(run, fill, checkpoint_every, tmp_path):
    checkpoint_every(3)
    fill(7)  # checkpoints 3, 6
    out = tmp_path / "checkpoints.jsonl"
    result = run("export-checkpoints", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 2 checkpoints (last seq 6)" in result.output
    lines = out.read_text().splitlines()
    assert [json.loads(line)["payload"]["seq"] for line in lines] == [3, 6]
    # Incremental export appends only what is new.
    fill(3)  # checkpoint 9
    result = run("export-checkpoints", "--out", str(out), "--since", "6", "--append")
    assert result.exit_code == 0 and "exported 1 checkpoints" in result.output
    assert [json.loads(x)["payload"]["seq"] for x in out.read_text().splitlines()] == [3, 6, 9]

    assert run("verify", "--checkpoints", str(out), "--no-record").exit_code == 0
    # Truncate, rewind the head and drop the database's checkpoints: the file still knows.
    five = db.session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == 5))
    db.session.execute(delete(AuditEntry).where(AuditEntry.seq > 5))
    db.session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.seq > 5))
    db.session.execute(update(AuditHead).values(seq=5, head_hash=five))
    db.session.commit()
    assert run("verify", "--no-record").exit_code == 0
    result = run("verify", "--checkpoints", str(out), "--no-record")
    assert result.exit_code == 1
    assert "first bad entry seq 6" in result.output and "checkpoints.jsonl" in result.output


def test_verify_rejects_a_malformed_checkpoint_file(run, fill, tmp_path):
    fill(1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"v": 1}\nnot json\n')
    result = run("verify", "--checkpoints", str(bad), "--no-record")
    assert result.exit_code != 0
    assert "bad.jsonl:2" in result.output


def test_verify_with_an_explicit_public_key(run, fill, checkpoint_every, tmp_path):
    from gmcrypto.sm2 import PrivateKey
    from portal.keys import key_provider

    checkpoint_every(2)
    fill(3)
    ours = tmp_path / "portal.pub.pem"
    ours.write_bytes(key_provider().public_key.to_pem())
    other = tmp_path / "other.pub.pem"
    other.write_bytes(PrivateKey.generate().public_key().to_pem())
    assert run("verify", "--public-key", str(ours), "--no-record").exit_code == 0
    result = run("verify", "--public-key", str(other), "--no-record")
    assert result.exit_code == 1 and "unknown signer" in result.output


def test_checkpoint_command(run, fill, checkpoint_every):
    checkpoint_every(0)
    fill(2)
    assert "signed checkpoint at seq 2" in run("checkpoint").output
    assert "nothing to sign" in run("checkpoint").output
    assert db.session.scalar(select(AuditCheckpoint.seq)) == 2


def test_pg_grants_prints_an_append_only_script(run):
    result = run("pg-grants", "--role", "portal_app")
    assert result.exit_code == 0
    sql = result.output
    assert 'GRANT SELECT, INSERT ON "public".audit_entry TO "portal_app";' in sql
    assert 'REVOKE ALL ON "public".audit_entry' in sql
    assert "UPDATE (seq, head_hash, updated_at)" in sql
    assert "audit_entry TO" in sql and "UPDATE, DELETE ON \"public\".audit_entry" not in sql
    bad = run("pg-grants", "--role", 'x"; DROP TABLE audit_entry; --')
    assert bad.exit_code != 0 and "invalid PostgreSQL role name" in bad.output
