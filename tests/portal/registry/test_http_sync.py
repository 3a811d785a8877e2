"""The HTTP client and the incremental sync against the simulator served on a loopback port."""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from sqlalchemy import select

from portal.db import db
from portal.protect import ID_NUMBER, PHONE, reveal
from portal.registry.models import Business, BusinessStatus, QuarantinedRecord, SyncRun, SyncState
from portal.registry.records import parse_time
from portal.registry.simulator import RegistrySimulator, SimulatorServer
from portal.registry.sync import run_sync
from tests.conftest import login
from tests.portal.registry.conftest import OVERLAP, business_count, make_adapter


def _db_statuses() -> dict[str, str]:
    return {serial: status.value for serial, status in db.session.execute(select(Business.serial, Business.status))}


def _source_statuses(simulator: RegistrySimulator) -> dict[str, str]:
    return {r["serial"]: r["status"] for r in simulator.records()}


def test_initial_incremental_outage_and_recovery(
    registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer, client, factory
) -> None:
    started = time.monotonic()
    simulator.seed(10_000)
    adapter = make_adapter(sim_server)

    # Initial sync: every business once.
    first = run_sync(adapter, overlap=OVERLAP)
    assert first.ok, first.error
    counts = (first.records_in, first.created, first.updated, first.failed, first.quarantined)
    assert counts == (10_000, 10_000, 0, 0, 0)
    assert business_count() == 10_000
    assert _db_statuses() == _source_statuses(simulator)
    withdrawn_at_source = Counter(_source_statuses(simulator).values())["withdrawn"]
    assert business_count(BusinessStatus.WITHDRAWN) == withdrawn_at_source
    state = db.session.get(SyncState, "http")
    assert state is not None and state.watermark == first.watermark_after and state.last_success_at is not None

    # Every field arrived; the personal data only encrypted.
    source = simulator.records()[1234]
    business = db.session.scalar(select(Business).where(Business.serial == source["serial"]))
    assert business is not None
    assert business.plate_number == source["plate_number"] and business.owner_name == source["owner_name"]
    assert business.department.code == source["department_code"]
    assert business.accepted_at == parse_time(source["accepted_at"])
    assert reveal(ID_NUMBER, business.serial, business.owner_id_cipher) == source["owner_id_number"]
    assert reveal(PHONE, business.serial, business.phone_cipher) == source["phone"]
    assert business.owner_id_masked.startswith(source["owner_id_number"][:3]) and "*" in business.owner_id_masked

    # Nothing changed: a second run reads nothing new and changes nothing.
    again = run_sync(adapter, overlap=OVERLAP)
    assert again.ok and (again.created, again.updated, again.failed) == (0, 0, 0)

    # Incremental: new businesses, finished and withdrawn ones, an edited name with markup.
    new = simulator.add(300)
    finished, withdrawn = simulator.advance(finish=200, withdraw=20)
    old_serial = next(s for s in _source_statuses(simulator) if s not in set(new) | set(finished) | set(withdrawn))
    simulator.update(old_serial, owner_name="<script>alert(1)</script>王五")
    changed_existing = (set(finished) | set(withdrawn) | {old_serial}) - set(new)
    second = run_sync(adapter, overlap=OVERLAP)
    assert second.ok, second.error
    assert second.created == 300
    assert second.updated == len(changed_existing)
    assert second.records_in == 300 + len(changed_existing)
    assert business_count() == 10_300
    assert _db_statuses() == _source_statuses(simulator)
    assert business_count(BusinessStatus.WITHDRAWN) == withdrawn_at_source + len(withdrawn)
    stored = db.session.scalar(select(Business.owner_name).where(Business.serial == old_serial))
    assert stored == "<script>alert(1)</script>王五"  # stored as-is, escaped by templates

    # Outage 1: the source answers 503. The run fails cleanly and keeps the watermark.
    watermark = db.session.get(SyncState, "http").watermark
    sim_server.go_down("503")
    down = run_sync(adapter, overlap=OVERLAP)
    assert not down.ok and "HTTP 503" in down.error
    assert down.records_in == 0 and business_count() == 10_300
    db.session.expire_all()
    state = db.session.get(SyncState, "http")
    assert state.watermark == watermark and "HTTP 503" in state.last_error and state.last_error_at is not None
    run = db.session.get(SyncRun, down.run_id)
    assert run.finished_at is not None and "HTTP 503" in run.error

    # Outage 2: connections refused. The source keeps changing meanwhile.
    sim_server.go_down("refuse")
    refused = run_sync(adapter, overlap=OVERLAP)
    assert not refused.ok and "ConnectionError" in refused.error
    later = simulator.add(50)
    finished_later, _ = simulator.advance(finish=30)

    # The portal keeps working and the status page shows the error.
    admin = factory.user("sysadmin", department=factory.org.hq)
    login(client, admin.username)
    assert client.get("/", follow_redirects=True).status_code == 200
    page = client.get("/registry/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "ConnectionError" in text and "失败" in text

    # Recovery: exactly the changes made during the outage, nothing twice.
    sim_server.come_back()
    recovered = run_sync(adapter, overlap=OVERLAP)
    assert recovered.ok, recovered.error
    assert recovered.created == 50
    assert recovered.updated == len(set(finished_later) - set(later))
    assert business_count() == 10_350
    assert _db_statuses() == _source_statuses(simulator)
    db.session.expire_all()
    state = db.session.get(SyncState, "http")
    assert state.last_success_at > state.last_error_at
    runs = db.session.scalars(select(SyncRun).where(SyncRun.source == "http").order_by(SyncRun.id)).all()
    assert [bool(r.error) for r in runs] == [False, False, False, True, True, False]
    assert time.monotonic() - started < 90


def test_malformed_records_are_skipped_and_unknown_codes_quarantined(
    registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.seed(40)
    good = simulator.add(4)
    simulator.put_raw({"serial": "BAD-DATE", "business_type_code": "REGISTER", "department_code": "OA",
                       "accepted_at": "yesterday", "updated_at": "2026-11-01T10:00:00+08:00"})
    simulator.put_raw({"business_type_code": "REGISTER", "department_code": "OA"}, serial="NO-SERIAL")
    simulator.put_raw({"serial": "BAD-TYPE", "business_type_code": 7, "department_code": "OA",
                       "accepted_at": "2026-11-01T10:00:00+08:00"})
    simulator.update(good[0], business_type_code="NEWTYPE")
    simulator.update(good[1], department_code="<script>alert(1)</script>")
    with caplog.at_level(logging.WARNING, logger="portal.registry.sync"):
        result = run_sync(make_adapter(sim_server), overlap=OVERLAP)
    assert result.ok, result.error
    assert (result.records_in, result.created, result.failed, result.quarantined) == (47, 42, 3, 2)
    assert "BAD-DATE" in caplog.text and "accepted_at" in caplog.text and "BAD-TYPE" in caplog.text
    assert business_count() == 42
    rows = {q.serial: q for q in db.session.scalars(select(QuarantinedRecord))}
    assert set(rows) == {good[0], good[1]}
    assert rows[good[0]].reason == "未知业务类型：NEWTYPE"
    assert rows[good[0]].sync_run_id == result.run_id
    owner_id = simulator.record(good[0])["owner_id_number"]
    assert owner_id not in rows[good[0]].payload  # personal data sealed, not in clear

    # Re-reading the same window (overlap) neither duplicates businesses nor quarantine rows.
    again = run_sync(make_adapter(sim_server), overlap=OVERLAP, full=True)
    assert again.ok and again.created == 0 and again.updated == 0
    assert business_count() == 42
    assert db.session.scalar(select(QuarantinedRecord.id).where(QuarantinedRecord.serial == good[0])) == \
        rows[good[0]].id
    assert len(db.session.scalars(select(QuarantinedRecord)).all()) == 2

    # The source fixes the type: the next sync applies it and resolves the quarantine row.
    simulator.update(good[0], business_type_code="TRANSFER")
    fixed = run_sync(make_adapter(sim_server), overlap=OVERLAP)
    assert fixed.created == 1
    db.session.expire_all()
    assert db.session.get(QuarantinedRecord, rows[good[0]].id).resolved_at is not None
    assert db.session.get(QuarantinedRecord, rows[good[1]].id).resolved_at is None


def test_a_record_updated_at_the_source_is_updated_never_duplicated(
    registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer
) -> None:
    serials = simulator.add(5)
    adapter = make_adapter(sim_server, page_size=2)  # several pages
    assert run_sync(adapter, overlap=OVERLAP).created == 5
    simulator.update(serials[2], plate_number="沪Z99999", department_code="OC")
    simulator.set_status(serials[3], BusinessStatus.WITHDRAWN)
    result = run_sync(adapter, overlap=OVERLAP)
    assert (result.created, result.updated) == (0, 2)
    business = db.session.scalar(select(Business).where(Business.serial == serials[2]))
    assert business.plate_number == "沪Z99999" and business.department.code == "OC"
    status = db.session.scalar(select(Business.status).where(Business.serial == serials[3]))
    assert status == BusinessStatus.WITHDRAWN
    assert business_count() == 5


def test_cli_sync_exit_status(registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    simulator.seed(12)
    runner = registry_app.test_cli_runner()
    ok = runner.invoke(args=["registry", "sync"])
    assert ok.exit_code == 0, ok.output
    assert "sync OK: 12 records in, 12 created" in ok.output
    sim_server.go_down("503")
    failed = runner.invoke(args=["registry", "sync"])
    assert failed.exit_code == 1
    assert "sync FAILED" in failed.output and "HTTP 503" in failed.output
    db.session.expire_all()
    assert business_count() == 12
