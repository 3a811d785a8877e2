"""Reading archives: a business and its pages, always through the department scope."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.registry.models import Business
from portal.scoping import Scope


class NotFound(Exception):
    """No such business within the user's scope (indistinguishable from not existing)."""


def business_in_scope(scope: Scope, business_id: int) -> Business:
    stmt = scope.apply(select(Business).where(Business.id == business_id), Business.department_id)
    business = db.session.scalar(stmt)
    if business is None:
        raise NotFound(business_id)
    return business


def business_by_serial(scope: Scope, serial: str) -> Business | None:
    stmt = scope.apply(select(Business).where(Business.serial == serial.strip()), Business.department_id)
    return db.session.scalar(stmt)
