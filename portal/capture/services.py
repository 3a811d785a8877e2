"""Capture: scan jobs for a window's agent, and pages arriving from agents or the browser."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from portal.agents.models import Agent, AgentStatus
from portal.audit.services import Actor, record
from portal.capture.completeness import checklist_status
from portal.capture.imagecheck import ImageInfo
from portal.capture.models import (
    CapturedPage,
    CaptureKind,
    JobState,
    PageSource,
    PageStatus,
    ScanJob,
    SupplementReason,
)
from portal.db import db, utcnow
from portal.dictionary.models import ChecklistItem, Material
from portal.org.models import Window
from portal.registry.models import Business
from portal.storage.services import store_image

AGENT_ONLINE_SECONDS = 90


class CaptureError(Exception):
    """A capture request that cannot be honoured; `message_zh` is for the clerk."""

    def __init__(self, code: str, message: str, message_zh: str, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.message_zh, self.status = code, message, message_zh, status


def active_agent(window: Window) -> Agent | None:
    return db.session.scalar(
        select(Agent)
        .where(Agent.window_id == window.id, Agent.status == AgentStatus.ACTIVE)
        .order_by(Agent.last_heartbeat_at.desc().nulls_last(), Agent.id.desc())
        .limit(1)
    )


def agent_online(agent: Agent | None) -> bool:
    return bool(
        agent is not None
        and agent.last_heartbeat_at is not None
        and utcnow() - agent.last_heartbeat_at < timedelta(seconds=AGENT_ONLINE_SECONDS)
    )


def material_in_checklist(business: Business, material: Material) -> bool:
    return db.session.scalar(
        select(func.count()).select_from(ChecklistItem).where(
            ChecklistItem.business_type_id == business.business_type_id,
            ChecklistItem.material_id == material.id,
        )
    ) > 0


def start_scan(
    *,
    business: Business,
    material: Material,
    window: Window,
    requested_by: Actor,
    kind: CaptureKind = CaptureKind.INITIAL,
    reason: SupplementReason | None = None,
    reason_text: str = "",
    options: dict[str, Any] | None = None,
) -> ScanJob:
    """Queue a scan job for the window's agent. The caller has checked the user's scope."""
    if not material_in_checklist(business, material):
        raise CaptureError("material_not_in_checklist", "material not in the checklist of this type",
                           f"“{material.name}”不在“{business.business_type.name}”的材料目录中。")
    if window.department_id != business.department_id:
        raise CaptureError("business_out_of_scope", "business belongs to another office",
                           "该业务不属于本窗口所在的登记点。", status=404)
    if kind == CaptureKind.SUPPLEMENTAL and reason is None:
        raise CaptureError("reason_required", "a supplemental capture needs a reason", "补充采集须选择原因。")
    if reason == SupplementReason.OTHER and not reason_text.strip():
        raise CaptureError("reason_required", "reason 'other' needs a text", "原因为“其他”时须填写说明。")
    agent = active_agent(window)
    if not agent_online(agent):
        raise CaptureError("agent_offline", "the window's agent is offline",
                           "本窗口的扫描终端离线，请检查扫描终端程序是否运行，或改用浏览器上传。", status=409)
    busy = db.session.scalar(
        select(ScanJob).where(
            ScanJob.window_id == window.id, ScanJob.state.in_([JobState.PENDING, JobState.RUNNING])
        ).limit(1)
    )
    if busy is not None:
        raise CaptureError("window_busy", "another scan is in progress at this window",
                           "本窗口正在进行另一次扫描，请等待其完成或先取消。", status=409)
    scan_options = {"color_mode": material.color_mode.value, "dpi": material.dpi, "source": "feeder"}
    scan_options.update(options or {})
    job = ScanJob(
        public_id=str(uuid.uuid4()), window_id=window.id, business_id=business.id,
        material_id=material.id, requested_by_id=requested_by.user_id, kind=kind, reason=reason,
        reason_text=reason_text.strip()[:200], options=json.dumps(scan_options),
    )
    db.session.add(job)
    db.session.flush()
    record("capture.scan_started", actor=requested_by, object_type="scan_job", object_id=job.public_id,
           detail={"business": business.serial, "material": material.code, "window": window.id,
                   "kind": kind.value, "reason": reason.value if reason else None})
    return job


def cancel_job(job: ScanJob, by: Actor) -> None:
    if job.state.finished:
        return
    job.state = JobState.CANCELLED
    job.finished_at = utcnow()
    record("capture.scan_cancelled", actor=by, object_type="scan_job", object_id=job.public_id)
    db.session.flush()


def claim_next_job(agent: Agent) -> ScanJob | None:
    """Hand the oldest pending job of the agent's window to it (pending → running)."""
    job = db.session.scalar(
        select(ScanJob)
        .where(ScanJob.window_id == agent.window_id, ScanJob.state == JobState.PENDING)
        .order_by(ScanJob.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=ScanJob)
    )
    if job is None:
        return None
    job.state = JobState.RUNNING
    job.agent_id = agent.id
    job.started_at = utcnow()
    db.session.flush()
    return job


def report_job(agent: Agent, job: ScanJob, state: str, error_code: str = "", error_message: str = "") -> ScanJob:
    if job.agent_id != agent.id:
        raise CaptureError("job_mismatch", "the job belongs to another agent", "该扫描任务不属于本终端。", 409)
    if job.state.finished:
        return job  # e.g. cancelled by the clerk meanwhile; the agent learns it from the answer
    try:
        new = JobState(state)
    except ValueError:
        raise CaptureError("bad_request", f"unknown job state {state!r}", "任务状态无效。", 400) from None
    if new == JobState.PENDING:
        raise CaptureError("bad_request", "a job cannot go back to pending", "任务状态无效。", 400)
    job.state = new
    job.error_code, job.error_message = error_code[:40], error_message[:500]
    if new.finished:
        job.finished_at = utcnow()
    record("capture.scan_reported", actor=Actor.of_agent(agent.id, agent.key_id), object_type="scan_job",
           object_id=job.public_id, outcome="success" if new != JobState.FAILED else "failure",
           detail={"state": new.value, "error_code": error_code, "pages": job.pages_received})
    db.session.flush()
    return job


@dataclass(frozen=True)
class IncomingPage:
    """A page that passed transport checks (signature, hash, decoding) and is ready to link."""

    business: Business
    material: Material
    data: bytes
    image: ImageInfo
    content_sm3: str
    source: PageSource
    window_id: int | None
    job: ScanJob | None = None
    agent: Agent | None = None
    page_number: int | None = None
    upload_uuid: str | None = None
    agent_sequence: int | None = None
    manifest_envelope: str | None = None
    blank: bool = False
    captured_by_id: int | None = None
    kind: CaptureKind = CaptureKind.INITIAL


def existing_upload(upload_uuid: str) -> CapturedPage | None:
    return db.session.scalar(select(CapturedPage).where(CapturedPage.upload_uuid == upload_uuid))


def ingest_page(incoming: IncomingPage, actor: Actor) -> CapturedPage:
    """Store the image encrypted and add it as a STAGED page awaiting the clerk's confirmation."""
    job = incoming.job
    if job is not None and job.state.finished and job.state != JobState.COMPLETED:
        raise CaptureError("job_closed", f"job is {job.state.value}", "扫描任务已结束，页面未保存。", 409)
    blob = store_image(incoming.data, incoming.image.media_type)
    position = incoming.page_number
    if position is None:
        position = (db.session.scalar(
            select(func.max(CapturedPage.position)).where(
                CapturedPage.business_id == incoming.business.id,
                CapturedPage.material_id == incoming.material.id,
                CapturedPage.status == PageStatus.STAGED,
            )
        ) or 0) + 1
    page = CapturedPage(
        business_id=incoming.business.id, material_id=incoming.material.id,
        job_id=job.id if job else None, position=position, status=PageStatus.STAGED,
        kind=job.kind if job else incoming.kind, reason=job.reason if job else None,
        reason_text=job.reason_text if job else "", source=incoming.source,
        agent_id=incoming.agent.id if incoming.agent else None, window_id=incoming.window_id,
        captured_by_id=job.requested_by_id if job else incoming.captured_by_id,
        blob_id=blob.id, content_sm3=incoming.content_sm3, byte_size=len(incoming.data),
        media_type=incoming.image.media_type, width=incoming.image.width, height=incoming.image.height,
        dpi=incoming.image.dpi, blank=incoming.blank, upload_uuid=incoming.upload_uuid,
        agent_sequence=incoming.agent_sequence, manifest_envelope=incoming.manifest_envelope,
        signature_verified=incoming.source == PageSource.AGENT,
    )
    db.session.add(page)
    if job is not None:
        job.pages_received += 1
    if incoming.agent is not None and incoming.agent_sequence:
        incoming.agent.last_sequence = max(incoming.agent.last_sequence, incoming.agent_sequence)
    db.session.flush()
    record("capture.page_uploaded", actor=actor, object_type="captured_page", object_id=str(page.id),
           detail={"business": incoming.business.serial, "material": incoming.material.code,
                   "job": job.public_id if job else None, "position": position,
                   "sm3": incoming.content_sm3, "source": incoming.source.value, "blank": incoming.blank})
    return page


def staged_pages(business: Business, material: Material) -> list[CapturedPage]:
    return list(db.session.scalars(
        select(CapturedPage).where(
            CapturedPage.business_id == business.id, CapturedPage.material_id == material.id,
            CapturedPage.status == PageStatus.STAGED,
        ).order_by(CapturedPage.position, CapturedPage.id)
    ))


__all__ = ["CaptureError", "IncomingPage", "checklist_status"]
