"""Building captured pages directly (no agent, no image store) for warning and statistics tests."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy import select

from portal.capture.completeness import refresh_completeness
from portal.capture.models import CapturedPage, CaptureKind, PageStatus, SupplementReason
from portal.db import db
from portal.dictionary.models import ChecklistItem, Material, Requirement
from portal.registry.models import Business
from portal.storage.models import ImageBlob

_seq = itertools.count(1)


def dummy_blob() -> ImageBlob:
    n = next(_seq)
    blob = ImageBlob(content_sm3=f"{n:064x}", byte_size=100, media_type="image/jpeg",
                     wrapped_key=b"dummy-wrapped-key", master_key_id="test")
    db.session.add(blob)
    db.session.flush()
    return blob


def required_materials(business: Business) -> list[Material]:
    return list(db.session.scalars(
        select(Material).join(ChecklistItem, ChecklistItem.material_id == Material.id).where(
            ChecklistItem.business_type_id == business.business_type_id,
            ChecklistItem.requirement == Requirement.REQUIRED,
        ).order_by(ChecklistItem.sort_order)
    ))


def add_page(business: Business, material: Material, *, captured_at: datetime,
             status: PageStatus = PageStatus.CONFIRMED, kind: CaptureKind = CaptureKind.INITIAL,
             reason: SupplementReason | None = None, window_id: int | None = None,
             user_id: int | None = None) -> CapturedPage:
    blob = dummy_blob()
    page = CapturedPage(
        business_id=business.id, material_id=material.id, status=status, kind=kind, reason=reason,
        window_id=window_id, captured_by_id=user_id, captured_at=captured_at,
        confirmed_at=captured_at if status in (PageStatus.CONFIRMED, PageStatus.SUPERSEDED) else None,
        blob_id=blob.id, content_sm3=blob.content_sm3, byte_size=100, media_type="image/jpeg",
        width=100, height=100,
    )
    db.session.add(page)
    db.session.flush()
    return page


def capture(business: Business, *, captured_at: datetime, materials: list[Material] | None = None,
            window_id: int | None = None, user_id: int | None = None) -> None:
    """Confirm one page for each of `materials` (default: every required one) and refresh the
    business's capture summary. `completed_at` is set to `captured_at` when it becomes complete,
    so tests control the capture delay."""
    for material in materials if materials is not None else required_materials(business):
        add_page(business, material, captured_at=captured_at, window_id=window_id, user_id=user_id)
    was_complete, first = business.completed_at is not None, business.first_captured_at
    refresh_completeness(business)
    if business.completed_at is not None and not was_complete:
        business.completed_at = captured_at
    if first is None and business.first_captured_at is not None:
        business.first_captured_at = captured_at
    db.session.flush()
