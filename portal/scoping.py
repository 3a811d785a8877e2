"""The one department-scoping helper.

Every query about businesses, pages, warnings and statistics goes through `Scope.apply` (or
`Scope.allows`) so that a user sees their own department subtree, and only a role with
cross-department lookup, asking for it explicitly, sees every department.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute

from portal.auth.roles import Permission
from portal.db import db
from portal.org.models import Department

S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class Scope:
    department_path: str | None  # None: every department

    @property
    def everywhere(self) -> bool:
        return self.department_path is None

    def department_ids(self) -> Select[tuple[int]]:
        stmt = select(Department.id)
        if self.department_path is not None:
            stmt = stmt.where(Department.path.startswith(self.department_path, autoescape=True))
        return stmt

    def apply(self, stmt: S, department_column: InstrumentedAttribute[int]) -> S:
        if self.department_path is None:
            return stmt
        return stmt.where(department_column.in_(self.department_ids().scalar_subquery()))

    def resolved_condition(
        self, department_column: InstrumentedAttribute[int], *, within: str | None = None
    ) -> ColumnElement[bool] | None:
        """What `apply` adds, for scans of large tables: the subtree (narrowed to the departments
        under the path `within`) resolved to constant ids first, which the database checks per row
        from a hashed list instead of joining `department`. None when that is every department."""
        query = self.department_ids()
        if within is not None:
            query = query.where(Department.path.startswith(within, autoescape=True))
        ids = list(db.session.scalars(query))
        if len(ids) == db.session.scalar(select(func.count()).select_from(Department)):
            return None
        return department_column.in_(ids)

    def allows(self, department_id: int | None) -> bool:
        if self.department_path is None:
            return True
        if department_id is None:
            return False
        department = db.session.get(Department, department_id)
        return department is not None and department.path.startswith(self.department_path)


def scope_for(user: Any, *, cross_department: bool = False) -> Scope:
    """The user's department subtree, or everywhere when they may and ask to look across."""
    if cross_department and user.can(Permission.LOOKUP_ALL):
        return Scope(None)
    return Scope(user.department.path)
