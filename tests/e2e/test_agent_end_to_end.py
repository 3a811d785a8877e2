"""A real agent process with SANE's test backend, enrolled against a running portal, scans the
10 feeder pages of a job: all 10 stored, verified and linked exactly once, also when the portal
stops mid-batch and when the agent is SIGKILLed with pages still waiting in its outbox."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.agents import services as agent_services
from portal.agents.models import Agent
from portal.audit.services import Actor
from portal.capture import services as capture
from portal.capture.models import CapturedPage, JobState, ScanJob
from portal.db import db, utcnow
from portal.dictionary.models import Material
from scanner_agent.config import AgentConfig
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.sane


def _pages(job_id: int) -> list[CapturedPage]:
    db.session.rollback()
    return list(db.session.scalars(select(CapturedPage).where(CapturedPage.job_id == job_id)))


def _job(job_id: int) -> ScanJob:
    db.session.rollback()
    return db.session.get(ScanJob, job_id)


def _enrol_and_start(agent_process, portal_url: str, org) -> None:  # type: ignore[no-untyped-def]
    code, _ = agent_services.create_enrolment_code(org.window_a, Actor.system())
    db.session.commit()
    result = agent_process.cli("enroll", "--portal", portal_url, "--code", code, "--driver", "sane",
                               "--device", "test:0")
    assert result.returncode == 0, result.stdout + result.stderr
    config = AgentConfig.load(agent_process.data_dir)
    config.poll_wait_seconds, config.heartbeat_seconds = 2, 1
    config.save()
    agent_process.start()

    def online() -> bool:
        db.session.rollback()
        agent = db.session.scalar(select(Agent))
        return bool(agent and agent.last_heartbeat_at and utcnow() - agent.last_heartbeat_at < timedelta(seconds=30))

    wait_until(online, 60, what="the agent's first heartbeat")


def _start_job(factory, org) -> ScanJob:  # type: ignore[no-untyped-def]
    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    business = factory.business(org.office_a)
    material = db.session.scalar(select(Material).where(Material.code == "APPLICATION"))
    job = capture.start_scan(business=business, material=material, window=org.window_a,
                             requested_by=Actor.of_user(clerk), options={"dpi": 50, "source": "feeder"})
    db.session.commit()
    return job


def _assert_exactly_ten(job: ScanJob) -> None:
    pages = _pages(job.id)
    assert len(pages) == 10
    assert sorted(p.position for p in pages) == list(range(1, 11))
    assert len({p.upload_uuid for p in pages}) == 10
    assert all(p.signature_verified and p.manifest_envelope for p in pages)
    assert all(p.business_id == job.business_id and p.material_id == job.material_id for p in pages)
    assert _job(job.id).pages_received == 10


def _completed(job: ScanJob):  # type: ignore[no-untyped-def]
    return lambda: _job(job.id).state == JobState.COMPLETED and len(_pages(job.id)) == 10


def test_ten_feeder_pages_exactly_once(portal_process, relay, agent_process, factory, org) -> None:
    _enrol_and_start(agent_process, relay.url, org)
    job = _start_job(factory, org)
    wait_until(_completed(job), 120, what="job completed with 10 pages")
    _assert_exactly_ten(job)


def test_portal_stopped_mid_batch(portal_process, relay, agent_process, factory, org) -> None:
    _enrol_and_start(agent_process, relay.url, org)
    job = _start_job(factory, org)
    wait_until(lambda: len(_pages(job.id)) >= 2, 120, interval=0.05, what="the first pages")
    portal_process.stop()
    stopped_with = len(_pages(job.id))
    assert stopped_with < 10, "the batch finished before the portal could be stopped"
    wait_until(lambda: (agent_process.data_dir / "current_job.json").exists(), 10, what="job memory")
    import time

    time.sleep(4)  # the agent retries against a dead portal meanwhile
    portal_process.start()
    wait_until(_completed(job), 180, what="job completed after the portal came back")
    _assert_exactly_ten(job)


def test_agent_killed_with_pages_in_outbox(portal_process, relay, agent_process, factory, org) -> None:
    _enrol_and_start(agent_process, relay.url, org)
    job = _start_job(factory, org)
    wait_until(lambda: len(_pages(job.id)) >= 2, 120, interval=0.05, what="the first pages")
    relay.cut.set()  # uploads now fail; the scan goes on into the outbox
    memory = agent_process.data_dir / "current_job.json"
    wait_until(lambda: memory.exists() and json.loads(memory.read_text()).get("scan_finished"), 120,
               what="the scan to finish into the outbox")
    assert len(_pages(job.id)) < 10
    agent_process.kill()
    relay.cut.clear()
    agent_process.start()
    wait_until(_completed(job), 180, what="job completed after the agent restarted")
    _assert_exactly_ten(job)
