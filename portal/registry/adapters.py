"""The adapter boundary to the registration system (非机动车登记系统).

Every source implements `RegistryAdapter`:

- `changed_since(watermark, page_token)` → one `Page` of records changed at or after `watermark`
  (None: from the beginning), the token of the next page, and the watermark that is safe once this
  page is applied;
- `fetch(serial)` → one record, or None when the source does not know the serial;
- `health()` → whether the source answers.

Implementations: `HttpRegistryAdapter` (the JSON-over-HTTP contract of docs/registry-api.md, which
the simulator serves) and `FileAdapter` (a CSV/xlsx export, see `portal.registry.fileimport`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests
from flask import Flask, current_app

from portal.registry.records import SOURCE_TZ, BusinessRecord, MalformedRecord, parse_time, record_from_json

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
SIGNATURE_HEADER = "X-Portal-Envelope"
USER_AGENT = "ebike-archive-portal/registry-sync"


class RegistryError(Exception):
    """The source answered, but not in a way we can use (rejected credentials, bad response)."""


class RegistryUnavailable(RegistryError):
    """The source could not be reached or kept failing (connection errors, timeouts, 5xx)."""


@dataclass(frozen=True)
class Page:
    records: list[BusinessRecord]
    next_token: str | None
    new_watermark: datetime | None
    malformed: list[MalformedRecord] = field(default_factory=list)


class RegistryAdapter(Protocol):
    name: str

    def changed_since(self, watermark: datetime | None, page_token: str | None) -> Page: ...

    def fetch(self, serial: str) -> BusinessRecord | None: ...

    def health(self) -> bool: ...


def _iso(value: datetime) -> str:
    return value.astimezone(SOURCE_TZ).isoformat()


def page_watermark(records: Sequence[BusinessRecord], fallback: datetime | None) -> datetime | None:
    times = [r.updated_at for r in records if r.updated_at is not None]
    return max(times) if times else fallback


class HttpRegistryAdapter:
    """Client of the JSON-over-HTTP contract (docs/registry-api.md).

    Bearer-token authentication; optionally every request also carries an SM2-signed envelope
    (gmcrypto.request.sign_request) in `X-Portal-Envelope`. Connection errors, timeouts, 429 and
    5xx are retried with exponential backoff; after the last attempt `RegistryUnavailable`.
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        page_size: int = 500,
        signer: Any | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"registry URL must be http(s)://host[:port][/prefix], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff, self.max_backoff = backoff, max_backoff
        self.page_size = max(1, min(page_size, 1000))
        self.signer = signer
        self.session = session or requests.Session()
        self.sleep = sleep

    @property
    def label(self) -> str:
        """Where the source is, without credentials (for logs and the status page)."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"

    def _headers(self, path_and_query: str) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.signer is not None:
            from gmcrypto.request import sign_request

            headers[SIGNATURE_HEADER] = sign_request(self.signer, "GET", path_and_query, b"")
        return headers

    def _get(self, path: str, params: dict[str, Any] | None = None, *, retries: int | None = None) -> requests.Response:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        path_and_query = self._base_path + API_PREFIX + path + (f"?{query}" if query else "")
        url = self.base_url[: len(self.base_url) - len(self._base_path)] + path_and_query
        attempts = (self.retries if retries is None else retries) + 1
        problem = ""
        for attempt in range(attempts):
            try:
                response = self.session.get(
                    url, headers=self._headers(path_and_query), timeout=(min(5.0, self.timeout), self.timeout),
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{exc.__class__.__name__}"
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                problem = f"HTTP {response.status_code}"
                response.close()
            if attempt + 1 < attempts:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                log.info("registry source %s: %s; retrying in %.1f s", self.label, problem, delay)
                self.sleep(delay)
        raise RegistryUnavailable(f"registry source {self.label} unavailable after {attempts} attempt(s): {problem}")

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if response.status_code in (401, 403):
            raise RegistryError(f"registry source rejected our credentials (HTTP {response.status_code})")
        if response.status_code != 200:
            raise RegistryError(f"registry source answered HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            return response.json()
        except ValueError:
            raise RegistryError("registry source answered with something that is not JSON") from None

    def changed_since(self, watermark: datetime | None, page_token: str | None) -> Page:
        params: dict[str, Any] = {"limit": self.page_size}
        if page_token:
            params["page_token"] = page_token
        elif watermark is not None:
            params["updated_since"] = _iso(watermark)
        body = self._json(self._get("/businesses", params))
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise RegistryError("registry source answered without an items list")
        records: list[BusinessRecord] = []
        malformed: list[MalformedRecord] = []
        for item in body["items"]:
            try:
                records.append(record_from_json(item))
            except MalformedRecord as exc:
                malformed.append(exc)
        next_token = body.get("next_page_token") or None
        if next_token is not None and not isinstance(next_token, str):
            raise RegistryError("registry source answered with a malformed next_page_token")
        if next_token is None:
            # Last page: everything up to the end of the window has been delivered.
            try:
                window_end = parse_time(body.get("window_end")) if isinstance(body.get("window_end"), str) else None
            except ValueError:
                window_end = None
            watermark_after = window_end or page_watermark(records, watermark)
        else:
            watermark_after = page_watermark(records, watermark)
        return Page(records, next_token, watermark_after, malformed)

    def fetch(self, serial: str) -> BusinessRecord | None:
        response = self._get(f"/businesses/{quote(serial, safe='')}", retries=min(self.retries, 1))
        if response.status_code == 404:
            return None
        return record_from_json(self._json(response))

    def health(self) -> bool:
        try:
            response = self._get("/health", retries=0)
        except RegistryUnavailable:
            return False
        return response.status_code == 200


class FileAdapter:
    """A CSV/xlsx export read as a source: one page with every valid row (duplicates: last wins)."""

    name = "file"

    def __init__(self, path: Path, *, encoding: str | None = None, sheet: str | None = None) -> None:
        self.path = Path(path)
        self.encoding, self.sheet = encoding, sheet

    def _rows(self) -> tuple[list[BusinessRecord], list[MalformedRecord]]:
        from portal.registry.fileimport import read_table

        table = read_table(self.path, encoding=self.encoding, sheet=self.sheet)
        latest: dict[str, BusinessRecord] = {}
        malformed = []
        for row in table.rows:
            if row.record is not None:
                latest.pop(row.record.serial, None)
                latest[row.record.serial] = row.record
            elif row.error:
                malformed.append(MalformedRecord(row.serial, f"line {row.line}: {row.error}"))
        return list(latest.values()), malformed

    def changed_since(self, watermark: datetime | None, page_token: str | None) -> Page:
        records, malformed = self._rows()
        if watermark is not None:
            records = [r for r in records if r.updated_at is None or r.updated_at >= watermark]
        return Page(records, None, page_watermark(records, watermark), malformed)

    def fetch(self, serial: str) -> BusinessRecord | None:
        records, _ = self._rows()
        return next((r for r in reversed(records) if r.serial == serial), None)

    def health(self) -> bool:
        return self.path.is_file()


def adapter_from_app(app: Flask | None = None, *, interactive: bool = False) -> HttpRegistryAdapter | None:
    """The configured HTTP source (PORTAL_REGISTRY_URL), or None when none is configured.

    `interactive` (a clerk or sysadmin waits for the answer): shorter timeouts, one retry.
    """
    from portal.registry.options import registry_options

    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app.config["SETTINGS"]
    if not settings.registry_url:
        return None
    options = registry_options(app)
    signer = None
    if options.sign_requests:
        from portal.keys import key_provider

        with app.app_context():
            signer = key_provider().signing_key
    return HttpRegistryAdapter(
        settings.registry_url,
        settings.registry_token,
        timeout=min(options.timeout_seconds, 5) if interactive else options.timeout_seconds,
        retries=min(options.retries, 1) if interactive else options.retries,
        backoff=0.25 if interactive else 0.5,
        page_size=options.page_size,
        signer=signer,
    )
