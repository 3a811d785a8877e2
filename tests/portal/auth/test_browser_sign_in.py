"""Every role signs in through the real browser and sees only its role's navigation."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.portal.browser_support import sign_in

pytestmark = pytest.mark.browser

EXPECTED = {
    "clerk": {"档案查询"},
    "supervisor": {"档案查询"},
    "viewer": {"档案查询"},
    "sysadmin": {"部门与窗口", "数据字典", "用户账号"},
    "secadmin": {"角色分配", "扫描终端", "安全策略"},
    "auditadmin": {"审计日志"},
}
FORBIDDEN = {"clerk": {"用户账号", "审计日志", "角色分配"}, "sysadmin": {"档案查询", "审计日志", "角色分配"},
             "secadmin": {"档案查询", "部门与窗口", "审计日志"}, "auditadmin": {"档案查询", "部门与窗口", "扫描终端"}}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_sees_its_navigation(page, live_server, factory, role) -> None:
    department = factory.org.hq if role in {"sysadmin", "secadmin", "auditadmin"} else None
    user = factory.user(role, department)
    sign_in(page, live_server, user.username, PASSWORD)
    links = set(page.locator("nav.sidebar a").all_inner_texts())
    assert EXPECTED[role] <= links
    assert not (FORBIDDEN.get(role, set()) & links)
    assert user.full_name in page.locator(".topbar-user").inner_text()


def test_wrong_password_shows_chinese_message(page, live_server, factory) -> None:
    user = factory.user("clerk")
    sign_in(page, live_server, user.username, "Not-The-Password-1")
    assert "用户名或密码错误" in page.locator(".alert-error").inner_text()
