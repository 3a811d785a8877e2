"""Server-side time of the clerk's capture screen for a business with 30 pages.

Run from the repository root:

    python bench/bench_capture_screen.py                          # SQLite file in a temp folder, 100k businesses
    python bench/bench_capture_screen.py --businesses 1000000
    python bench/bench_capture_screen.py --database-url postgresql+psycopg://…/ebike_bench \\
        --instance /tmp/bench-instance --datagen 1000000          # PostgreSQL: bench/datagen.py first (emptied!)
    python bench/bench_capture_screen.py --database-url postgresql+psycopg://…/ebike_bench \\
        --instance /tmp/bench-instance --reuse                    # PostgreSQL data generated earlier

Data: SQLite gets `--businesses` rows inserted here (one office's worth of realistic rows, the
rest spread over 60 offices); PostgreSQL uses bench/datagen.py (a city: 10 detachments, 60 offices,
180 windows, ~8 pages per business). On top, one REGISTER business of the clerk's office gets 30
real pages through the capture services: 18 confirmed pages over its materials, 2 of them replaced
by supplemental capture (2 superseded versions), and a browser-upload job of 10 staged pages on the
selected material. The window's agent is online.

Timed through Flask's test client, signed in as the clerk (`--rounds` requests each, after 3
warm-ups): the full capture page, the workspace fragment (what a click on a material loads), the
staging box poll answered 204 (nothing new) and 200 (a page arrived), a watermarked thumbnail.
Prints a Markdown table with median, p95 and SQL statements per request.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "Bench-Passw0rd!"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _page_jpeg(label: str) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("L", (1240, 1754), 250)  # A4 at 150 dpi
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 80, 1160, 220), outline=0, width=4)
    draw.text((110, 130), label, fill=0)
    for y in range(300, 1650, 40):
        draw.line((110, y, 1130, y), fill=90, width=3)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, dpi=(150, 150))
    return out.getvalue()


# SQLite data ---------------------------------------------------------------------------------------


def fill_sqlite(businesses: int, chunk: int = 20_000) -> tuple[Any, Any]:
    """Org, dictionary, clerk and `businesses` rows; returns (clerk, office)."""
    from datetime import UTC, datetime, timedelta

    from flask import current_app
    from sqlalchemy import insert, select

    import portal.models  # noqa: F401
    from portal.auth.roles import Role
    from portal.auth.services import create_user
    from portal.db import Base, db
    from portal.dictionary.models import BusinessType
    from portal.dictionary.seed import seed_dictionary
    from portal.org.models import DepartmentKind as K
    from portal.org.services import create_department, create_window
    from portal.registry.models import Business

    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)
    seed_dictionary()
    hq = create_department(code="HQ", name="市交警总队", kind=K.HEADQUARTERS, parent=None)
    offices = []
    for d in range(1, 11):
        det = create_department(code=f"D{d:02d}", name=f"第{d}支队", kind=K.DETACHMENT, parent=hq)
        for o in range(1, 7):
            office = create_department(code=f"D{d:02d}O{o:02d}", name=f"第{d}支队{o}号登记点", kind=K.OFFICE,
                                       parent=det)
            create_window(department=office, code="W1", name="1号窗口")
            offices.append(office)
    office = offices[0]
    clerk = create_user(username="clerk00001", full_name="民警00001", department=office, roles=[Role.CLERK],
                        password=PASSWORD, settings=current_app.config["SETTINGS"], window=office.windows[0],
                        must_change=False, badge_number="010001")
    db.session.commit()
    types = list(db.session.scalars(select(BusinessType.id)))
    rng = random.Random(20261123)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for n in range(1, businesses + 1):
        accepted = now - timedelta(seconds=rng.randrange(365 * 86400))
        rows.append({
            "serial": f"BN{n:012d}", "business_type_id": types[rng.randrange(len(types))],
            "department_id": offices[rng.randrange(len(offices))].id, "plate_number": f"沪A{n % 100000:05d}",
            "vehicle_code": f"V{n:013d}", "owner_name": "张三", "owner_id_masked": "310***********1234",
            "phone_masked": "138****5678", "accepted_at": accepted, "capture_state": "complete",
            "required_count": 3, "required_captured": 3, "page_count": 8, "first_captured_at": accepted,
            "completed_at": accepted, "synced_at": now,
        })
        if len(rows) == chunk:
            db.session.execute(insert(Business), rows)
            db.session.commit()
            rows.clear()
    if rows:
        db.session.execute(insert(Business), rows)
        db.session.commit()
    return clerk, office


def datagen_clerk() -> tuple[Any, Any]:
    from sqlalchemy import select

    from portal.auth.models import User
    from portal.db import db

    clerk = db.session.scalar(select(User).where(User.username == "clerk00001"))
    if clerk is None:
        raise SystemExit("no clerk00001: generate the data with --datagen first")
    return clerk, clerk.department


# The business with 30 pages ------------------------------------------------------------------------


def thirty_page_business(clerk: Any, office: Any) -> tuple[Any, Any, Any, Any]:
    """Returns (business, selected material, staged job, a pending agent job)."""
    from datetime import UTC, datetime

    from sqlalchemy import delete, select, update

    from portal.agents.models import Agent
    from portal.audit.services import Actor
    from portal.capture import services
    from portal.capture.models import CaptureKind, SupplementMode, SupplementReason
    from portal.db import db, utcnow
    from portal.dictionary.models import ChecklistItem, Material, Requirement
    from portal.registry.models import Business
    from portal.registry.records import BusinessRecord
    from portal.registry.services import apply_record

    serial = "BENCH-CAPTURE-30"
    existing = db.session.scalar(select(Business).where(Business.serial == serial))
    if existing is not None:  # --reuse: start the business over
        from portal.capture.models import CapturedPage, ScanJob

        db.session.execute(update(CapturedPage).where(CapturedPage.business_id == existing.id)
                           .values(supersedes_id=None))
        db.session.execute(delete(CapturedPage).where(CapturedPage.business_id == existing.id))
        db.session.execute(delete(ScanJob).where(ScanJob.business_id == existing.id))
        db.session.delete(existing)
        db.session.commit()
    _, business = apply_record(BusinessRecord(
        serial=serial, business_type_code="REGISTER", department_code=office.code,
        accepted_at=datetime.now(UTC), plate_number="沪A30030", owner_name="王五",
        owner_id_number="310115199001011234", phone="13812345678"))
    window = clerk.window
    agent = db.session.scalar(select(Agent).where(Agent.window_id == window.id).limit(1))
    if agent is None:
        agent = Agent(window_id=window.id, key_id=f"bench-{window.id}", public_key_pem="-", hostname="pc-bench")
        db.session.add(agent)
    agent.last_heartbeat_at = utcnow()
    db.session.commit()
    actor = Actor.of_user(clerk)
    required = list(db.session.scalars(
        select(Material).join(ChecklistItem, ChecklistItem.material_id == Material.id)
        .where(ChecklistItem.business_type_id == business.business_type_id,
               ChecklistItem.requirement == Requirement.REQUIRED).order_by(ChecklistItem.sort_order)))
    number = 0

    def files(n: int) -> list[services.UploadedFile]:
        nonlocal number
        out = []
        for _ in range(n):
            number += 1
            out.append(services.UploadedFile(f"p{number}.jpg", _page_jpeg(f"{serial} page {number}")))
        return out

    def upload(material: Any, n: int, **kwargs: Any) -> Any:
        job = services.browser_upload(business=business, material=material, window=window, actor=actor,
                                      files=files(n), max_bytes=25 << 20, max_pixels=60_000_000, **kwargs)
        db.session.commit()
        return job

    shares = [6, 6, 4, 2][: len(required)]
    for material, n in zip(required, shares, strict=False):
        services.confirm_job(upload(material, n), actor)
        db.session.commit()
    selected = required[0]
    first = services.confirmed_pages(business, selected)[:2]
    for old in first:  # two pages replaced by supplemental capture: 2 superseded versions
        job = upload(selected, 1, kind=CaptureKind.SUPPLEMENTAL, mode=SupplementMode.REPLACE_PAGE, replaces=old,
                     reason=SupplementReason.POOR_QUALITY)
        services.confirm_job(job, actor)
        db.session.commit()
    staged = upload(selected, 10, kind=CaptureKind.SUPPLEMENTAL, reason=SupplementReason.MISSING_PAGE)
    pending = services.request_capture(business=business, material=required[-1], window=window, actor=actor,
                                       kind=CaptureKind.SUPPLEMENTAL, reason=SupplementReason.MISSING_PAGE)
    db.session.commit()
    return business, selected, staged, pending


# Timing --------------------------------------------------------------------------------------------


class StatementCounter:
    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


def timed(client: Any, counter: StatementCounter, path: str, headers: dict[str, str], rounds: int,
          expect: int) -> tuple[float, float, float]:
    for _ in range(3):
        assert client.get(path, headers=headers).status_code == expect, path
    samples = []
    statements = []
    for _ in range(rounds):
        before = counter.count
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        statements.append(counter.count - before)
        assert response.status_code == expect, (path, response.status_code)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(len(samples) * 0.95) - 1)]
    return statistics.median(samples), p95, statistics.median(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--businesses", type=int, default=100_000, help="SQLite: rows to insert")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--instance", type=Path, default=None, help="instance folder (keys); temp by default")
    parser.add_argument("--datagen", type=int, default=0, help="PostgreSQL: generate this many businesses first")
    parser.add_argument("--reuse", action="store_true", help="PostgreSQL: use data generated earlier")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()

    from sqlalchemy import func, select

    from bench.datagen import Params, generate, open_app
    from portal.capture.models import CapturedPage
    from portal.db import db
    from portal.registry.models import Business

    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    instance = args.instance or tmp / "instance"
    url = args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    app = open_app(url, instance)
    app.config["WTF_CSRF_ENABLED"] = False
    fill_started = time.perf_counter()
    with app.app_context():
        if url.startswith("sqlite"):
            clerk, office = fill_sqlite(args.businesses)
            data = f"SQLite file, {args.businesses:,} businesses inserted by this script"
        else:
            if args.datagen:
                summary = generate(Params(businesses=args.datagen))
                print(f"datagen: {summary.businesses:,} businesses, {summary.pages:,} pages", file=sys.stderr)
            elif not args.reuse:
                raise SystemExit("PostgreSQL: pass --datagen N (emptied and generated) or --reuse")
            clerk, office = datagen_clerk()
            data = "PostgreSQL, bench/datagen.py"
        business, selected, staged, pending = thirty_page_business(clerk, office)
        totals = (db.session.scalar(select(func.count()).select_from(Business)),
                  db.session.scalar(select(func.count()).select_from(CapturedPage)))
        pages = db.session.scalar(select(func.count()).select_from(CapturedPage)
                                  .where(CapturedPage.business_id == business.id))
        first_staged = db.session.scalar(select(CapturedPage.id).where(CapturedPage.job_id == staged.id)
                                         .order_by(CapturedPage.position).limit(1))
        ids = business.id, selected.id, staged.id, pending.id
        username = clerk.username
    fill_seconds = time.perf_counter() - fill_started

    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    with app.app_context():
        counter = StatementCounter(db.engine)
    bid, mid, jid, pid = ids
    page = f"/capture/business/{bid}?material={mid}"
    hx = {"HX-Request": "true"}
    cases = [
        ("capture page, full (30 pages: 18 current, 2 superseded, 10 staged)", page, {}, 200),
        ("workspace fragment (click on a material)", page, {**hx, "HX-Target": "workspace"}, 200),
        ("staging poll of a pending scan, nothing new (204)",
         f"/capture/business/{bid}/jobs/{pid}/box?key=pending.0.1", {**hx, "X-Portal-Poll": "1"}, 204),
        ("staging box with 10 pages (200)", f"/capture/business/{bid}/jobs/{jid}/box", hx, 200),
        ("poll of an ended job: workspace + stop (286)", f"/capture/business/{bid}/jobs/{jid}/box?key=x",
         {**hx, "X-Portal-Poll": "1"}, 286),
        ("thumbnail, watermarked (cached rendition)", f"/capture/business/{bid}/pages/{first_staged}/image", {}, 200),
    ]
    rows = []
    for label, path, headers, expect in cases:
        median, p95, statements = timed(client, counter, path, headers, args.rounds, expect)
        rows.append(f"| {label} | {median:.1f} | {p95:.1f} | {statements:.0f} |")
    print(f"Machine: {_machine()}")
    print(f"Data: {data}; {totals[0]:,} businesses, {totals[1]:,} captured pages in all; "
          f"the benchmark business has {pages} pages (setup {fill_seconds:.0f} s)")
    print(f"Rounds: {args.rounds} per row after 3 warm-ups, Flask test client, one process\n")
    print("| request | median ms | p95 ms | SQL statements |")
    print("|---|---:|---:|---:|")
    print("\n".join(rows))
    if not args.database_url:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
