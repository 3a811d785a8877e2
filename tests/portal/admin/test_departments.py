"""Departments and windows: create, rename, move (subtree paths), (de)activate, guarded delete."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.org.models import Department, DepartmentKind, Window
from tests.portal.admin.conftest import HX, audit_entries, text


def _dept(code: str) -> Department:
    department = db.session.scalar(select(Department).where(Department.code == code))
    assert department is not None
    return department


def test_tree_lists_departments_and_windows(sysadmin, org):
    body = text(sysadmin.get("/admin/departments"))
    for name in ("总队", "一支队", "二支队", "甲登记点", "乙登记点", "丙登记点", "1号窗口"):
        assert name in body
    assert body.index("一支队") < body.index("甲登记点") < body.index("二支队") < body.index("丙登记点")


def test_create_department_with_htmx_returns_the_panel(sysadmin, org):
    response = sysadmin.post("/admin/departments", headers=HX, data={
        "code": "OD", "name": "丁登记点", "kind": "office", "parent_id": str(org.det2.id)})
    assert response.status_code == 200
    body = text(response)
    assert 'id="org-panel"' in body and "<html" not in body
    assert "已新增部门“丁登记点”" in body
    new = _dept("OD")
    assert new.parent_id == org.det2.id
    assert new.path == f"{org.det2.path}{new.id}/"
    entry = audit_entries("admin.department_created")[-1]
    assert entry.username == sysadmin.user.username and '"OD"' in entry.detail


def test_create_department_without_htmx_redirects(sysadmin, org):
    response = sysadmin.post("/admin/departments", data={
        "code": "D3", "name": "三支队", "kind": "detachment", "parent_id": str(org.hq.id)})
    assert response.status_code == 302
    assert _dept("D3").kind == DepartmentKind.DETACHMENT


def test_create_department_refusals(sysadmin, org):
    cases = [
        ({"code": "OA", "name": "重复", "kind": "office", "parent_id": str(org.det1.id)}, "已存在"),
        ({"code": "", "name": "无编码", "kind": "office", "parent_id": str(org.det1.id)}, "编码不能为空"),
        ({"code": "X1", "name": "坏类型", "kind": "planet", "parent_id": str(org.det1.id)}, "请选择部门类型"),
        ({"code": "X2", "name": "无上级", "kind": "office", "parent_id": ""}, "只有总队可以没有上级部门"),
        ({"code": "X3", "name": "登记点下", "kind": "office", "parent_id": str(org.office_a.id)}, "不能设在"),
        ({"code": "X4", "name": "未知上级", "kind": "office", "parent_id": "99999"}, "上级部门不存在"),
        ({"code": "X5", "name": "乱填", "kind": "office", "parent_id": "abc"}, "只有总队"),
    ]
    for data, message in cases:
        response = sysadmin.post("/admin/departments", data=data, headers=HX)
        assert response.status_code == 422, data
        body = text(response)
        assert message in body, (data, body)
        assert f'value="{data["name"]}"' in body  # the form keeps what was typed
    assert db.session.scalar(select(Department).where(Department.code.in_(["X1", "X2", "X3", "X4", "X5"]))) is None


def test_rename_department_inline(sysadmin, org):
    edit = sysadmin.get(f"/admin/departments/{org.office_a.id}/edit", headers=HX)
    assert edit.status_code == 200
    assert text(edit).lstrip().startswith("<tr") and 'name="name"' in text(edit)
    response = sysadmin.post(f"/admin/departments/{org.office_a.id}", headers=HX,
                             data={"name": "甲登记点（新）", "parent_id": str(org.det1.id)})
    assert response.status_code == 200
    assert response.headers["HX-Retarget"] == "#org-panel"
    assert "甲登记点（新）" in text(response)
    db.session.expire_all()
    assert org.office_a.name == "甲登记点（新）"
    assert audit_entries("admin.department_renamed")


def test_rename_to_empty_is_refused_with_the_edit_row(sysadmin, org):
    response = sysadmin.post(f"/admin/departments/{org.office_a.id}", headers=HX,
                             data={"name": "  ", "parent_id": str(org.det1.id)})
    assert response.status_code == 422
    assert "名称不能为空" in text(response) and text(response).lstrip().startswith("<tr")
    db.session.expire_all()
    assert org.office_a.name == "甲登记点"


def test_move_rewrites_the_subtree_paths(sysadmin, org):
    # A sub-detachment is not allowed, so move a whole detachment's office and check windows stay.
    response = sysadmin.post(f"/admin/departments/{org.office_a.id}", headers=HX,
                             data={"name": org.office_a.name, "parent_id": str(org.det2.id)})
    assert response.status_code == 200
    db.session.expire_all()
    assert org.office_a.parent_id == org.det2.id
    assert org.office_a.path == f"{org.det2.path}{org.office_a.id}/"
    assert org.window_a.department_id == org.office_a.id
    entry = audit_entries("admin.department_moved")[-1]
    assert '"from":"D1"' in entry.detail and '"to":"D2"' in entry.detail


def test_move_service_rewrites_every_descendant(app, org):
    from portal.audit.services import Actor
    from portal.org.services import create_department, move_department

    hq2 = create_department(code="HQ2", name="第二总队", kind=DepartmentKind.HEADQUARTERS, parent=None)
    det = create_department(code="D9", name="九支队", kind=DepartmentKind.DETACHMENT, parent=hq2)
    office = create_department(code="O9", name="九号登记点", kind=DepartmentKind.OFFICE, parent=det)
    moved = move_department(det, org.hq, Actor.system())
    assert moved == 2
    assert det.path == f"{org.hq.path}{det.id}/"
    assert office.path == f"{org.hq.path}{det.id}/{office.id}/"
    # Subtree queries by path prefix now find the office under the first headquarters.
    under_hq = db.session.scalars(select(Department.code).where(Department.path.startswith(org.hq.path))).all()
    assert "O9" in under_hq and "HQ2" not in under_hq


def test_move_under_own_descendant_is_refused(sysadmin, org):
    response = sysadmin.post(f"/admin/departments/{org.det1.id}", headers=HX,
                             data={"name": org.det1.name, "parent_id": str(org.office_a.id)})
    assert response.status_code == 422
    assert "它自己或它的下级部门" in text(response)
    response = sysadmin.post(f"/admin/departments/{org.det1.id}", headers=HX,
                             data={"name": org.det1.name, "parent_id": str(org.det1.id)})
    assert response.status_code == 422
    db.session.expire_all()
    assert org.det1.parent_id == org.hq.id and org.det1.path == f"{org.hq.path}{org.det1.id}/"


def test_move_breaking_the_hierarchy_is_refused(sysadmin, org):
    response = sysadmin.post(f"/admin/departments/{org.office_a.id}", headers=HX,
                             data={"name": org.office_a.name, "parent_id": str(org.office_b.id)})
    assert response.status_code == 422
    assert "不能设在" in text(response)


def test_edit_row_offers_only_valid_parents(sysadmin, org):
    body = text(sysadmin.get(f"/admin/departments/{org.det1.id}/edit", headers=HX))
    assert f'value="{org.hq.id}"' in body
    assert f'value="{org.office_a.id}"' not in body and f'value="{org.det2.id}"' not in body


def test_delete_empty_department(sysadmin, org):
    from portal.org.services import create_department

    empty = create_department(code="OE", name="空登记点", kind=DepartmentKind.OFFICE, parent=org.det2)
    db.session.commit()
    response = sysadmin.post(f"/admin/departments/{empty.id}/delete", headers=HX)
    assert response.status_code == 200
    assert "已删除部门“空登记点”" in text(response)
    assert db.session.scalar(select(Department).where(Department.code == "OE")) is None
    assert audit_entries("admin.department_deleted", "success")


def test_delete_with_windows_is_refused_and_audited(sysadmin, org):
    office = org.office_c
    response = sysadmin.post(f"/admin/departments/{office.id}/delete", headers=HX)
    assert response.status_code == 422
    assert "仍有窗口" in text(response) and "不能删除" in text(response)
    assert db.session.get(Department, office.id) is not None
    assert audit_entries("admin.department_deleted", "denied")


def test_delete_with_children_is_refused(sysadmin, org):
    response = sysadmin.post(f"/admin/departments/{org.det2.id}/delete", headers=HX)
    assert response.status_code == 422
    assert "下级部门" in text(response)


def test_deactivate_and_reactivate(sysadmin, org):
    response = sysadmin.post(f"/admin/departments/{org.det2.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 422
    assert "仍有启用的下级部门" in text(response)
    response = sysadmin.post(f"/admin/departments/{org.office_c.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert org.office_c.active is False
    assert audit_entries("admin.department_deactivated")
    # No new window under an inactive office.
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": str(org.office_c.id), "code": "W2", "name": "2号窗口"})
    assert response.status_code == 422 and "已停用" in text(response)
    response = sysadmin.post(f"/admin/departments/{org.office_c.id}/active", data={"active": "1"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert org.office_c.active is True
    assert audit_entries("admin.department_activated")


def test_unknown_ids_are_404(sysadmin, org):
    assert sysadmin.get("/admin/departments/99999/edit", headers=HX).status_code == 404
    assert sysadmin.post("/admin/departments/99999", data={"name": "x"}, headers=HX).status_code == 404
    assert sysadmin.post("/admin/departments/99999/delete", headers=HX).status_code == 404
    assert sysadmin.post("/admin/windows/99999", data={"name": "x"}, headers=HX).status_code == 404
    # Beyond the database's integer range is still a 404, not a 500 (PostgreSQL would raise).
    assert sysadmin.get("/admin/departments/99999999999/edit", headers=HX).status_code == 404
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": "99999999999", "code": "W9", "name": "x"})
    assert response.status_code == 422


def test_create_window_and_uniqueness_per_office(sysadmin, org):
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": str(org.office_a.id), "code": "W2", "name": "2号窗口"})
    assert response.status_code == 200
    assert "已在“甲登记点”新增窗口“2号窗口”" in text(response)
    assert audit_entries("admin.window_created")
    # The same code in the same office is refused …
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": str(org.office_a.id), "code": "W2", "name": "又一个"})
    assert response.status_code == 422
    assert "该部门已有编码为“W2”的窗口" in text(response)
    # … but another office may use it.
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": str(org.office_b.id), "code": "W2", "name": "2号窗口"})
    assert response.status_code == 200
    codes = db.session.scalars(select(Window.code).where(Window.department_id == org.office_a.id)).all()
    assert sorted(codes) == ["W1", "W2"]


def test_window_only_under_an_office(sysadmin, org):
    response = sysadmin.post("/admin/windows", headers=HX,
                             data={"office_id": str(org.det1.id), "code": "W9", "name": "错误"})
    assert response.status_code == 422 and "窗口只能设在大队/登记点" in text(response)
    response = sysadmin.post("/admin/windows", headers=HX, data={"office_id": "", "code": "W9", "name": "x"})
    assert response.status_code == 422 and "请选择窗口所属" in text(response)


def test_rename_and_deactivate_window_inline(sysadmin, org):
    w = org.window_a
    edit = sysadmin.get(f"/admin/windows/{w.id}/edit", headers=HX)
    assert edit.status_code == 200 and 'name="name"' in text(edit)
    response = sysadmin.post(f"/admin/windows/{w.id}", data={"name": "综合窗口"}, headers=HX)
    assert response.status_code == 200
    body = text(response)
    assert body.lstrip().startswith("<tr") and "综合窗口" in body and "已保存" in body
    assert audit_entries("admin.window_renamed")
    response = sysadmin.post(f"/admin/windows/{w.id}", data={"name": ""}, headers=HX)
    assert response.status_code == 422 and "名称不能为空" in text(response)
    response = sysadmin.post(f"/admin/windows/{w.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 200 and "启用" in text(response)
    db.session.expire_all()
    assert w.active is False and w.name == "综合窗口"
    assert audit_entries("admin.window_deactivated")
