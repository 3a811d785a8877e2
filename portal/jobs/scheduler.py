"""The scheduler process (`portal jobs run`): APScheduler, never inside web workers.

Every host may run `portal jobs run`; only the holder of the "scheduler" lease (see
`portal.jobs.lease`) runs jobs. The leader renews its lease every third of the lease time; a
leader that dies stops renewing and another host takes over once the lease has expired. A
leader considers itself leader only until a quarter of the lease time before the expiry it
wrote, so the old and the new leader never both run jobs (given clocks synchronised far better
than that margin).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from portal.db import db, utcnow
from portal.jobs.lease import new_holder_id, release, try_acquire
from portal.jobs.registry import Job

log = logging.getLogger(__name__)

LEADER_LEASE = "scheduler"


class LeaderElection:
    """Acquire and renew the leader lease for one scheduler process."""

    def __init__(
        self,
        engine: Engine,
        holder: str | None = None,
        *,
        name: str = LEADER_LEASE,
        ttl: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine, self.name, self.ttl, self.clock = engine, name, ttl, clock
        self.holder = holder or new_holder_id()
        self.margin = ttl / 4
        self.valid_until: datetime | None = None
        self._lock = threading.Lock()

    def renew(self) -> bool:
        """Take or renew the lease; True while this process is the leader."""
        with self._lock:
            was_leader = self.valid_until is not None
            try:
                with self.engine.begin() as conn:
                    expires = try_acquire(conn, self.name, self.holder, self.ttl, now=self.clock())
            except SQLAlchemyError as exc:
                # Keep what we had: it runs out by itself if the database stays unreachable.
                log.warning("scheduler lease renewal failed: %s", exc.__class__.__name__)
                return self.is_leader()
            if expires is not None:
                self.valid_until = expires
                if not was_leader:
                    log.info("scheduler %s is now the leader (lease until %s)", self.holder, expires.isoformat())
                return True
            if was_leader:
                log.warning("scheduler %s lost the leader lease", self.holder)
            self.valid_until = None
            return False

    def is_leader(self) -> bool:
        until = self.valid_until
        return until is not None and self.clock() < until - self.margin

    def resign(self) -> None:
        with self._lock:
            self.valid_until = None
            try:
                with self.engine.begin() as conn:
                    release(conn, self.name, self.holder)
            except SQLAlchemyError:
                log.warning("could not release the scheduler lease; it expires by itself")


class JobRunner:
    """Runs registered jobs on the leader only, each in an app context with its own transaction."""

    def __init__(self, app: Flask, jobs: Sequence[Job], election: LeaderElection) -> None:
        self.app, self.jobs, self.election = app, list(jobs), election

    def run_job(self, job: Job) -> bool:
        """Run `job` once if this process leads; True when it ran (even if it failed)."""
        if not self.election.is_leader():
            log.debug("job %s skipped: not the leader", job.name)
            return False
        with self.app.app_context():
            try:
                job.func(self.app)
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("job %s failed", job.name)
            finally:
                db.session.remove()
        return True

    def run_once(self) -> dict[str, bool]:
        """Take the lease and run every job once (for cron-style use and tests)."""
        self.election.renew()
        return {job.name: self.run_job(job) for job in self.jobs}

    def build_scheduler(self, *, blocking: bool = True) -> Any:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        cls = BlockingScheduler if blocking else BackgroundScheduler
        scheduler = cls(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        now = datetime.now(UTC)
        renew_every = max(1.0, self.election.ttl.total_seconds() / 3)
        scheduler.add_job(self.election.renew, "interval", seconds=renew_every, id="_leader_lease",
                          next_run_time=now)
        for job in self.jobs:
            seconds = job.interval(self.app)
            if seconds <= 0:
                log.info("job %s is switched off", job.name)
                continue
            scheduler.add_job(self.run_job, "interval", seconds=seconds, args=[job], id=job.name,
                              next_run_time=now + timedelta(seconds=2))
            log.info("job %s every %d s", job.name, seconds)
        return scheduler

    def run_forever(self) -> None:
        scheduler = self.build_scheduler(blocking=True)

        def stop(signum: int, frame: object) -> None:
            log.info("signal %s: stopping the scheduler", signum)
            scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=True)
            self.election.resign()
