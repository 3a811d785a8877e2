"""Synthetic city-scale data in PostgreSQL for benchmarks (warnings, statistics, lookup).

Generates a department tree with windows, one clerk per window (with a registry clerk code), a
supervisor per detachment, agents, the default dictionary, N businesses accepted over the last
`days` days (COPY, with the owner ID and phone protected exactly as the portal does, so lookups by
blind index work), and their captured pages (server-side INSERT … SELECT generate_series, about
`pages_per_business` per captured business, some supplemental with a superseded earlier version).

Everything is deterministic in the business number `n` (1..N), so a benchmark knows what to look
for without reading the data back: `serial(n)`, `plate_number(n)`, `vehicle_code(n)`,
`owner_name(n)`, `owner_id_number(n)`, `phone_number(n)`.

Run from the repository root (PostgreSQL only; the database must exist):

    python bench/datagen.py --url postgresql+psycopg://user:pw@127.0.0.1/ebike_bench \\
        --instance /tmp/bench-instance --businesses 1000000 --pages-per-business 8 --reset

Reuse from Python:

    from bench.datagen import Params, generate, open_app
    app = open_app(url, instance)
    with app.app_context():
        summary = generate(Params(businesses=200_000))

The keys live in `--instance` (created on first use): reuse the same folder for the benchmark so
that blind indexes of generated ID numbers match.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask import current_app
from sqlalchemy import ForeignKeyConstraint, text
from sqlalchemy.schema import AddConstraint, DropConstraint

log = logging.getLogger("datagen")

PASSWORD = "Bench-Passw0rd!"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国红梅玉兰志强文斌俊杰婷丹宇浩然欣怡子轩梓涵"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
# Business types by share of the daily load (codes from portal.dictionary.seed).
TYPE_SHARES = (
    ("REGISTER", 45), ("TRANSFER", 20), ("CHANGE", 8), ("DEREGISTER", 7), ("REPLACE", 10),
    ("THEFT", 4), ("CORRECTION", 3), ("LOCK", 3),
)
SUPPLEMENT_EVERY = 20  # every 20th captured business has a supplemental page (and a superseded one)
REASONS = ("wrong_page", "missing_page", "poor_quality", "other")


@dataclass
class Params:
    businesses: int = 1_000_000
    pages_per_business: float = 8.0
    days: int = 365
    detachments: int = 10
    offices_per_detachment: int = 6
    windows_per_office: int = 3
    personal: bool = True  # encrypt + blind-index owner ID and phone (about 30 µs per business)
    seed: int = 20261101
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    chunk: int = 100_000


# Deterministic values of business n ---------------------------------------------------------------


def serial(n: int) -> str:
    return f"BN{n:012d}"


def plate_number(n: int) -> str:
    return f"沪{PLATE_LETTERS[n % len(PLATE_LETTERS)]}{n % 100000:05d}"


def vehicle_code(n: int) -> str:
    return f"VC{(n * 2654435761) % 10**12:012d}"


def owner_name(n: int) -> str:
    return SURNAMES[n % len(SURNAMES)] + GIVEN[(n // 7) % len(GIVEN)] + ("" if n % 3 else GIVEN[(n // 11) % len(GIVEN)])


def _id_check(body: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def owner_id_number(n: int) -> str:
    """A well-formed 18-character resident ID number, unique per n (n < 10**9)."""
    year, month, day = 1950 + n % 55, 1 + (n // 55) % 12, 1 + (n // 660) % 28
    body = f"310{(n // 18480) % 1000:03d}{year:04d}{month:02d}{day:02d}{n % 1000:03d}"
    return body + _id_check(body)


def phone_number(n: int) -> str:
    """An 11-digit mobile number, unique per n (n < 10**8)."""
    return f"13{n % 10}{n % 10**8:08d}"


# Setup ----------------------------------------------------------------------------------------------


def open_app(url: str, instance: Path) -> Any:
    """The portal app on `url`, keys in `instance` (cheap password hashing for bench users)."""
    from portal.app import create_app
    from portal.config import Settings

    instance = instance.resolve()
    instance.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env(instance).replace(
        database_url=url, instance_dir=instance, data_dir=instance / "data", pbkdf2_iterations=1000,
        master_key_file=instance / "keys" / "master.key", portal_key_file=instance / "keys" / "portal-sm2.pem",
        data_key_file=instance / "keys" / "data.key",
        transport_key_file=instance / "keys" / "portal-transport-sm2.pem",
    )
    return create_app(settings)


def reset_schema() -> None:
    import portal.models  # noqa: F401
    from portal.db import Base, db

    db.session.remove()
    Base.metadata.drop_all(db.engine)
    Base.metadata.create_all(db.engine)


@dataclass
class Org:
    hq_id: int
    office_ids: list[int]
    clerk_codes: dict[int, list[str]]  # office id -> clerk codes of its windows
    supervisors: dict[str, str]  # department code -> supervisor username


def build_org(params: Params) -> Org:
    from portal.agents.models import Agent
    from portal.auth.roles import Role
    from portal.auth.services import create_user
    from portal.db import db
    from portal.dictionary.seed import seed_dictionary
    from portal.org.models import DepartmentKind as K
    from portal.org.services import create_department, create_window

    settings = current_app.config["SETTINGS"]
    seed_dictionary()
    hq = create_department(code="HQ", name="市交警总队", kind=K.HEADQUARTERS, parent=None)
    supervisors = {"HQ": "sup_hq"}
    create_user(username="sup_hq", full_name="总队领导", department=hq, roles=[Role.SUPERVISOR],
                password=PASSWORD, settings=settings, must_change=False)
    office_ids: list[int] = []
    clerk_codes: dict[int, list[str]] = {}
    clerk_no = 0
    for d in range(1, params.detachments + 1):
        det = create_department(code=f"D{d:02d}", name=f"第{d}支队", kind=K.DETACHMENT, parent=hq)
        username = f"sup_d{d:02d}"
        supervisors[det.code] = username
        create_user(username=username, full_name=f"第{d}支队领导", department=det, roles=[Role.SUPERVISOR],
                    password=PASSWORD, settings=settings, must_change=False)
        for o in range(1, params.offices_per_detachment + 1):
            office = create_department(code=f"D{d:02d}O{o:02d}", name=f"第{d}支队{o}号登记点", kind=K.OFFICE,
                                       parent=det)
            office_ids.append(office.id)
            clerk_codes[office.id] = []
            for w in range(1, params.windows_per_office + 1):
                window = create_window(department=office, code=f"W{w}", name=f"{w}号窗口")
                clerk_no += 1
                code = f"K{clerk_no:05d}"
                user = create_user(username=f"clerk{clerk_no:05d}", full_name=f"民警{clerk_no:05d}",
                                   department=office, roles=[Role.CLERK], password=PASSWORD, settings=settings,
                                   window=window, must_change=False)
                user.registry_clerk_code = code
                clerk_codes[office.id].append(code)
                # One agent per window; every 25th has not been heard from for ten minutes.
                heartbeat = params.now - (timedelta(minutes=10) if clerk_no % 25 == 0 else timedelta(seconds=20))
                db.session.add(Agent(window_id=window.id, key_id=f"bench{clerk_no:05d}", public_key_pem="-",
                                     hostname=f"pc-{clerk_no:05d}", last_heartbeat_at=heartbeat))
    db.session.commit()
    return Org(hq.id, office_ids, clerk_codes, supervisors)


# Businesses -----------------------------------------------------------------------------------------

BUSINESS_COLUMNS = (
    "id", "serial", "business_type_id", "department_id", "plate_number", "vehicle_code", "owner_name",
    "owner_id_cipher", "owner_id_index", "owner_id_masked", "phone_cipher", "phone_index", "phone_masked",
    "clerk_code", "clerk_name", "status", "accepted_at", "finished_at", "source_updated_at", "synced_at",
    "capture_state", "required_count", "required_captured", "page_count", "first_captured_at", "completed_at",
    "version",
)


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def business_rows(params: Params, org: Org, types: dict[str, tuple[int, int]], start_n: int = 1
                  ) -> Iterator[tuple[Any, ...]]:
    """Rows for COPY, business n = start_n .. params.businesses."""
    from portal.protect import ID_NUMBER, PHONE, protect

    rng = random.Random(params.seed)
    codes = [code for code, share in TYPE_SHARES for _ in range(share)]
    span = params.days * 86400
    newest = params.now - timedelta(minutes=5)
    for n in range(start_n, params.businesses + 1):
        type_id, required = types[codes[rng.randrange(len(codes))]]
        office = org.office_ids[rng.randrange(len(org.office_ids))]
        clerk = org.clerk_codes[office][rng.randrange(len(org.clerk_codes[office]))]
        accepted = newest - timedelta(seconds=int(span * rng.random() ** 0.9))
        age = params.now - accepted
        roll = rng.random()
        status, finished = "finished", accepted + timedelta(minutes=10 + rng.randrange(50))
        if roll < 0.01:
            status, finished = "withdrawn", None
        elif age < timedelta(hours=1) or roll < 0.02:
            status, finished = "accepted", None
        # Capture: nearly everything old is complete; recent businesses are still in progress.
        roll = rng.random()
        incomplete = 0.30 if age < timedelta(days=2) else 0.03
        if roll < incomplete / 3:
            state, captured = "none", 0
        elif roll < incomplete:
            state, captured = "partial", rng.randrange(1, required) if required > 1 else 0
            state = "partial" if captured else "none"
        else:
            state, captured = "complete", required
        pages = 0
        if captured:
            pages = max(captured, round(rng.gauss(params.pages_per_business, 2)))
        first = accepted + timedelta(minutes=2 + rng.randrange(40)) if pages else None
        # Capture delays: mostly within the hour, a long tail of late captures.
        completed = None
        if state == "complete" and first is not None:
            completed = first + timedelta(minutes=rng.randrange(20) if rng.random() < 0.85 else rng.randrange(3000))
        s = serial(n)
        if params.personal:
            pid, ph = protect(ID_NUMBER, s, owner_id_number(n)), protect(PHONE, s, phone_number(n))
        else:
            pid = ph = None
        yield (
            n, s, type_id, office, plate_number(n), vehicle_code(n), owner_name(n),
            pid.cipher if pid else None, pid.index if pid else None,
            pid.masked if pid else owner_id_number(n)[:3] + "*" * 11 + owner_id_number(n)[-4:],
            ph.cipher if ph else None, ph.index if ph else None,
            ph.masked if ph else phone_number(n)[:3] + "****" + phone_number(n)[-4:],
            clerk, f"民警{clerk[1:]}", status, _naive(accepted), _naive(finished), _naive(finished or accepted),
            _naive(params.now), state, required, captured, pages, _naive(first), _naive(completed), 1,
        )


def _type_lookup() -> dict[str, tuple[int, int]]:
    from portal.db import db

    rows = db.session.execute(text(
        "SELECT t.code, t.id, count(c.id) FILTER (WHERE c.requirement = 'required') "
        "FROM business_type t LEFT JOIN checklist_item c ON c.business_type_id = t.id GROUP BY t.code, t.id"
    )).all()
    return {code: (type_id, int(required)) for code, type_id, required in rows}


def _copy_businesses(params: Params, org: Org) -> int:
    """COPY in chunks: rows are built (encryption may touch the database through the key
    provider) while no COPY is in progress on the session's connection."""
    from portal.db import db

    connection = db.session.connection().connection.driver_connection
    columns = ", ".join(BUSINESS_COLUMNS)
    rows = business_rows(params, org, _type_lookup())
    count = 0
    started = time.perf_counter()
    while chunk := list(itertools.islice(rows, params.chunk)):
        with connection.cursor() as cur, cur.copy(f"COPY business ({columns}) FROM STDIN") as copy:
            for row in chunk:
                copy.write_row(row)
        count += len(chunk)
        log.info("businesses: %d (%.0f/s)", count, count / (time.perf_counter() - started))
    db.session.execute(text("SELECT setval(pg_get_serial_sequence('business', 'id'), :n)"), {"n": count})
    return count


# Pages ------------------------------------------------------------------------------------------------

PAGE_INSERT = """
INSERT INTO captured_page (business_id, material_id, position, version, status, kind, reason, reason_text,
    source, window_id, captured_by_id, captured_at, confirmed_by_id, confirmed_at, blob_id, content_sm3,
    byte_size, media_type, width, height, dpi, rotation, blank, signature_verified)
SELECT b.id, rm.material_id, g.i, 1, 'confirmed',
       CASE WHEN b.id % :every = 0 AND g.i = 1 THEN 'supplemental' ELSE 'initial' END,
       CASE WHEN b.id % :every = 0 AND g.i = 1
            THEN (ARRAY['wrong_page', 'missing_page', 'poor_quality', 'other'])[1 + (b.id / :every) % 4] END,
       '', 'agent', u.window_id, u.id,
       CASE WHEN b.id % :every = 0 AND g.i = 1 THEN b.first_captured_at + interval '1 day'
            ELSE b.first_captured_at + g.i * interval '15 seconds' END,
       u.id, b.first_captured_at + g.i * interval '15 seconds' + interval '1 minute',
       :blob, md5(b.id::text || '-' || g.i::text) || md5(g.i::text), 250000, 'image/jpeg', 1654, 2339, 200, 0,
       false, true
FROM business b
JOIN user_account u ON u.registry_clerk_code = b.clerk_code
CROSS JOIN LATERAL generate_series(1, b.page_count) AS g(i)
JOIN bench_required_material rm
  ON rm.business_type_id = b.business_type_id AND rm.idx = (g.i - 1) % b.required_captured
WHERE b.id BETWEEN :lo AND :hi AND b.page_count > 0
"""

SUPERSEDED_INSERT = """
INSERT INTO captured_page (business_id, material_id, position, version, status, kind, reason_text, source,
    window_id, captured_by_id, captured_at, confirmed_by_id, confirmed_at, blob_id, content_sm3, byte_size,
    media_type, width, height, dpi, rotation, blank, signature_verified)
SELECT b.id, rm.material_id, 1, 1, 'superseded', 'initial', '', 'agent', u.window_id, u.id,
       b.first_captured_at, u.id, b.first_captured_at + interval '1 minute', :blob, md5(b.id::text || '-old'),
       250000, 'image/jpeg', 1654, 2339, 200, 0, false, true
FROM business b
JOIN user_account u ON u.registry_clerk_code = b.clerk_code
JOIN bench_required_material rm ON rm.business_type_id = b.business_type_id AND rm.idx = 0
WHERE b.id BETWEEN :lo AND :hi AND b.page_count > 0 AND b.id % :every = 0
"""


def _insert_pages(params: Params, total: int) -> int:
    from portal.db import db
    from portal.storage.models import ImageBlob

    blob = ImageBlob(content_sm3="0" * 63 + "1", byte_size=250000, media_type="image/jpeg",
                     wrapped_key=b"bench: no image behind this blob", master_key_id="bench")
    db.session.add(blob)
    db.session.flush()
    db.session.execute(text("DROP TABLE IF EXISTS bench_required_material"))
    db.session.execute(text(
        "CREATE TABLE bench_required_material AS "
        "SELECT business_type_id, material_id, "
        "row_number() OVER (PARTITION BY business_type_id ORDER BY sort_order, id) - 1 AS idx "
        "FROM checklist_item WHERE requirement = 'required'"
    ))
    pages = 0
    started = time.perf_counter()
    for lo in range(1, total + 1, params.chunk):
        hi = min(lo + params.chunk - 1, total)
        values = {"lo": lo, "hi": hi, "every": SUPPLEMENT_EVERY, "blob": blob.id}
        pages += db.session.execute(text(PAGE_INSERT), values).rowcount
        pages += db.session.execute(text(SUPERSEDED_INSERT), values).rowcount
        db.session.commit()
        log.info("pages: %d (businesses up to %d, %.0f pages/s)", pages, hi, pages / (time.perf_counter() - started))
    db.session.execute(text("DROP TABLE bench_required_material"))
    db.session.commit()
    return pages


# Orchestration ----------------------------------------------------------------------------------------


def _bulk_indexes(table_names: tuple[str, ...]) -> list[Any]:
    """Non-unique indexes of the tables, dropped during the load and created afterwards."""
    from portal.db import Base

    return [index for name in table_names for index in Base.metadata.tables[name].indexes if not index.unique]


def _foreign_keys(table_names: tuple[str, ...]) -> list[Any]:
    from portal.db import Base

    return [c for name in table_names for c in Base.metadata.tables[name].constraints
            if isinstance(c, ForeignKeyConstraint)]


@dataclass
class Summary:
    businesses: int
    pages: int
    seconds_businesses: float
    seconds_pages: float
    seconds_indexes: float
    params: dict[str, Any]


def generate(params: Params, *, reset: bool = True) -> Summary:
    """Fill the app's (PostgreSQL) database. Must run inside an app context."""
    from portal.db import db

    if db.engine.dialect.name != "postgresql":
        raise SystemExit("bench/datagen.py generates into PostgreSQL only (COPY, generate_series)")
    if reset:
        reset_schema()
    org = build_org(params)
    db.session.execute(text("SET synchronous_commit = off"))
    indexes = _bulk_indexes(("business", "captured_page"))
    foreign_keys = _foreign_keys(("business", "captured_page"))
    bind = db.session.connection()
    for index in indexes:
        index.drop(bind)
    for constraint in foreign_keys:  # checked once, in bulk, when re-added
        bind.execute(DropConstraint(constraint))
    db.session.commit()
    t0 = time.perf_counter()
    count = _copy_businesses(params, org)
    db.session.commit()
    t1 = time.perf_counter()
    pages = _insert_pages(params, count)
    t2 = time.perf_counter()
    bind = db.session.connection()
    for constraint in foreign_keys:
        log.info("adding %s", constraint.name)
        bind.execute(AddConstraint(constraint))
    for index in indexes:
        log.info("creating index %s", index.name)
        index.create(bind)
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    t3 = time.perf_counter()
    params_dict = asdict(params)
    params_dict["now"] = params.now.isoformat()
    return Summary(count, pages, t1 - t0, t2 - t1, t3 - t2, params_dict)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of an existing PostgreSQL database")
    parser.add_argument("--instance", type=Path, default=Path("instance/bench"),
                        help="portal instance folder with the keys (created if missing)")
    parser.add_argument("--businesses", type=int, default=Params.businesses)
    parser.add_argument("--pages-per-business", type=float, default=Params.pages_per_business)
    parser.add_argument("--days", type=int, default=Params.days)
    parser.add_argument("--detachments", type=int, default=Params.detachments)
    parser.add_argument("--offices-per-detachment", type=int, default=Params.offices_per_detachment)
    parser.add_argument("--windows-per-office", type=int, default=Params.windows_per_office)
    parser.add_argument("--no-personal", action="store_true", help="skip encrypting ID and phone numbers")
    parser.add_argument("--seed", type=int, default=Params.seed)
    parser.add_argument("--reset", action="store_true", help="drop and recreate every table first")
    args = parser.parse_args(argv)
    if not args.reset:
        parser.error("the generator fills an empty schema: pass --reset (drops every table of the database)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params = Params(
        businesses=args.businesses, pages_per_business=args.pages_per_business, days=args.days,
        detachments=args.detachments, offices_per_detachment=args.offices_per_detachment,
        windows_per_office=args.windows_per_office, personal=not args.no_personal, seed=args.seed,
    )
    app = open_app(args.url, args.instance)
    with app.app_context():
        summary = generate(params, reset=True)
    print(f"businesses: {summary.businesses:,} in {summary.seconds_businesses:.1f} s")
    print(f"pages:      {summary.pages:,} in {summary.seconds_pages:.1f} s")
    print(f"indexes + VACUUM ANALYZE: {summary.seconds_indexes:.1f} s")


if __name__ == "__main__":
    main()
