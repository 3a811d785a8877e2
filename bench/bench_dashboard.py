"""Capture warnings and workload statistics at city scale (PostgreSQL).

First fill a database with bench/datagen.py (same --url and --instance), then run from the
repository root:

    python bench/bench_dashboard.py --url postgresql+psycopg://user:pw@127.0.0.1/ebike_bench \\
        --instance /tmp/bench-instance

Prints a Markdown table: whole-city warning evaluation (first run opens the warnings, later runs
are the scheduler's steady state), the supervisor dashboard, warning lists, full-year statistics
tables and their exports. Times are medians of --repeat runs (the first evaluation runs once).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datagen import open_app

Row = tuple[str, str, str]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.machine()}"
    return f"{cpu}, nproc = {os.cpu_count()}, Python {platform.python_version()}, {system}"


def run(repeat: int) -> list[Row]:
    from sqlalchemy import func, select, text

    from portal.auth.models import User
    from portal.capture.models import CapturedPage
    from portal.db import db, utcnow
    from portal.registry.models import Business
    from portal.stats import exports, summary
    from portal.stats.services import Dimension, Granularity, StatsQuery, business_types, dashboard, workload
    from portal.warnings.models import CaptureWarning
    from portal.warnings.services import WarningQuery, badge_count, evaluate_all, list_warnings

    rows: list[Row] = []
    businesses = db.session.scalar(select(func.count()).select_from(Business))
    pages = db.session.scalar(select(func.count()).select_from(CapturedPage))
    server = db.session.scalar(text("SHOW server_version"))
    rows.append(("data", f"{businesses:,} businesses, {pages:,} pages", f"PostgreSQL {server}"))

    def evaluate(now: Any = None) -> dict[str, int]:
        counts = evaluate_all(now)
        db.session.commit()
        return counts

    seconds, counts = timed(evaluate, 1)
    rows.append(("evaluate_all, first run (opens every warning)", f"{seconds:.2f} s", str(counts)))
    seconds, counts = timed(evaluate, repeat)
    rows.append(("evaluate_all, steady state (nothing changed)", f"{seconds:.2f} s", str(counts)))
    seconds, counts = timed(lambda: evaluate(utcnow() + timedelta(hours=6)), 1)
    rows.append(("evaluate_all, 6 h later (levels rise)", f"{seconds:.2f} s", str(counts)))
    open_warnings = db.session.scalar(
        select(func.count()).select_from(CaptureWarning).where(CaptureWarning.closed_at.is_(None)))
    rows.append(("open warnings after evaluation", f"{open_warnings:,}", ""))

    def repair() -> int:
        repaired = summary.repair()
        db.session.commit()
        return repaired

    seconds, repaired = timed(repair, repeat)
    rows.append(("summary repair job (stats_summaries), steady state", f"{seconds:.2f} s",
                 f"{repaired:,} stale summaries"))
    batch = list(db.session.scalars(select(Business.id).order_by(Business.id.desc()).limit(1000)))

    def refresh() -> int:
        written = summary.refresh(batch)
        db.session.rollback()
        return written

    seconds, _ = timed(refresh, repeat)
    rows.append(("summary refresh of 1,000 businesses (one sync batch)", f"{seconds * 1000:.0f} ms", ""))

    def user(name: str) -> User:
        found = db.session.scalar(select(User).where(User.username == name))
        assert found is not None, f"no user {name}: run bench/datagen.py first"
        return found

    hq, d01 = user("sup_hq"), user("sup_d01")
    for label, who in (("city (headquarters)", hq), ("one detachment", d01)):
        seconds, board = timed(lambda who=who: dashboard(who), repeat)
        rows.append((f"dashboard, {label}", f"{seconds * 1000:.0f} ms",
                     f"{board.pages_today:,} pages today, {sum(board.warning_levels.values()):,} open warnings"))
    seconds, result = timed(lambda: list_warnings(hq, WarningQuery(view="department")), repeat)
    rows.append(("warning list page 1, city", f"{seconds * 1000:.0f} ms", f"{result.total:,} warnings"))
    seconds, result = timed(lambda: badge_count(hq), repeat)
    rows.append(("navigation badge count, city", f"{seconds * 1000:.0f} ms", f"{result:,}"))
    db.session.rollback()

    today = utcnow().astimezone().date()
    year = {"start": today - timedelta(days=364), "end": today, "range": "custom"}
    cases = [
        ("full year by department, city", hq, StatsQuery(**year, dimension=Dimension.DEPARTMENT)),
        ("full year by business type, city", hq, StatsQuery(**year, dimension=Dimension.BUSINESS_TYPE)),
        ("full year by month, city", hq, StatsQuery(**year, dimension=Dimension.PERIOD,
                                                    granularity=Granularity.MONTH)),
        ("full year by day, city", hq, StatsQuery(**year, dimension=Dimension.PERIOD, granularity=Granularity.DAY)),
        ("full year by clerk, one detachment", d01, StatsQuery(**year, dimension=Dimension.CLERK)),
        ("last 30 days by department, city", hq, StatsQuery(start=today - timedelta(days=29), end=today,
                                                            range="last_30")),
    ]
    for label, who, query in cases:
        seconds, result = timed(lambda who=who, query=query: workload(who, query), repeat)
        db.session.rollback()
        rows.append((label, f"{seconds:.2f} s", f"{len(result.rows)} rows, {result.total.businesses:,} businesses"))

    cross = StatsQuery(**year, dimension=Dimension.DEPARTMENT_TYPE)
    seconds, result = timed(lambda: workload(hq, cross), repeat)
    db.session.rollback()
    rows.append(("full year by department × business type, city (one table)", f"{seconds:.2f} s",
                 f"{len(result.rows)} rows, {result.total.businesses:,} businesses"))
    one_type = StatsQuery(**year, dimension=Dimension.DEPARTMENT, business_type_id=business_types()[0].id)
    seconds, result = timed(lambda: workload(hq, one_type), repeat)
    db.session.rollback()
    rows.append(("full year by department, one business type, city", f"{seconds:.2f} s",
                 f"{len(result.rows)} rows, {result.total.businesses:,} businesses"))
    rows.append(checklist_change(repeat))
    result = workload(hq, StatsQuery(**year, dimension=Dimension.DEPARTMENT))
    for fmt, fn in (("xlsx", exports.to_xlsx), ("pdf", exports.to_pdf)):
        seconds, body = timed(lambda fn=fn: fn(result, hq, utcnow()), repeat)
        rows.append((f"export {fmt} of the department table", f"{seconds * 1000:.0f} ms", f"{len(body):,} bytes"))
    db.session.rollback()
    return rows


def checklist_change(repeat: int) -> Row:
    """An administrator makes an optional material of the largest business type required: its
    incomplete businesses are recomputed, their warnings and summaries follow (rolled back)."""
    from sqlalchemy import select

    from portal.audit.services import Actor
    from portal.db import db
    from portal.dictionary.models import BusinessType, ChecklistItem, Requirement
    from portal.dictionary.services import set_checklist_cell

    register = db.session.scalar(select(BusinessType).where(BusinessType.code == "REGISTER"))
    optional = db.session.scalar(select(ChecklistItem).where(
        ChecklistItem.business_type_id == register.id, ChecklistItem.requirement == Requirement.OPTIONAL))
    material_id = optional.material_id

    def change() -> int:
        from portal.dictionary.models import Material

        _, recomputed = set_checklist_cell(register, db.session.get(Material, material_id), "required",
                                           Actor.cli())
        db.session.rollback()
        return recomputed

    seconds, recomputed = timed(change, repeat)
    return ("checklist change: an optional material of 注册登记 becomes required", f"{seconds:.2f} s",
            f"{recomputed:,} incomplete businesses recomputed")


def over_http(app: Any, repeat: int) -> list[Row]:
    """The same dashboard and table as the supervisor's browser gets them: signed-in session,
    permission and scope checks, rendering, the audit entry and the commit (Flask's test client,
    no network)."""
    from datetime import date, timedelta

    from bench.datagen import PASSWORD

    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    response = client.post("/login", data={"username": "sup_hq", "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    today = date.today()
    year = {"range": "custom", "start": (today - timedelta(days=364)).isoformat(), "end": today.isoformat()}
    cases = [
        ("dashboard page over HTTP, city", "/stats/", {}),
        ("dashboard poll over HTTP (HTMX out-of-band parts), city", "/stats/live",
         {"HX-Request": "true", "X-Portal-Poll": "1"}),
        ("full year by department × business type over HTTP, city", "/stats/report",
         {"HX-Request": "true"}),
    ]
    rows: list[Row] = []
    for label, path, headers in cases:
        query = {**year, "by": "department_type"} if path == "/stats/report" else None

        def get(path: str = path, headers: dict[str, str] = headers, query: Any = query) -> Any:
            answer = client.get(path, headers=headers, query_string=query)
            assert answer.status_code == 200, answer.status_code
            return answer

        client.get(path, headers=headers, query_string=query)  # warm-up
        seconds, answer = timed(get, repeat)
        rows.append((label, f"{seconds * 1000:.0f} ms", f"{len(answer.data):,} bytes of HTML"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="capture warnings and statistics benchmark")
    parser.add_argument("--url", required=True)
    parser.add_argument("--instance", type=Path, default=Path("instance/bench"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    app = open_app(args.url, args.instance)
    app.config["STATS_STATEMENT_TIMEOUT_MS"] = 600_000  # measure, do not cut off
    with app.app_context():
        rows = run(args.repeat)
    rows += over_http(app, args.repeat)
    print(f"Machine: {machine()}\n")
    print("| measurement | time | result |")
    print("|---|---:|---|")
    for label, value, note in rows:
        print(f"| {label} | {value} | {note} |")


if __name__ == "__main__":
    main()
