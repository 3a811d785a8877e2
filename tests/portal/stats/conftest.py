"""A small, fully known dataset for the statistics tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.capture.completeness import refresh_completeness
from portal.capture.models import CaptureKind, PageStatus, SupplementReason
from portal.db import db
from portal.dictionary.models import BusinessType, WarningTrigger
from portal.registry.models import BusinessStatus
from portal.stats import summary
from portal.stats.services import local_midnight
from tests.portal.stats.helpers import add_page, capture, required_materials


def local(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return local_midnight(day) + timedelta(hours=hour, minutes=minute, seconds=second)


@dataclass
class Spec:
    """What a business is, written down independently of how the portal computes statistics."""

    name: str
    office: str  # a, b, c
    type_code: str
    clerk: str
    accepted: datetime
    withdrawn: bool = False
    delay: timedelta | None = None  # complete after this long
    partial: bool = False
    window: str | None = None
    pages: int = 0  # current confirmed pages (the archive)
    supplemental: dict[str, int] = field(default_factory=dict)  # reason -> pages
    business: object = None

    @property
    def complete(self) -> bool:
        return self.delay is not None

    @property
    def captured(self) -> bool:
        return self.complete or self.partial


NOV = date(2026, 11, 1)


@dataclass
class Dataset:
    specs: list[Spec]
    users: dict[str, object]
    windows: dict[str, object]
    offices: dict[str, object]

    def spec(self, name: str) -> Spec:
        return next(s for s in self.specs if s.name == name)


@pytest.fixture
def dataset(factory, org) -> Dataset:  # type: ignore[no-untyped-def]
    for code in ("REGISTER", "TRANSFER", "THEFT"):
        bt = db.session.scalar(select(BusinessType).where(BusinessType.code == code))
        bt.warning_trigger, bt.reminder_after_minutes = WarningTrigger.ACCEPTED, 60
        bt.warning_after_minutes, bt.escalation_after_minutes = 240, 1440
    db.session.commit()
    offices = {"a": org.office_a, "b": org.office_b, "c": org.office_c}
    windows = {"a": org.window_a, "b": org.window_b, "c": org.window_c}
    users = {}
    for code, office in (("K1", "a"), ("K2", "a"), ("K3", "b"), ("K8", "c")):
        user = factory.user("clerk", offices[office], window=windows[office])
        user.registry_clerk_code = code
        user.full_name = f"民警{code}"
        users[code] = user
    db.session.commit()
    d = NOV
    specs = [
        Spec("b1", "a", "REGISTER", "K1", local(d + timedelta(1), 10), delay=timedelta(minutes=30), window="a",
             pages=4),
        Spec("b2", "a", "REGISTER", "K1", local(d + timedelta(1), 11), delay=timedelta(hours=3), window="a",
             pages=6, supplemental={"poor_quality": 1, "missing_page": 1}),
        Spec("b3", "a", "TRANSFER", "K2", local(d + timedelta(2), 9), partial=True, window="a", pages=1),
        Spec("b4", "a", "THEFT", "K2", local(d + timedelta(4), 15)),
        Spec("b5", "a", "REGISTER", "K1", local(d + timedelta(4), 16), withdrawn=True),
        Spec("b6", "b", "REGISTER", "K3", local(d + timedelta(3), 8), delay=timedelta(hours=2), window="b",
             pages=4),
        Spec("b7", "b", "REGISTER", "K3", local(d - timedelta(1), 12), delay=timedelta(hours=1), window="b",
             pages=4),
        Spec("b8", "c", "REGISTER", "K8", local(d + timedelta(1), 9), delay=timedelta(minutes=50), window="c",
             pages=4),
        Spec("b9", "b", "TRANSFER", "K3", local(date(2026, 11, 30), 23, 59, 59)),
        Spec("b10", "b", "TRANSFER", "K3", local(date(2026, 12, 1))),
        Spec("b11", "b", "TRANSFER", "K3", local(date(2026, 10, 31), 23, 59, 59)),
    ]
    for s in specs:
        status = BusinessStatus.WITHDRAWN if s.withdrawn else BusinessStatus.ACCEPTED
        s.business = b = factory.business(offices[s.office], serial=s.name.upper(), type_code=s.type_code,
                                          clerk_code=s.clerk, clerk_name=f"登记名{s.clerk}",
                                          accepted_at=s.accepted, status=status)
        window_id = windows[s.window].id if s.window else None
        user_id = users[s.clerk].id
        materials = required_materials(b)
        if s.complete:
            capture(b, captured_at=s.accepted + s.delay, window_id=window_id, user_id=user_id)
        elif s.partial:
            capture(b, captured_at=s.accepted + timedelta(hours=1), materials=materials[:1], window_id=window_id,
                    user_id=user_id)
        for reason, n in s.supplemental.items():
            for _ in range(n):
                add_page(b, materials[0], captured_at=s.accepted + timedelta(days=1), kind=CaptureKind.SUPPLEMENTAL,
                         reason=SupplementReason(reason), window_id=windows["b"].id, user_id=user_id,
                         status=PageStatus.CONFIRMED)
        if s.name == "b2":
            # One supplemental page replaced an earlier one: both stay in the archive count.
            first = add_page(b, materials[1], captured_at=s.accepted + timedelta(hours=1), window_id=window_id)
            first.status = PageStatus.SUPERSEDED
            # Pages that never entered the archive do not count.
            add_page(b, materials[2], captured_at=s.accepted, status=PageStatus.STAGED, window_id=window_id)
            add_page(b, materials[2], captured_at=s.accepted, status=PageStatus.DISCARDED, window_id=window_id)
        if s.name == "b1":
            add_page(b, materials[0], captured_at=s.accepted, status=PageStatus.DISCARDED, window_id=window_id)
        refresh_completeness(b)  # as the capture service does after every change
    summary.refresh(s.business.id for s in specs)  # as captures and syncs do
    db.session.commit()
    return Dataset(specs, users, windows, offices)


from tests.portal.browser_support import browser, live_server, page, second_page  # noqa: E402, F401
