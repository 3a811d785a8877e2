"""The agent API (`/agent-api/v1`, documented in docs/agent-api.yaml).

Every request except enrolment carries a signed envelope (gmcrypto.request). Answers are JSON;
errors are {"error": code, "message": English, "message_zh": Chinese for the clerk}. A 4xx
answer is permanent (the agent marks the page failed and shows why); 5xx and network errors
are transient (the agent retries from its outbox).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from gmcrypto.envelope import envelope_from_bytes
from gmcrypto.errors import InvalidSignature
from portal.agents import services, uploads
from portal.agents.models import Agent, AgentUpdate
from portal.audit.services import Actor
from portal.auth.access import client_ip
from portal.capture import services as capture
from portal.capture.models import ScanJob
from portal.db import db
from portal.extensions import csrf
from portal.keys import key_provider

bp = Blueprint("agent_api", __name__, url_prefix="/agent-api/v1")
csrf.exempt(bp)

MESSAGES_ZH = {
    "bad_signature": "请求签名无效，请重新登记扫描终端。",
    "agent_revoked": "该扫描终端已被吊销，请联系安全管理员。",
    "stale_timestamp": "扫描终端时钟与服务器相差过大，请校准时间。",
    "replayed_nonce": "重复的请求已被拒绝。",
    "bad_enrolment_code": "登记码无效、已使用或已过期。",
    "too_large": "上传的文件超过大小限制。",
    "bad_request": "请求格式错误。",
}


def error(code: str, message: str, status: int, message_zh: str | None = None) -> tuple[Response, int]:
    return jsonify(error=code, message=message,
                   message_zh=message_zh or MESSAGES_ZH.get(code, "请求被拒绝。")), status


class _Rejected(Exception):
    def __init__(self, response: tuple[Response, int]) -> None:
        self.response = response


def _agent() -> Agent:
    settings = current_app.config["SETTINGS"]
    path = request.full_path.rstrip("?") if request.query_string else request.path
    try:
        return services.authenticate(
            request.headers.get("X-Agent-Envelope"), request.method, path,
            request.get_data(cache=True), settings.agent_clock_skew_seconds, client_ip(),
        )
    except services.AgentAuthError as exc:
        raise _Rejected(error(exc.code, exc.message, exc.status)) from None


@bp.errorhandler(_Rejected)
def _rejected(exc: _Rejected) -> tuple[Response, int]:
    return exc.response


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
    return error("too_large", "request body exceeds the upload limit", 413)


@bp.errorhandler(capture.CaptureError)
def _capture_error(exc: capture.CaptureError) -> tuple[Response, int]:
    return error(exc.code, exc.message, exc.status, exc.message_zh)


def _json_body() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(cache=True) or b"{}")
    except ValueError:
        raise _Rejected(error("bad_request", "body is not JSON", 400)) from None
    if not isinstance(body, dict):
        raise _Rejected(error("bad_request", "body must be a JSON object", 400))
    return body


def _job_json(job: ScanJob) -> dict[str, Any]:
    return {
        "id": job.public_id, "state": job.state.value, "business_serial": _serial(job.business_id),
        "material_code": job.material.code, "material_name": job.material.name,
        "options": json.loads(job.options), "kind": job.kind.value,
    }


def _serial(business_id: int) -> str:
    from portal.registry.models import Business

    return db.session.get(Business, business_id).serial  # type: ignore[union-attr]


@bp.post("/enrol")
def enrol() -> tuple[Response, int]:
    try:
        envelope = envelope_from_bytes(request.get_data(cache=True))
    except InvalidSignature as exc:
        return error("bad_request", str(exc), 400)
    try:
        agent = services.enrol(envelope, ip=client_ip())
    except services.AgentAuthError as exc:
        return error(exc.code, exc.message, exc.status)
    window = agent.window
    return jsonify(
        agent_id=agent.id, key_id=agent.key_id,
        window={"id": window.id, "code": window.code, "name": window.name,
                "department": window.department.name},
        portal_public_key_pem=key_provider().transport_public_key.to_pem().decode(),
    ), 201


@bp.post("/heartbeat")
def heartbeat() -> tuple[Response, int]:
    agent = _agent()
    body = _json_body()
    agent.scanner_model = str(body.get("scanner_model", ""))[:100]
    agent.scanner_state = str(body.get("scanner_state", ""))[:40]
    agent.version = str(body.get("version", agent.version))[:20]
    services.prune_nonces(agent, current_app.config["SETTINGS"].agent_clock_skew_seconds)
    latest = db.session.scalar(select(AgentUpdate).order_by(AgentUpdate.uploaded_at.desc()).limit(1))
    return jsonify(server_time=int(time.time()), window_id=agent.window_id,
                   latest_version=latest.version if latest else None), 200


@bp.get("/jobs/next")
def next_job() -> tuple[Response, int] | Response:
    """Long-poll: answer at once with a job, or wait up to `wait` seconds (max 25) for one."""
    agent = _agent()
    agent_id = agent.id
    wait = min(max(request.args.get("wait", 0, type=int), 0), 25)
    deadline = time.monotonic() + wait
    while True:
        agent = db.session.get(Agent, agent_id)  # type: ignore[assignment]
        job = capture.claim_next_job(agent)
        if job is not None:
            return jsonify(job=_job_json(job)), 200
        if time.monotonic() >= deadline:
            return Response(status=204)
        # Commit what we have (nonce, heartbeat) and look again on a fresh snapshot.
        db.session.commit()
        time.sleep(1.0)


@bp.post("/jobs/<public_id>/status")
def job_status(public_id: str) -> tuple[Response, int]:
    agent = _agent()
    body = _json_body()
    job = db.session.scalar(select(ScanJob).where(ScanJob.public_id == public_id))
    if job is None:
        return error("unknown_job", "no such job", 404, "扫描任务不存在。")
    job = capture.report_job(agent, job, str(body.get("state", "")), str(body.get("error_code", "")),
                             str(body.get("error_message", "")))
    return jsonify(job=_job_json(job)), 200


@bp.post("/pages")
def upload_page() -> tuple[Response, int]:
    agent = _agent()
    actor = Actor.of_agent(agent.id, agent.key_id, client_ip())
    manifest_text = request.form.get("manifest", "")
    sealed = request.files.get("image")
    if not manifest_text or sealed is None:
        return error("bad_request", "multipart fields 'manifest' and 'image' are required", 400)
    result = uploads.receive_page(agent, manifest_text, sealed.read(), actor,
                                  current_app.config["SETTINGS"])
    return jsonify(result.as_json()), result.status


@bp.get("/update")
def update_info() -> tuple[Response, int]:
    _agent()
    latest = db.session.scalar(select(AgentUpdate).order_by(AgentUpdate.uploaded_at.desc()).limit(1))
    if latest is None:
        return jsonify(update=None), 200
    return jsonify(update={
        "version": latest.version, "filename": latest.filename,
        "envelope": json.loads(latest.envelope),
        "package_b64": base64.b64encode(latest.package).decode("ascii"),
    }), 200
