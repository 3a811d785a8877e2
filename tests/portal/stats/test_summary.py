"""The statistics' summary rows: written when businesses change, repaired when stale, rebuilt."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, func, select, update

from portal.audit.models import AuditEntry
from portal.cli import main
from portal.db import db
from portal.registry.models import Business, BusinessStatus
from portal.registry.records import BusinessRecord
from portal.registry.services import Lookups, apply_records
from portal.stats import summary
from portal.stats.models import CaptureSummary
from portal.stats.services import StatsQuery, workload
from tests.portal.stats.conftest import Dataset
from tests.portal.warnings.test_evaluation import set_rule

ACCEPTED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def row_of(business: Business) -> CaptureSummary:
    db.session.expire_all()
    found = db.session.get(CaptureSummary, business.id)
    assert found is not None
    return found


def snapshot() -> dict[int, tuple]:
    db.session.expire_all()
    return {
        s.business_id: (s.business_version, s.accepted_on, s.department_id, s.business_type_id, s.window_id,
                        s.clerk_code, s.clerk_name, s.withdrawn, s.pages, s.complete, s.supplemented,
                        s.delay_seconds, s.finished_delay_seconds)
        for s in db.session.scalars(select(CaptureSummary))
    }


def test_a_synced_business_gets_its_row_and_follows_every_change(factory, org) -> None:
    business = factory.business(org.office_a, serial="S1", clerk_code="K1", clerk_name="王警官", accepted_at=ACCEPTED)
    row = row_of(business)
    assert (row.accepted_on, row.department_id, row.business_type_id) == (
        ACCEPTED.astimezone().date(), org.office_a.id, business.business_type_id)
    assert (row.clerk_code, row.clerk_name, row.withdrawn, row.pages, row.complete, row.window_id) == (
        "K1", "王警官", False, 0, False, None)
    assert row.business_version == business.version
    factory.business(org.office_c, serial="S1", clerk_code="K9", accepted_at=ACCEPTED, status=BusinessStatus.WITHDRAWN)
    row = row_of(business)
    assert (row.department_id, row.clerk_code, row.withdrawn) == (org.office_c.id, "K9", True)
    assert row.business_version == db.session.get(Business, business.id).version


def test_a_bulk_sync_writes_a_row_per_business(org) -> None:
    records = [
        BusinessRecord(serial=f"B{n:04d}", business_type_code="REGISTER", department_code=org.office_b.code,
                       accepted_at=ACCEPTED + timedelta(days=n % 3), clerk_code="K3")
        for n in range(30)
    ]
    result = apply_records(records, Lookups.load())
    db.session.commit()
    assert result.created == 30
    days = db.session.execute(
        select(CaptureSummary.accepted_on, func.count()).where(CaptureSummary.department_id == org.office_b.id)
        .group_by(CaptureSummary.accepted_on).order_by(CaptureSummary.accepted_on)
    ).all()
    first = ACCEPTED.astimezone().date()
    assert days == [(first, 10), (first + timedelta(days=1), 10), (first + timedelta(days=2), 10)]


def test_stale_rows_are_found_and_repaired_by_the_scheduler_job(app, factory, org) -> None:
    from portal.jobs.registry import JOBS

    business = factory.business(org.office_a, serial="R1", accepted_at=ACCEPTED)
    other = factory.business(org.office_a, serial="R2", accepted_at=ACCEPTED)
    assert summary.stale_ids() == []
    # A change that did not come through the registry or capture services (a DBA's fix, say).
    db.session.execute(update(Business).where(Business.id == business.id).values(
        department_id=org.office_b.id, version=Business.version + 1))
    db.session.execute(delete(CaptureSummary).where(CaptureSummary.business_id == other.id))
    db.session.commit()
    assert summary.stale_ids() == sorted([business.id, other.id])
    [job] = [j for j in JOBS if j.name == "stats_summaries"]
    assert job.interval(app) > 0
    job.func(app)
    db.session.commit()
    assert summary.stale_ids() == []
    assert row_of(business).department_id == org.office_b.id


def test_rebuild_is_idempotent_and_restores_lost_rows(dataset: Dataset) -> None:
    before = snapshot()
    assert len(before) == len(dataset.specs)
    assert summary.rebuild() == 0  # nothing differs: no row is rewritten
    db.session.execute(delete(CaptureSummary))
    db.session.execute(update(Business).values(clerk_name="改名"))  # bypasses the hooks
    db.session.commit()
    assert summary.rebuild() == len(dataset.specs)
    db.session.commit()
    after = snapshot()
    assert after.keys() == before.keys()
    assert all(after[k][:6] + after[k][7:] == before[k][:6] + before[k][7:] and after[k][6] == "改名" for k in after)


def test_the_summary_holds_what_the_specification_says(dataset: Dataset) -> None:
    rows = snapshot()
    for spec in dataset.specs:
        (_, accepted_on, _, _, window_id, clerk, _, withdrawn, pages, complete, supplemented,
         delay, _) = rows[spec.business.id]
        assert accepted_on == spec.accepted.astimezone().date(), spec.name
        assert (withdrawn, pages, complete, supplemented) == (
            spec.withdrawn, spec.pages, spec.complete, bool(spec.supplemental)), spec.name
        expected_window = dataset.windows[spec.window].id if spec.window else None
        assert (window_id, clerk) == (expected_window, spec.clerk), spec.name
        if spec.delay is None:
            assert delay is None
        else:
            assert abs(delay - spec.delay.total_seconds()) < 0.01, spec.name


def test_changed_thresholds_apply_to_the_statistics_at_once(dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    query = StatsQuery(start=date(2026, 11, 1), end=date(2026, 11, 30), range="custom")
    assert workload(supervisor, query).total.on_time == 1  # b1 (30 min); b2 took 3 h, b6 2 h, T1 = 60 min
    set_rule("REGISTER", t1=180, t2=240, t3=1440)
    assert workload(supervisor, query).total.on_time == 3  # no summary was recomputed
    assert summary.stale_ids() == []


def test_cli_rebuild_reports_and_is_audited(app, dataset: Dataset) -> None:
    db.session.execute(delete(CaptureSummary))
    db.session.commit()
    result = app.test_cli_runner().invoke(main, ["stats", "rebuild"])
    assert result.exit_code == 0, result.output
    assert f"capture summaries rebuilt: {len(dataset.specs)} rows written" in result.output
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(CaptureSummary)) == len(dataset.specs)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "stats.summaries_rebuilt")).one()
    assert f'"written":{len(dataset.specs)}' in entry.detail
    repaired = app.test_cli_runner().invoke(main, ["stats", "repair"])
    assert repaired.exit_code == 0 and "capture summaries repaired: 0 businesses" in repaired.output
