"""Accounts kept by the system administrator."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.auth.models import User
from portal.auth.roles import Role
from portal.db import db
from tests.conftest import PASSWORD, login
from tests.portal.admin.conftest import HX, audit_entries, text


def _new_user(org, **changes):  # type: ignore[no-untyped-def]
    data = {"username": "zhangwei", "full_name": "张伟", "badge_number": "031599",
            "department_id": str(org.office_a.id), "window_id": str(org.window_a.id), "role": "clerk"}
    data.update(changes)
    return data


def _find(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def test_create_account_shows_the_generated_password_once(app, sysadmin, org):
    response = sysadmin.post("/admin/users", data=_new_user(org), headers=HX)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "users-changed"
    body = text(response)
    match = re.search(r'class="one-time-password">([^<]+)<', body)
    assert match, body
    password = match.group(1)
    user = _find("zhangwei")
    assert user is not None
    assert user.roles == {Role.CLERK} and user.must_change_password
    assert user.department_id == org.office_a.id and user.window_id == org.window_a.id
    entry = audit_entries("admin.user_created", "success")[-1]
    assert entry.username == sysadmin.user.username
    assert password not in entry.detail  # never in the log
    # The list shows the account; the page does not repeat the password.
    listing = text(sysadmin.get("/admin/users?q=zhang", headers=HX))
    assert "zhangwei" in listing and password not in listing
    # The new colleague signs in with it and must change it first.
    client = app.test_client()
    assert login(client, "zhangwei", password).status_code == 302
    response = client.get("/")
    assert response.status_code == 302 and "/account/password" in response.headers["Location"]


def test_create_account_with_typed_password(sysadmin, org):
    response = sysadmin.post("/admin/users", data=_new_user(org, password="Typed-Pass-2031"), headers=HX)
    assert response.status_code == 200
    assert "one-time-password" not in text(response) and "首次登录时必须修改密码" in text(response)
    assert _find("zhangwei").must_change_password


def test_create_account_refusals(sysadmin, factory, org):
    factory.user("clerk", username="taken")
    cases = [
        (_new_user(org, username="taken"), "已存在"),
        (_new_user(org, username="TAKEN"), "已存在"),
        (_new_user(org, password="short"), "密码长度至少"),
        (_new_user(org, password="alllowercaseletters"), "至少 3 类"),
        (_new_user(org, department_id="99999"), "请选择有效的部门"),
        (_new_user(org, department_id="not-a-number"), "请选择有效的部门"),
        (_new_user(org, department_id="99999999999"), "请选择有效的部门"),
        (_new_user(org, department_id=""), "请选择有效的部门"),
        (_new_user(org, window_id=str(org.window_b.id)), "所选窗口不属于该部门"),
        (_new_user(org, window_id="99999"), "所选窗口不属于该部门"),
        (_new_user(org, username="bad name!"), "用户名只能包含"),
        (_new_user(org, full_name=" "), "姓名不能为空"),
        (_new_user(org, role="emperor"), "请选择初始角色"),
    ]
    for data, message in cases:
        response = sysadmin.post("/admin/users", data=data, headers=HX)
        assert response.status_code == 422, data
        body = text(response)
        assert message in body, (data, body)
        assert 'id="user-create"' in body and "one-time-password" not in body
    assert _find("zhangwei") is None


@pytest.mark.parametrize("role", ["sysadmin", "secadmin", "auditadmin"])
def test_sysadmin_cannot_grant_administrator_roles(sysadmin, org, role):
    response = sysadmin.post("/admin/users", data=_new_user(org, role=role), headers=HX)
    assert response.status_code == 422
    assert "管理员角色由安全管理员分配" in text(response)
    assert _find("zhangwei") is None
    entry = audit_entries("admin.user_created", "denied")[-1]
    assert f'"role":"{role}"' in entry.detail


def test_create_form_offers_only_business_roles(sysadmin, org):
    body = text(sysadmin.get("/admin/users"))
    form = body[body.index('id="user-create"'):body.index("</details>")]
    assert 'value="clerk"' in form and 'value="supervisor"' in form and 'value="viewer"' in form
    assert 'value="sysadmin"' not in form and 'value="secadmin"' not in form


def test_window_options_follow_the_department(sysadmin, org):
    body = text(sysadmin.get(f"/admin/users/windows?department_id={org.office_b.id}", headers=HX))
    assert f'value="{org.window_b.id}"' in body and f'value="{org.window_a.id}"' not in body
    body = text(sysadmin.get("/admin/users/windows?department_id=abc", headers=HX))
    assert "不指定" in body


def test_search_accounts(sysadmin, factory, org):
    factory.user("clerk", username="findme", department=org.office_c)
    factory.user("viewer", username="other", department=org.office_b)
    body = text(sysadmin.get("/admin/users?q=FIND", headers=HX))
    assert "findme" in body and "other" not in body
    assert body.lstrip().startswith('<div id="user-list"')
    body = text(sysadmin.get(f"/admin/users?department_id={org.office_b.id}", headers=HX))
    assert "other" in body and "findme" not in body
    body = text(sysadmin.get("/admin/users?state=admins", headers=HX))
    assert sysadmin.user.username in body and "findme" not in body


def test_edit_account_inline(sysadmin, factory, org):
    user = factory.user("clerk", window=org.window_a)
    edit = sysadmin.get(f"/admin/users/{user.id}/edit", headers=HX)
    assert edit.status_code == 200 and 'name="full_name"' in text(edit)
    data = {"full_name": "王五", "badge_number": "099999", "department_id": str(org.office_b.id),
            "window_id": str(org.window_b.id)}
    response = sysadmin.post(f"/admin/users/{user.id}", data=data, headers=HX)
    assert response.status_code == 200 and "王五" in text(response) and "已保存" in text(response)
    db.session.expire_all()
    assert (user.full_name, user.badge_number, user.department_id, user.window_id) == (
        "王五", "099999", org.office_b.id, org.window_b.id)
    entry = audit_entries("admin.user_updated")[-1]
    assert '"department":"OB"' in entry.detail and '"department":"OA"' in entry.detail
    # A window of another department is refused and nothing changes.
    data.update(window_id=str(org.window_c.id), full_name="赵六")
    response = sysadmin.post(f"/admin/users/{user.id}", data=data, headers=HX)
    assert response.status_code == 422 and "所选窗口不属于该部门" in text(response)
    db.session.expire_all()
    assert user.full_name == "王五" and user.window_id == org.window_b.id
    assert sysadmin.post("/admin/users/99999", data=data, headers=HX).status_code == 404


def test_deactivate_and_reactivate_account(app, sysadmin, factory, org):
    user = factory.user("clerk")
    client = app.test_client()
    login(client, user.username)
    response = sysadmin.post(f"/admin/users/{user.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 200 and "已停用" in text(response)
    db.session.expire_all()
    assert user.active is False and user.session_token is None
    assert audit_entries("admin.user_deactivated")
    # The running session ends and the account cannot sign in.
    assert client.get("/").status_code == 302
    assert login(app.test_client(), user.username).status_code == 200
    response = sysadmin.post(f"/admin/users/{user.id}/active", data={"active": "1"}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert user.active is True
    assert audit_entries("admin.user_reactivated")
    assert login(app.test_client(), user.username, PASSWORD).status_code == 302


def test_cannot_deactivate_self_or_administrators(sysadmin, factory, org):
    response = sysadmin.post(f"/admin/users/{sysadmin.user.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 422 and "不能停用自己的账号" in text(response)
    other = factory.user("secadmin", department=org.hq)
    response = sysadmin.post(f"/admin/users/{other.id}/active", data={"active": "0"}, headers=HX)
    assert response.status_code == 422 and "不能停用管理员账号" in text(response)
    db.session.expire_all()
    assert other.active is True and sysadmin.user.active is True


def test_sysadmin_has_no_role_change_endpoint(sysadmin, factory, org):
    user = factory.user("clerk")
    response = sysadmin.post(f"/admin/roles/{user.id}", data={"roles": ["sysadmin"]}, headers=HX)
    assert response.status_code == 403
    # Editing an account ignores any role field.
    data = {"full_name": "x", "badge_number": "", "department_id": str(org.office_a.id),
            "window_id": "", "roles": "sysadmin"}
    assert sysadmin.post(f"/admin/users/{user.id}", data=data, headers=HX).status_code == 200
    db.session.expire_all()
    assert user.roles == {Role.CLERK}
