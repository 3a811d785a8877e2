"""Completeness of a business: every required material has at least one confirmed page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update

from portal.capture.models import CapturedPage, PageStatus
from portal.db import db, expire_loaded, utcnow
from portal.dictionary.models import ChecklistItem, Material, Requirement
from portal.registry.models import Business, CaptureState


@dataclass(frozen=True)
class MaterialStatus:
    material: Material
    requirement: Requirement
    condition_note: str
    confirmed_pages: int
    staged_pages: int

    @property
    def satisfied(self) -> bool:
        return self.confirmed_pages > 0


def checklist_status(business: Business) -> list[MaterialStatus]:
    """The business type's checklist with page counts per material, in checklist order."""
    counts: dict[tuple[int, str], int] = {
        (material_id, status): n
        for material_id, status, n in db.session.execute(
            select(CapturedPage.material_id, CapturedPage.status, func.count())
            .where(
                CapturedPage.business_id == business.id,
                CapturedPage.status.in_([PageStatus.CONFIRMED, PageStatus.STAGED]),
            )
            .group_by(CapturedPage.material_id, CapturedPage.status)
        )
    }
    items = db.session.scalars(
        select(ChecklistItem)
        .where(ChecklistItem.business_type_id == business.business_type_id)
        .order_by(ChecklistItem.sort_order, ChecklistItem.id)
    ).all()
    return [
        MaterialStatus(
            material=item.material,
            requirement=item.requirement,
            condition_note=item.condition_note,
            confirmed_pages=counts.get((item.material_id, PageStatus.CONFIRMED), 0),
            staged_pages=counts.get((item.material_id, PageStatus.STAGED), 0),
        )
        for item in items
    ]


def refresh_completeness(business: Business) -> CaptureState:
    """Recompute the business's capture summary columns from its confirmed pages."""
    statuses = checklist_status(business)
    required = [s for s in statuses if s.requirement == Requirement.REQUIRED]
    captured = sum(1 for s in required if s.satisfied)
    pages = sum(s.confirmed_pages for s in statuses)
    if pages == 0:
        state = CaptureState.NONE
    elif captured == len(required):
        state = CaptureState.COMPLETE
    else:
        state = CaptureState.PARTIAL
    business.required_count = len(required)
    business.required_captured = captured
    business.page_count = pages
    if pages and business.first_captured_at is None:
        business.first_captured_at = utcnow()
    if state == CaptureState.COMPLETE and business.capture_state != CaptureState.COMPLETE:
        business.completed_at = utcnow()
    elif state != CaptureState.COMPLETE:
        business.completed_at = None
    business.capture_state = state
    db.session.flush()
    return state


CHUNK = 1000  # businesses per UPDATE of `apply_checklist`


def apply_checklist(business_type_id: int) -> list[int]:
    """After the checklist of a business type changed: recompute, as `refresh_completeness`
    would, the businesses of the type that are not yet complete, and return the ids of those
    that changed (the caller passes them to `businesses_changed`, which settles their warnings
    and statistics). Set-based: one locking SELECT, then one UPDATE per CHUNK businesses.

    Complete businesses keep their completeness: they were complete under the checklist in
    force when they were captured, and a new requirement must not turn a year of finished
    archives into warnings. A later capture on such a business recomputes it against the
    checklist of the day, as every capture does. A business completed by this change (a
    requirement dropped) is complete since its last confirmed page, not since the change."""
    db.session.flush()
    incomplete = Business.capture_state.in_([CaptureState.NONE, CaptureState.PARTIAL])
    # Wait for captures being confirmed right now (they hold their business row) and keep new
    # ones out until this transaction ends; the UPDATEs below then read their pages (on
    # PostgreSQL each statement sees what committed before it started). SQLite: one writer anyway.
    candidates = list(db.session.scalars(
        select(Business.id).where(Business.business_type_id == business_type_id, incomplete)
        .order_by(Business.id).with_for_update()
    ))
    items = db.session.execute(
        select(ChecklistItem.material_id, ChecklistItem.requirement)
        .where(ChecklistItem.business_type_id == business_type_id)
    ).all()
    listed = [material_id for material_id, _ in items]
    required = [material_id for material_id, requirement in items if requirement == Requirement.REQUIRED]

    def of_confirmed(column: Any, materials: list[int]) -> Any:
        """A figure of the business's confirmed pages of these materials (an index-only lookup)."""
        return (
            select(column)
            .where(CapturedPage.business_id == Business.id, CapturedPage.status == PageStatus.CONFIRMED,
                   CapturedPage.material_id.in_(materials))
            .scalar_subquery()
        )

    captured = of_confirmed(func.count(func.distinct(CapturedPage.material_id)), required)
    pages = of_confirmed(func.count(), listed)
    complete = and_(pages > 0, captured >= len(required))
    changes = or_(Business.required_count != len(required), Business.required_captured != captured,
                  Business.page_count != pages)
    values = {
        "required_count": len(required), "required_captured": captured, "page_count": pages,
        "capture_state": case(
            (complete, CaptureState.COMPLETE.value), (pages > 0, CaptureState.PARTIAL.value),
            else_=CaptureState.NONE.value,
        ),
        "completed_at": case((complete, of_confirmed(func.max(CapturedPage.confirmed_at), required or listed))),
        "version": Business.version + 1,
    }
    ids: list[int] = []
    for start in range(0, len(candidates), CHUNK):
        stmt = (
            update(Business)
            .where(Business.id.in_(candidates[start:start + CHUNK]), incomplete, changes)
            .values(values)
            .returning(Business.id)
            .execution_options(synchronize_session=False)
        )
        ids += db.session.scalars(stmt)
    expire_loaded(Business, set(ids))
    return ids
