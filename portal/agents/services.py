"""Agent enrolment, request authentication and replay protection."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from gmcrypto.envelope import verify_envelope
from gmcrypto.errors import CryptoError, InvalidKey, InvalidSignature
from gmcrypto.request import SignedRequest, verify_request
from gmcrypto.sm2 import PublicKey
from gmcrypto.sm3 import sm3_hex
from portal.agents.models import Agent, AgentNonce, AgentStatus, EnrolmentCode
from portal.audit.services import Actor, record
from portal.db import db, utcnow
from portal.org.models import Window

ENROLMENT_CODE_HOURS = 24
ENROL_PURPOSE = "agent-enrolment"


class AgentAuthError(Exception):
    """A rejected agent request: stable `code` for the agent, English `message` for logs."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def create_enrolment_code(window: Window, by: Actor, hours: int = ENROLMENT_CODE_HOURS) -> tuple[str, EnrolmentCode]:
    """A single-use code, shown once; only its SM3 is kept."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    clear = "".join(secrets.choice(alphabet) for _ in range(12))
    row = EnrolmentCode(
        window_id=window.id, code_sm3=sm3_hex(clear.encode()), created_by_id=by.user_id,
        expires_at=utcnow() + timedelta(hours=hours),
    )
    db.session.add(row)
    db.session.flush()
    record("agents.enrolment_code_created", actor=by, object_type="window", object_id=str(window.id),
           detail={"expires_at": row.expires_at.isoformat(), "code_id": row.id})
    display = "-".join(clear[i:i + 4] for i in range(0, 12, 4))
    return display, row


def enrol(envelope: dict, ip: str = "") -> Agent:
    """Bind a new agent key to a window. The envelope is signed by the new key itself
    (proof of possession) and carries the one-time code."""
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    if not isinstance(payload, dict):
        raise AgentAuthError("bad_request", "enrolment body must be a signed envelope", 400)
    try:
        public = PublicKey.from_pem(str(payload.get("public_key_pem", "")))
    except (InvalidKey, CryptoError, ValueError) as exc:
        raise AgentAuthError("bad_public_key", f"public key rejected: {exc}", 400) from None
    try:
        verify_envelope(envelope, lambda kid: public if kid == public.key_id() else None, ENROL_PURPOSE)
    except InvalidSignature as exc:
        record("agents.enrolled", actor=Actor("agent", ip=ip), outcome="denied", detail={"why": str(exc)})
        raise AgentAuthError("bad_signature", str(exc)) from None
    code_sm3 = sm3_hex(_normalise_code(str(payload.get("code", ""))).encode())
    code = db.session.scalar(select(EnrolmentCode).where(EnrolmentCode.code_sm3 == code_sm3).with_for_update())
    now = utcnow()
    if code is None or code.used_at is not None or code.expires_at < now:
        why = "unknown" if code is None else ("used" if code.used_at else "expired")
        record("agents.enrolled", actor=Actor("agent", ip=ip), outcome="denied",
               detail={"why": f"enrolment code {why}", "key_id": public.key_id()})
        raise AgentAuthError("bad_enrolment_code", f"enrolment code {why}", 403)
    if db.session.scalar(select(Agent).where(Agent.key_id == public.key_id())) is not None:
        raise AgentAuthError("key_already_enrolled", "this public key is already enrolled", 409)
    agent = Agent(
        window_id=code.window_id, key_id=public.key_id(), public_key_pem=public.to_pem().decode(),
        hostname=str(payload.get("hostname", ""))[:100], version=str(payload.get("version", ""))[:20],
    )
    db.session.add(agent)
    db.session.flush()
    code.used_at, code.agent_id = now, agent.id
    record("agents.enrolled", actor=Actor.of_agent(agent.id, agent.key_id, ip), object_type="agent",
           object_id=str(agent.id), detail={"window": code.window_id, "hostname": agent.hostname})
    db.session.flush()
    return agent


def authenticate(header: str | None, method: str, path: str, body: bytes, skew_seconds: int,
                 ip: str = "") -> Agent:
    """Verify a signed agent request; reject bad signatures, revoked keys, stale times, replays."""
    agents: dict[str, Agent] = {}

    def resolve(key_id: str) -> PublicKey | None:
        agent = db.session.scalar(select(Agent).where(Agent.key_id == key_id))
        if agent is None:
            return None
        agents[key_id] = agent
        return PublicKey.from_pem(agent.public_key_pem)

    try:
        signed: SignedRequest = verify_request(header, method, path, body, resolve)
    except InvalidSignature as exc:
        record("agents.request_rejected", actor=Actor("agent", ip=ip), outcome="denied",
               detail={"why": str(exc), "path": path})
        raise AgentAuthError("bad_signature", str(exc)) from None
    agent = agents[signed.signer]
    actor = Actor.of_agent(agent.id, agent.key_id, ip)
    if agent.status != AgentStatus.ACTIVE:
        record("agents.request_rejected", actor=actor, outcome="denied", detail={"why": "revoked", "path": path})
        raise AgentAuthError("agent_revoked", "this agent's key has been revoked", 403)
    now = utcnow()
    if abs(now.timestamp() - signed.timestamp) > skew_seconds:
        record("agents.request_rejected", actor=actor, outcome="denied",
               detail={"why": "stale timestamp", "skew": int(now.timestamp() - signed.timestamp)})
        raise AgentAuthError("stale_timestamp", f"request time is more than {skew_seconds}s from the portal clock")
    try:
        with db.session.begin_nested():
            db.session.add(AgentNonce(agent_id=agent.id, nonce=signed.nonce, seen_at=now))
    except IntegrityError:
        record("agents.request_rejected", actor=actor, outcome="denied", detail={"why": "replayed nonce", "path": path})
        raise AgentAuthError("replayed_nonce", "this request was already received (replay)") from None
    agent.last_heartbeat_at = now
    return agent


def prune_nonces(agent: Agent, skew_seconds: int, now: datetime | None = None) -> None:
    """Nonces older than twice the skew window can never be accepted again anyway."""
    cutoff = (now or utcnow()) - timedelta(seconds=2 * skew_seconds)
    db.session.execute(delete(AgentNonce).where(AgentNonce.agent_id == agent.id, AgentNonce.seen_at < cutoff))


def revoke(agent: Agent, by: Actor) -> None:
    if agent.status == AgentStatus.REVOKED:
        return
    agent.status = AgentStatus.REVOKED
    agent.revoked_at = utcnow()
    agent.revoked_by_id = by.user_id
    record("agents.revoked", actor=by, object_type="agent", object_id=str(agent.id),
           detail={"window": agent.window_id, "key_id": agent.key_id})
    db.session.flush()
