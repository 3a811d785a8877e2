"""Departments and windows: creation, renames, moves, (de)activation and guarded deletion."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from portal.audit.services import Actor, record
from portal.db import db
from portal.org.models import Department, DepartmentKind, Window


class OrgError(Exception):
    """An organisation change that is not allowed, with a Chinese message."""


# The tree is 总队 → 支队 → 大队/登记点: a parent ranks strictly above its children.
KIND_RANK = {DepartmentKind.HEADQUARTERS: 0, DepartmentKind.DETACHMENT: 1, DepartmentKind.OFFICE: 2}
CODE_MAX, NAME_MAX, PATH_MAX = 32, 100, 255


def _check_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise OrgError(f"{what}名称不能为空。")
    if len(name) > NAME_MAX:
        raise OrgError(f"{what}名称不能超过 {NAME_MAX} 个字符。")
    return name


def _check_code(code: str, what: str) -> str:
    code = code.strip()
    if not code:
        raise OrgError(f"{what}编码不能为空。")
    if len(code) > CODE_MAX or not code.replace("-", "").replace("_", "").isalnum():
        raise OrgError(f"{what}编码只能包含字母、数字、下划线和连字符，长度不超过 {CODE_MAX}。")
    return code


def _check_parent(kind: DepartmentKind, parent: Department | None) -> None:
    if parent is None:
        if kind != DepartmentKind.HEADQUARTERS:
            raise OrgError("只有总队可以没有上级部门。")
        return
    if KIND_RANK[parent.kind] >= KIND_RANK[kind]:
        raise OrgError(f"{kind.label}不能设在{parent.kind.label}“{parent.name}”之下。")


def create_department(
    *, code: str, name: str, kind: DepartmentKind, parent: Department | None, by: Actor | None = None
) -> Department:
    code, name = _check_code(code, "部门"), _check_name(name, "部门")
    if db.session.scalar(select(Department).where(Department.code == code)) is not None:
        raise OrgError(f"部门编码“{code}”已存在。")
    _check_parent(kind, parent)
    if parent is not None and not parent.active:
        raise OrgError(f"上级部门“{parent.name}”已停用。")
    department = Department(code=code, name=name, kind=kind, parent=parent)
    db.session.add(department)
    db.session.flush()
    department.path = f"{parent.path if parent else '/'}{department.id}/"
    db.session.flush()
    record("admin.department_created", actor=by or Actor.system(), object_type="department",
           object_id=str(department.id), detail={"code": code, "name": name, "kind": kind.value})
    return department


def create_window(*, department: Department, code: str, name: str, by: Actor | None = None) -> Window:
    code, name = _check_code(code, "窗口"), _check_name(name, "窗口")
    if department.kind != DepartmentKind.OFFICE:
        raise OrgError("窗口只能设在大队/登记点。")
    if not department.active:
        raise OrgError(f"部门“{department.name}”已停用。")
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


def rename_department(department: Department, name: str, by: Actor) -> None:
    name = _check_name(name, "部门")
    if name == department.name:
        return
    before = department.name
    department.name = name
    db.session.flush()
    record("admin.department_renamed", actor=by, object_type="department", object_id=str(department.id),
           detail={"code": department.code, "before": before, "after": name})


def set_department_active(department: Department, active: bool, by: Actor) -> None:
    """Deactivate (keeping history) or reactivate a department.

    A department cannot be deactivated while a sub-department is still active, nor reactivated
    under an inactive parent, so the active part of the tree stays connected.
    """
    if department.active == active:
        return
    if not active and any(child.active for child in department.children):
        raise OrgError(f"部门“{department.name}”仍有启用的下级部门，请先停用下级部门。")
    if active and department.parent is not None and not department.parent.active:
        raise OrgError(f"上级部门“{department.parent.name}”已停用，请先启用上级部门。")
    department.active = active
    db.session.flush()
    record("admin.department_activated" if active else "admin.department_deactivated", actor=by,
           object_type="department", object_id=str(department.id),
           detail={"code": department.code, "name": department.name})


def move_department(department: Department, new_parent: Department, by: Actor) -> int:
    """Put `department` under `new_parent`, rewriting the materialised path of its whole subtree.

    Refuses a move under the department itself or one of its descendants, and a move that breaks
    总队 → 支队 → 大队/登记点. Returns how many departments' paths were rewritten.
    """
    if new_parent.id == department.parent_id:
        return 0
    if new_parent.path.startswith(department.path):
        raise OrgError(f"不能把部门“{department.name}”移到它自己或它的下级部门之下。")
    _check_parent(department.kind, new_parent)
    if department.active and not new_parent.active:
        raise OrgError(f"目标上级部门“{new_parent.name}”已停用。")
    old_prefix = department.path
    new_prefix = f"{new_parent.path}{department.id}/"
    subtree = db.session.scalars(
        select(Department).where(Department.path.startswith(old_prefix, autoescape=True))
    ).all()
    deepest = max(len(new_prefix) + len(d.path) - len(old_prefix) for d in subtree)
    if deepest > PATH_MAX:
        raise OrgError("部门层级过深，无法移动。")
    before_parent = department.parent
    department.parent = new_parent
    for node in subtree:
        node.path = new_prefix + node.path[len(old_prefix):]
    db.session.flush()
    record("admin.department_moved", actor=by, object_type="department", object_id=str(department.id),
           detail={"code": department.code, "from": before_parent.code if before_parent else None,
                   "to": new_parent.code, "subtree": len(subtree)})
    return len(subtree)


def update_department(
    department: Department, *, name: str, parent: Department | None, by: Actor
) -> None:
    """Rename and/or move; every check runs before anything changes."""
    name = _check_name(name, "部门")
    if parent is None and department.parent is not None:
        raise OrgError("请选择上级部门。")
    if parent is not None:
        move_department(department, parent, by)
    rename_department(department, name, by)


def rename_window(window: Window, name: str, by: Actor) -> None:
    name = _check_name(name, "窗口")
    if name == window.name:
        return
    before = window.name
    window.name = name
    db.session.flush()
    record("admin.window_renamed", actor=by, object_type="window", object_id=str(window.id),
           detail={"department": window.department.code, "code": window.code, "before": before,
                   "after": name})


def set_window_active(window: Window, active: bool, by: Actor) -> None:
    if window.active == active:
        return
    if active and not window.department.active:
        raise OrgError(f"部门“{window.department.name}”已停用，请先启用该部门。")
    window.active = active
    db.session.flush()
    record("admin.window_activated" if active else "admin.window_deactivated", actor=by,
           object_type="window", object_id=str(window.id),
           detail={"department": window.department.code, "code": window.code})


@dataclass(frozen=True)
class TreeNode:
    department: Department
    depth: int


def department_tree() -> list[TreeNode]:
    """Every department in tree order (children by code), with its depth from the root."""
    departments = db.session.scalars(select(Department).order_by(Department.code)).all()
    children: dict[int | None, list[Department]] = {}
    for d in departments:
        children.setdefault(d.parent_id, []).append(d)
    result: list[TreeNode] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for d in children.get(parent_id, []):
            result.append(TreeNode(d, depth))
            walk(d.id, depth + 1)

    walk(None, 0)
    return result


def possible_parents(department: Department) -> list[Department]:
    """Departments `department` may be moved under (not itself, not a descendant, higher kind)."""
    rank = KIND_RANK[department.kind]
    return [
        node.department for node in department_tree()
        if KIND_RANK[node.department.kind] < rank and not node.department.path.startswith(department.path)
    ]


def offices() -> list[Department]:
    return [n.department for n in department_tree() if n.department.kind == DepartmentKind.OFFICE]


def windows_of(department_id: int, *, active_only: bool = True) -> list[Window]:
    stmt = select(Window).where(Window.department_id == department_id).order_by(Window.code)
    if active_only:
        stmt = stmt.where(Window.active.is_(True))
    return list(db.session.scalars(stmt))
