"""On-demand fetch of one business by serial (what the capture screen calls)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.db import db
from portal.registry.models import Business, QuarantinedRecord, SyncRun
from portal.registry.services import BusinessQuarantined, RegistrySourceError, fetch_business
from portal.registry.simulator import RegistrySimulator, SimulatorServer
from tests.portal.registry.conftest import business_count


def test_fetches_a_serial_not_synced_yet(registry_app, simulator: RegistrySimulator) -> None:
    serial = simulator.add(1)[0]
    business = fetch_business(serial)
    assert business is not None and business.serial == serial and business.id is not None
    db.session.commit()
    run = db.session.scalar(select(SyncRun).where(SyncRun.source == "on_demand"))
    assert run is not None and run.records_created == 1
    # Known now: no second call to the source.
    before = simulator.requests
    assert fetch_business(serial) is business
    assert simulator.requests == before


def test_unknown_serial_is_none(registry_app, simulator: RegistrySimulator) -> None:
    assert fetch_business("E20990101000000") is None
    assert fetch_business("") is None
    assert business_count() == 0


def test_source_down_is_a_clear_error(registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    serial = simulator.add(1)[0]
    sim_server.go_down("refuse")
    with pytest.raises(RegistrySourceError, match="登记系统暂时无法访问"):
        fetch_business(serial)
    assert business_count() == 0


def test_unknown_department_is_quarantined(registry_app, simulator: RegistrySimulator) -> None:
    serial = simulator.add(1)[0]
    simulator.update(serial, department_code="ZZ9")
    with pytest.raises(BusinessQuarantined, match="未知办理部门"):
        fetch_business(serial)
    db.session.commit()
    row = db.session.scalar(select(QuarantinedRecord).where(QuarantinedRecord.serial == serial))
    assert row is not None and row.reason == "未知办理部门：ZZ9" and row.resolved_at is None
    assert db.session.scalar(select(Business).where(Business.serial == serial)) is None


def test_no_source_configured(app, org) -> None:  # type: ignore[no-untyped-def]
    assert app.config["SETTINGS"].registry_url == ""
    assert fetch_business("E1") is None


def test_capture_screen_fetches_on_demand_and_survives_an_outage(
    registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer, client, factory
) -> None:
    from tests.conftest import login

    first, second = simulator.add(2)
    simulator.update(first, department_code="OA")
    simulator.update(second, department_code="OA")
    clerk = factory.user("clerk", department=factory.org.office_a)
    login(client, clerk.username)
    opened = client.post("/capture/open", data={"serial": first})
    assert opened.status_code in (200, 302, 303)
    assert db.session.scalar(select(Business.id).where(Business.serial == first)) is not None

    sim_server.go_down("503")
    failed = client.post("/capture/open", data={"serial": second}, headers={"HX-Request": "true"})
    assert 400 <= failed.status_code < 500
    assert "登记系统" in failed.get_data(as_text=True)
    assert db.session.scalar(select(Business.id).where(Business.serial == second)) is None
