"""Roles, password resets and unlocking by the security administrator; the policy page."""

from __future__ import annotations

import re

import pytest

from portal.auth.roles import Role
from portal.db import db
from tests.conftest import PASSWORD, login
from tests.portal.admin.conftest import HX, audit_entries, text


def test_roles_page_lists_accounts_with_roles(secadmin, factory, org):
    factory.user("supervisor", username="boss")
    body = text(secadmin.get("/admin/roles"))
    assert "boss" in body and "科所队领导" in body
    body = text(secadmin.get("/admin/roles?q=boss", headers=HX))
    assert body.lstrip().startswith('<div id="user-list"') and "boss" in body


def test_change_roles(secadmin, factory, org):
    user = factory.user("clerk")
    edit = secadmin.get(f"/admin/roles/{user.id}/edit", headers=HX)
    assert edit.status_code == 200 and 'name="roles"' in text(edit)
    response = secadmin.post(f"/admin/roles/{user.id}", data={"roles": ["clerk", "supervisor"]}, headers=HX)
    assert response.status_code == 200
    assert "角色已修改" in text(response)
    db.session.expire_all()
    assert user.roles == {Role.CLERK, Role.SUPERVISOR}
    entry = audit_entries("security.roles_changed", "success")[-1]
    assert entry.username == secadmin.user.username and '"supervisor"' in entry.detail


def test_secadmin_may_make_an_administrator(secadmin, factory, org):
    user = factory.user("clerk", department=org.hq)
    response = secadmin.post(f"/admin/roles/{user.id}", data={"roles": ["auditadmin"]}, headers=HX)
    assert response.status_code == 200
    db.session.expire_all()
    assert user.roles == {Role.AUDITADMIN}


@pytest.mark.parametrize(
    "roles",
    [["sysadmin", "secadmin"], ["secadmin", "auditadmin"], ["sysadmin", "clerk"], ["auditadmin", "viewer"], []],
)
def test_conflicting_roles_are_refused(secadmin, factory, org, roles):
    user = factory.user("clerk")
    response = secadmin.post(f"/admin/roles/{user.id}", data={"roles": roles}, headers=HX)
    assert response.status_code == 422
    body = text(response)
    assert "互斥" in body or "至少需要一个角色" in body
    assert body.lstrip().startswith("<tr") and 'name="roles"' in body
    db.session.expire_all()
    assert user.roles == {Role.CLERK}
    assert audit_entries("security.roles_changed", "denied")


def test_unknown_role_and_user(secadmin, factory, org):
    user = factory.user("clerk")
    response = secadmin.post(f"/admin/roles/{user.id}", data={"roles": ["god"]}, headers=HX)
    assert response.status_code == 422 and "角色无效" in text(response)
    assert secadmin.post("/admin/roles/99999", data={"roles": ["clerk"]}, headers=HX).status_code == 404
    assert secadmin.post("/admin/roles/99999/password", headers=HX).status_code == 404
    assert secadmin.post("/admin/roles/99999/unlock", headers=HX).status_code == 404


def test_secadmin_cannot_change_own_roles_or_reset_own_password(secadmin, org):
    me = secadmin.user
    response = secadmin.post(f"/admin/roles/{me.id}", data={"roles": ["clerk"]}, headers=HX)
    assert response.status_code == 422 and "不能修改自己的角色" in text(response)
    response = secadmin.post(f"/admin/roles/{me.id}/password", headers=HX)
    assert response.status_code == 422 and "不能重置自己的密码" in text(response)
    db.session.expire_all()
    assert me.roles == {Role.SECADMIN}


def test_reset_password_forces_a_change_at_next_sign_in(app, secadmin, factory, org):
    user = factory.user("clerk")
    old_session = app.test_client()
    login(old_session, user.username)
    response = secadmin.post(f"/admin/roles/{user.id}/password", headers=HX)
    assert response.status_code == 200
    match = re.search(r'class="one-time-password">([^<]+)<', text(response))
    assert match
    new_password = match.group(1)
    entry = audit_entries("security.password_reset")[-1]
    assert entry.username == secadmin.user.username and new_password not in entry.detail
    db.session.expire_all()
    assert user.must_change_password
    assert old_session.get("/").status_code == 302  # the running session was ended
    assert login(app.test_client(), user.username, PASSWORD).status_code == 200  # old one no longer works
    client = app.test_client()
    assert login(client, user.username, new_password).status_code == 302
    response = client.get("/")
    assert response.status_code == 302 and "/account/password" in response.headers["Location"]


def test_reset_without_htmx_shows_the_password_on_the_page(secadmin, factory, org):
    user = factory.user("clerk")
    response = secadmin.post(f"/admin/roles/{user.id}/password")
    assert response.status_code == 200
    body = text(response)
    assert "<html" in body and "one-time-password" in body and user.username in body


def test_unlock(app, secadmin, factory, org):
    user = factory.user("clerk")
    settings = app.config["SETTINGS"]
    for _ in range(settings.lockout_threshold):
        login(app.test_client(), user.username, "wrong-password")
    db.session.expire_all()
    assert user.locked_until is not None
    assert login(app.test_client(), user.username).status_code == 200  # locked: still the form
    body = text(secadmin.get("/admin/roles?state=locked", headers=HX))
    assert user.username in body and "已锁定" in body and "解锁" in body
    response = secadmin.post(f"/admin/roles/{user.id}/unlock", headers=HX)
    assert response.status_code == 200 and "已解锁" in text(response)
    assert audit_entries("security.account_unlocked")
    db.session.expire_all()
    assert user.locked_until is None
    assert login(app.test_client(), user.username).status_code == 302
    # Unlocking an account that is not locked says so.
    response = secadmin.post(f"/admin/roles/{user.id}/unlock", headers=HX)
    assert response.status_code == 422 and "未被锁定" in text(response)


def test_security_policy_page_shows_settings_and_variables(secadmin, app, org):
    settings = app.config["SETTINGS"]
    body = text(secadmin.get("/admin/security-policy"))
    assert "本页只读" in body
    for variable in ("PORTAL_PASSWORD_MIN_LENGTH", "PORTAL_PASSWORD_MIN_CLASSES", "PORTAL_PASSWORD_MAX_AGE_DAYS",
                     "PORTAL_PASSWORD_HISTORY", "PORTAL_LOCKOUT_THRESHOLD", "PORTAL_LOCKOUT_MINUTES",
                     "PORTAL_SESSION_IDLE_MINUTES"):
        assert variable in body
    assert f"{settings.password_min_length} 位" in body
    assert f"{settings.session_idle_minutes} 分钟" in body
    assert "审计日志" in body  # the role/permission table
