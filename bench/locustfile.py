"""HTTP load test of the archive lookups: 100 concurrent users (see docs/benchmarks-archive.md).

Each simulated user signs in as its own bench viewer (`bviewer001…`, made by `bench_lookup.py setup`;
one session per account, as the portal allows), then every 1–3 s (BENCH_WAIT) runs one of the common lookups
through the search form exactly as htmx sends it (POST, CSRF header, HX-Request) and, now and then,
opens a business page. Lookups by serial, plate, vehicle code, ID number and owner name look across
departments with a reason (audited); department + date range lookups stay in the user's own scope.

    BENCH_BUSINESSES=1000000 BENCH_WAIT=5,15 BENCH_WARMUP=60 locust -f bench/locustfile.py \\
        --host http://127.0.0.1:8000 --headless -u 100 -r 20 -t 5m --csv /tmp/bench-archive/locust --only-summary
"""

from __future__ import annotations

import itertools
import os
import random
import re
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import gevent
from locust import FastHttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datagen import PASSWORD, owner_id_number, owner_name, plate_number, serial, vehicle_code

BUSINESSES = int(os.environ.get("BENCH_BUSINESSES", "1000000"))
DEPARTMENTS = [int(d) for d in os.environ.get("BENCH_DEPARTMENTS", "").split(",") if d]
REASON = "性能测试 bench"
# Think time between two actions of one user, seconds ("min,max").
WAIT = tuple(float(v) for v in os.environ.get("BENCH_WAIT", "1,3").split(","))
# Statistics are reset this many seconds after the start, so that the sign-in storm of the ramp-up
# (100 sign-ins at once) is not counted in the lookup figures.
WARMUP = float(os.environ.get("BENCH_WARMUP", "0"))
_accounts = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HX_CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')


@events.test_start.add_listener
def _reset_after_warmup(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    if WARMUP > 0 and environment.runner is not None:
        def reset() -> None:
            gevent.sleep(WARMUP)
            environment.runner.stats.reset_all()
            print(f"--- statistics reset after {WARMUP:.0f} s of warm-up ---", flush=True)

        gevent.spawn(reset)


class ArchiveViewer(FastHttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        self.username = f"bviewer{next(_accounts):03d}"
        self.rng = random.Random(self.username)
        login = self.client.get("/login", name="login page")
        token = _CSRF.search(login.text or "")
        self.client.post("/login", name="login", data={
            "csrf_token": token.group(1) if token else "", "username": self.username, "password": PASSWORD})
        page = self.client.get("/archive/search", name="search page")
        match = _HX_CSRF.search(page.text or "")
        if match is None:
            raise RuntimeError(f"{self.username}: sign-in failed (no CSRF token on the search page)")
        self.csrf = match.group(1)

    def _search(self, name: str, data: dict[str, str], expect: str | None = None, cross: bool = True) -> None:
        form = {**data, "csrf_token": self.csrf}
        if cross:
            form.update(cross="1", reason=REASON)
        with self.client.post("/archive/search", data=form, name=f"search: {name}", catch_response=True,
                              headers={"HX-Request": "true", "X-CSRFToken": self.csrf}) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
            elif expect is not None and expect not in (response.text or ""):
                response.failure(f"{expect} not in the results")

    def _n(self) -> int:
        return self.rng.randint(1, BUSINESSES)

    @task(3)
    def by_serial(self) -> None:
        n = self._n()
        self._search("serial", {"serial": serial(n)}, expect=serial(n))

    @task(2)
    def by_plate(self) -> None:
        n = self._n()
        self._search("plate", {"plate": plate_number(n)}, expect=serial(n))

    @task(1)
    def by_vehicle_code(self) -> None:
        n = self._n()
        self._search("vehicle code", {"vehicle_code": vehicle_code(n)}, expect=serial(n))

    @task(2)
    def by_id_number(self) -> None:
        n = self._n()
        self._search("ID number", {"owner_id": owner_id_number(n)}, expect=serial(n))

    @task(2)
    def by_owner_name_prefix(self) -> None:
        self._search("owner name prefix", {"owner_name": owner_name(self._n())[:2]})

    @task(2)
    def by_department_and_dates(self) -> None:
        day = date.today() - timedelta(days=self.rng.randint(30, 330))
        data = {"accepted_from": day.isoformat(), "accepted_to": (day + timedelta(days=30)).isoformat()}
        if DEPARTMENTS:
            data["department"] = str(self.rng.choice(DEPARTMENTS))
        self._search("department + date range", data, cross=False)

    @task(1)
    def business_page(self) -> None:
        n = self._n()  # datagen numbers businesses 1..N, ids equal n
        with self.client.get(f"/archive/business/{n}?cross=1&reason={quote(REASON)}", name="business page",
                             catch_response=True) as response:
            if response.status_code != 200 or serial(n) not in (response.text or ""):
                response.failure(f"HTTP {response.status_code}")
