"""Archive test helpers: real JPEG pages stored encrypted, agent-signed or uploaded from the browser."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from gmcrypto.envelope import sign_envelope
from gmcrypto.sm2 import PrivateKey
from gmcrypto.sm3 import sm3_hex
from portal.agents.models import Agent
from portal.agents.uploads import MANIFEST_PURPOSE
from portal.capture.completeness import refresh_completeness
from portal.capture.models import CapturedPage, CaptureKind, PageSource, PageStatus, SupplementReason
from portal.db import db
from portal.dictionary.models import Material
from portal.storage.services import store_image
from tests.portal.browser_support import browser, live_server, page  # noqa: F401

WHITE_PAGE_SIZE = (800, 1100)


def jpeg(label: str, size: tuple[int, int] = WHITE_PAGE_SIZE, colour: tuple[int, int, int] = (255, 255, 255)) -> bytes:
    """A white 'scan' with black ruling and a label, different for every label."""
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    for y in range(60, size[1], 48):
        draw.line((40, y, size[0] - 40, y), fill=(0, 0, 0), width=2)
    draw.rectangle((30, 30, size[0] - 30, size[1] - 30), outline=(0, 0, 0), width=3)
    draw.text((60, 20), label, fill=(0, 0, 0))
    draw.rectangle((60, 100, 60 + 10 * (sum(label.encode()) % 50), 140), fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@dataclass
class Pages:
    """Adds archived pages to businesses."""

    org: object
    _agents: dict[int, tuple[Agent, PrivateKey]] = field(default_factory=dict)
    _count: int = 0

    def agent(self, window: object) -> tuple[Agent, PrivateKey]:
        key = self._agents.get(window.id)  # type: ignore[attr-defined]
        if key is None:
            private = PrivateKey.generate()
            public = private.public_key()
            agent = Agent(window_id=window.id, key_id=public.key_id(), public_key_pem=public.to_pem().decode(),  # type: ignore[attr-defined]
                          hostname=f"PC-{window.id}")  # type: ignore[attr-defined]
            db.session.add(agent)
            db.session.flush()
            key = self._agents[window.id] = (agent, private)  # type: ignore[attr-defined]
        return key

    def add(self, business, material_code: str = "ID_PROOF", *, position: int | None = None,  # type: ignore[no-untyped-def]
            source: PageSource = PageSource.AGENT, data: bytes | None = None, rotation: int = 0,
            supersedes: CapturedPage | None = None, user=None, forged_manifest: bool = False,  # type: ignore[no-untyped-def]
            commit: bool = True) -> CapturedPage:
        self._count += 1
        material = db.session.scalar(select(Material).where(Material.code == material_code))
        assert material is not None
        data = data or jpeg(f"{business.serial} {material_code} #{self._count}")
        blob = store_image(data, "image/jpeg")
        digest = sm3_hex(data)
        window = self.org.window_a  # type: ignore[attr-defined]
        for name in ("window_a", "window_b", "window_c"):
            w = getattr(self.org, name)
            if w.department_id == business.department_id:
                window = w
        if position is None:
            position = supersedes.position if supersedes else 1 + len([
                p for p in db.session.scalars(select(CapturedPage).where(
                    CapturedPage.business_id == business.id, CapturedPage.material_id == material.id,
                    CapturedPage.status == PageStatus.CONFIRMED))
            ])
        agent = manifest = None
        upload_uuid = None
        if source == PageSource.AGENT:
            agent, private = self.agent(window)
            upload_uuid = str(uuid.uuid4())
            payload = {
                "upload_uuid": upload_uuid, "business_serial": business.serial, "material_code": material_code,
                "sm3": "0" * 64 if forged_manifest else digest, "size": len(data), "format": "jpeg",
                "sequence": self._count, "captured_at": datetime.now(UTC).isoformat(), "page_number": position,
            }
            manifest = json.dumps(sign_envelope(payload, private, MANIFEST_PURPOSE), ensure_ascii=False, sort_keys=True)
        captured_at = datetime(2026, 11, 2, 10, 0, tzinfo=UTC) + timedelta(minutes=self._count)
        row = CapturedPage(
            business_id=business.id, material_id=material.id, position=position,
            version=(supersedes.version + 1) if supersedes else 1, supersedes_id=supersedes.id if supersedes else None,
            status=PageStatus.CONFIRMED,
            kind=CaptureKind.SUPPLEMENTAL if supersedes else CaptureKind.INITIAL,
            reason=SupplementReason.POOR_QUALITY if supersedes else None,
            reason_text="重新扫描" if supersedes else "",
            source=source, agent_id=agent.id if agent else None, window_id=window.id,
            captured_by_id=user.id if user else None, captured_at=captured_at, confirmed_at=captured_at,
            blob_id=blob.id, content_sm3=digest, byte_size=len(data), media_type="image/jpeg",
            width=WHITE_PAGE_SIZE[0], height=WHITE_PAGE_SIZE[1], dpi=200, rotation=rotation,
            upload_uuid=upload_uuid, agent_sequence=self._count if agent else None,
            manifest_envelope=manifest, signature_verified=agent is not None,
        )
        if supersedes is not None:
            supersedes.status = PageStatus.SUPERSEDED
        db.session.add(row)
        db.session.flush()
        refresh_completeness(business)
        if commit:
            db.session.commit()
        return row


@pytest.fixture
def pages(factory, org) -> Pages:  # type: ignore[no-untyped-def]
    return Pages(org)


def audit_entries(action: str, outcome: str | None = None) -> list:  # type: ignore[type-arg]
    from portal.audit.models import AuditEntry

    stmt = select(AuditEntry).where(AuditEntry.action == action)
    if outcome:
        stmt = stmt.where(AuditEntry.outcome == outcome)
    db.session.expire_all()
    return list(db.session.scalars(stmt.order_by(AuditEntry.seq)))


def red_pixels(data: bytes) -> int:
    """Pixels where red clearly dominates (the watermark ink is (200, 30, 30) at 28 %)."""
    with Image.open(io.BytesIO(data)) as image:
        raw = image.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(raw), 3)
               if raw[i] > 150 and raw[i] - raw[i + 1] > 25 and raw[i] - raw[i + 2] > 25)
