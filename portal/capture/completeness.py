"""Completeness of a business: every required material has at least one confirmed page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from portal.capture.models import CapturedPage, PageStatus
from portal.db import db, utcnow
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
