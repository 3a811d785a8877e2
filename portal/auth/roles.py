"""Roles and the permissions they grant.

The mapping is code, not data, so that separation of the three administrator duties
(等保三级 三员分立) cannot be undone from the UI; the security administrator assigns roles.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Role(enum.StrEnum):
    CLERK = "clerk"
    SUPERVISOR = "supervisor"
    VIEWER = "viewer"
    SYSADMIN = "sysadmin"
    SECADMIN = "secadmin"
    AUDITADMIN = "auditadmin"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS = {
    Role.CLERK: "窗口民警",
    Role.SUPERVISOR: "科所队领导",
    Role.VIEWER: "查档人员",
    Role.SYSADMIN: "系统管理员",
    Role.SECADMIN: "安全管理员",
    Role.AUDITADMIN: "审计管理员",
}

ADMIN_ROLES = frozenset({Role.SYSADMIN, Role.SECADMIN, Role.AUDITADMIN})


class Permission(enum.StrEnum):
    CAPTURE = "capture"  # scan and confirm at a window of the user's office
    SUPPLEMENT = "supplement"  # supplemental capture on an earlier business
    BROWSER_UPLOAD = "browser_upload"  # fallback upload without an agent
    LOOKUP = "lookup"  # archive lookup within the user's department subtree
    LOOKUP_ALL = "lookup_all"  # lookup across every department (reason required, logged)
    VIEW_PAGES = "view_pages"
    EXPORT = "export"
    REVEAL_PERSONAL = "reveal_personal"  # see unmasked ID and phone numbers (logged)
    WARNINGS = "warnings"  # see warnings of the subtree
    WARNING_EXCEPTION = "warning_exception"  # close a warning by recorded exception
    STATISTICS = "statistics"
    ADMIN_ORG = "admin_org"  # departments and windows
    ADMIN_DICTIONARY = "admin_dictionary"
    ADMIN_USERS = "admin_users"  # accounts: create, edit, deactivate
    ADMIN_REGISTRY = "admin_registry"  # sync status and quarantine
    SECURITY_ROLES = "security_roles"  # role assignment
    SECURITY_PASSWORDS = "security_passwords"  # password resets, unlock
    SECURITY_AGENTS = "security_agents"  # enrolment codes, agent keys
    SECURITY_POLICY = "security_policy"
    AUDIT_READ = "audit_read"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.CLERK: frozenset(
        {P.CAPTURE, P.SUPPLEMENT, P.BROWSER_UPLOAD, P.LOOKUP, P.VIEW_PAGES, P.WARNINGS}
    ),
    Role.SUPERVISOR: frozenset(
        {
            P.SUPPLEMENT, P.LOOKUP, P.VIEW_PAGES, P.EXPORT, P.REVEAL_PERSONAL,
            P.WARNINGS, P.WARNING_EXCEPTION, P.STATISTICS,
        }
    ),
    Role.VIEWER: frozenset({P.LOOKUP, P.LOOKUP_ALL, P.VIEW_PAGES, P.EXPORT}),
    Role.SYSADMIN: frozenset({P.ADMIN_ORG, P.ADMIN_DICTIONARY, P.ADMIN_USERS, P.ADMIN_REGISTRY}),
    Role.SECADMIN: frozenset(
        {P.SECURITY_ROLES, P.SECURITY_PASSWORDS, P.SECURITY_AGENTS, P.SECURITY_POLICY}
    ),
    Role.AUDITADMIN: frozenset({P.AUDIT_READ}),
}


def permissions_for(roles: Iterable[Role | str]) -> frozenset[Permission]:
    result: set[Permission] = set()
    for role in roles:
        result |= ROLE_PERMISSIONS.get(Role(role), frozenset())
    return frozenset(result)


def check_role_combination(roles: Iterable[Role | str]) -> str | None:
    """Return a Chinese error when the set breaks separation of duties, else None."""
    chosen = {Role(r) for r in roles}
    if not chosen:
        return "至少需要一个角色。"
    admins = chosen & ADMIN_ROLES
    if admins and len(chosen) > 1:
        return "三员（系统、安全、审计管理员）角色互斥，且不能兼任业务角色。"
    return None
