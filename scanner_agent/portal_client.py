"""The agent's side of the agent API: every request signed, every page sealed to the portal.

The HTTP transport is pluggable: `requests` in production, Flask's test client in the
portal's API tests, so both sides of the contract are tested together.
"""

from __future__ import annotations

import json
import platform
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gmcrypto.envelope import envelope_to_bytes, sign_envelope
from gmcrypto.hybrid import seal
from gmcrypto.request import HEADER, sign_request
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.sm3 import sm3_hex

API = "/agent-api/v1"
ENROL_PURPOSE = "agent-enrolment"
MANIFEST_PURPOSE = "page-manifest"


class PortalUnavailable(Exception):
    """Network down, timeout or a 5xx answer: transient, retry later."""


class PortalRejected(Exception):
    """A 4xx answer: permanent for this request. `message_zh` is shown to the clerk."""

    def __init__(self, status: int, code: str, message: str, message_zh: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.message_zh = status, code, message, message_zh


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Transport(Protocol):
    def __call__(self, method: str, path: str, body: bytes, headers: dict[str, str],
                 files: dict[str, tuple[str, bytes, str]] | None, timeout: float) -> HttpResponse: ...


def requests_transport(base_url: str, verify: bool | str = True) -> Transport:
    import requests

    session = requests.Session()

    def send(method: str, path: str, body: bytes, headers: dict[str, str],
             files: dict[str, tuple[str, bytes, str]] | None, timeout: float) -> HttpResponse:
        try:
            response = session.request(method, base_url.rstrip("/") + path, data=body, headers=headers,
                                       timeout=timeout, verify=verify)
        except requests.RequestException as exc:
            raise PortalUnavailable(f"{method} {path}: {exc}") from exc
        return HttpResponse(response.status_code, response.content)

    return send


def encode_multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """Build the body ourselves so that the signature covers exactly the bytes sent."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                     f"Content-Type: text/plain; charset=utf-8\r\n\r\n".encode() + value.encode("utf-8") + b"\r\n")
    for name, (filename, data, content_type) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class PageToUpload:
    upload_uuid: str
    business_serial: str
    material_code: str
    job_id: str | None
    page_number: int | None
    sequence: int
    image: bytes
    image_format: str
    captured_at: str
    blank: bool = False


class PortalClient:
    def __init__(self, transport: Transport, key: PrivateKey | None = None,
                 portal_key: PublicKey | None = None, timeout: float = 30.0,
                 clock: Callable[[], int] | None = None) -> None:
        self.transport, self.key, self.portal_key, self.timeout = transport, key, portal_key, timeout
        self.clock = clock

    def _send(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json",
              signed: bool = True, timeout: float | None = None) -> Any:
        headers = {"Content-Type": content_type} if body else {}
        if signed:
            assert self.key is not None, "the agent is not enrolled"
            now = self.clock() if self.clock else None
            headers[HEADER] = sign_request(self.key, method, path, body, now=now)
        response = self.transport(method, path, body, headers, None, timeout or self.timeout)
        if response.status >= 500:
            raise PortalUnavailable(f"{method} {path}: portal answered {response.status}")
        if response.status >= 400:
            try:
                data = response.json() or {}
            except ValueError:
                data = {}
            raise PortalRejected(response.status, str(data.get("error", "http_error")),
                                 str(data.get("message", response.body[:200])),
                                 str(data.get("message_zh", "请求被门户拒绝。")))
        return response.json() if response.status != 204 else None

    def enrol(self, code: str, hostname: str | None = None, version: str = "") -> dict[str, Any]:
        """Generate nothing here: the caller passes in the key it generated and will keep."""
        assert self.key is not None
        payload = {"code": code, "public_key_pem": self.key.public_key().to_pem().decode(),
                   "hostname": hostname or platform.node(), "version": version}
        body = envelope_to_bytes(sign_envelope(payload, self.key, ENROL_PURPOSE))
        result = self._send("POST", f"{API}/enrol", body, signed=False)
        self.portal_key = PublicKey.from_pem(result["portal_public_key_pem"])
        return result

    def heartbeat(self, **state: Any) -> dict[str, Any]:
        return self._send("POST", f"{API}/heartbeat", json.dumps(state).encode())

    def next_job(self, wait: int = 20) -> dict[str, Any] | None:
        result = self._send("GET", f"{API}/jobs/next?wait={wait}", timeout=wait + self.timeout)
        return result["job"] if result else None

    def report_job(self, job_id: str, state: str, error_code: str = "", error_message: str = "") -> dict[str, Any]:
        body = json.dumps({"state": state, "error_code": error_code, "error_message": error_message})
        return self._send("POST", f"{API}/jobs/{job_id}/status", body.encode())["job"]

    def latest_update(self) -> dict[str, Any] | None:
        return self._send("GET", f"{API}/update")["update"]

    def manifest(self, page: PageToUpload) -> dict[str, Any]:
        assert self.key is not None
        payload = {
            "upload_uuid": page.upload_uuid, "business_serial": page.business_serial,
            "material_code": page.material_code, "job_id": page.job_id, "page_number": page.page_number,
            "sm3": sm3_hex(page.image), "size": len(page.image), "format": page.image_format,
            "agent_key_id": self.key.public_key().key_id(), "sequence": page.sequence,
            "captured_at": page.captured_at, "blank": page.blank,
        }
        return sign_envelope(payload, self.key, MANIFEST_PURPOSE)

    def upload_page(self, page: PageToUpload) -> dict[str, Any]:
        """Upload one page; idempotent by `upload_uuid`, so a retry never stores it twice."""
        assert self.portal_key is not None, "the portal's transport key is unknown (enrol first)"
        manifest = envelope_to_bytes(self.manifest(page)).decode("utf-8")
        sealed = seal(page.image, self.portal_key, aad=page.upload_uuid.encode())
        body, content_type = encode_multipart({"manifest": manifest},
                                              {"image": ("page.bin", sealed, "application/octet-stream")})
        return self._send("POST", f"{API}/pages", body, content_type=content_type)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
