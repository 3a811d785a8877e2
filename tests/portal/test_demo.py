"""`portal demo`: the accounts, and a captured history that the warnings, the dashboard and the
statistics can show — made through the capture services, at the times it would have happened."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from portal.auth.models import User
from portal.capture.models import CapturedPage, CaptureKind, PageStatus
from portal.db import db, utcnow
from portal.demo import USERS, seed_demo
from portal.registry.models import Business, BusinessStatus, CaptureState
from portal.stats.models import CaptureSummary
from portal.stats.services import Dimension, StatsQuery, local_today, workload
from portal.storage.models import ImageBlob
from portal.storage.services import load_image
from portal.warnings.models import CaptureWarning


def test_demo_has_accounts_and_a_plausible_captured_history(app) -> None:
    result = seed_demo(businesses=80, password="Demo-Passw0rd-1")
    db.session.commit()
    assert result.businesses == 80 and result.captured > 80
    users = {u.username: u for u in db.session.scalars(select(User))}
    assert set(users) == {u[0] for u in USERS}
    businesses = list(db.session.scalars(select(Business)))
    clerks = {u.registry_clerk_code: u for u in users.values() if u.registry_clerk_code}
    assert all(clerks[b.clerk_code].department_id == b.department_id for b in businesses)  # clerks of the office

    now = utcnow()
    settled = [b for b in businesses
               if b.status != BusinessStatus.WITHDRAWN and b.accepted_at < now - timedelta(days=4)]
    complete = [b for b in settled if b.capture_state == CaptureState.COMPLETE]
    assert 0.8 <= len(complete) / len(settled) < 1  # most, not all: warnings have something to show
    for b in complete:
        assert b.accepted_at < b.completed_at <= now
        assert b.first_captured_at == b.completed_at
    pages = list(db.session.scalars(select(CapturedPage).join(Business).where(
        CapturedPage.status == PageStatus.CONFIRMED, CapturedPage.captured_at < Business.accepted_at)))
    assert pages == []  # every capture at or after its acceptance
    assert db.session.scalar(select(func.count()).select_from(CapturedPage).where(
        CapturedPage.kind == CaptureKind.SUPPLEMENTAL)) > 0

    # Every incomplete business that is overdue has its open warning, and only those.
    warned = set(db.session.scalars(select(CaptureWarning.business_id).where(CaptureWarning.closed_at.is_(None))))
    assert warned and warned <= {b.id for b in settled if b.capture_state != CaptureState.COMPLETE} | {
        b.id for b in businesses if b.accepted_at >= now - timedelta(days=4)}
    assert not warned & {b.id for b in complete}
    # The statistics see it all, and the pages are real images in the store.
    assert db.session.scalar(select(func.count()).select_from(CaptureSummary)) == 80
    supervisor = users["supervisor"]
    table = workload(supervisor, StatsQuery(start=local_today() - timedelta(days=40), end=local_today(),
                                            range="custom", dimension=Dimension.DEPARTMENT))
    in_scope = [b for b in businesses if b.department.path.startswith(supervisor.department.path)
                and b.status != BusinessStatus.WITHDRAWN]
    assert table.total.businesses == len(in_scope)
    assert table.total.complete == sum(b.capture_state == CaptureState.COMPLETE for b in in_scope)
    blob = db.session.get(ImageBlob, db.session.scalar(select(CapturedPage.blob_id).limit(1)))
    assert load_image(blob)[:2] == b"\xff\xd8"  # a JPEG, decrypted

    again = seed_demo(businesses=80)
    assert again.skipped and db.session.scalar(select(func.count()).select_from(Business)) == 80
