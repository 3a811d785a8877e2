"""The sysadmin's status page: permissions, sync now, health, quarantine retry/dismiss, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.db import db
from portal.jobs.lease import try_acquire
from portal.org.models import DepartmentKind
from portal.org.services import create_department
from portal.registry.models import QuarantinedRecord, SyncRun
from portal.registry.records import BusinessRecord
from portal.registry.services import quarantine
from portal.registry.simulator import RegistrySimulator, SimulatorServer
from tests.conftest import login
from tests.portal.registry.conftest import business_count

HX = {"HX-Request": "true"}
SCRIPT = "<script>alert(1)</script>"


def _sysadmin(client, factory):  # type: ignore[no-untyped-def]
    admin = factory.user("sysadmin", department=factory.org.hq)
    login(client, admin.username)
    return admin


def _audit(action: str) -> list[AuditEntry]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def test_only_the_sysadmin_sees_the_page(client, factory) -> None:
    clerk = factory.user("clerk")
    login(client, clerk.username)
    assert client.get("/registry/").status_code == 403
    client.post("/logout")
    _sysadmin(client, factory)
    page = client.get("/registry/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "登记系统同步" in text and "PORTAL_REGISTRY_URL" in text and "尚未同步过" in text


def test_sync_now_runs_a_bounded_sync_in_the_request_and_is_audited(
    registry_app, simulator: RegistrySimulator, client, factory
) -> None:
    simulator.seed(30)
    admin = _sysadmin(client, factory)
    response = client.post("/registry/sync", headers=HX)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "同步完成" in text and "新增 30 条" in text
    assert 'id="registry-quarantine" hx-swap-oob="true"' in text
    assert business_count() == 30
    run = db.session.scalar(select(SyncRun).where(SyncRun.source == "http"))
    assert run is not None and run.records_created == 30 and run.finished_at is not None
    [entry] = _audit("registry.sync_requested")
    assert entry.user_id == admin.id and entry.outcome == "success" and entry.object_id == str(run.id)
    page = client.get("/registry/").get_data(as_text=True)
    assert 'id="registry-created">30<' in page


def test_sync_now_with_the_source_down_shows_the_error(
    registry_app, simulator: RegistrySimulator, sim_server: SimulatorServer, client, factory
) -> None:
    _sysadmin(client, factory)
    sim_server.go_down("503")
    response = client.post("/registry/sync", headers=HX)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "同步失败" in text and "HTTP 503" in text
    assert [e.outcome for e in _audit("registry.sync_requested")] == ["failure"]
    health = client.post("/registry/health", headers=HX).get_data(as_text=True)
    assert "无法连接" in health
    sim_server.come_back()
    assert "连接正常" in client.post("/registry/health", headers=HX).get_data(as_text=True)


def test_sync_now_when_another_sync_runs_or_nothing_is_configured(
    registry_app, client, factory, app
) -> None:
    _sysadmin(client, factory)
    with db.engine.begin() as conn:
        assert try_acquire(conn, "registry-sync:http", "other-host", timedelta(minutes=5)) is not None
    busy = client.post("/registry/sync", headers=HX)
    assert busy.status_code == 409 and "另一个同步正在进行" in busy.get_data(as_text=True)
    app.config["SETTINGS"] = app.config["SETTINGS"].replace(registry_url="")
    unconfigured = client.post("/registry/sync", headers=HX)
    assert unconfigured.status_code == 422 and "PORTAL_REGISTRY_URL" in unconfigured.get_data(as_text=True)
    plain = client.post("/registry/sync")
    assert plain.status_code == 302


def _quarantined(serial: str, department: str = SCRIPT) -> QuarantinedRecord:
    record = BusinessRecord(
        serial=serial, business_type_code="REGISTER", department_code=department,
        accepted_at=datetime(2026, 11, 2, 1, 30, tzinfo=UTC), owner_name=SCRIPT, plate_number="<b>沪A1</b>",
        owner_id_number="310115199001011234", phone="13800000001",
    )
    row = quarantine(record, f"未知办理部门：{department}")
    db.session.commit()
    return row


def test_quarantine_list_escapes_markup(client, factory) -> None:
    _quarantined("Q0001")
    _sysadmin(client, factory)
    text = client.get("/registry/").get_data(as_text=True)
    assert "Q0001" in text and "1 条待处理" in text
    assert SCRIPT not in text and "<b>沪A1</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;b&gt;沪A1&lt;/b&gt;" in text
    assert "310115199001011234" not in text and "13800000001" not in text


def test_retry_and_dismiss_from_the_page(client, factory) -> None:
    waiting = _quarantined("Q0002", "NEW1")
    unwanted = _quarantined("Q0003", "NEW2")
    admin = _sysadmin(client, factory)
    still = client.post(f"/registry/quarantine/{waiting.id}/retry", headers=HX)
    assert still.status_code == 422 and "仍无法导入" in still.get_data(as_text=True)
    assert f'id="quarantine-{waiting.id}"' in still.get_data(as_text=True)
    create_department(code="NEW1", name="新设登记点", kind=DepartmentKind.OFFICE, parent=factory.org.det1)
    db.session.commit()
    done = client.post(f"/registry/quarantine/{waiting.id}/retry", headers=HX)
    assert done.status_code == 200 and "已导入" in done.get_data(as_text=True)
    assert business_count() == 1
    dismissed = client.post(f"/registry/quarantine/{unwanted.id}/dismiss", headers=HX)
    assert dismissed.status_code == 200 and "已忽略" in dismissed.get_data(as_text=True)
    again = client.post(f"/registry/quarantine/{unwanted.id}/dismiss", headers=HX)
    assert again.status_code == 422 and "已被处理" in again.get_data(as_text=True)
    entries = _audit("registry.quarantine_resolved")
    assert [(e.object_id, e.user_id) for e in entries] == [(str(waiting.id), admin.id), (str(unwanted.id), admin.id)]
    assert "没有待处理的隔离记录" in client.get("/registry/").get_data(as_text=True)
    assert client.post("/registry/quarantine/999999/retry", headers=HX).status_code == 404
