"""Separation of duties: each administrator page is for one role; everyone else gets 403."""

from __future__ import annotations

import pytest

from tests.portal.admin.conftest import HX, audit_entries, text

PAGES = {
    # path: (owner role, text the page shows)
    "/admin/departments": ("sysadmin", "部门与窗口"),
    "/admin/dictionary": ("sysadmin", "材料目录"),
    "/admin/dictionary?tab=types": ("sysadmin", "预警时限"),
    "/admin/dictionary?tab=materials": ("sysadmin", "扫描参数"),
    "/admin/users": ("sysadmin", "新建账号"),
    "/admin/roles": ("secadmin", "角色分配"),
    "/admin/security-policy": ("secadmin", "PORTAL_LOCKOUT_THRESHOLD"),
}
ROLES = ["sysadmin", "secadmin", "auditadmin", "clerk"]


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_for_its_role(sign_in, path):
    owner, marker = PAGES[path]
    response = sign_in(owner).get(path)
    assert response.status_code == 200
    body = text(response)
    assert marker in body
    assert "<html" in body  # a full page, not a fragment


@pytest.mark.parametrize(
    ("path", "role"), [(path, role) for path, (owner, _) in PAGES.items() for role in ROLES if role != owner]
)
def test_page_forbidden_for_other_roles(sign_in, path, role):
    before = len(audit_entries("security.forbidden", "denied"))
    response = sign_in(role).get(path)
    assert response.status_code == 403
    assert len(audit_entries("security.forbidden", "denied")) == before + 1


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("secadmin", "/admin/departments"),
        ("auditadmin", "/admin/dictionary/types"),
        ("clerk", "/admin/users"),
        ("sysadmin", "/admin/roles/1"),
        ("sysadmin", "/admin/roles/1/password"),
        ("sysadmin", "/admin/roles/1/unlock"),
        ("auditadmin", "/admin/roles/1/password"),
        ("secadmin", "/admin/users/1/active"),
        ("secadmin", "/admin/dictionary/checklist/1/1"),
        ("clerk", "/admin/windows"),
    ],
)
def test_state_changes_forbidden_for_other_roles(sign_in, role, path):
    response = sign_in(role).post(path, data={"name": "x"}, headers=HX)
    assert response.status_code == 403


def test_anonymous_is_sent_to_sign_in(client, org):
    response = client.get("/admin/departments")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_navigation_shows_only_own_pages(sign_in):
    body = text(sign_in("sysadmin").get("/admin/departments"))
    assert "数据字典" in body and "用户账号" in body
    assert "角色分配" not in body and "安全策略" not in body
    body = text(sign_in("secadmin").get("/admin/roles"))
    assert "角色分配" in body and "安全策略" in body
    assert "部门与窗口" not in body and "数据字典" not in body


def test_administrators_cannot_reach_capture_or_lookup():
    from portal.auth.roles import ADMIN_ROLES, Permission, permissions_for

    for role in ADMIN_ROLES:
        granted = permissions_for([role])
        assert not granted & {Permission.CAPTURE, Permission.LOOKUP, Permission.LOOKUP_ALL,
                              Permission.VIEW_PAGES, Permission.EXPORT}
