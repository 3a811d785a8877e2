"""The navigation each role sees: one list, filtered by permission and by what is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from portal.auth.roles import Permission as P


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str
    permissions: tuple[P, ...]
    group: str


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("影像采集", "capture.index", (P.CAPTURE, P.SUPPLEMENT), "业务"),
    NavItem("档案查询", "archive.search", (P.LOOKUP,), "业务"),
    NavItem("采集预警", "warnings.index", (P.WARNINGS,), "业务"),
    NavItem("工作量统计", "stats.index", (P.STATISTICS,), "业务"),
    NavItem("部门与窗口", "admin.departments", (P.ADMIN_ORG,), "系统管理"),
    NavItem("数据字典", "admin.dictionary", (P.ADMIN_DICTIONARY,), "系统管理"),
    NavItem("用户账号", "admin.users", (P.ADMIN_USERS,), "系统管理"),
    NavItem("登记系统同步", "registry.status", (P.ADMIN_REGISTRY,), "系统管理"),
    NavItem("角色分配", "admin.roles", (P.SECURITY_ROLES, P.SECURITY_PASSWORDS), "安全管理"),
    NavItem("扫描终端", "agents.index", (P.SECURITY_AGENTS,), "安全管理"),
    NavItem("安全策略", "admin.security_policy", (P.SECURITY_POLICY,), "安全管理"),
    NavItem("审计日志", "audit.index", (P.AUDIT_READ,), "审计管理"),
)


def navigation_for(user: Any) -> list[tuple[str, list[NavItem]]]:
    groups: dict[str, list[NavItem]] = {}
    for item in NAVIGATION:
        if item.endpoint not in current_app.view_functions:
            continue
        if any(user.can(p) for p in item.permissions):
            groups.setdefault(item.group, []).append(item)
    return list(groups.items())
