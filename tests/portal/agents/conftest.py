"""Agent-API fixtures: the real agent client (scanner_agent.portal_client) over Flask's test client."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image, ImageDraw

from gmcrypto.sm2 import PrivateKey
from portal.agents import services
from portal.audit.services import Actor
from portal.db import db, utcnow
from scanner_agent.portal_client import HttpResponse, PortalClient


def flask_transport(client):  # type: ignore[no-untyped-def]
    def send(method, path, body, headers, files, timeout):  # type: ignore[no-untyped-def]
        response = client.open(path, method=method, data=body, headers=headers)
        return HttpResponse(response.status_code, response.get_data())

    return send


def page_image(text: str = "page", fmt: str = "JPEG", size: tuple[int, int] = (600, 800)) -> bytes:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, size[0] - 40, 120), outline=0, width=3)
    draw.text((60, 70), text, fill=0)
    for y in range(160, size[1] - 60, 30):
        draw.line((60, y, size[0] - 60, y), fill=80, width=2)
    buffer = io.BytesIO()
    image.save(buffer, fmt, dpi=(200, 200))
    return buffer.getvalue()


def enrolment_code(window) -> str:  # type: ignore[no-untyped-def]
    code, _ = services.create_enrolment_code(window, Actor.system())
    db.session.commit()
    return code


@pytest.fixture
def agent_client(app, client, org):  # type: ignore[no-untyped-def]
    """An agent enrolled to office A's window, heartbeating (so it is online)."""
    agent = PortalClient(flask_transport(client), key=PrivateKey.generate())
    agent.enrol(enrolment_code(org.window_a), hostname="counter-a1", version="0.1.0")
    agent.heartbeat(scanner_model="SANE test", scanner_state="ready", version="0.1.0")
    return agent


@pytest.fixture
def expired_code(org):  # type: ignore[no-untyped-def]
    code, row = services.create_enrolment_code(org.window_a, Actor.system())
    row.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    return code
