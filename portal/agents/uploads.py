"""Receiving one page from an agent: manifest signature, decryption, hash, safe decoding, linking."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from gmcrypto.envelope import envelope_from_bytes, verify_envelope
from gmcrypto.errors import DecryptionError, InvalidSignature
from gmcrypto.hybrid import unseal
from gmcrypto.sm2 import PublicKey
from gmcrypto.sm3 import sm3_hex
from portal.agents.models import Agent
from portal.audit.services import Actor, record
from portal.capture import services as capture
from portal.capture.imagecheck import ImageRejected, inspect_image
from portal.capture.models import PageSource, ScanJob
from portal.config import Settings
from portal.db import db
from portal.dictionary.models import Material
from portal.keys import key_provider
from portal.registry.models import Business

MANIFEST_PURPOSE = "page-manifest"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class UploadResult:
    status: int
    body: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return self.body


class Reject(Exception):
    def __init__(self, code: str, message: str, message_zh: str, status: int = 422) -> None:
        super().__init__(message)
        self.code, self.message, self.message_zh, self.status = code, message, message_zh, status


def _manifest(agent: Agent, manifest_text: str) -> tuple[dict[str, Any], str]:
    try:
        envelope = envelope_from_bytes(manifest_text.encode("utf-8"))
        public = PublicKey.from_pem(agent.public_key_pem)
        payload = verify_envelope(envelope, lambda kid: public if kid == agent.key_id else None,
                                  MANIFEST_PURPOSE)
    except InvalidSignature as exc:
        raise Reject("bad_manifest_signature", str(exc), "页面清单签名无效，页面未保存。", 401) from None
    problems = []
    upload_uuid = payload.get("upload_uuid")
    try:
        uuid.UUID(str(upload_uuid))
    except ValueError:
        problems.append("upload_uuid")
    for name, kind in (("business_serial", str), ("material_code", str), ("format", str),
                       ("size", int), ("sequence", int), ("captured_at", str)):
        if not isinstance(payload.get(name), kind) or isinstance(payload.get(name), bool):
            problems.append(name)
    if not isinstance(payload.get("sm3"), str) or not _HEX64.match(payload["sm3"]):
        problems.append("sm3")
    if payload.get("page_number") is not None and (
        not isinstance(payload["page_number"], int) or payload["page_number"] < 1
    ):
        problems.append("page_number")
    if payload.get("job_id") is not None and not isinstance(payload["job_id"], str):
        problems.append("job_id")
    if problems:
        raise Reject("bad_manifest", f"manifest fields missing or malformed: {', '.join(problems)}",
                     "页面清单格式错误。", 400)
    return payload, json.dumps(envelope, ensure_ascii=False, sort_keys=True)


def _resolve_targets(agent: Agent, m: dict[str, Any]) -> tuple[Business, Material, ScanJob | None]:
    business = db.session.scalar(select(Business).where(Business.serial == m["business_serial"].strip()))
    if business is None:
        raise Reject("unknown_business", f"no business with serial {m['business_serial']!r}",
                     f"流水号 {m['business_serial']} 的业务不存在。", 404)
    if business.department_id != agent.window.department_id:
        raise Reject("business_out_of_scope", "the business belongs to another office",
                     "该业务不属于本窗口所在的登记点。", 404)
    material = db.session.scalar(select(Material).where(Material.code == m["material_code"]))
    if material is None:
        raise Reject("unknown_material", f"no material {m['material_code']!r}", "材料类型不存在。", 404)
    if not capture.material_in_checklist(business, material):
        raise Reject("material_not_in_checklist", "material not in the checklist of this type",
                     f"“{material.name}”不在该业务类型的材料目录中。")
    job = None
    if not m.get("job_id"):
        job = capture.barcode_batch_job(agent, business, material)
    elif m.get("job_id"):
        job = db.session.scalar(select(ScanJob).where(ScanJob.public_id == m["job_id"]))
        if (job is None or job.window_id != agent.window_id or job.business_id != business.id
                or job.material_id != material.id):
            raise Reject("job_mismatch", "the job does not match this agent, business and material",
                         "扫描任务与业务或材料不符。", 409)
    return business, material, job


def receive_page(agent: Agent, manifest_text: str, sealed: bytes, actor: Actor,
                 settings: Settings) -> UploadResult:
    """Check everything, then store once. Rejections are audited and store nothing."""
    try:
        m, envelope_text = _manifest(agent, manifest_text)
        existing = capture.existing_upload(m["upload_uuid"])
        if existing is not None:
            if existing.content_sm3 != m["sm3"]:
                raise Reject("upload_conflict", "this upload id was used for different content",
                             "上传编号冲突。", 409)
            return UploadResult(200, {"status": "duplicate", "page_id": existing.id,
                                      "job_state": _job_state(existing.job_id)})
        if m["size"] > settings.max_upload_bytes:
            raise Reject("too_large", f"page of {m['size']} bytes exceeds the limit",
                         "页面文件超过大小限制。", 413)
        business, material, job = _resolve_targets(agent, m)
        try:
            data = unseal(sealed, key_provider().transport_key, aad=m["upload_uuid"].encode())
        except DecryptionError as exc:
            raise Reject("decryption_failed", f"cannot open the sealed image: {exc}",
                         "图像密文无法解密或已被篡改。", 400) from None
        if len(data) != m["size"] or sm3_hex(data) != m["sm3"]:
            raise Reject("hash_mismatch", "image bytes do not match the signed size and SM3",
                         "图像内容与签名清单不符。", 400)
        try:
            info = inspect_image(data, m["format"], settings.max_image_pixels)
        except ImageRejected as exc:
            raise Reject(exc.code, exc.message, exc.message_zh) from None
        page = capture.ingest_page(capture.IncomingPage(
            business=business, material=material, data=data, image=info, content_sm3=m["sm3"],
            source=PageSource.AGENT, window_id=agent.window_id, job=job, agent=agent,
            page_number=m.get("page_number"), upload_uuid=m["upload_uuid"],
            agent_sequence=m["sequence"], manifest_envelope=envelope_text, blank=bool(m.get("blank"))),
            actor)
    except capture.CaptureError as exc:
        return _rejected(actor, Reject(exc.code, exc.message, exc.message_zh, exc.status), manifest_text)
    except Reject as exc:
        return _rejected(actor, exc, manifest_text)
    return UploadResult(201, {"status": "stored", "page_id": page.id, "job_state": _job_state(page.job_id)})


def _job_state(job_id: int | None) -> str | None:
    if job_id is None:
        return None
    job = db.session.get(ScanJob, job_id)
    return job.state.value if job else None


def _rejected(actor: Actor, exc: Reject, manifest_text: str) -> UploadResult:
    record("capture.page_rejected", actor=actor, outcome="denied", detail={
        "code": exc.code, "why": exc.message, "manifest_sm3": sm3_hex(manifest_text.encode("utf-8")),
    })
    return UploadResult(exc.status, {"error": exc.code, "message": exc.message, "message_zh": exc.message_zh})
