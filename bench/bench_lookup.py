"""Archive lookup and export benchmarks against PostgreSQL filled by bench/datagen.py.

    URL=postgresql+psycopg://user:pw@127.0.0.1/ebike_bench_archive
    python bench/datagen.py --url $URL --instance /tmp/bench-archive/instance --businesses 1000000 --reset
    python bench/bench_lookup.py setup   --url $URL --instance /tmp/bench-archive/instance   # bench viewers
    python bench/bench_lookup.py explain --url $URL --instance /tmp/bench-archive/instance   # query plans
    python bench/bench_lookup.py direct  --url $URL --instance /tmp/bench-archive/instance   # in-process latency
    python bench/bench_lookup.py export  --url $URL --instance /tmp/bench-archive/instance --pages 40

The HTTP load test (100 concurrent users) is bench/locustfile.py; docs/benchmarks-archive.md has
the commands and the figures. The lookups are the ones of the archive search form, built by the
portal's own code (`portal.archive.services`), so the plans shown are the plans the portal runs.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.datagen import PASSWORD, open_app, owner_id_number, owner_name, plate_number, serial, vehicle_code

VIEWER_PREFIX = "bviewer"
REASON = "性能测试 bench"
EXPORT_SERIAL = "BENCH-EXPORT-40"


# The lookups ------------------------------------------------------------------------------------------


def lookups(businesses: int, rng: random.Random, departments: list[int]) -> dict[str, dict[str, str]]:
    """One random instance of each common lookup (form values, as a user would type them)."""
    n = rng.randint(1, businesses)
    day = (_today() - timedelta(days=rng.randint(30, 330)))
    return {
        "serial": {"serial": serial(n)},
        "plate": {"plate": plate_number(n)},
        "vehicle_code": {"vehicle_code": vehicle_code(n)},
        "owner_id": {"owner_id": owner_id_number(n)},
        "owner_name_prefix": {"owner_name": owner_name(n)[:2]},
        "department_date": {"department": str(rng.choice(departments)), "accepted_from": day.isoformat(),
                            "accepted_to": (day + timedelta(days=30)).isoformat()},
    }


def _today():  # type: ignore[no-untyped-def]
    from datetime import date

    return date.today()


def _departments() -> list[int]:
    """Detachments and offices: department + date range lookups pick one of them (with subtree)."""
    from sqlalchemy import select

    from portal.db import db
    from portal.org.models import Department, DepartmentKind

    return list(db.session.scalars(select(Department.id).where(Department.kind != DepartmentKind.HEADQUARTERS)))


def _business_count() -> int:
    from sqlalchemy import func, select

    from portal.db import db
    from portal.registry.models import Business

    return int(db.session.scalar(select(func.max(Business.id))) or 0)


def _viewer(index: int = 1):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from portal.auth.models import User
    from portal.db import db

    user = db.session.scalar(select(User).where(User.username == f"{VIEWER_PREFIX}{index:03d}"))
    if user is None:
        raise SystemExit("run `bench_lookup.py setup` first")
    return user


# setup --------------------------------------------------------------------------------------------------


def setup(viewers: int) -> None:
    """Bench accounts: `bviewer001…` (role viewer: lookup across departments), spread over the offices."""
    from flask import current_app
    from sqlalchemy import select

    from portal.auth.models import User
    from portal.auth.roles import Role
    from portal.auth.services import create_user
    from portal.db import db
    from portal.org.models import Department, DepartmentKind

    settings = current_app.config["SETTINGS"]
    offices = list(db.session.scalars(select(Department).where(Department.kind == DepartmentKind.OFFICE)
                                      .order_by(Department.id)))
    created = 0
    for i in range(1, viewers + 1):
        username = f"{VIEWER_PREFIX}{i:03d}"
        if db.session.scalar(select(User.id).where(User.username == username)):
            continue
        create_user(username=username, full_name=f"查档员{i:03d}", department=offices[i % len(offices)],
                    roles=[Role.VIEWER], password=PASSWORD, settings=settings, must_change=False,
                    badge_number=f"V{i:05d}")
        created += 1
    db.session.commit()
    print(f"{created} bench viewers created ({viewers} wanted), password {PASSWORD!r}")


# explain ------------------------------------------------------------------------------------------------


def _statements(criteria: Any, scope: Any) -> tuple[Any, Any]:
    from sqlalchemy import func, select

    from portal.archive import services
    from portal.db import db
    from portal.org.models import Department
    from portal.registry.models import Business

    department = db.session.get(Department, criteria.department_id) if criteria.department_id else None
    stmt = services._statement(scope, criteria, department)
    bounded = stmt.with_only_columns(Business.id).order_by(None).limit(services.MAX_COUNT + 1).subquery()
    count = select(func.count()).select_from(bounded)
    page = stmt.order_by(Business.accepted_at.desc(), Business.id.desc()).limit(services.PAGE_SIZE)
    return count, page


def _explain(stmt: Any) -> tuple[str, float]:
    from portal.db import db

    connection = db.session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    processors = compiled._bind_processors
    params = {k: processors[k](v) if k in processors else v for k, v in compiled.params.items()}
    rows = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), params).all()
    plan = "\n".join(r[0] for r in rows)
    execution = next((float(r[0].split(":")[1].split()[0]) for r in rows if r[0].startswith("Execution Time")), 0.0)
    return plan, execution


def explain(seed: int, scope_kind: str) -> None:
    from portal.archive.services import SearchCriteria
    from portal.scoping import Scope, scope_for

    rng = random.Random(seed)
    viewer = _viewer()
    scope = Scope(None) if scope_kind == "all" else scope_for(viewer)
    for name, args in lookups(_business_count(), rng, _departments()).items():
        criteria = SearchCriteria.from_args(args)
        count, page = _statements(criteria, scope)
        for label, stmt in (("count (bounded)", count), ("page", page)):
            _explain(stmt)  # warm
            plan, ms = _explain(stmt)
            print(f"=== {name} {args} — {label}: {ms:.2f} ms")
            print(plan)
            print()


# direct -------------------------------------------------------------------------------------------------


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def direct(app: Any, iterations: int, threads: int, seed: int) -> None:
    """services.search (count, page, audit entry, commit) in-process, per lookup: latency percentiles."""
    from portal.archive import services
    from portal.audit.services import Actor
    from portal.db import db
    from portal.scoping import Scope, scope_for

    viewer_id = _viewer().id
    total, departments = _business_count(), _departments()

    def run(worker: int) -> dict[str, list[float]]:
        timings: dict[str, list[float]] = {}
        rng = random.Random(seed + worker)
        with app.app_context():
            from portal.auth.models import User

            viewer = db.session.get(User, viewer_id)
            actor = Actor.of_user(viewer, "127.0.0.1")
            for _ in range(iterations):
                for name, args in lookups(total, rng, departments).items():
                    criteria = services.SearchCriteria.from_args(args)
                    scope = scope_for(viewer) if name == "department_date" else Scope(None)
                    started = time.perf_counter()
                    services.search(scope, criteria, actor)
                    db.session.commit()
                    timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return timings

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(run, range(threads)))
    print(f"{'lookup':<20}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for name in results[0]:
        values = [v for r in results for v in r[name]]
        print(f"{name:<20}{len(values):>6}{statistics.median(values):>10.1f}{_percentile(values, 95):>10.1f}"
              f"{max(values):>10.1f}")


# export -------------------------------------------------------------------------------------------------


def _scan(index: int, rng: random.Random) -> bytes:
    """An A4 page at 200 dpi (1654 x 2339) that compresses like a real form scan (~300-500 KB)."""
    from PIL import Image, ImageDraw, ImageFilter

    image = Image.new("L", (1654, 2339), 246)
    draw = ImageDraw.Draw(image)
    for y in range(160, 2200, 36):
        x = 120
        while x < 1500:
            width = rng.randint(12, 40)
            draw.rectangle((x, y, x + width, y + 18), fill=rng.randint(20, 90))
            x += width + rng.randint(4, 14)
    draw.rectangle((100, 100, 1554, 2239), outline=0, width=4)
    draw.text((130, 120), f"bench page {index}", fill=0)
    noisy = Image.effect_noise(image.size, 12).point(lambda v: v // 8)
    image = Image.eval(Image.blend(image, noisy, 0.06), lambda v: v).filter(ImageFilter.SMOOTH)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, dpi=(200, 200))
    return out.getvalue()


def _export_business(pages: int):  # type: ignore[no-untyped-def]
    """A business with `pages` real (encrypted, stored) page images, created on first use."""
    from sqlalchemy import func, select

    from gmcrypto.sm3 import sm3_hex
    from portal.capture.models import CapturedPage, PageSource, PageStatus
    from portal.db import db
    from portal.dictionary.models import ChecklistItem
    from portal.registry.models import Business
    from portal.storage.services import store_image

    business = db.session.scalar(select(Business).where(Business.serial == f"{EXPORT_SERIAL}-{pages}"))
    if business is None:
        template = db.session.get(Business, 1)
        business = Business(
            serial=f"{EXPORT_SERIAL}-{pages}", business_type_id=template.business_type_id,
            department_id=template.department_id, plate_number="沪Z99999", owner_name="导出测试",
            owner_id_masked=template.owner_id_masked, phone_masked=template.phone_masked,
            accepted_at=template.accepted_at,
        )
        db.session.add(business)
        db.session.flush()
    have = db.session.scalar(select(func.count()).select_from(CapturedPage)
                             .where(CapturedPage.business_id == business.id)) or 0
    materials = list(db.session.scalars(select(ChecklistItem.material_id)
                                        .where(ChecklistItem.business_type_id == business.business_type_id)
                                        .order_by(ChecklistItem.sort_order)))
    rng = random.Random(40)
    for i in range(have, pages):
        data = _scan(i, rng)
        blob = store_image(data, "image/jpeg")
        db.session.add(CapturedPage(
            business_id=business.id, material_id=materials[i % len(materials)], position=i + 1,
            status=PageStatus.CONFIRMED, source=PageSource.BROWSER, blob_id=blob.id, content_sm3=sm3_hex(data),
            byte_size=len(data), media_type="image/jpeg", width=1654, height=2339, dpi=200,
        ))
    business.page_count = pages
    db.session.commit()
    return business


def export(pages: int, runs: int) -> None:
    from sqlalchemy import delete, select

    from portal.archive.export import export_archive
    from portal.audit.services import Actor
    from portal.capture.models import CapturedPage
    from portal.db import db
    from portal.keys import key_provider
    from portal.storage.models import Rendition

    business = _export_business(pages)
    viewer = _viewer()
    blob_ids = select(CapturedPage.blob_id).where(CapturedPage.business_id == business.id)

    def once(label: str) -> None:
        started = time.perf_counter()
        bundle = export_archive(business, viewer, Actor.of_user(viewer), key_provider().signing_key)
        zipped = bundle.zip_bytes()
        db.session.commit()
        seconds = time.perf_counter() - started
        print(f"{label:<34}{seconds:>8.2f} s   PDF {len(bundle.pdf) / 1e6:.1f} MB, ZIP {len(zipped) / 1e6:.1f} MB, "
              f"{bundle.page_count} image pages")

    for run in range(runs):
        # Cold: no cached display renditions (first export or view of these pages).
        db.session.execute(delete(Rendition).where(Rendition.source_blob_id.in_(blob_ids)))
        db.session.commit()
        once(f"{pages} pages, cold (run {run + 1})")
        once(f"{pages} pages, renditions cached (run {run + 1})")


# command line ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("setup", "explain", "direct", "export"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--instance", type=Path, required=True, help="the instance folder datagen used (keys)")
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scope", choices=("all", "own"), default="all")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    app = open_app(args.url, args.instance)
    commands: dict[str, Callable[[], None]] = {
        "setup": lambda: setup(args.viewers),
        "explain": lambda: explain(args.seed, args.scope),
        "direct": lambda: direct(app, args.iterations, args.threads, args.seed),
        "export": lambda: export(args.pages, args.runs),
    }
    with app.app_context():
        commands[args.command]()


if __name__ == "__main__":
    main()
