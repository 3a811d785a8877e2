"""`portal demo`: a small city with one account per role and a few hundred businesses, most of
them captured over the last 30 days (so that lookups, warnings, the dashboard and the statistics
have something to show), some late or incomplete."""

from __future__ import annotations

import io
import os
import random
import secrets
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, update

from portal.audit.services import Actor
from portal.auth.models import User
from portal.auth.roles import Role
from portal.auth.services import create_user
from portal.db import db, utcnow
from portal.dictionary.models import Material, Requirement
from portal.dictionary.seed import seed_dictionary
from portal.org.models import Department, DepartmentKind, Window
from portal.org.services import create_department, create_window
from portal.registry import sample
from portal.registry.models import Business, BusinessStatus
from portal.registry.services import Lookups, RecordRejected, apply_record

DEPARTMENTS = [
    # code, name, kind, parent code
    ("310000", "市公安局交警总队", DepartmentKind.HEADQUARTERS, None),
    ("310115", "浦东支队", DepartmentKind.DETACHMENT, "310000"),
    ("310115A", "浦东车管大队花木登记点", DepartmentKind.OFFICE, "310115"),
    ("310115B", "浦东车管大队川沙登记点", DepartmentKind.OFFICE, "310115"),
    ("310104", "徐汇支队", DepartmentKind.DETACHMENT, "310000"),
    ("310104A", "徐汇车管大队漕河泾登记点", DepartmentKind.OFFICE, "310104"),
]
WINDOWS = [("310115A", "W01", "1号窗口"), ("310115A", "W02", "2号窗口"),
           ("310115B", "W01", "1号窗口"), ("310104A", "W01", "1号窗口")]
OFFICES = ["310115A", "310115B", "310104A"]
USERS = [
    # username, name, badge, roles, department, window (office, code)
    ("clerk", "陈晓明", "031501", [Role.CLERK], "310115A", ("310115A", "W01")),
    ("clerk2", "李静", "031502", [Role.CLERK], "310115B", ("310115B", "W01")),
    ("clerk3", "周伟", "031503", [Role.CLERK], "310115A", ("310115A", "W02")),
    ("clerk4", "孙丽", "030401", [Role.CLERK], "310104A", ("310104A", "W01")),
    ("supervisor", "王建国", "031001", [Role.SUPERVISOR], "310115", None),
    ("viewer", "赵丽", "031401", [Role.VIEWER], "310104A", None),
    ("sysadmin", "系统管理员", "000001", [Role.SYSADMIN], "310000", None),
    ("secadmin", "安全管理员", "000002", [Role.SECADMIN], "310000", None),
    ("auditadmin", "审计管理员", "000003", [Role.AUDITADMIN], "310000", None),
]


@dataclass
class DemoResult:
    password: str
    users: list[tuple[str, str]] = field(default_factory=list)
    businesses: int = 0
    captured: int = 0  # pages
    skipped: bool = False

    def summary(self) -> str:
        lines = []
        if self.skipped:
            lines.append("demo data already present; accounts unchanged")
        lines.append(f"demo businesses: {self.businesses}, captured pages: {self.captured}")
        lines.append("demo sign-ins (username / password):")
        for username, label in self.users:
            lines.append(f"  {username:<11} {self.password}   {label}")
        return "\n".join(lines)


def seed_demo(businesses: int = 300, password: str | None = None) -> DemoResult:
    settings = current_app.config["SETTINGS"]
    password = password or f"Demo-{secrets.token_hex(3)}-{secrets.randbelow(90) + 10}"
    seed_dictionary()
    result = DemoResult(password=password, users=[(u[0], "、".join(r.label for r in u[3])) for u in USERS])
    saved = Path(current_app.instance_path) / "demo-credentials.txt"
    if db.session.scalar(select(User).where(User.username == "clerk")) is not None:
        result.skipped = True
        result.password = saved.read_text().strip() if saved.exists() else "(unchanged)"
        return result
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    departments: dict[str, Department] = {}
    for code, name, kind, parent in DEPARTMENTS:
        departments[code] = create_department(
            code=code, name=name, kind=kind, parent=departments.get(parent) if parent else None
        )
    windows: dict[tuple[str, str], Window] = {}
    for office, code, name in WINDOWS:
        windows[(office, code)] = create_window(department=departments[office], code=code, name=name)
    for username, full_name, badge, roles, dept, window in USERS:
        user = create_user(
            username=username, full_name=full_name, department=departments[dept], roles=roles,
            password=password, settings=settings, badge_number=badge,
            window=windows[window] if window else None, must_change=False,
        )
        if Role.CLERK in roles:
            user.registry_clerk_code = f"J{badge}"
    lookups = Lookups.load()
    clerks = {office: [(f"J{u[2]}", u[1]) for u in USERS if Role.CLERK in u[3] and u[4] == office]
              for office in OFFICES}
    now = utcnow()
    created: list[Business] = []
    for record in sample.records(businesses, OFFICES, start=now - timedelta(days=30), span=timedelta(days=30)):
        # The registry's clerk of a business works in its office.
        code, name = random.Random(record.serial).choice(clerks[record.department_code])
        try:
            _, business = apply_record(replace(record, clerk_code=code, clerk_name=name), lookups)
        except RecordRejected:
            continue
        created.append(business)
    result.businesses = len(created)
    db.session.flush()
    result.captured = _capture_history(created, now)
    return result


# Capture history -----------------------------------------------------------------------------------

# The demo scanner's synthetic documents (scanner_agent.drivers.demo_driver) per material code.
DOCUMENT_OF = {"ID_PROOF": "id_copy", "PURCHASE_INVOICE": "invoice", "APPLICATION": "application",
               "CONFORMITY_CERT": "conformity", "CCC_CERT": "ccc", "TRANSFER_PROOF": "transfer"}
PAGE_VARIANTS = 3  # distinct pages per material (the image store keeps each once)


@cache
def _demo_page(material_code: str, variant: int) -> bytes:
    """A 100-dpi greyscale JPEG of a synthetic document for this material."""
    from scanner_agent.drivers.demo_driver import render_document

    seed = zlib.crc32(f"{material_code}/{variant}".encode())
    image = render_document(DOCUMENT_OF.get(material_code), dpi=100, seed=seed)
    out = io.BytesIO()
    image.convert("L").save(out, "JPEG", quality=70, dpi=(100, 100))
    return out.getvalue()


def _capture_delay(rng: random.Random) -> timedelta:
    """Most businesses are scanned at the counter within the hour, some later that day, a few
    the next day or later."""
    minutes = rng.choices(
        [rng.uniform(5, 60), rng.uniform(60, 240), rng.uniform(240, 1200), rng.uniform(1440, 4000)],
        [70, 18, 9, 3],
    )[0]
    return timedelta(minutes=minutes)


def _capture_history(businesses: list[Business], now: datetime) -> int:
    """Capture the demo businesses through the capture services (browser upload and confirm, as
    a clerk without an agent does), then move each capture's pages, job and completion to the
    time it would have happened (their audit entries keep the real time), and evaluate the
    warnings of the demo businesses afresh: the open warnings are what the scheduler would show
    now; no history of warnings closed by capture is simulated. Returns the pages."""
    from portal.capture import services as capture
    from portal.capture.models import CapturedPage, CaptureKind, ScanJob, SupplementMode, SupplementReason
    from portal.stats import summary
    from portal.warnings.models import CaptureWarning
    from portal.warnings.services import evaluate_businesses

    settings = current_app.config["SETTINGS"]
    users = {u.registry_clerk_code: u for u in db.session.scalars(select(User).where(User.window_id.is_not(None)))}
    rng = random.Random(11)
    pages = 0

    def upload(business: Business, material: Material, user: User, count: int, **supplement: Any) -> ScanJob:
        files = [capture.UploadedFile(f"{material.code.lower()}-{n}.jpg", _demo_page(material.code, rng.randrange(
            PAGE_VARIANTS))) for n in range(1, count + 1)]
        job = capture.browser_upload(business=business, material=material, window=user.window,
                                     actor=Actor.of_user(user), files=files, max_bytes=settings.max_upload_bytes,
                                     max_pixels=settings.max_image_pixels, **supplement)
        capture.confirm_job(job, Actor.of_user(user))
        return job

    def backdate(job: ScanJob, at: datetime) -> None:
        db.session.execute(update(CapturedPage).where(CapturedPage.job_id == job.id).values(
            captured_at=at, confirmed_at=at).execution_options(synchronize_session=False))
        job.created_at = job.started_at = job.finished_at = at

    for business in businesses:
        user = users.get(business.clerk_code)
        if business.status == BusinessStatus.WITHDRAWN or user is None:
            continue
        at = business.accepted_at + _capture_delay(rng)
        if at > now:
            continue  # not yet scanned
        outcome = rng.choices(["complete", "partial", "forgotten"], [93, 5, 2])[0]
        if outcome == "forgotten":
            continue
        required = [s.material for s in capture.checklist_status(business) if s.requirement == Requirement.REQUIRED]
        if not required:
            continue
        if outcome == "partial":
            required = required[:1]
        for material in required:
            count = rng.choice([1, 1, 2])
            backdate(upload(business, material, user, count), at)
            pages += count
        business.first_captured_at = at
        if business.completed_at is not None:
            business.completed_at = at
        later = at + timedelta(days=1)
        if outcome == "complete" and rng.random() < 0.06 and later < now:
            material = required[0]
            if rng.random() < 0.5:
                old = capture.confirmed_pages(business, material)[0]
                job = upload(business, material, user, 1, kind=CaptureKind.SUPPLEMENTAL,
                             mode=SupplementMode.REPLACE_PAGE, replaces=old, reason=SupplementReason.POOR_QUALITY,
                             reason_text="原扫描件模糊，重新扫描")
            else:
                job = upload(business, material, user, 1, kind=CaptureKind.SUPPLEMENTAL,
                             reason=SupplementReason.MISSING_PAGE, reason_text="补充背面页")
            backdate(job, later)
            pages += 1
    db.session.flush()
    summary.refresh(b.id for b in businesses)
    ids = [b.id for b in businesses]
    db.session.execute(delete(CaptureWarning).where(CaptureWarning.business_id.in_(ids)))
    evaluate_businesses(ids, now)
    return pages
