"""The scheduler: one leader across hosts via the lease table, takeover after expiry, the job list."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from portal.audit.models import AuditCheckpoint
from portal.audit.services import record
from portal.db import db
from portal.jobs.lease import current_holder, release, try_acquire
from portal.jobs.registry import JOBS, Job
from portal.jobs.scheduler import JobRunner, LeaderElection
from portal.registry.models import SyncRun


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_lease_has_one_holder_until_it_expires(app: Flask) -> None:
    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    ttl = timedelta(seconds=30)
    with db.engine.begin() as conn:
        assert try_acquire(conn, "x", "host-a", ttl, now=t0) == t0 + ttl
        assert try_acquire(conn, "x", "host-b", ttl, now=t0 + timedelta(seconds=10)) is None
        assert try_acquire(conn, "x", "host-a", ttl, now=t0 + timedelta(seconds=20)) == t0 + timedelta(seconds=50)
        assert try_acquire(conn, "x", "host-b", ttl, now=t0 + timedelta(seconds=49)) is None
        assert current_holder(conn, "x", now=t0 + timedelta(seconds=49))[0] == "host-a"
        assert try_acquire(conn, "x", "host-b", ttl, now=t0 + timedelta(seconds=50)) is not None
        assert try_acquire(conn, "x", "host-a", ttl, now=t0 + timedelta(seconds=51)) is None
        assert release(conn, "x", "host-a") is False
        assert release(conn, "x", "host-b") is True
        assert try_acquire(conn, "x", "host-a", ttl, now=t0 + timedelta(seconds=52)) is not None
        assert try_acquire(conn, "y", "host-b", ttl, now=t0) is not None  # leases are independent


def test_two_hosts_one_leader_and_takeover_after_expiry(app: Flask) -> None:
    clock = FakeClock()
    ttl = timedelta(seconds=60)
    host_a = LeaderElection(db.engine, "host-a", ttl=ttl, clock=clock)
    host_b = LeaderElection(db.engine, "host-b", ttl=ttl, clock=clock)
    ran: list[str] = []
    job = Job("probe", lambda app: ran.append("x"), 10)
    runner_a, runner_b = JobRunner(app, [job], host_a), JobRunner(app, [job], host_b)

    assert host_a.renew() is True and host_b.renew() is False
    for _ in range(10):  # A keeps renewing: B never gets in
        clock.advance(20)
        assert host_a.renew() and not host_b.renew()
        assert runner_a.run_job(job) and not runner_b.run_job(job)
    assert len(ran) == 10

    # A dies (stops renewing). Before its lease runs out B cannot lead; A itself stops in time.
    clock.advance(50)
    assert not host_b.renew()
    assert not host_a.is_leader()  # within the safety margin before expiry: A no longer runs jobs
    assert not runner_a.run_job(job)
    clock.advance(11)
    assert host_b.renew() and host_b.is_leader()
    assert runner_b.run_job(job)
    assert len(ran) == 11
    # A comes back: it has lost the lease.
    assert host_a.renew() is False and not runner_a.run_job(job)
    host_b.resign()
    assert host_a.renew() is True


def test_concurrent_hosts_never_run_jobs_at_the_same_time(app: Flask) -> None:
    intervals: list[tuple[str, float, float]] = []
    guard = threading.Lock()
    engine = db.engine  # the threads have no app context of their own

    def host(name: str, stop: threading.Event) -> None:
        election = LeaderElection(engine, name, ttl=timedelta(seconds=2))

        def work(app: Flask) -> None:
            start = time.monotonic()
            time.sleep(0.01)
            with guard:
                intervals.append((name, start, time.monotonic()))

        runner = JobRunner(app, [Job("probe", work, 1)], election)
        last_renew = 0.0
        while not stop.is_set():
            if time.monotonic() - last_renew > 0.5:
                election.renew()
                last_renew = time.monotonic()
            runner.run_job(runner.jobs[0])
            time.sleep(0.03)

    stop_a, stop_b = threading.Event(), threading.Event()
    a = threading.Thread(target=host, args=("host-a", stop_a))
    a.start()
    time.sleep(0.3)  # A is first and leads
    b = threading.Thread(target=host, args=("host-b", stop_b))
    b.start()
    time.sleep(1.5)
    stop_a.set()  # A dies without resigning
    a.join()
    died = time.monotonic()
    time.sleep(3.0)
    stop_b.set()
    b.join()

    a_runs = [i for i in intervals if i[0] == "host-a"]
    b_runs = [i for i in intervals if i[0] == "host-b"]
    assert a_runs and b_runs
    assert max(end for _, _, end in a_runs) < min(start for _, start, _ in b_runs)  # never both
    assert min(start for _, start, _ in b_runs) > died  # B only after A was gone
    assert min(start for _, start, _ in b_runs) - died < 2.5  # and within about a lease time


def test_runner_isolates_failing_jobs_and_commits_each(app: Flask, org) -> None:  # type: ignore[no-untyped-def]
    election = LeaderElection(db.engine, "solo", ttl=timedelta(seconds=30))

    def broken(app: Flask) -> None:
        record("test.broken")
        raise RuntimeError("boom")

    def working(app: Flask) -> None:
        record("test.working")

    runner = JobRunner(app, [Job("broken", broken, 60), Job("working", working, 60)], election)
    assert runner.run_once() == {"broken": True, "working": True}
    from portal.audit.models import AuditEntry

    db.session.expire_all()
    actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("test.%"))))
    assert actions == ["test.working"]  # the failed job's work was rolled back, the next one committed
    election.resign()


def test_registered_jobs(app: Flask, org) -> None:  # type: ignore[no-untyped-def]
    names = {job.name: job for job in JOBS}
    assert {"registry_sync", "audit_checkpoint"} <= set(names)
    assert names["registry_sync"].interval(app) == 300  # PORTAL_REGISTRY_SYNC_MINUTES default 5
    from portal.registry.options import RegistryOptions

    app.config["REGISTRY_OPTIONS"] = RegistryOptions(sync_minutes=0)
    assert names["registry_sync"].interval(app) == 0  # switched off

    # The audit checkpoint job signs the head when it is due.
    entry = record("test.something")
    db.session.commit()
    head = entry.seq
    assert db.session.scalar(select(AuditCheckpoint.seq)) is None
    election = LeaderElection(db.engine, "solo", ttl=timedelta(seconds=30))
    runner = JobRunner(app, [names["audit_checkpoint"], names["registry_sync"]], election)
    assert runner.run_once() == {"audit_checkpoint": True, "registry_sync": True}
    db.session.expire_all()
    assert db.session.scalar(select(AuditCheckpoint.seq)) == head
    assert db.session.scalars(select(SyncRun)).all() == []  # no source configured: skipped
    election.resign()


def test_registry_sync_job_runs_against_the_source(app: Flask, org) -> None:  # type: ignore[no-untyped-def]
    from portal.registry.simulator import RegistrySimulator, SimulatorServer

    simulator = RegistrySimulator(["OA", "OB"])
    simulator.seed(25)
    with SimulatorServer(simulator) as server:
        app.config["SETTINGS"] = app.config["SETTINGS"].replace(registry_url=server.url)
        election = LeaderElection(db.engine, "solo", ttl=timedelta(seconds=30))
        job = next(j for j in JOBS if j.name == "registry_sync")
        assert JobRunner(app, [job], election).run_once() == {"registry_sync": True}
    db.session.expire_all()
    run = db.session.scalar(select(SyncRun))
    assert run is not None and run.records_created == 25 and run.error == ""
    election.resign()


def test_apscheduler_runs_jobs_on_the_leader(app: Flask) -> None:
    ran = threading.Event()
    count: list[int] = []

    def probe(app: Flask) -> None:
        count.append(1)
        if len(count) >= 2:
            ran.set()

    election = LeaderElection(db.engine, "aps", ttl=timedelta(seconds=30))
    runner = JobRunner(app, [Job("probe", probe, 1), Job("off", probe, 0)], election)
    scheduler = runner.build_scheduler(blocking=False)
    assert {j.id for j in scheduler.get_jobs()} == {"_leader_lease", "probe"}
    scheduler.start()
    try:
        assert ran.wait(15), "the probe job did not run twice"
    finally:
        scheduler.shutdown(wait=True)
        election.resign()
    assert election.holder == "aps" and len(count) >= 2


def test_cli_jobs_list_and_run_once(app: Flask, org) -> None:  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["jobs", "list"])
    assert listed.exit_code == 0 and "registry_sync" in listed.output and "every 300 s" in listed.output
    once = runner.invoke(args=["jobs", "run", "--once", "--holder", "cli-test"])
    assert once.exit_code == 0, once.output
    assert "registry_sync: ran" in once.output and "audit_checkpoint: ran" in once.output
    with db.engine.begin() as conn:
        assert try_acquire(conn, "scheduler", "other", timedelta(seconds=60)) is not None
    skipped = runner.invoke(args=["jobs", "run", "--once", "--holder", "cli-test-2"])
    assert "skipped (another host leads)" in skipped.output


@pytest.fixture(autouse=True)
def _registry_options_from_defaults(app: Flask) -> None:
    from portal.registry.options import RegistryOptions

    app.config["REGISTRY_OPTIONS"] = RegistryOptions()
