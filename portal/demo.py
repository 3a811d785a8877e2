"""`portal demo`: a small city with one account per role and a few hundred businesses."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from portal.auth.models import User
from portal.auth.roles import Role
from portal.auth.services import create_user
from portal.db import db, utcnow
from portal.dictionary.seed import seed_dictionary
from portal.org.models import Department, DepartmentKind, Window
from portal.org.services import create_department, create_window
from portal.registry import sample
from portal.registry.services import Lookups, RecordRejected, apply_record

DEPARTMENTS = [
    # code, name, kind, parent code
    ("310000", "市公安局交警总队", DepartmentKind.HEADQUARTERS, None),
    ("310115", "浦东支队", DepartmentKind.DETACHMENT, "310000"),
    ("310115A", "浦东车管大队花木登记点", DepartmentKind.OFFICE, "310115"),
    ("310115B", "浦东车管大队川沙登记点", DepartmentKind.OFFICE, "310115"),
    ("310104", "徐汇支队", DepartmentKind.DETACHMENT, "310000"),
    ("310104A", "徐汇车管大队漕河泾登记点", DepartmentKind.OFFICE, "310104"),
]
WINDOWS = [("310115A", "W01", "1号窗口"), ("310115A", "W02", "2号窗口"),
           ("310115B", "W01", "1号窗口"), ("310104A", "W01", "1号窗口")]
USERS = [
    # username, name, badge, roles, department, window (office, code)
    ("clerk", "陈晓明", "031501", [Role.CLERK], "310115A", ("310115A", "W01")),
    ("clerk2", "李静", "031502", [Role.CLERK], "310115B", ("310115B", "W01")),
    ("supervisor", "王建国", "031001", [Role.SUPERVISOR], "310115", None),
    ("viewer", "赵丽", "031401", [Role.VIEWER], "310104A", None),
    ("sysadmin", "系统管理员", "000001", [Role.SYSADMIN], "310000", None),
    ("secadmin", "安全管理员", "000002", [Role.SECADMIN], "310000", None),
    ("auditadmin", "审计管理员", "000003", [Role.AUDITADMIN], "310000", None),
]


@dataclass
class DemoResult:
    password: str
    users: list[tuple[str, str]] = field(default_factory=list)
    businesses: int = 0
    skipped: bool = False

    def summary(self) -> str:
        lines = []
        if self.skipped:
            lines.append("demo data already present; accounts unchanged")
        lines.append(f"demo businesses: {self.businesses}")
        lines.append("demo sign-ins (username / password):")
        for username, label in self.users:
            lines.append(f"  {username:<11} {self.password}   {label}")
        return "\n".join(lines)


def seed_demo(businesses: int = 300, password: str | None = None) -> DemoResult:
    settings = current_app.config["SETTINGS"]
    password = password or f"Demo-{secrets.token_hex(3)}-{secrets.randbelow(90) + 10}"
    seed_dictionary()
    result = DemoResult(password=password, users=[(u[0], "、".join(r.label for r in u[3])) for u in USERS])
    saved = Path(current_app.instance_path) / "demo-credentials.txt"
    if db.session.scalar(select(User).where(User.username == "clerk")) is not None:
        result.skipped = True
        result.password = saved.read_text().strip() if saved.exists() else "(unchanged)"
        return result
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    departments: dict[str, Department] = {}
    for code, name, kind, parent in DEPARTMENTS:
        departments[code] = create_department(
            code=code, name=name, kind=kind, parent=departments.get(parent) if parent else None
        )
    windows: dict[tuple[str, str], Window] = {}
    for office, code, name in WINDOWS:
        windows[(office, code)] = create_window(department=departments[office], code=code, name=name)
    for username, full_name, badge, roles, dept, window in USERS:
        user = create_user(
            username=username, full_name=full_name, department=departments[dept], roles=roles,
            password=password, settings=settings, badge_number=badge,
            window=windows[window] if window else None, must_change=False,
        )
        if Role.CLERK in roles:
            user.registry_clerk_code = f"J{badge}"
    lookups = Lookups.load()
    clerks = [("J031501", "陈晓明"), ("J031502", "李静")]
    now = utcnow()
    for record in sample.records(
        businesses, ["310115A", "310115B", "310104A"], start=now - timedelta(days=30),
        span=timedelta(days=30), clerks=clerks,
    ):
        try:
            apply_record(record, lookups)
            result.businesses += 1
        except RecordRejected:
            continue
    db.session.flush()
    return result
