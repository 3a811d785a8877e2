"""Two clerks confirming on the same business at the same moment, each in its own thread, app
context and database session (a file database on SQLite, separate connections on PostgreSQL):
the business row lock keeps the completeness summary and the page order right."""

from __future__ import annotations

import threading

from sqlalchemy import select

from portal.audit.services import Actor
from portal.capture import services
from portal.capture.models import CapturedPage, PageStatus, ScanJob
from portal.db import db
from portal.registry.models import Business, CaptureState
from tests.portal.capture.test_services import jpegs, upload

ROUNDS = 3


def _confirm_at_once(app, jobs: list[tuple[int, object]]) -> list[BaseException]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def worker(job_id: int, user) -> None:  # type: ignore[no-untyped-def]
        try:
            with app.app_context():
                job = db.session.get(ScanJob, job_id)
                business = db.session.get(Business, job.business_id)
                assert business.capture_state is not None  # loaded before the race, as a view would
                barrier.wait()
                services.confirm_job(job, Actor.of_user(user))
                db.session.commit()
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            with app.app_context():
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(job_id, user)) for job_id, user in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_two_materials_confirmed_at_once_both_count(app, factory, org, clerk) -> None:
    colleague = factory.user("clerk", org.office_a, window=org.window_a)
    for _ in range(ROUNDS):
        business = factory.business(org.office_a, type_code="LOCK")
        mine = upload(business, clerk, "ID_PROOF", jpegs(2))
        theirs = upload(business, colleague, "LOCK_REQUEST", jpegs(1))
        errors = _confirm_at_once(app, [(mine.id, clerk), (theirs.id, colleague)])
        assert not errors, errors
        db.session.expire_all()
        stored = db.session.get(Business, business.id)
        assert stored.capture_state == CaptureState.COMPLETE
        assert (stored.required_captured, stored.required_count, stored.page_count) == (2, 2, 3)
        assert stored.completed_at is not None


def test_same_material_confirmed_at_once_never_mixes_the_order(app, factory, org, clerk) -> None:
    colleague = factory.user("clerk", org.office_a, window=org.window_a)
    for _ in range(ROUNDS):
        business = factory.business(org.office_a, type_code="LOCK")
        mine = upload(business, clerk, "ID_PROOF", jpegs(2))
        theirs = upload(business, colleague, "ID_PROOF", jpegs(3))
        errors = _confirm_at_once(app, [(mine.id, clerk), (theirs.id, colleague)])
        assert not errors, errors
        db.session.expire_all()
        pages = list(db.session.scalars(
            select(CapturedPage).where(CapturedPage.business_id == business.id,
                                       CapturedPage.status == PageStatus.CONFIRMED)
            .order_by(CapturedPage.position)))
        assert [p.position for p in pages] == [1, 2, 3, 4, 5]
        order = [p.job_id for p in pages]
        # Each job's pages form one block, in either order: [a, a, b, b, b] or [b, b, b, a, a].
        assert order in ([mine.id] * 2 + [theirs.id] * 3, [theirs.id] * 3 + [mine.id] * 2)
        stored = db.session.get(Business, business.id)
        assert (stored.page_count, stored.required_captured, stored.capture_state) == (5, 1, CaptureState.PARTIAL)
