"""Departments and windows: creation, moves and guarded deletion."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.audit.services import Actor, record
from portal.db import db
from portal.org.models import Department, DepartmentKind, Window


class OrgError(Exception):
    """An organisation change that is not allowed, with a Chinese message."""


def create_department(
    *, code: str, name: str, kind: DepartmentKind, parent: Department | None, by: Actor | None = None
) -> Department:
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise OrgError("部门编码和名称不能为空。")
    if db.session.scalar(select(Department).where(Department.code == code)) is not None:
        raise OrgError(f"部门编码“{code}”已存在。")
    if parent is None and kind != DepartmentKind.HEADQUARTERS:
        raise OrgError("只有总队可以没有上级部门。")
    department = Department(code=code, name=name, kind=kind, parent=parent)
    db.session.add(department)
    db.session.flush()
    department.path = f"{parent.path if parent else '/'}{department.id}/"
    db.session.flush()
    record("admin.department_created", actor=by or Actor.system(), object_type="department",
           object_id=str(department.id), detail={"code": code, "name": name, "kind": kind.value})
    return department


def create_window(*, department: Department, code: str, name: str, by: Actor | None = None) -> Window:
    code, name = code.strip(), name.strip()
    if not code or not name:
        raise OrgError("窗口编码和名称不能为空。")
    if department.kind != DepartmentKind.OFFICE:
        raise OrgError("窗口只能设在大队/登记点。")
    exists = db.session.scalar(
        select(Window).where(Window.department_id == department.id, Window.code == code)
    )
    if exists is not None:
        raise OrgError(f"该部门已有编码为“{code}”的窗口。")
    window = Window(department=department, code=code, name=name)
    db.session.add(window)
    db.session.flush()
    record("admin.window_created", actor=by or Actor.system(), object_type="window",
           object_id=str(window.id), detail={"department": department.code, "code": code, "name": name})
    return window


def delete_department(department: Department, by: Actor) -> None:
    """Delete an empty department; refuse when it still has children, windows, users or businesses."""
    from portal.auth.models import User
    from portal.registry.models import Business

    blockers = []
    if db.session.scalar(select(func.count()).where(Department.parent_id == department.id)):
        blockers.append("下级部门")
    if db.session.scalar(select(func.count()).select_from(Window).where(Window.department_id == department.id)):
        blockers.append("窗口")
    if db.session.scalar(select(func.count()).select_from(User).where(User.department_id == department.id)):
        blockers.append("用户")
    if db.session.scalar(
        select(func.count()).select_from(Business).where(Business.department_id == department.id)
    ):
        blockers.append("业务档案")
    if blockers:
        record("admin.department_deleted", actor=by, outcome="denied", object_type="department",
               object_id=str(department.id), detail={"blockers": blockers})
        raise OrgError(f"部门“{department.name}”仍有{'、'.join(blockers)}，不能删除。")
    record("admin.department_deleted", actor=by, object_type="department", object_id=str(department.id),
           detail={"code": department.code, "name": department.name})
    db.session.delete(department)
    db.session.flush()
