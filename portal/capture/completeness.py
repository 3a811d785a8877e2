"""Completeness of a business: every required material has at least one confirmed page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, literal, select, update

from portal.capture.models import CapturedPage, PageStatus
from portal.db import UTCDateTime, db, utcnow
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


def apply_checklist(business_type_id: int) -> list[int]:
    """After the required materials of a business type changed: recompute the completeness of
    its businesses that are not yet complete, in one statement, and return their ids (the
    caller passes them to `businesses_changed`, which settles their warnings and statistics).

    Complete businesses keep their completeness: they were complete under the checklist in
    force when they were captured, and a new requirement must not turn a year of finished
    archives into warnings. (A later capture on such a business recomputes it against the
    checklist of the day, as every capture does.)"""
    db.session.flush()
    required = select(ChecklistItem.material_id).where(
        ChecklistItem.business_type_id == business_type_id, ChecklistItem.requirement == Requirement.REQUIRED
    )
    n_required = db.session.scalar(select(func.count()).select_from(required.subquery())) or 0
    captured = (
        select(func.count(func.distinct(CapturedPage.material_id)))
        .where(
            CapturedPage.business_id == Business.id, CapturedPage.status == PageStatus.CONFIRMED,
            CapturedPage.material_id.in_(required),
        )
        .scalar_subquery()
    )
    complete = and_(Business.page_count > 0, captured >= n_required)
    stmt = (
        update(Business)
        .where(Business.business_type_id == business_type_id,
               Business.capture_state.in_([CaptureState.NONE, CaptureState.PARTIAL]))
        .values(
            required_count=n_required, required_captured=captured,
            capture_state=case(
                (complete, CaptureState.COMPLETE.value),
                (Business.page_count > 0, CaptureState.PARTIAL.value),
                else_=CaptureState.NONE.value,
            ),
            completed_at=case((complete, literal(utcnow(), UTCDateTime()))),
            version=Business.version + 1,
        )
        .returning(Business.id)
        .execution_options(synchronize_session=False)
    )
    ids = list(db.session.scalars(stmt))
    changed = set(ids)
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, Business) and obj.id in changed:
            db.session.expire(obj)
    return ids
