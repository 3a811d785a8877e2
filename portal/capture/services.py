"""Capture: scan jobs for a window's agent, and pages arriving from agents or the browser."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update

from gmcrypto.sm3 import sm3_hex
from portal.agents.models import Agent, AgentStatus
from portal.audit.services import Actor, record
from portal.capture.completeness import MaterialStatus, checklist_status, refresh_completeness
from portal.capture.imagecheck import ImageInfo, ImageRejected, inspect_image
from portal.capture.models import (
    CapturedPage,
    CaptureKind,
    JobState,
    PageSource,
    PageStatus,
    ScanJob,
    SupplementMode,
    SupplementReason,
)
from portal.db import db, utcnow
from portal.dictionary.models import ChecklistItem, Material, Requirement
from portal.org.models import Window
from portal.registry.changes import businesses_changed
from portal.registry.models import Business, CaptureState
from portal.scoping import Scope
from portal.storage.services import BlobIntegrityError, store_image

log = logging.getLogger(__name__)

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



# =================================================================================================
# The clerk's capture screen: opening a business, windows, jobs, staging, confirmation, history.
# =================================================================================================

ACTIVE_STATES = (JobState.PENDING, JobState.RUNNING)
MAX_BROWSER_FILES = 100
_SERIAL_OK = re.compile(r"^[0-9A-Za-z_\-./]{1,40}$")

JOB_ERROR_TITLES = {
    "paper_jam": "扫描仪卡纸",
    "feeder_empty": "进纸器无纸",
    "cover_open": "扫描仪盖板打开",
    "busy": "扫描仪被占用",
    "offline": "未找到扫描仪",
    "driver_crashed": "扫描仪驱动异常",
    "driver_timeout": "扫描仪无响应",
    "io_error": "扫描仪通信错误",
    "access_denied": "无权访问扫描仪",
    "unsupported": "扫描设置不受支持",
    "agent_restarted": "扫描终端程序重启",
    "too_many_pixels": "页面图像过大",
    "page_too_large": "页面文件过大",
}


def not_found(what: str = "record") -> CaptureError:
    return CaptureError("not_found", f"no such {what}", "未找到该记录。", 404)


def stale(message_zh: str = "该页已被确认或删除（可能是其他人刚刚操作的），请刷新后再试。") -> CaptureError:
    return CaptureError("stale", "the page is no longer staged", message_zh, 409)


# Opening a business ------------------------------------------------------------------------------


def normalise_serial(serial: str) -> str:
    """What a clerk typed or a barcode reader sent: full-width characters from a Chinese IME
    become ASCII, whitespace and control characters go."""
    value = unicodedata.normalize("NFKC", serial or "")
    value = "".join(ch for ch in value if not ch.isspace() and unicodedata.category(ch)[0] != "C")
    if not value:
        raise CaptureError("serial_required", "no serial given", "请输入或扫描业务流水号。", 422)
    if not _SERIAL_OK.match(value):
        raise CaptureError("bad_serial", f"malformed serial {value[:60]!r}",
                           "流水号格式不正确（应为 40 位以内的字母、数字），请重新扫描或输入。", 422)
    return value


def _fetch_from_registry(serial: str) -> Business | None:
    """The registration system's on-demand fetch (None when unknown there too).

    A quarantined record raises CaptureError "business_quarantined": the view must keep (commit)
    the quarantine row the fetch flushed, not roll it back.
    """
    from portal.registry.services import BusinessQuarantined, RegistrySourceError, fetch_business

    try:
        return fetch_business(serial)
    except BusinessQuarantined as exc:
        raise CaptureError("business_quarantined", "the fetched record was quarantined", str(exc)) from None
    except RegistrySourceError as exc:
        raise CaptureError("registry_unavailable", "on-demand fetch failed", str(exc), 424) from None


def open_business(scope: Scope, serial: str) -> tuple[Business, bool]:
    """The business with this serial within `scope`, fetched from the registration system when
    the portal does not have it yet. Returns (business, fetched). A business of an office outside
    the scope is refused without any of its data."""
    serial = normalise_serial(serial)
    business = db.session.scalar(select(Business).where(Business.serial == serial))
    fetched = False
    if business is None:
        business = _fetch_from_registry(serial)
        fetched = business is not None
    if business is None:
        raise CaptureError("unknown_serial", f"no business with serial {serial!r}",
                           f"未找到流水号为 {serial} 的业务。请核对流水号；如业务刚在登记系统受理，请稍后再试。", 404)
    if not scope.allows(business.department_id):
        raise CaptureError("business_out_of_scope", "the business belongs to another office",
                           "该业务不属于本登记点。", 403)
    return business, fetched


# Windows and agents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowStatus:
    window: Window | None
    agent: Agent | None
    online: bool

    @property
    def kind(self) -> str:
        if self.window is None or self.agent is None:
            return "none"
        return "online" if self.online else "offline"

    @property
    def label(self) -> str:
        return {"none": "未登记扫描终端", "online": "扫描终端在线", "offline": "扫描终端离线"}[self.kind]


def office_windows(business: Business) -> list[Window]:
    return list(db.session.scalars(
        select(Window).where(Window.department_id == business.department_id, Window.active.is_(True))
        .order_by(Window.code, Window.id)
    ))


def choose_window(windows: Sequence[Window], *preferred: int | None) -> Window | None:
    """The first of `preferred` (the clerk's choice, their configured window) that is one of
    `windows`, else the office's first window."""
    by_id = {w.id: w for w in windows}
    for window_id in preferred:
        if window_id in by_id:
            return by_id[window_id]
    return windows[0] if windows else None


def window_status(window: Window | None) -> WindowStatus:
    agent = active_agent(window) if window is not None else None
    return WindowStatus(window, agent, agent_online(agent))


def window_busy(window: Window) -> ScanJob | None:
    """The window's job in progress, if any (one scan at a time per window)."""
    return db.session.scalar(
        select(ScanJob).where(ScanJob.window_id == window.id, ScanJob.state.in_(ACTIVE_STATES))
        .order_by(ScanJob.id).limit(1)
    )


def recent_businesses(user_id: int, scope: Scope, limit: int = 8) -> list[Business]:
    """The businesses this user captured most recently (for going back to one): from their last
    jobs only, read backwards on the (requested_by_id, id) index."""
    business_ids = list(dict.fromkeys(db.session.scalars(
        select(ScanJob.business_id).where(ScanJob.requested_by_id == user_id)
        .order_by(ScanJob.id.desc()).limit(limit * 8)
    )))[:limit]
    if not business_ids:
        return []
    found = {b.id: b for b in db.session.scalars(
        scope.apply(select(Business).where(Business.id.in_(business_ids)), Business.department_id))}
    return [found[i] for i in business_ids if i in found]


# Starting a capture --------------------------------------------------------------------------------


def confirmed_pages(business: Business, material: Material, *, fresh: bool = False) -> list[CapturedPage]:
    stmt = select(CapturedPage).where(
        CapturedPage.business_id == business.id, CapturedPage.material_id == material.id,
        CapturedPage.status == PageStatus.CONFIRMED,
    ).order_by(CapturedPage.position, CapturedPage.id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return list(db.session.scalars(stmt))


def checklist_material(business: Business, material_id: int) -> Material:
    """A material of the business type's checklist; 404 for an unknown id, 422 for a material the
    type does not have."""
    material = db.session.get(Material, material_id)
    if material is None:
        raise not_found("material")
    if not material_in_checklist(business, material):
        raise CaptureError("material_not_in_checklist", "material not in the checklist of this type",
                           f"“{material.name}”不在“{business.business_type.name}”的材料目录中。")
    return material


def initial_capture_allowed(business: Business, confirmed_count: int) -> bool:
    """Initial capture may add to a business until it is complete; afterwards a material that
    already has pages changes only by supplemental capture, with a reason."""
    return business.capture_state != CaptureState.COMPLETE or confirmed_count == 0


def _check_request(business: Business, material: Material, window: Window, kind: CaptureKind,
                   mode: SupplementMode, replaces: CapturedPage | None, reason: SupplementReason | None,
                   reason_text: str) -> None:
    if not material_in_checklist(business, material):
        raise CaptureError("material_not_in_checklist", "material not in the checklist of this type",
                           f"“{material.name}”不在“{business.business_type.name}”的材料目录中。")
    if window.department_id != business.department_id:
        raise CaptureError("business_out_of_scope", "business belongs to another office",
                           "该业务不属于本窗口所在的登记点。", status=404)
    current = confirmed_pages(business, material)
    if kind == CaptureKind.INITIAL:
        if mode != SupplementMode.APPEND or replaces is not None:
            raise CaptureError("supplement_required", "replacing pages is a supplemental capture",
                               "替换页面属于补充采集，请选择补充采集并填写原因。")
        if not initial_capture_allowed(business, len(current)):
            raise CaptureError("supplement_required", "the business is complete; use a supplemental capture",
                               f"该业务已采集完整，“{material.name}”已有 {len(current)} 页。"
                               "如需追加或重扫，请使用“补充采集”并选择原因。", 409)
        return
    if reason is None:
        raise CaptureError("reason_required", "a supplemental capture needs a reason", "补充采集须选择原因。")
    if reason == SupplementReason.OTHER and not reason_text.strip():
        raise CaptureError("reason_required", "reason 'other' needs a text", "原因为“其他”时须填写说明。")
    if mode == SupplementMode.REPLACE_PAGE:
        if replaces is None:
            raise CaptureError("page_required", "choose the page to replace", "请选择要替换的页面。")
        if replaces.business_id != business.id or replaces.material_id != material.id:
            raise not_found("page")
        if replaces.status != PageStatus.CONFIRMED:
            raise stale("要替换的页面已不是当前版本（可能已被他人替换），请刷新后重新选择。")
    elif mode == SupplementMode.REPLACE_MATERIAL and not current:
        raise CaptureError("nothing_to_replace", "the material has no confirmed pages",
                           f"“{material.name}”还没有已确认的页面，无需整份替换，请选择“追加页面”。")


def request_capture(
    *,
    business: Business,
    material: Material,
    window: Window,
    actor: Actor,
    kind: CaptureKind = CaptureKind.INITIAL,
    mode: SupplementMode = SupplementMode.APPEND,
    replaces: CapturedPage | None = None,
    reason: SupplementReason | None = None,
    reason_text: str = "",
    options: dict[str, Any] | None = None,
) -> ScanJob:
    """Queue a scan on the window's agent for an initial or supplemental capture. The material's
    colour mode and dpi come from the dictionary (start_scan)."""
    if kind == CaptureKind.INITIAL:
        reason, reason_text = None, ""
    _check_request(business, material, window, kind, mode, replaces, reason, reason_text)
    job = start_scan(business=business, material=material, window=window, requested_by=actor, kind=kind,
                     reason=reason, reason_text=reason_text, options=options)
    job.mode = mode
    job.replaces_page_id = replaces.id if replaces is not None else None
    db.session.flush()
    if kind == CaptureKind.SUPPLEMENTAL:
        record("capture.supplement_requested", actor=actor, object_type="scan_job", object_id=job.public_id,
               reason=reason_text, detail={"business": business.serial, "material": material.code,
                                           "mode": mode.value, "reason": reason.value if reason else None,
                                           "replaces_page": job.replaces_page_id, "source": "agent"})
    return job


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    data: bytes


def _declared_format(filename: str) -> str | None:
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return name.rsplit(".", 1)[1].lower() if "." in name else None


def browser_upload(
    *,
    business: Business,
    material: Material,
    window: Window,
    actor: Actor,
    files: Sequence[UploadedFile],
    max_bytes: int,
    max_pixels: int,
    kind: CaptureKind = CaptureKind.INITIAL,
    mode: SupplementMode = SupplementMode.APPEND,
    replaces: CapturedPage | None = None,
    reason: SupplementReason | None = None,
    reason_text: str = "",
) -> ScanJob:
    """The fallback without an agent: JPEG/PNG/TIFF files checked exactly like agent pages (size
    limit, inspect_image), all or nothing, staged as one completed job of source BROWSER."""
    if kind == CaptureKind.INITIAL:
        reason, reason_text = None, ""
    _check_request(business, material, window, kind, mode, replaces, reason, reason_text)
    files = [f for f in files if f.filename or f.data]
    if not files:
        raise CaptureError("no_files", "no files", "请选择要上传的图像文件（JPEG、PNG 或 TIFF）。")
    if len(files) > MAX_BROWSER_FILES:
        raise CaptureError("too_many_files", f"more than {MAX_BROWSER_FILES} files",
                           f"一次最多上传 {MAX_BROWSER_FILES} 个文件。")
    checked: list[tuple[UploadedFile, ImageInfo]] = []
    for f in files:
        name = f.filename or "未命名文件"
        if not f.data:
            raise CaptureError("empty_file", f"{name} is empty", f"文件“{name}”是空文件。")
        if len(f.data) > max_bytes:
            raise CaptureError("too_large", f"{name} exceeds {max_bytes} bytes",
                               f"文件“{name}”超过大小限制（{max_bytes // (1024 * 1024)} MB）。", 413)
        try:
            info = inspect_image(f.data, _declared_format(name), max_pixels)
        except ImageRejected as exc:
            raise CaptureError(exc.code, f"{name}: {exc.message}", f"文件“{name}”：{exc.message_zh}") from None
        checked.append((f, info))
    now = utcnow()
    job = ScanJob(
        public_id=str(uuid.uuid4()), window_id=window.id, business_id=business.id, material_id=material.id,
        requested_by_id=actor.user_id, kind=kind, reason=reason, reason_text=reason_text.strip()[:200],
        state=JobState.COMPLETED, source=PageSource.BROWSER, mode=mode,
        replaces_page_id=replaces.id if replaces is not None else None,
        options=json.dumps({"source": "browser"}), started_at=now, finished_at=now,
    )
    db.session.add(job)
    db.session.flush()
    for number, (f, info) in enumerate(checked, start=1):
        ingest_page(IncomingPage(
            business=business, material=material, data=f.data, image=info, content_sm3=sm3_hex(f.data),
            source=PageSource.BROWSER, window_id=window.id, job=job, page_number=number,
            captured_by_id=actor.user_id, kind=kind,
        ), actor)
    record("capture.browser_upload", actor=actor, object_type="scan_job", object_id=job.public_id,
           reason=reason_text if kind == CaptureKind.SUPPLEMENTAL else "",
           detail={"business": business.serial, "material": material.code, "pages": len(checked),
                   "kind": kind.value, "mode": mode.value, "reason": reason.value if reason else None,
                   "replaces_page": job.replaces_page_id, "window": window.id,
                   "files": [f.filename[:80] for f, _ in checked][:MAX_BROWSER_FILES]})
    return job


def retry_job(business: Business, job: ScanJob, window: Window, actor: Actor) -> ScanJob:
    """Cancel the job if it still runs and queue the same scan again."""
    if job.source == PageSource.BROWSER:
        raise CaptureError("cannot_retry", "a browser upload cannot be retried",
                           "浏览器上传的任务无法重试，请重新选择文件上传。")
    if not job.state.finished:
        cancel_job(job, actor)
    replaces = db.session.get(CapturedPage, job.replaces_page_id) if job.replaces_page_id else None
    options = {k: v for k, v in json.loads(job.options or "{}").items() if k == "source"}
    return request_capture(business=business, material=job.material, window=window, actor=actor, kind=job.kind,
                           mode=job.mode, replaces=replaces, reason=job.reason, reason_text=job.reason_text,
                           options=options)


# Locating jobs and pages ---------------------------------------------------------------------------


def job_of(business: Business, job_id: int) -> ScanJob:
    job = db.session.get(ScanJob, job_id)
    if job is None or job.business_id != business.id:
        raise not_found("job")
    return job


def page_of(job: ScanJob, page_id: int) -> CapturedPage:
    page = db.session.get(CapturedPage, page_id)
    if page is None or page.job_id != job.id or page.business_id != job.business_id:
        raise not_found("page")
    return page


def business_page(business: Business, page_id: int) -> CapturedPage:
    page = db.session.get(CapturedPage, page_id)
    if page is None or page.business_id != business.id:
        raise not_found("page")
    return page


def lock_business(business_id: int) -> Business:
    """Take the business row lock for the rest of the transaction and return the row fresh.

    PostgreSQL: SELECT … FOR UPDATE OF business. SQLite has no row locks: a no-op UPDATE takes
    the database write lock (pysqlite opens the transaction at the first write), which is held
    until commit, so every read after it sees the latest committed state.
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(
            update(Business).where(Business.id == business_id).values(version=Business.version)
            .execution_options(synchronize_session=False)
        )
    business = db.session.scalar(
        select(Business).where(Business.id == business_id).with_for_update(of=Business)
        .execution_options(populate_existing=True)
    )
    if business is None:
        raise not_found("business")
    return business


def _fresh_job(job_id: int) -> ScanJob:
    job = db.session.scalar(
        select(ScanJob).where(ScanJob.id == job_id).execution_options(populate_existing=True)
    )
    if job is None:
        raise not_found("job")
    return job


def job_staged_pages(job: ScanJob, *, fresh: bool = False) -> list[CapturedPage]:
    stmt = select(CapturedPage).where(
        CapturedPage.job_id == job.id, CapturedPage.status == PageStatus.STAGED
    ).order_by(CapturedPage.position, CapturedPage.id)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return list(db.session.scalars(stmt))


def _locked_staged_page(job: ScanJob, page_id: int) -> CapturedPage:
    lock_business(job.business_id)
    page = db.session.scalar(
        select(CapturedPage).where(CapturedPage.id == page_id).execution_options(populate_existing=True)
    )
    if page is None or page.job_id != job.id:
        raise not_found("page")
    if page.status != PageStatus.STAGED:
        raise stale()
    return page


# Editing the staging area --------------------------------------------------------------------------


def rotate_page(job: ScanJob, page_id: int, degrees: int, actor: Actor) -> CapturedPage:
    """Turn a staged page by ±90° (stored, applied on display; the image is never rewritten)."""
    if degrees not in (90, -90, 180):
        raise CaptureError("bad_request", "rotation must be ±90 or 180", "旋转角度无效。", 400)
    page = _locked_staged_page(job, page_id)
    page.rotation = (page.rotation + degrees) % 360
    db.session.flush()
    record("capture.page_rotated", actor=actor, object_type="captured_page", object_id=str(page.id),
           detail={"job": job.public_id, "degrees": degrees, "rotation": page.rotation})
    return page


def move_page(job: ScanJob, page_id: int, step: int, actor: Actor) -> list[CapturedPage]:
    """Move a staged page one place up (-1) or down (+1) among the job's staged pages; positions
    are renumbered 1..n so the order is always unambiguous."""
    if step not in (-1, 1):
        raise CaptureError("bad_request", "step must be -1 or 1", "移动方向无效。", 400)
    page = _locked_staged_page(job, page_id)
    pages = job_staged_pages(job, fresh=True)
    index = next(i for i, p in enumerate(pages) if p.id == page.id)
    target = index + step
    if 0 <= target < len(pages):
        pages[index], pages[target] = pages[target], pages[index]
    for number, p in enumerate(pages, start=1):
        p.position = number
    db.session.flush()
    record("capture.page_moved", actor=actor, object_type="captured_page", object_id=str(page.id),
           detail={"job": job.public_id, "step": step, "order": [p.id for p in pages]})
    return pages


def discard_page(job: ScanJob, page_id: int, actor: Actor) -> CapturedPage:
    """Discard a staged page before confirmation; the row and image stay for the audit trail."""
    page = _locked_staged_page(job, page_id)
    page.status = PageStatus.DISCARDED
    db.session.flush()
    record("capture.page_discarded", actor=actor, object_type="captured_page", object_id=str(page.id),
           detail={"job": job.public_id, "business_id": job.business_id, "position": page.position,
                   "sm3": page.content_sm3})
    return page


# Confirmation ------------------------------------------------------------------------------------


@dataclass
class Confirmation:
    business: Business
    job: ScanJob
    confirmed: list[CapturedPage]
    superseded: list[CapturedPage]
    state: CaptureState


def confirm_job(job: ScanJob, actor: Actor, now: datetime | None = None) -> Confirmation:
    """Make the job's staged pages part of the archive, under the business row lock.

    - append (initial capture, supplemental "add pages"): after the material's current pages;
    - replace_page: the single new page takes the old page's position as version + 1 and the
      old page becomes SUPERSEDED;
    - replace_material: every current page becomes SUPERSEDED and the new set is confirmed.
    The completeness summary is recomputed in the same locked transaction, so two clerks
    confirming at once never lose each other's pages or mix their order.
    """
    now = now or utcnow()
    business = lock_business(job.business_id)
    job = _fresh_job(job.id)
    if not job.state.finished:
        raise CaptureError("job_not_finished", "the scan is still in progress",
                           "扫描尚未完成，请等待扫描终端上传完全部页面后再确认。", 409)
    pages = job_staged_pages(job, fresh=True)
    if not pages:
        raise CaptureError("nothing_to_confirm", "the job has no staged pages",
                           "该任务没有待确认的页面（可能已被他人确认或全部删除），请刷新。", 409)
    material = job.material
    current = confirmed_pages(business, material, fresh=True)
    superseded: list[CapturedPage] = []
    if job.mode == SupplementMode.REPLACE_PAGE:
        old = next((p for p in current if p.id == job.replaces_page_id), None)
        if old is None:
            raise stale("要替换的页面已不是当前版本（可能已被他人替换），请刷新后重新选择。")
        if len(pages) != 1:
            raise CaptureError("one_page_only", "replacing a page needs exactly one new page",
                               f"替换单页只能确认 1 页，当前有 {len(pages)} 页，请删除多余的页面后再确认。")
        new = pages[0]
        old.status = PageStatus.SUPERSEDED
        new.position, new.version, new.supersedes_id = old.position, old.version + 1, old.id
        superseded.append(old)
    elif job.mode == SupplementMode.REPLACE_MATERIAL:
        top_version = max((p.version for p in current), default=0)
        old_by_position = {p.position: p for p in current}
        for old in current:
            old.status = PageStatus.SUPERSEDED
            superseded.append(old)
        db.session.flush()
        for number, page in enumerate(pages, start=1):
            old = old_by_position.get(number)
            page.position, page.version = number, top_version + 1
            page.supersedes_id = old.id if old is not None else None
    else:
        start = max((p.position for p in current), default=0)
        for number, page in enumerate(pages, start=start + 1):
            page.position, page.version = number, 1
    for page in pages:
        page.status = PageStatus.CONFIRMED
        page.confirmed_by_id = actor.user_id
        page.confirmed_at = now
    db.session.flush()
    state = refresh_completeness(business)
    record("capture.confirmed", actor=actor, object_type="business", object_id=business.serial,
           reason=job.reason_text if job.kind == CaptureKind.SUPPLEMENTAL else "",
           detail={"job": job.public_id, "material": material.code, "kind": job.kind.value,
                   "mode": job.mode.value, "reason": job.reason.value if job.reason else None,
                   "pages": [p.id for p in pages], "superseded": [p.id for p in superseded],
                   "state": state.value, "required": f"{business.required_captured}/{business.required_count}"})
    businesses_changed([business.id], now)
    return Confirmation(business, job, pages, superseded, state)


# What the screen shows ---------------------------------------------------------------------------


@dataclass
class JobView:
    job: ScanJob
    pages: list[CapturedPage]
    discarded: int
    online: bool
    requested_by: str
    replaces: CapturedPage | None = None

    @property
    def active(self) -> bool:
        return self.job.state in ACTIVE_STATES

    @property
    def poll_key(self) -> str:
        return poll_key(self.job, self.online)

    @property
    def confirmable(self) -> bool:
        return self.job.state.finished and bool(self.pages)

    @property
    def tone(self) -> str:
        state = self.job.state
        if state == JobState.PENDING:
            return "info" if self.online else "danger"
        if state == JobState.RUNNING:
            return "info"
        if state == JobState.COMPLETED:
            return "success" if self.pages else "neutral"
        if state == JobState.FAILED:
            return "danger"
        return "neutral"

    @property
    def title(self) -> str:
        state, n = self.job.state, self.job.pages_received
        if self.job.source == PageSource.BROWSER:
            return f"浏览器上传 {n} 页"
        if state == JobState.PENDING:
            return "等待扫描终端接收任务" if self.online else "扫描终端离线"
        if state == JobState.RUNNING:
            return f"正在扫描，已收到 {n} 页"
        if state == JobState.COMPLETED:
            return f"扫描完成，共 {n} 页"
        if state == JobState.FAILED:
            return JOB_ERROR_TITLES.get(self.job.error_code, "扫描失败") + (f"（已收到 {n} 页）" if n else "")
        return "已取消" + (f"（已收到 {n} 页）" if n else "")

    @property
    def detail(self) -> str:
        state = self.job.state
        if state == JobState.PENDING:
            if self.online:
                return "请将材料放入扫描仪，扫描终端将自动开始扫描。"
            return "任务已排队，扫描终端恢复在线后自动开始；也可取消后改用浏览器上传。"
        if state == JobState.RUNNING:
            return "页面将逐页出现在下方，扫描结束后请核对并确认。"
        if state == JobState.FAILED:
            return self.job.error_message or "扫描失败，请检查扫描仪后重试。"
        if state == JobState.CANCELLED:
            return self.job.error_message if self.job.error_code not in ("", "cancelled") else ""
        if self.pages:
            return "请核对页面（方向、顺序、空白页），无误后点击“确认本材料”。"
        return "没有待确认的页面。"


@dataclass
class HistoryRow:
    page: CapturedPage
    captured_by: str
    confirmed_by: str
    source: str


@dataclass
class CaptureScreen:
    business: Business
    checklist: list[MaterialStatus]
    active_by_material: dict[int, int]
    selected: MaterialStatus | None
    jobs: list[JobView] = field(default_factory=list)
    current: list[CapturedPage] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    window: WindowStatus = field(default_factory=lambda: WindowStatus(None, None, False))
    replace_target: CapturedPage | None = None

    @property
    def initial_allowed(self) -> bool:
        return self.selected is not None and initial_capture_allowed(self.business, self.selected.confirmed_pages)

    @property
    def superseded_count(self) -> int:
        return sum(1 for row in self.history if row.page.status == PageStatus.SUPERSEDED)

    @property
    def busy(self) -> bool:
        return any(j.active for j in self.jobs)


def _names(user_ids: set[int | None]) -> dict[int, str]:
    from portal.auth.models import User

    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return {uid: name for uid, name in db.session.execute(
        select(User.id, User.full_name).where(User.id.in_(ids)))}


def poll_key(job: ScanJob, online: bool | None = None) -> str:
    """Changes whenever the job's box would render differently because of the agent; cheap, so
    that a poll with nothing new costs two small queries."""
    if online is None:
        window = db.session.get(Window, job.window_id)
        online = window is not None and agent_online(active_agent(window))
    return f"{job.state.value}.{job.pages_received}.{int(online)}"


def job_view(job: ScanJob, *, online: bool | None = None) -> JobView:
    return _job_views([job], online=online)[0]


def _job_views(jobs: Sequence[ScanJob], *, online: bool | None = None) -> list[JobView]:
    if not jobs:
        return []
    ids = [j.id for j in jobs]
    pages: dict[int, list[CapturedPage]] = {i: [] for i in ids}
    discarded: dict[int, int] = {}
    for page in db.session.scalars(
        select(CapturedPage).where(CapturedPage.job_id.in_(ids), CapturedPage.status == PageStatus.STAGED)
        .order_by(CapturedPage.position, CapturedPage.id)
    ):
        pages[page.job_id].append(page)  # type: ignore[index]
    for job_id, n in db.session.execute(
        select(CapturedPage.job_id, func.count()).where(
            CapturedPage.job_id.in_(ids), CapturedPage.status == PageStatus.DISCARDED
        ).group_by(CapturedPage.job_id)
    ):
        discarded[job_id] = n
    names = _names({j.requested_by_id for j in jobs})
    online_by_window: dict[int, bool] = {}
    views = []
    for job in jobs:
        if online is None and job.window_id not in online_by_window:
            online_by_window[job.window_id] = window_status(db.session.get(Window, job.window_id)).online
        replaces = db.session.get(CapturedPage, job.replaces_page_id) if job.replaces_page_id else None
        views.append(JobView(
            job=job, pages=pages[job.id], discarded=discarded.get(job.id, 0),
            online=online if online is not None else online_by_window[job.window_id],
            requested_by=names.get(job.requested_by_id, ""), replaces=replaces,
        ))
    return views


def open_jobs(business: Business, material: Material) -> list[ScanJob]:
    """The jobs of this material the clerk still has to deal with: running ones, ones with staged
    pages, and the newest job when it failed or was cancelled (to show why and offer a retry)."""
    staged_jobs = select(CapturedPage.job_id).where(
        CapturedPage.business_id == business.id, CapturedPage.material_id == material.id,
        CapturedPage.status == PageStatus.STAGED, CapturedPage.job_id.is_not(None),
    )
    jobs = list(db.session.scalars(
        select(ScanJob).where(
            ScanJob.business_id == business.id, ScanJob.material_id == material.id,
            or_(ScanJob.state.in_(ACTIVE_STATES), ScanJob.id.in_(staged_jobs)),
        ).order_by(ScanJob.id)
    ))
    newest = db.session.scalar(
        select(ScanJob).where(ScanJob.business_id == business.id, ScanJob.material_id == material.id)
        .order_by(ScanJob.id.desc()).limit(1)
    )
    if newest is not None and newest not in jobs and newest.state in (JobState.FAILED, JobState.CANCELLED):
        jobs.append(newest)
    return jobs


def material_history(business: Business, material: Material) -> list[HistoryRow]:
    """Every confirmed and superseded page of the material: all versions, never overwritten."""
    pages = list(db.session.scalars(
        select(CapturedPage).where(
            CapturedPage.business_id == business.id, CapturedPage.material_id == material.id,
            CapturedPage.status.in_([PageStatus.CONFIRMED, PageStatus.SUPERSEDED]),
        ).order_by(CapturedPage.position, CapturedPage.version.desc(), CapturedPage.id.desc())
    ))
    names = _names({p.captured_by_id for p in pages} | {p.confirmed_by_id for p in pages})
    windows = {w.id: w.name for w in db.session.scalars(
        select(Window).where(Window.id.in_({p.window_id for p in pages if p.window_id})))}
    rows = []
    for p in pages:
        where = windows.get(p.window_id or 0, "")
        if p.source == PageSource.BROWSER:
            source = f"浏览器上传（{where}）" if where else "浏览器上传"
        else:
            source = f"扫描终端 #{p.agent_id}" + (f"（{where}）" if where else "")
        rows.append(HistoryRow(p, names.get(p.captured_by_id or 0, "—"), names.get(p.confirmed_by_id or 0, "—"),
                               source))
    return rows


def active_jobs_by_material(business: Business) -> dict[int, int]:
    return {material_id: n for material_id, n in db.session.execute(
        select(ScanJob.material_id, func.count()).where(
            ScanJob.business_id == business.id, ScanJob.state.in_(ACTIVE_STATES)
        ).group_by(ScanJob.material_id)
    )}


def capture_screen(business: Business, *, material_id: int | None, window: Window | None,
                   windows: Sequence[Window], replace_page_id: int | None = None) -> CaptureScreen:
    checklist = checklist_status(business)
    active = active_jobs_by_material(business)
    selected = next((s for s in checklist if s.material.id == material_id), None)
    if selected is None:
        selected = (
            next((s for s in checklist if active.get(s.material.id)), None)
            or next((s for s in checklist if s.staged_pages), None)
            or next((s for s in checklist if s.requirement == Requirement.REQUIRED and not s.satisfied), None)
            or (checklist[0] if checklist else None)
        )
    screen = CaptureScreen(business=business, checklist=checklist, active_by_material=active, selected=selected,
                           windows=list(windows), window=window_status(window))
    if selected is None:
        return screen
    material = selected.material
    screen.jobs = _job_views(open_jobs(business, material))
    screen.current = confirmed_pages(business, material)
    screen.history = material_history(business, material)
    if replace_page_id is not None:
        screen.replace_target = next((p for p in screen.current if p.id == replace_page_id), None)
    return screen


# Page images ---------------------------------------------------------------------------------------


def page_image(page: CapturedPage, size: str, watermark: str) -> tuple[bytes, bool]:
    """The page's rendition, turned by its rotation, with the viewer's watermark drawn in.
    Returns (JPEG bytes, intact); a blob that fails its integrity check gives a placeholder."""
    from portal.storage.models import ImageBlob
    from portal.storage.renditions import Kind, integrity_placeholder, rendition, rotate
    from portal.storage.watermark import apply_watermark

    kind: Kind = "display" if size == "display" else "thumb"
    blob = db.session.get(ImageBlob, page.blob_id)
    try:
        if blob is None:
            raise BlobIntegrityError(page.content_sm3, "the blob row is missing")
        data = rotate(rendition(blob, kind), page.rotation)
    except BlobIntegrityError as exc:
        log.error("page %s: %s", page.id, exc)
        return integrity_placeholder(kind), False
    return apply_watermark(data, watermark), True


__all__ = ["CaptureError", "IncomingPage", "checklist_status"]


def barcode_batch_job(agent: Agent, business: Business, material: Material) -> ScanJob:
    """The job that collects pages an agent scanned without one (split by barcode cover sheets),
    so they appear in the clerk's staging area like any other batch. One per business, material
    and agent within two hours."""
    since = utcnow() - timedelta(hours=2)
    job = db.session.scalar(
        select(ScanJob).where(
            ScanJob.window_id == agent.window_id, ScanJob.business_id == business.id,
            ScanJob.material_id == material.id, ScanJob.agent_id == agent.id,
            ScanJob.requested_by_id.is_(None), ScanJob.state == JobState.COMPLETED, ScanJob.created_at >= since,
        ).order_by(ScanJob.id.desc()).limit(1)
    )
    if job is not None:
        return job
    now = utcnow()
    job = ScanJob(public_id=str(uuid.uuid4()), window_id=agent.window_id, agent_id=agent.id, business_id=business.id,
                  material_id=material.id, requested_by_id=None, kind=CaptureKind.INITIAL, state=JobState.COMPLETED,
                  options=json.dumps({"barcode_batch": True}), started_at=now, finished_at=now)
    db.session.add(job)
    db.session.flush()
    record("capture.barcode_batch", actor=Actor.of_agent(agent.id, agent.key_id), object_type="scan_job",
           object_id=job.public_id, detail={"business": business.serial, "material": material.code})
    return job
