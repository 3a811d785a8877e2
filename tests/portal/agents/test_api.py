"""The agent API: enrolment, signed requests, jobs, and verified, idempotent page uploads."""

from __future__ import annotations

import io
import subprocess
import uuid

import pytest
from PIL import Image
from sqlalchemy import func, select

from gmcrypto.request import HEADER, sign_request
from gmcrypto.sm2 import PrivateKey
from portal.agents.evidence import manifest_evidence
from portal.agents.models import Agent, AgentStatus
from portal.audit.models import AuditEntry
from portal.audit.services import Actor
from portal.capture import services as capture
from portal.capture.models import CapturedPage, JobState, PageSource, PageStatus, ScanJob
from portal.db import db
from portal.dictionary.models import Material
from scanner_agent.portal_client import PageToUpload, PortalClient, PortalRejected, now_iso
from tests.portal.agents.conftest import enrolment_code, flask_transport, page_image


def material(code: str) -> Material:
    return db.session.scalar(select(Material).where(Material.code == code))


def page_count() -> int:
    return db.session.scalar(select(func.count()).select_from(CapturedPage))


def rejected_codes() -> list[str]:
    return [e.detail for e in db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "capture.page_rejected"))]


def a_page(business, material_code="ID_PROOF", job_id=None, image=None, fmt="jpeg", number=1, seq=1):  # type: ignore[no-untyped-def]
    return PageToUpload(
        upload_uuid=str(uuid.uuid4()), business_serial=business.serial, material_code=material_code,
        job_id=job_id, page_number=number, sequence=seq, image=image or page_image(f"p{number}"),
        image_format=fmt, captured_at=now_iso(),
    )


# Enrolment ---------------------------------------------------------------------------------

def test_enrolment_binds_key_to_window_and_code_is_single_use(client, org, agent_client) -> None:
    agent = db.session.scalar(select(Agent))
    assert agent.window_id == org.window_a.id
    assert agent.key_id == agent_client.key.public_key().key_id()
    assert agent.hostname == "counter-a1"
    code = enrolment_code(org.window_a)
    first = PortalClient(flask_transport(client), key=PrivateKey.generate())
    first.enrol(code)
    second = PortalClient(flask_transport(client), key=PrivateKey.generate())
    with pytest.raises(PortalRejected) as info:
        second.enrol(code)
    assert info.value.code == "bad_enrolment_code"
    assert info.value.status == 403


def test_expired_and_unknown_codes_are_refused(client, expired_code) -> None:
    for code in (expired_code, "AAAA-BBBB-CCCC"):
        agent = PortalClient(flask_transport(client), key=PrivateKey.generate())
        with pytest.raises(PortalRejected) as info:
            agent.enrol(code)
        assert info.value.code == "bad_enrolment_code"
    assert db.session.scalar(select(func.count()).select_from(Agent)) == 0


# Request authentication -------------------------------------------------------------------

def test_unknown_key_is_rejected(client, agent_client) -> None:
    stranger = PortalClient(flask_transport(client), key=PrivateKey.generate())
    with pytest.raises(PortalRejected) as info:
        stranger.heartbeat()
    assert (info.value.status, info.value.code) == (401, "bad_signature")


def test_tampered_body_is_rejected(client, agent_client) -> None:
    header = sign_request(agent_client.key, "POST", "/agent-api/v1/heartbeat", b'{"scanner_state":"ready"}')
    response = client.post("/agent-api/v1/heartbeat", data=b'{"scanner_state":"jammed"}',
                           headers={HEADER: header, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"] == "bad_signature"


def test_replayed_request_is_rejected(client, agent_client) -> None:
    body = b"{}"
    header = sign_request(agent_client.key, "POST", "/agent-api/v1/heartbeat", body)
    headers = {HEADER: header, "Content-Type": "application/json"}
    assert client.post("/agent-api/v1/heartbeat", data=body, headers=headers).status_code == 200
    again = client.post("/agent-api/v1/heartbeat", data=body, headers=headers)
    assert again.status_code == 401
    assert again.get_json()["error"] == "replayed_nonce"


def test_stale_timestamp_is_rejected(client, agent_client) -> None:
    import time

    agent_client.clock = lambda: int(time.time()) - 3600
    with pytest.raises(PortalRejected) as info:
        agent_client.heartbeat()
    assert info.value.code == "stale_timestamp"


def test_revoked_agent_is_rejected(agent_client) -> None:
    from portal.agents.services import revoke

    agent = db.session.scalar(select(Agent))
    revoke(agent, Actor.system())
    db.session.commit()
    with pytest.raises(PortalRejected) as info:
        agent_client.heartbeat()
    assert (info.value.status, info.value.code) == (403, "agent_revoked")
    assert db.session.scalar(select(Agent)).status == AgentStatus.REVOKED


# Jobs and uploads -------------------------------------------------------------------------

@pytest.fixture
def job(factory, org, agent_client):  # type: ignore[no-untyped-def]
    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    business = factory.business(org.office_a)
    scan = capture.start_scan(business=business, material=material("ID_PROOF"), window=org.window_a,
                              requested_by=Actor.of_user(clerk))
    db.session.commit()
    return scan


def test_job_flow_and_idempotent_upload(agent_client, job) -> None:
    claimed = agent_client.next_job(wait=0)
    assert claimed["id"] == job.public_id
    assert claimed["material_code"] == "ID_PROOF"
    assert claimed["options"]["color_mode"] == "color"
    assert agent_client.next_job(wait=0) is None  # taken
    business = db.session.get(ScanJob, job.id)
    from portal.registry.models import Business

    serial = db.session.get(Business, business.business_id).serial
    pages = [a_page(db.session.get(Business, business.business_id), job_id=job.public_id, number=n, seq=n)
             for n in (1, 2, 3)]
    for p in pages:
        assert agent_client.upload_page(p)["status"] == "stored"
    again = agent_client.upload_page(pages[1])
    assert again["status"] == "duplicate"
    assert page_count() == 3
    finished = agent_client.report_job(job.public_id, "completed")
    assert finished["state"] == "completed"
    db.session.expire_all()
    stored = db.session.scalars(select(CapturedPage).order_by(CapturedPage.position)).all()
    assert [p.position for p in stored] == [1, 2, 3]
    assert all(p.status == PageStatus.STAGED and p.signature_verified for p in stored)
    assert all(p.source == PageSource.AGENT and p.job_id == job.id for p in stored)
    assert db.session.get(ScanJob, job.id).pages_received == 3
    uploaded = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "capture.page_uploaded")).all()
    assert len(uploaded) == 3 and serial in uploaded[0].detail


def test_scan_refused_when_agent_offline(factory, org) -> None:
    clerk = factory.user("clerk", org.office_a)
    business = factory.business(org.office_a)
    with pytest.raises(capture.CaptureError) as info:
        capture.start_scan(business=business, material=material("ID_PROOF"), window=org.window_a,
                           requested_by=Actor.of_user(clerk))
    assert info.value.code == "agent_offline"
    assert "离线" in info.value.message_zh


def test_cancelled_job_refuses_further_pages(agent_client, job) -> None:
    from portal.registry.models import Business

    agent_client.next_job(wait=0)
    capture.cancel_job(db.session.get(ScanJob, job.id), Actor.system())
    db.session.commit()
    business = db.session.get(Business, job.business_id)
    with pytest.raises(PortalRejected) as info:
        agent_client.upload_page(a_page(business, job_id=job.public_id))
    assert info.value.code == "job_closed"
    assert page_count() == 0
    assert agent_client.report_job(job.public_id, "running")["state"] == JobState.CANCELLED.value


# Bad uploads: each rejected with a clear code, logged, nothing stored ---------------------------

def _jpeg_truncated() -> bytes:
    return page_image()[:-2000]


def _png_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000), 1).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "fmt", "code", "status"),
    [
        (_jpeg_truncated, "jpeg", "image_invalid", 422),
        (lambda: page_image(fmt="PNG"), "jpeg", "format_mismatch", 422),
        (_png_bomb, "png", "image_too_many_pixels", 422),
        (lambda: b"GIF89a" + b"\0" * 100, "gif", "format_not_allowed", 422),
    ],
)
def test_bad_images_are_rejected(agent_client, factory, org, image, fmt, code, status) -> None:
    business = factory.business(org.office_a)
    with pytest.raises(PortalRejected) as info:
        agent_client.upload_page(a_page(business, image=image(), fmt=fmt))
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.message_zh
    assert page_count() == 0
    assert any(code in d for d in rejected_codes())


def test_hash_mismatch_is_rejected(agent_client, factory, org, monkeypatch) -> None:
    business = factory.business(org.office_a)
    page = a_page(business)
    real_manifest = agent_client.manifest

    def lying_manifest(p):  # type: ignore[no-untyped-def]
        other = PageToUpload(**{**p.__dict__, "image": page_image("other")})
        return real_manifest(other)

    monkeypatch.setattr(agent_client, "manifest", lying_manifest)
    with pytest.raises(PortalRejected) as info:
        agent_client.upload_page(page)
    assert info.value.code == "hash_mismatch"
    assert page_count() == 0


def test_image_sealed_to_another_key_is_rejected(agent_client, factory, org) -> None:
    business = factory.business(org.office_a)
    agent_client.portal_key = PrivateKey.generate().public_key()
    with pytest.raises(PortalRejected) as info:
        agent_client.upload_page(a_page(business))
    assert info.value.code == "decryption_failed"
    assert page_count() == 0


def test_unknown_business_other_office_and_foreign_material(agent_client, factory, org) -> None:
    other_office = factory.business(org.office_b)
    theft = factory.business(org.office_a, type_code="THEFT")
    cases = [
        (a_page(other_office), "business_out_of_scope"),
        (a_page(theft, material_code="PURCHASE_INVOICE"), "material_not_in_checklist"),
        (a_page(theft, material_code="NO_SUCH"), "unknown_material"),
    ]
    ghost = a_page(theft)
    ghost.business_serial = "NOPE0000001"
    cases.append((ghost, "unknown_business"))
    for page, code in cases:
        with pytest.raises(PortalRejected) as info:
            agent_client.upload_page(page)
        assert info.value.code == code
    assert page_count() == 0


def test_oversized_upload_is_rejected(app, agent_client, factory, org) -> None:
    business = factory.business(org.office_a)
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    with pytest.raises(PortalRejected) as info:
        agent_client.upload_page(a_page(business, image=page_image(size=(1200, 1600))))
    assert info.value.status == 413
    assert page_count() == 0


def test_stored_manifest_verifies_with_openssl(agent_client, factory, org, tmp_path) -> None:
    business = factory.business(org.office_a)
    agent_client.upload_page(a_page(business))
    evidence = manifest_evidence(db.session.scalar(select(CapturedPage)))
    (tmp_path / "msg").write_bytes(evidence.message)
    (tmp_path / "sig.der").write_bytes(evidence.signature_der)
    (tmp_path / "pub.pem").write_bytes(evidence.public_key_pem)
    result = subprocess.run(
        ["openssl", "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", f"distid:{evidence.uid.decode()}",
         "-signature", "sig.der", "msg"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Verified OK" in result.stdout
    (tmp_path / "msg").write_bytes(evidence.message.replace(b"ID_PROOF", b"APPLICATION"))
    tampered = subprocess.run(
        ["openssl", "dgst", "-sm3", "-verify", "pub.pem", "-sigopt", f"distid:{evidence.uid.decode()}",
         "-signature", "sig.der", "msg"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert tampered.returncode != 0


def test_pages_without_a_job_form_a_barcode_batch(agent_client, factory, org) -> None:
    business = factory.business(org.office_a)
    first = agent_client.upload_page(a_page(business, material_code="APPLICATION", number=None, seq=1))
    second = agent_client.upload_page(a_page(business, material_code="APPLICATION", number=None, seq=2))
    assert first["status"] == second["status"] == "stored"
    db.session.expire_all()
    pages = db.session.scalars(select(CapturedPage).order_by(CapturedPage.id)).all()
    assert len({p.job_id for p in pages}) == 1
    batch = db.session.get(ScanJob, pages[0].job_id)
    assert batch.requested_by_id is None and batch.state == JobState.COMPLETED
    assert [p.position for p in pages] == [1, 2]
    assert all(p.status == PageStatus.STAGED for p in pages)
