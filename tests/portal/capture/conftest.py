"""Capture fixtures: a clerk at office A's window, a LOCK business (two required materials), and a
real agent client (scanner_agent.portal_client) enrolled to that window over Flask's test client."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from gmcrypto.sm2 import PrivateKey
from portal.audit.services import Actor
from portal.capture import services
from portal.capture.models import CapturedPage, JobState, ScanJob
from portal.db import db
from portal.dictionary.models import Material
from scanner_agent.portal_client import PageToUpload, PortalClient, now_iso
from tests.conftest import login
from tests.portal.agents.conftest import enrolment_code, flask_transport, page_image


def material(code: str) -> Material:
    return db.session.scalar(select(Material).where(Material.code == code))


@pytest.fixture
def clerk(factory, org):  # type: ignore[no-untyped-def]
    return factory.user("clerk", org.office_a, window=org.window_a)


@pytest.fixture
def business(factory, org):  # type: ignore[no-untyped-def]
    """A LOCK business of office A: ID_PROOF and LOCK_REQUEST are required."""
    return factory.business(org.office_a, type_code="LOCK")


@pytest.fixture
def agent(app, org):  # type: ignore[no-untyped-def]
    """An agent enrolled to office A's window and online (it has just sent a heartbeat)."""
    client = PortalClient(flask_transport(app.test_client()), key=PrivateKey.generate())
    client.enrol(enrolment_code(org.window_a), hostname="counter-a1", version="0.1.0")
    client.heartbeat(scanner_model="Demo", scanner_state="ready", version="0.1.0")
    return client


@pytest.fixture
def signed_in(client, clerk):  # type: ignore[no-untyped-def]
    response = login(client, clerk.username)
    assert response.status_code == 302
    return client


def fulfil(agent: PortalClient, business, material_code: str, pages: int = 2, *, finish: str = "completed",
           blank: tuple[int, ...] = (), error_code: str = "", error_message: str = "") -> dict:  # type: ignore[no-untyped-def]
    """Do what the agent runtime does for the next job: claim it, upload `pages`, report the end."""
    job = agent.next_job(wait=0)
    assert job is not None, "no job for the agent"
    assert job["material_code"] == material_code
    agent.report_job(job["id"], "running")
    for number in range(1, pages + 1):
        agent.upload_page(PageToUpload(
            upload_uuid=str(uuid.uuid4()), business_serial=business.serial, material_code=material_code,
            job_id=job["id"], page_number=number, sequence=number, image=page_image(f"{material_code}-{number}"),
            image_format="jpeg", captured_at=now_iso(), blank=number in blank,
        ))
    if finish:
        agent.report_job(job["id"], finish, error_code, error_message)
    return job


def job_by_public_id(public_id: str) -> ScanJob:
    db.session.expire_all()
    return db.session.scalar(select(ScanJob).where(ScanJob.public_id == public_id))


def scan_and_fulfil(agent, business, user, code: str, pages: int = 2, **kwargs) -> ScanJob:  # type: ignore[no-untyped-def]
    """Start a scan as `user` (service), let the agent deliver `pages`, return the finished job."""
    job = services.request_capture(business=business, material=material(code), window=user.window,
                                   actor=Actor.of_user(user), **kwargs)
    db.session.commit()
    fulfil(agent, business, code, pages)
    job = job_by_public_id(job.public_id)
    assert job.state == JobState.COMPLETED
    return job


def pages_of(business, code: str, *statuses) -> list[CapturedPage]:  # type: ignore[no-untyped-def]
    db.session.expire_all()
    stmt = select(CapturedPage).where(CapturedPage.business_id == business.id,
                                      CapturedPage.material_id == material(code).id)
    if statuses:
        stmt = stmt.where(CapturedPage.status.in_(statuses))
    return list(db.session.scalars(stmt.order_by(CapturedPage.position, CapturedPage.version, CapturedPage.id)))


from tests.portal.browser_support import browser, live_server, page  # noqa: E402, F401
