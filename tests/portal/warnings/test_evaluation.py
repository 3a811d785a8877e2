"""Warning evaluation: levels over time, closure by capture, exception, withdrawal, reopening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal.audit.services import Actor
from portal.capture.completeness import refresh_completeness
from portal.capture.models import CapturedPage, PageStatus
from portal.db import db
from portal.dictionary.models import BusinessType, WarningTrigger
from portal.registry.models import BusinessStatus
from portal.warnings.models import CaptureWarning, WarningClosure, WarningLevel
from portal.warnings.services import (
    WarningError,
    evaluate_all,
    evaluate_all_job,
    evaluate_business,
    open_warning,
    record_exception,
)
from tests.portal.stats.helpers import capture, required_materials

# Tomorrow, on the minute: creating or changing a business evaluates its warnings at the real
# time, when nothing is due yet; each test then moves its own clock (`evaluate_all(now)`).
ACCEPTED = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)


def set_rule(code: str = "REGISTER", trigger: WarningTrigger = WarningTrigger.ACCEPTED,
             t1: int = 60, t2: int = 240, t3: int = 1440) -> BusinessType:
    bt = db.session.scalar(select(BusinessType).where(BusinessType.code == code))
    bt.warning_trigger, bt.reminder_after_minutes = trigger, t1
    bt.warning_after_minutes, bt.escalation_after_minutes = t2, t3
    db.session.commit()
    return bt


def warnings_of(business) -> list[CaptureWarning]:  # type: ignore[no-untyped-def]
    return list(db.session.scalars(
        select(CaptureWarning).where(CaptureWarning.business_id == business.id).order_by(CaptureWarning.id)
    ))


def test_level_rises_with_time_and_one_row_stays_open(factory) -> None:
    set_rule()
    business = factory.business(accepted_at=ACCEPTED)
    other_type = factory.business(type_code="THEFT", accepted_at=ACCEPTED)  # default: counts from finished
    assert evaluate_all(ACCEPTED + timedelta(minutes=59))["opened"] == 0
    assert warnings_of(business) == []

    counts = evaluate_all(ACCEPTED + timedelta(minutes=60))
    assert counts["opened"] == 1
    [w] = warnings_of(business)
    assert (w.level, w.due_since, w.closed_at) == (WarningLevel.REMINDER, ACCEPTED, None)
    assert w.department_id == business.department_id

    counts = evaluate_all(ACCEPTED + timedelta(hours=4))
    assert (counts["raised"], counts["opened"]) == (1, 0)
    assert [x.level for x in warnings_of(business)] == [WarningLevel.WARNING]
    assert warnings_of(business)[0].level_changed_at == ACCEPTED + timedelta(hours=4)

    evaluate_all(ACCEPTED + timedelta(days=1))
    counts = evaluate_all(ACCEPTED + timedelta(days=3))
    assert counts["raised"] == 0
    assert [(x.id, x.level) for x in warnings_of(business)] == [(w.id, WarningLevel.ESCALATION)]
    # A business of a type counting from the finish time has no clock until it is finished.
    assert warnings_of(other_type) == []


def test_finished_trigger_counts_from_finish_time(factory) -> None:
    set_rule("THEFT", WarningTrigger.FINISHED, 30, 60, 120)
    business = factory.business(type_code="THEFT", serial="F1", accepted_at=ACCEPTED)
    assert evaluate_all(ACCEPTED + timedelta(days=10))["opened"] == 0
    finished = ACCEPTED + timedelta(days=10)
    factory.business(type_code="THEFT", serial="F1", accepted_at=ACCEPTED, finished_at=finished,
                     status=BusinessStatus.FINISHED)
    evaluate_all(finished + timedelta(minutes=29))
    assert warnings_of(business) == []
    evaluate_all(finished + timedelta(minutes=61))
    [w] = warnings_of(business)
    assert (w.level, w.due_since) == (WarningLevel.WARNING, finished)


def test_capture_completion_closes_the_warning_at_once(factory) -> None:
    set_rule()
    business = factory.business(accepted_at=ACCEPTED)
    evaluate_all(ACCEPTED + timedelta(hours=5))
    materials = required_materials(business)
    # Partial capture: still warned.
    capture(business, captured_at=ACCEPTED + timedelta(hours=6), materials=materials[:2])
    assert evaluate_business(business, ACCEPTED + timedelta(hours=6)) is not None
    capture(business, captured_at=ACCEPTED + timedelta(hours=7), materials=materials[2:])
    assert evaluate_business(business, ACCEPTED + timedelta(hours=7)) is None
    [w] = warnings_of(business)
    assert (w.closure, w.closed_at) == (WarningClosure.CAPTURED, ACCEPTED + timedelta(hours=7))
    db.session.commit()
    assert evaluate_all(ACCEPTED + timedelta(days=5))["opened"] == 0
    assert len(warnings_of(business)) == 1


def test_incomplete_again_after_a_change_reopens_with_a_new_row(factory) -> None:
    set_rule()
    business = factory.business(accepted_at=ACCEPTED)
    evaluate_all(ACCEPTED + timedelta(hours=2))
    capture(business, captured_at=ACCEPTED + timedelta(hours=3))
    evaluate_business(business, ACCEPTED + timedelta(hours=3))
    # A confirmed page is replaced by nothing (superseded): the business is incomplete again.
    page = db.session.scalars(select(CapturedPage).where(CapturedPage.business_id == business.id)).first()
    page.status = PageStatus.SUPERSEDED
    refresh_completeness(business)
    w = evaluate_business(business, ACCEPTED + timedelta(hours=4))
    history = warnings_of(business)
    assert [x.closure for x in history] == [WarningClosure.CAPTURED, None]
    assert w is not None and w.id == history[1].id and w.level == WarningLevel.WARNING


def test_exception_keeps_the_warning_closed_until_the_business_changes(factory) -> None:
    set_rule()
    business = factory.business(serial="E1", accepted_at=ACCEPTED)
    supervisor = factory.user("supervisor", factory.org.det1)
    clerk = factory.user("clerk")
    evaluate_all(ACCEPTED + timedelta(hours=2))
    warning = open_warning(business.id)
    with pytest.raises(WarningError):
        record_exception(warning, "  ", supervisor, Actor.of_user(supervisor))
    with pytest.raises(WarningError) as denied:
        record_exception(warning, "原件已退回申请人", clerk, Actor.of_user(clerk))
    assert denied.value.status == 403
    assert open_warning(business.id) is not None

    record_exception(warning, "原件已退回申请人", supervisor, Actor.of_user(supervisor),
                     now=ACCEPTED + timedelta(hours=3))
    db.session.commit()
    assert (warning.closure, warning.closed_by_id, warning.exception_reason) == (
        WarningClosure.EXCEPTION, supervisor.id, "原件已退回申请人")
    with pytest.raises(WarningError) as twice:
        record_exception(warning, "再次关闭试试", supervisor, Actor.of_user(supervisor))
    assert twice.value.status == 409

    for days in (1, 2, 30):
        assert evaluate_all(ACCEPTED + timedelta(days=days))["opened"] == 0
    assert evaluate_business(business, ACCEPTED + timedelta(days=31)) is None
    assert len(warnings_of(business)) == 1

    # The registration system changes the business: the exception no longer covers it.
    factory.business(serial="E1", accepted_at=ACCEPTED, plate_number="沪A99999",
                     updated_at=ACCEPTED + timedelta(days=32))
    assert evaluate_all(ACCEPTED + timedelta(days=32))["opened"] == 1
    history = warnings_of(business)
    assert [x.closure for x in history] == [WarningClosure.EXCEPTION, None]
    assert history[1].level == WarningLevel.ESCALATION


def test_withdrawn_business_closes_as_withdrawn(factory) -> None:
    set_rule()
    business = factory.business(serial="W1", accepted_at=ACCEPTED)
    evaluate_all(ACCEPTED + timedelta(hours=2))
    factory.business(serial="W1", accepted_at=ACCEPTED, status=BusinessStatus.WITHDRAWN)
    assert evaluate_business(business, ACCEPTED + timedelta(hours=3)) is None
    [w] = warnings_of(business)
    assert w.closure == WarningClosure.WITHDRAWN
    assert evaluate_all(ACCEPTED + timedelta(days=3))["opened"] == 0


def test_moved_business_moves_its_warning(factory, org) -> None:
    set_rule()
    business = factory.business(serial="M1", accepted_at=ACCEPTED, clerk_code="C1")
    evaluate_all(ACCEPTED + timedelta(hours=2))
    # The sync that moves the business moves its warning at once (no wait for the scheduler).
    factory.business(serial="M1", accepted_at=ACCEPTED, department=org.office_c, clerk_code="C9")
    [w] = warnings_of(business)
    assert (w.department_id, w.clerk_code, w.closed_at) == (org.office_c.id, "C9", None)
    assert evaluate_all(ACCEPTED + timedelta(hours=2, minutes=5))["moved"] == 0


def test_at_most_one_open_warning_per_business(factory) -> None:
    set_rule()
    business = factory.business(accepted_at=ACCEPTED)
    later = ACCEPTED + timedelta(hours=2)
    evaluate_all(later)
    evaluate_all(later)
    evaluate_business(business, later)
    assert db.session.scalar(select(func.count()).select_from(CaptureWarning)) == 1
    db.session.commit()
    db.session.add(CaptureWarning(business_id=business.id, department_id=business.department_id,
                                  due_since=ACCEPTED, level=1))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_scheduler_job_commits(app, factory) -> None:
    set_rule()
    business = factory.business(accepted_at=datetime.now(UTC) - timedelta(minutes=30))
    db.session.execute(update(BusinessType).values(reminder_after_minutes=10))  # due from now on
    db.session.commit()
    counts = evaluate_all_job(app)
    assert counts["opened"] == 1
    db.session.rollback()  # a rollback here cannot undo what the job committed
    assert len(warnings_of(business)) == 1


def test_a_sync_evaluates_its_businesses_at_once(factory, org) -> None:
    set_rule()
    overdue = factory.business(serial="NOW-1", accepted_at=datetime.now(UTC) - timedelta(days=2))
    warning = open_warning(overdue.id)  # no scheduler run: the sync itself evaluated it
    assert warning is not None and warning.level == WarningLevel.ESCALATION
    factory.business(serial="NOW-1", accepted_at=overdue.accepted_at, status=BusinessStatus.WITHDRAWN)
    assert open_warning(overdue.id) is None
    assert [w.closure for w in warnings_of(overdue)] == [WarningClosure.WITHDRAWN]
