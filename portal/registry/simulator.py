"""A registration-system simulator that serves the HTTP contract of docs/registry-api.md.

For development, demos (`portal registry simulate`) and tests (in-process, on an ephemeral
loopback port). It holds a steadily growing set of realistic businesses (portal.registry.sample):
new businesses are accepted, accepted ones finish, now and then one is withdrawn; every change
moves the record's `updated_at` to the simulator's clock. Controls for tests: `seed`, `add`,
`advance`, `put_raw`, `go_down("503" | "refuse")`, `come_back`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hmac
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from portal.db import utcnow
from portal.registry import sample
from portal.registry.models import BusinessStatus
from portal.registry.records import SOURCE_TZ, parse_time, record_to_json

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
_EPSILON = timedelta(microseconds=1)


def _iso(value: datetime) -> str:
    return value.astimezone(SOURCE_TZ).isoformat(timespec="microseconds")


class RegistrySimulator:
    """The data and the WSGI app of a simulated registration system (thread-safe)."""

    def __init__(
        self,
        departments: Sequence[str],
        *,
        token: str = "",
        seed: int = 7,
        clerks: Sequence[tuple[str, str]] = (),
        serial_prefix: str = "S",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not departments:
            raise ValueError("the simulator needs at least one department code")
        self.departments = list(departments)
        self.token = token
        self.clerks = list(clerks)
        self.serial_prefix = serial_prefix
        self.clock = clock
        self.rng = random.Random(seed)
        self._seed = seed
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, Any]] = {}  # serial → JSON record
        self._keys: list[tuple[datetime, str]] = []  # (updated_at, serial), sorted
        self._times: dict[str, datetime] = {}  # serial → its key time
        self._last_time: datetime | None = None
        self._counter = 0
        self.down: str | None = None  # None, "503" or "refuse" (handled by SimulatorServer)
        self.requests = 0

    # Data ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def _now(self) -> datetime:
        now = self.clock()
        if self._last_time is not None and now <= self._last_time:
            now = self._last_time + _EPSILON  # strictly increasing change times
        self._last_time = now
        return now

    def _unindex(self, serial: str) -> None:
        when = self._times.pop(serial, None)
        if when is not None:
            index = bisect.bisect_left(self._keys, (when, serial))
            if index < len(self._keys) and self._keys[index] == (when, serial):
                del self._keys[index]

    def _index(self, serial: str, when: datetime) -> None:
        self._times[serial] = when
        bisect.insort(self._keys, (when, serial))

    def _store(self, data: dict[str, Any], updated_at: datetime) -> None:
        serial = data["serial"]
        self._unindex(serial)
        data["updated_at"] = _iso(updated_at)
        self._records[serial] = data
        self._index(serial, updated_at)

    def seed(self, count: int, *, start: datetime | None = None, span: timedelta = timedelta(days=30)) -> list[str]:
        """`count` historical businesses spread over [start, start+span) with their own change times."""
        start = start or self.clock() - span - timedelta(hours=2)  # every change time lies in the past
        with self._lock:
            serials = []
            for rec in sample.records(count, self.departments, seed=self._seed + self._counter, start=start,
                                      span=span, serial_prefix=f"{self.serial_prefix}H{self._counter:03d}",
                                      clerks=self.clerks):
                self._store(record_to_json(rec), rec.updated_at or rec.accepted_at)
                serials.append(rec.serial)
            self._counter += 1
            return serials

    def add(self, count: int) -> list[str]:
        """`count` businesses accepted just now (status accepted)."""
        with self._lock:
            serials = []
            for rec in sample.records(count, self.departments, seed=self.rng.randrange(1 << 30),
                                      start=self.clock() - timedelta(minutes=2), span=timedelta(minutes=1),
                                      serial_prefix=f"{self.serial_prefix}N{self._counter:05d}",
                                      clerks=self.clerks):
                data = record_to_json(rec)
                data.update(status=BusinessStatus.ACCEPTED.value, finished_at=None)
                self._store(data, self._now())
                serials.append(rec.serial)
            self._counter += 1
            return serials

    def set_status(self, serial: str, status: BusinessStatus) -> None:
        with self._lock:
            data = dict(self._records[serial])
            now = self._now()
            data["status"] = status.value
            if status == BusinessStatus.FINISHED and not data.get("finished_at"):
                data["finished_at"] = _iso(now)
            self._store(data, now)

    def update(self, serial: str, **changes: Any) -> None:
        """Change fields of a record (JSON spelling) and move its change time."""
        with self._lock:
            data = dict(self._records[serial])
            data.update(changes)
            self._store(data, self._now())

    def advance(self, finish: int = 0, withdraw: int = 0) -> tuple[list[str], list[str]]:
        """Finish `finish` accepted businesses and withdraw `withdraw` others; return both lists."""
        with self._lock:
            accepted = sorted(s for s, d in self._records.items() if d.get("status") == BusinessStatus.ACCEPTED.value)
            finished = self.rng.sample(accepted, min(finish, len(accepted)))
            for serial in finished:
                self.set_status(serial, BusinessStatus.FINISHED)
            candidates = sorted(s for s, d in self._records.items()
                                if d.get("status") != BusinessStatus.WITHDRAWN.value and s not in finished)
            withdrawn = self.rng.sample(candidates, min(withdraw, len(candidates)))
            for serial in withdrawn:
                self.set_status(serial, BusinessStatus.WITHDRAWN)
            return finished, withdrawn

    def put_raw(self, data: dict[str, Any], serial: str | None = None) -> str:
        """Serve any JSON object as it is, as a record changed now (for malformed-record tests)."""
        with self._lock:
            key = serial or str(data.get("serial") or f"RAW{self._counter}")
            self._counter += 1
            self._unindex(key)
            self._records[key] = dict(data)
            self._index(key, self._now())
            return key

    def record(self, serial: str) -> dict[str, Any] | None:
        with self._lock:
            data = self._records.get(serial)
            return dict(data) if data is not None else None

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._records.values()]

    def tick(self, new: int, finish: int, withdraw: int) -> None:
        """One step of the steady stream (used by the CLI's background thread)."""
        with self._lock:
            self.add(new)
            self.advance(finish, withdraw)

    # Outages ------------------------------------------------------------------------------------
    def go_down(self, mode: str = "503") -> None:
        if mode not in {"503", "refuse"}:
            raise ValueError("mode is '503' or 'refuse'")
        self.down = mode

    def come_back(self) -> None:
        self.down = None

    # HTTP ---------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        self.requests += 1
        if self.down:
            return _json({"error": "unavailable"}, 503)
        if request.method != "GET":
            return _json({"error": "method_not_allowed"}, 405)
        path = request.path
        if path == "/api/v1/health":
            return _json({"status": "ok", "time": _iso(self.clock()), "businesses": len(self)})
        if self.token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return _json({"error": "unauthorized"}, 401)
        if path == "/api/v1/businesses":
            return self._list(request)
        if path.startswith("/api/v1/businesses/"):
            serial = path[len("/api/v1/businesses/"):]
            data = self.record(serial)
            return _json(data) if data is not None else _json({"error": "not_found"}, 404)
        return _json({"error": "not_found"}, 404)

    def _list(self, request: Request) -> Response:
        try:
            limit = int(request.args.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _json({"error": "bad_request", "detail": "limit must be an integer"}, 400)
        if not 1 <= limit <= MAX_LIMIT:
            return _json({"error": "bad_request", "detail": f"limit must be 1..{MAX_LIMIT}"}, 400)
        token = request.args.get("page_token")
        with self._lock:
            if token:
                try:
                    window = json.loads(base64.urlsafe_b64decode(token.encode()))
                    since = parse_time(window["s"])
                    end = parse_time(window["e"])
                    cursor = (parse_time(window["c"][0]), str(window["c"][1]))
                except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
                    return _json({"error": "bad_request", "detail": "invalid page_token"}, 400)
            else:
                try:
                    since = parse_time(request.args.get("updated_since"))
                except ValueError:
                    return _json({"error": "bad_request", "detail": "updated_since is not ISO 8601"}, 400)
                end = self.clock()
                cursor = None
            if end is None:
                return _json({"error": "bad_request", "detail": "invalid page_token"}, 400)
            if cursor is not None and cursor[0] is not None:
                index = bisect.bisect_right(self._keys, cursor)
            elif since is not None:
                index = bisect.bisect_left(self._keys, (since, ""))
            else:
                index = 0
            items: list[dict[str, Any]] = []
            last: tuple[datetime, str] | None = None
            while index < len(self._keys) and len(items) < limit:
                key = self._keys[index]
                if key[0] > end:
                    break
                items.append(dict(self._records[key[1]]))
                last = key
                index += 1
            more = index < len(self._keys) and self._keys[index][0] <= end and last is not None
        next_token = None
        if more and last is not None:
            next_token = base64.urlsafe_b64encode(json.dumps({
                "s": _iso(since) if since else None, "e": _iso(end), "c": [_iso(last[0]), last[1]],
            }).encode()).decode()
        return _json({"items": items, "next_page_token": next_token, "window_end": _iso(end)})


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("simulator %s %s", self.requestline, code)


class SimulatorServer:
    """Serves a RegistrySimulator on 127.0.0.1 in a background thread.

    `go_down("refuse")` closes the listening socket (connections are refused) and `come_back()`
    opens it again on the same port; `go_down("503")` keeps listening and answers 503.
    """

    def __init__(self, simulator: RegistrySimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        self._server = make_server(self.host, self.port, self.simulator, threaded=True,
                                   request_handler=_QuietHandler)
        self.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def go_down(self, mode: str = "503") -> None:
        self.simulator.go_down(mode)
        if mode == "refuse":
            self.stop()

    def come_back(self) -> None:
        self.simulator.come_back()
        if self._server is None:
            self.start()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def demo_departments() -> list[str]:
    """Office codes of the portal's database (for `portal registry simulate` without --departments)."""
    from sqlalchemy import select

    from portal.db import db
    from portal.org.models import Department, DepartmentKind

    return list(db.session.scalars(
        select(Department.code).where(Department.kind == DepartmentKind.OFFICE, Department.active.is_(True))
        .order_by(Department.code)
    ))
