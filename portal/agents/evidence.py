"""Export the evidence of an agent upload so a third party can verify it (e.g. with OpenSSL)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from gmcrypto.envelope import canonical
from portal.agents.models import Agent
from portal.capture.models import CapturedPage
from portal.db import db


@dataclass(frozen=True)
class ManifestEvidence:
    message: bytes  # the exact bytes that were signed
    signature_der: bytes
    public_key_pem: bytes
    uid: bytes = b"1234567812345678"


def manifest_evidence(page: CapturedPage) -> ManifestEvidence:
    if not page.manifest_envelope or page.agent_id is None:
        raise ValueError("this page was not uploaded by an agent")
    envelope = json.loads(page.manifest_envelope)
    signed = {k: envelope[k] for k in ("v", "alg", "purpose", "signer", "payload")}
    agent = db.session.get(Agent, page.agent_id)
    assert agent is not None
    return ManifestEvidence(canonical(signed), base64.b64decode(envelope["sig"]), agent.public_key_pem.encode())
