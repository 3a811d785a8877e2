"""The data dictionary: checklist matrix cells saved via HTMX, thresholds, materials."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.capture.completeness import apply_checklist, refresh_completeness
from portal.db import db, utcnow
from portal.dictionary.models import BusinessType, ChecklistItem, Material, Requirement
from portal.registry.changes import businesses_changed
from portal.registry.models import CaptureState
from portal.stats.models import CaptureSummary
from portal.warnings.models import WarningClosure
from portal.warnings.services import open_warning
from tests.portal.admin.conftest import HX, audit_entries, text
from tests.portal.stats.helpers import capture, required_materials
from tests.portal.warnings.test_evaluation import set_rule, warnings_of


def _type(code: str) -> BusinessType:
    return db.session.scalars(select(BusinessType).where(BusinessType.code == code)).one()


def _material(code: str) -> Material:
    return db.session.scalars(select(Material).where(Material.code == code)).one()


def _cell(bt: BusinessType, m: Material) -> ChecklistItem | None:
    return db.session.scalar(select(ChecklistItem).where(
        ChecklistItem.business_type_id == bt.id, ChecklistItem.material_id == m.id))


def test_matrix_shows_every_type_and_material(sysadmin, org):
    body = text(sysadmin.get("/admin/dictionary"))
    for name in ("注册登记", "转移登记", "锁定/解锁", "所有人身份证明", "购车发票", "失窃报案回执"):
        assert name in body
    register, invoice = _type("REGISTER"), _material("PURCHASE_INVOICE")
    assert f"/admin/dictionary/checklist/{register.id}/{invoice.id}" in body
    types = db.session.scalar(select(db.func.count()).select_from(BusinessType))
    materials = db.session.scalar(select(db.func.count()).select_from(Material))
    assert body.count('name="requirement"') == types * materials


def test_checklist_cell_save_changes_the_matrix_and_is_audited(sysadmin, org):
    theft, invoice = _type("THEFT"), _material("PURCHASE_INVOICE")
    assert _cell(theft, invoice) is None
    url = f"/admin/dictionary/checklist/{theft.id}/{invoice.id}"

    response = sysadmin.post(url, data={"requirement": "optional"}, headers=HX)
    assert response.status_code == 200
    body = text(response)
    assert body.lstrip().startswith("<td") and "已保存" in body and "req-optional" in body
    assert '<option value="optional" selected>' in body
    db.session.expire_all()
    assert _cell(theft, invoice).requirement == Requirement.OPTIONAL
    entry = audit_entries("admin.checklist_changed")[-1]
    assert entry.username == sysadmin.user.username
    assert '"after":"optional"' in entry.detail and '"before":null' in entry.detail
    assert '"material":"PURCHASE_INVOICE"' in entry.detail

    response = sysadmin.post(url, data={"requirement": "required"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert _cell(theft, invoice).requirement == Requirement.REQUIRED
    assert "req-required" in text(sysadmin.get("/admin/dictionary"))

    response = sysadmin.post(url, data={"requirement": ""}, headers=HX)
    assert response.status_code == 200 and "req-none" in text(response)
    db.session.expire_all()
    assert _cell(theft, invoice) is None
    assert len(audit_entries("admin.checklist_changed")) == 3
    assert len(_type("THEFT").checklist) == 3  # the seeded three are untouched


def test_unchanged_cell_is_not_audited_again(sysadmin, org):
    register, id_proof = _type("REGISTER"), _material("ID_PROOF")
    response = sysadmin.post(f"/admin/dictionary/checklist/{register.id}/{id_proof.id}",
                             data={"requirement": "required"}, headers=HX)
    assert response.status_code == 200
    assert audit_entries("admin.checklist_changed") == []


def test_checklist_cell_rejects_bad_values_and_ids(sysadmin, org):
    register, id_proof = _type("REGISTER"), _material("ID_PROOF")
    response = sysadmin.post(f"/admin/dictionary/checklist/{register.id}/{id_proof.id}",
                             data={"requirement": "sometimes"}, headers=HX)
    assert response.status_code == 422
    assert "材料要求无效" in text(response) and "req-required" in text(response)
    assert sysadmin.post(f"/admin/dictionary/checklist/99999/{id_proof.id}",
                         data={"requirement": "required"}, headers=HX).status_code == 404
    assert sysadmin.post(f"/admin/dictionary/checklist/{register.id}/99999",
                         data={"requirement": "required"}, headers=HX).status_code == 404


def test_new_type_and_material_appear_in_the_matrix(sysadmin, org):
    response = sysadmin.post("/admin/dictionary/types", data={"code": "EXTEND", "name": "延期登记"}, headers=HX)
    assert response.status_code == 200 and "已新增业务类型“延期登记”" in text(response)
    response = sysadmin.post("/admin/dictionary/materials", data={"code": "EXT_FORM", "name": "延期申请书"},
                             headers=HX)
    assert response.status_code == 200 and "已新增材料“延期申请书”" in text(response)
    assert audit_entries("admin.business_type_created") and audit_entries("admin.material_created")
    extend, form = _type("EXTEND"), _material("EXT_FORM")
    assert f"/admin/dictionary/checklist/{extend.id}/{form.id}" in text(sysadmin.get("/admin/dictionary"))
    assert sysadmin.post(f"/admin/dictionary/checklist/{extend.id}/{form.id}",
                         data={"requirement": "required"}, headers=HX).status_code == 200
    db.session.expire_all()
    assert [i.material.code for i in _type("EXTEND").checklist] == ["EXT_FORM"]


def test_create_refusals(sysadmin, org):
    for path, data, message in [
        ("/admin/dictionary/types", {"code": "register", "name": "重复"}, "已存在"),
        ("/admin/dictionary/types", {"code": "BAD CODE", "name": "空格"}, "编码只能包含"),
        ("/admin/dictionary/types", {"code": "OK1", "name": ""}, "名称不能为空"),
        ("/admin/dictionary/materials", {"code": "ID_PROOF", "name": "重复"}, "已存在"),
    ]:
        response = sysadmin.post(path, data=data, headers=HX)
        assert response.status_code == 422, data
        assert message in text(response)


def _thresholds(client, bt, **changes):  # type: ignore[no-untyped-def]
    data = {"name": bt.name, "active": "1", "warning_trigger": "finished",
            "reminder": "60", "warning": "240", "escalation": "1440"}
    data.update(changes)
    return client.post(f"/admin/dictionary/types/{bt.id}", data=data, headers=HX)


def test_thresholds_are_validated(sysadmin, org):
    bt = _type("TRANSFER")
    for changes, message in [
        ({"reminder": "240", "warning": "240"}, "提醒 &lt; 预警 &lt; 升级"),
        ({"warning": "2000"}, "提醒 &lt; 预警 &lt; 升级"),
        ({"reminder": "0"}, "至少 1 分钟"),
        ({"reminder": "-5"}, "至少 1 分钟"),
        ({"escalation": "abc"}, "整数分钟"),
        ({"escalation": ""}, "整数分钟"),
        ({"escalation": "99999999"}, "不能超过"),
        ({"warning_trigger": "whenever"}, "预警起算时间无效"),
        ({"name": ""}, "名称不能为空"),
    ]:
        response = _thresholds(sysadmin, bt, **changes)
        assert response.status_code == 422, changes
        body = text(response)
        assert message in body, (changes, body)
        assert body.lstrip().startswith("<tr") and 'name="reminder"' in body  # still the edit row
    db.session.expire_all()
    assert (bt.reminder_after_minutes, bt.warning_after_minutes, bt.escalation_after_minutes) == (60, 240, 1440)
    assert audit_entries("admin.business_type_updated") == []


def test_thresholds_and_trigger_are_saved_and_audited(sysadmin, org):
    bt = _type("TRANSFER")
    response = _thresholds(sysadmin, bt, reminder="30", warning="120", escalation="2880",
                           warning_trigger="accepted")
    assert response.status_code == 200
    body = text(response)
    assert "已保存" in body and "2 天" in body and "受理时间" in body
    db.session.expire_all()
    assert (bt.reminder_after_minutes, bt.warning_after_minutes, bt.escalation_after_minutes) == (30, 120, 2880)
    assert bt.warning_trigger == "accepted"
    entry = audit_entries("admin.business_type_updated")[-1]
    assert '"escalation":2880' in entry.detail and '"escalation":1440' in entry.detail


def test_deactivate_business_type(sysadmin, org):
    bt = _type("LOCK")
    data = {"name": bt.name, "warning_trigger": "finished", "reminder": "60", "warning": "240",
            "escalation": "1440"}  # no "active": the checkbox is unticked
    response = sysadmin.post(f"/admin/dictionary/types/{bt.id}", data=data, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert bt.active is False


def test_material_edit_and_dpi_range(sysadmin, org):
    m = _material("VEHICLE_PHOTO")
    url = f"/admin/dictionary/materials/{m.id}"
    assert 'name="color_mode"' in text(sysadmin.get(f"{url}/edit", headers=HX))
    for dpi in ("99", "601", "high", ""):
        response = sysadmin.post(url, data={"name": m.name, "color_mode": "color", "dpi": dpi, "active": "1"},
                                 headers=HX)
        assert response.status_code == 422 and "100–600" in text(response)
    response = sysadmin.post(url, data={"name": m.name, "color_mode": "rainbow", "dpi": "300", "active": "1"},
                             headers=HX)
    assert response.status_code == 422 and "色彩模式无效" in text(response)
    response = sysadmin.post(url, data={"name": "车辆外观照片", "color_mode": "gray", "dpi": "300"}, headers=HX)
    assert response.status_code == 200 and "车辆外观照片" in text(response)
    db.session.expire_all()
    assert (m.name, m.color_mode.value, m.dpi, m.active) == ("车辆外观照片", "gray", 300, False)
    assert audit_entries("admin.material_updated")


def test_edit_rows_and_cancel(sysadmin, org):
    bt, m = _type("REGISTER"), _material("ID_PROOF")
    for path in (f"/admin/dictionary/types/{bt.id}/edit", f"/admin/dictionary/types/{bt.id}/row",
                 f"/admin/dictionary/materials/{m.id}/edit", f"/admin/dictionary/materials/{m.id}/row"):
        response = sysadmin.get(path, headers=HX)
        assert response.status_code == 200 and text(response).lstrip().startswith("<tr"), path
    # Without HTMX a row URL leads back to the page.
    response = sysadmin.get(f"/admin/dictionary/types/{bt.id}/edit")
    assert response.status_code == 302 and "tab=types" in response.headers["Location"]
    assert sysadmin.get("/admin/dictionary/types/99999/edit", headers=HX).status_code == 404


def test_a_change_of_required_materials_recomputes_incomplete_businesses(sysadmin, factory, org):
    """Warnings and statistics follow at once; complete businesses keep their completeness."""
    lock = set_rule("LOCK", t1=60, t2=240, t3=1440)
    accepted = utcnow() - timedelta(days=3)
    partial, untouched, done = (factory.business(serial=s, type_code="LOCK", accepted_at=accepted)
                                for s in ("LOCK-P", "LOCK-N", "LOCK-C"))
    id_proof, request_form = required_materials(partial)
    capture(partial, captured_at=accepted, materials=[id_proof])
    capture(done, captured_at=accepted)
    businesses_changed([partial.id, done.id])
    db.session.commit()
    assert open_warning(partial.id) is not None and open_warning(untouched.id) is not None

    # The request form becomes optional: the partial business is complete now, its warning closes.
    response = sysadmin.post(f"/admin/dictionary/checklist/{lock.id}/{request_form.id}",
                             data={"requirement": "optional"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert (partial.capture_state, partial.required_count, partial.required_captured) == (
        CaptureState.COMPLETE, 1, 1)
    assert partial.completed_at == accepted  # complete since its last page, not since the change
    [closed] = warnings_of(partial)
    assert closed.closure == WarningClosure.CAPTURED
    assert db.session.get(CaptureSummary, partial.id).complete is True
    assert "已重算 2 笔未完成业务的完整性" in text(response)
    assert (untouched.capture_state, untouched.required_count) == (CaptureState.NONE, 1)
    assert open_warning(untouched.id) is not None
    assert '"businesses_recomputed":2' in audit_entries("admin.checklist_changed")[-1].detail

    # A new required material: incomplete businesses need it, complete ones stay complete.
    photo = _material("VEHICLE_PHOTO")
    response = sysadmin.post(f"/admin/dictionary/checklist/{lock.id}/{photo.id}",
                             data={"requirement": "required"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert (untouched.required_count, untouched.required_captured) == (2, 0)
    assert (partial.capture_state, done.capture_state) == (CaptureState.COMPLETE, CaptureState.COMPLETE)
    assert open_warning(partial.id) is None and open_warning(done.id) is None
    assert '"businesses_recomputed":1' in audit_entries("admin.checklist_changed")[-1].detail

    # Optional ↔ conditional does not touch completeness.
    response = sysadmin.post(f"/admin/dictionary/checklist/{lock.id}/{request_form.id}",
                             data={"requirement": "conditional"}, headers=HX)
    assert response.status_code == 200
    assert "businesses_recomputed" not in audit_entries("admin.checklist_changed")[-1].detail


def test_a_material_leaving_the_checklist_no_longer_counts_as_pages(sysadmin, factory, org):
    """As `refresh_completeness` computes it: pages of materials outside the checklist do not count."""
    lock = _type("LOCK")
    business = factory.business(serial="LOCK-X", type_code="LOCK", accepted_at=utcnow() - timedelta(days=1))
    id_proof, _ = required_materials(business)
    capture(business, captured_at=utcnow(), materials=[id_proof])
    businesses_changed([business.id])
    db.session.commit()
    assert (business.capture_state, business.page_count) == (CaptureState.PARTIAL, 1)

    response = sysadmin.post(f"/admin/dictionary/checklist/{lock.id}/{id_proof.id}", data={"requirement": ""},
                             headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    stored = (business.capture_state, business.required_count, business.required_captured, business.page_count)
    assert stored == (CaptureState.NONE, 1, 0, 0)
    refresh_completeness(business)  # what a capture would compute: the same
    assert (business.capture_state, business.required_count, business.required_captured,
            business.page_count) == stored
    db.session.rollback()
    # Nothing left to change: a second look writes nothing.
    assert apply_checklist(lock.id) == []
