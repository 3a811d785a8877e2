"""Archive lookup: every criterion, combinations, scope, literal wildcards, bounded count and paging."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from portal.archive import services
from portal.archive.services import SearchCriteria
from portal.audit.services import Actor
from portal.db import db
from portal.dictionary.models import BusinessType
from portal.protect import ID_NUMBER, blind_index
from portal.registry.models import Business, CaptureState
from portal.scoping import scope_for
from tests.conftest import login
from tests.portal.archive.conftest import audit_entries


def _serials(user, cross: bool = False, **args) -> list[str]:  # type: ignore[no-untyped-def]
    criteria = SearchCriteria.from_args({k: str(v) for k, v in args.items()})
    assert not criteria.errors, criteria.errors
    result = services.search(scope_for(user, cross_department=cross), criteria, Actor.of_user(user))
    return [b.serial for b in result.items]


@pytest.fixture
def sample(factory, org):  # type: ignore[no-untyped-def]
    """Five businesses in offices A, B and C with distinct data."""
    f = factory
    return {
        "a1": f.business(org.office_a, serial="S-A-001", plate_number="沪A10001", vehicle_code="VC0001",
                         owner_name="张三", owner_id_number="310115199001011234",
                         accepted_at=datetime(2026, 10, 1, 2, 0, tzinfo=UTC)),
        "a2": f.business(org.office_a, serial="S-A-002", plate_number="沪A10002", vehicle_code="VC0002",
                         owner_name="张三丰", owner_id_number="310115199202022345", type_code="TRANSFER",
                         accepted_at=datetime(2026, 10, 15, 2, 0, tzinfo=UTC)),
        "a3": f.business(org.office_a, serial="S-A-003", plate_number="沪A10003", vehicle_code="VC0003",
                         owner_name="李四", owner_id_number="31011519930303345X",
                         accepted_at=datetime(2026, 11, 1, 2, 0, tzinfo=UTC)),
        "b1": f.business(org.office_b, serial="S-B-001", plate_number="沪B20001", vehicle_code="VC1001",
                         owner_name="张伟", owner_id_number="320102198001011111",
                         accepted_at=datetime(2026, 10, 20, 2, 0, tzinfo=UTC)),
        "c1": f.business(org.office_c, serial="S-C-001", plate_number="沪C30001", vehicle_code="VC2001",
                         owner_name="王五", owner_id_number="330102198501012222",
                         accepted_at=datetime(2026, 10, 5, 2, 0, tzinfo=UTC)),
    }


def test_each_criterion(factory, org, sample) -> None:
    supervisor = factory.user("supervisor", org.hq)  # sees the whole tree
    assert _serials(supervisor, serial="S-A-002") == ["S-A-002"]
    assert _serials(supervisor, serial="s-a-002") == ["S-A-002"]  # typed in lower case
    assert _serials(supervisor, serial="S-A-00") == []  # the serial is exact, not a prefix
    assert _serials(supervisor, plate="沪B20001") == ["S-B-001"]
    assert _serials(supervisor, plate=" 沪b 20001 ") == ["S-B-001"]  # spaces and case do not matter
    assert _serials(supervisor, plate="沪Ａ１０００３") == ["S-A-003"]  # full-width from a Chinese IME
    assert _serials(supervisor, vehicle_code="VC2001") == ["S-C-001"]
    assert _serials(supervisor, owner_name="张三") == ["S-A-002", "S-A-001"]  # prefix, newest first
    assert _serials(supervisor, owner_name="张") == ["S-B-001", "S-A-002", "S-A-001"]
    assert _serials(supervisor, owner_id="310115199001011234") == ["S-A-001"]
    assert _serials(supervisor, owner_id="31011519930303345x") == ["S-A-003"]  # check character case
    assert _serials(supervisor, owner_id="3101151990") == []  # exact only
    transfer = db.session.scalar(select(BusinessType).where(BusinessType.code == "TRANSFER"))
    assert _serials(supervisor, business_type=transfer.id) == ["S-A-002"]
    assert _serials(supervisor, department=org.det1.id) == ["S-A-003", "S-B-001", "S-A-002", "S-A-001"]
    assert _serials(supervisor, department=org.office_c.id) == ["S-C-001"]
    assert _serials(supervisor, accepted_from="2026-10-10", accepted_to="2026-10-31") == ["S-B-001", "S-A-002"]
    assert _serials(supervisor, accepted_from="2026-11-01") == ["S-A-003"]
    assert _serials(supervisor, accepted_to="2026-10-01") == ["S-A-001"]  # the end day is included
    assert _serials(supervisor, capture_state="none", department=org.office_b.id) == ["S-B-001"]
    assert _serials(supervisor, capture_state="complete") == []


def test_combinations_and_sort(factory, org, sample) -> None:
    supervisor = factory.user("supervisor", org.hq)
    assert _serials(supervisor, owner_name="张", department=org.office_a.id) == ["S-A-002", "S-A-001"]
    assert _serials(supervisor, owner_name="张", accepted_from="2026-10-10") == ["S-B-001", "S-A-002"]
    assert _serials(supervisor, owner_name="张三", plate="沪A10001") == ["S-A-001"]
    assert _serials(supervisor, owner_name="李", plate="沪A10001") == []
    assert _serials(supervisor, owner_name="张", sort="oldest") == ["S-A-001", "S-A-002", "S-B-001"]


def test_capture_state_filter(factory, org, sample) -> None:
    business = sample["a2"]
    business.capture_state = CaptureState.PARTIAL
    db.session.commit()
    supervisor = factory.user("supervisor", org.hq)
    assert _serials(supervisor, capture_state="partial") == ["S-A-002"]


def test_scope_is_the_own_subtree_unless_looking_across(factory, org, sample) -> None:
    clerk_a = factory.user("clerk", org.office_a)
    assert _serials(clerk_a, owner_name="张") == ["S-A-002", "S-A-001"]
    assert _serials(clerk_a, serial="S-B-001") == []
    assert _serials(clerk_a, cross=True, serial="S-B-001") == []  # no LOOKUP_ALL: nothing changes
    assert _serials(clerk_a, department=org.office_c.id) == []  # picking another department does not widen
    viewer_c = factory.user("viewer", org.office_c)
    assert _serials(viewer_c, serial="S-A-001") == []
    assert _serials(viewer_c, cross=True, serial="S-A-001") == ["S-A-001"]


def test_wildcards_are_literal(factory, org) -> None:
    for serial, name in (("W1", "100%纯"), ("W2", "1000纯"), ("W3", "A_B"), ("W4", "AxB"), ("W5", "C/D"),
                         ("W6", "C\\D"), ("W7", "E*F")):
        factory.business(org.office_a, serial=serial, owner_name=name)
    clerk = factory.user("clerk", org.office_a)
    assert _serials(clerk, owner_name="100%") == ["W1"]
    assert _serials(clerk, owner_name="%") == []
    assert _serials(clerk, owner_name="A_") == ["W3"]
    assert _serials(clerk, owner_name="_") == []
    assert _serials(clerk, owner_name="C/") == ["W5"]
    assert _serials(clerk, owner_name="C\\") == ["W6"]
    assert _serials(clerk, owner_name="*") == []
    assert _serials(clerk, serial="%") == []
    assert _serials(clerk, plate="%") == []  # exact fields: "%" is just a character


def test_injection_text_is_just_text(client, factory, org, sample) -> None:
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    for value in ("' OR '1'='1", "张三'; DROP TABLE business; --", "张\x00三", "\u200b张三", "张三\u202e"):
        response = client.post("/archive/search", data={"owner_name": value})
        assert response.status_code == 200, value
    page = client.post("/archive/search", data={"owner_name": "张\x00三"}).get_data(as_text=True)
    assert "S-A-001" in page  # NUL and invisible characters are removed, not passed to the database
    assert db.session.scalar(select(Business).where(Business.serial == "S-A-001")) is not None


def test_bad_input_is_reported(client, factory, org) -> None:
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    response = client.post("/archive/search", data={"accepted_from": "2026-13-45", "department": "abc",
                                                     "capture_state": "weird", "serial": "X" * 41})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for message in ("受理日期（起）格式无效", "部门取值无效", "采集状态取值无效", "流水号过长"):
        assert message in page
    response = client.post("/archive/search", data={"accepted_from": "2026-10-10", "accepted_to": "2026-10-01"})
    assert "不能早于" in response.get_data(as_text=True)
    assert audit_entries("archive.searched") == []  # nothing was searched


def test_count_is_bounded_and_paging_is_bounded(factory, org, monkeypatch) -> None:
    for i in range(27):
        factory.business(org.office_a, serial=f"P{i:03d}", owner_name="赵六",
                         accepted_at=datetime(2026, 9, 1, tzinfo=UTC).replace(hour=i % 24, minute=i))
    clerk = factory.user("clerk", org.office_a)
    scope = scope_for(clerk)
    result = services.search(scope, SearchCriteria.from_args({"owner_name": "赵"}), Actor.of_user(clerk),
                             page_size=10)
    assert (result.count, result.capped, result.pages, len(result.items)) == (27, False, 3, 10)
    third = services.search(scope, SearchCriteria.from_args({"owner_name": "赵", "page": "3"}),
                            Actor.of_user(clerk), page_size=10)
    assert len(third.items) == 7 and (third.first, third.last) == (21, 27)
    every = [b.serial for p in (1, 2, 3) for b in services.search(
        scope, SearchCriteria.from_args({"owner_name": "赵", "page": str(p)}), Actor.of_user(clerk),
        page_size=10).items]
    assert len(set(every)) == 27  # pages neither overlap nor skip
    far = services.search(scope, SearchCriteria.from_args({"owner_name": "赵", "page": "999999"}),
                          Actor.of_user(clerk), page_size=10)
    assert far.page == 3  # clamped to the last page
    monkeypatch.setattr(services, "MAX_COUNT", 20)
    capped = services.search(scope, SearchCriteria.from_args({"owner_name": "赵", "page": "5"}),
                             Actor.of_user(clerk), page_size=10)
    assert (capped.count, capped.capped, capped.pages, capped.page) == (20, True, 2, 2)


def test_capped_count_is_shown_as_more_than(client, factory, org, monkeypatch) -> None:
    for i in range(6):
        factory.business(org.office_a, serial=f"Q{i}", owner_name="钱七")
    monkeypatch.setattr(services, "MAX_COUNT", 5)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    page = client.post("/archive/search", data={"owner_name": "钱"}).get_data(as_text=True)
    assert "超过 5 条" in page


def test_search_page_and_fragment(client, factory, org, sample) -> None:
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    page = client.get("/archive/search")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'hx-trigger="input changed delay:400ms target:.live, change target:.on-change, search, submit"' in html
    assert "跨部门查询" not in html  # a clerk may not look across
    fragment = client.post("/archive/search", data={"owner_name": "张"}, headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and "共 2 条" in text
    assert "310***********1234" in text and "310115199001011234" not in text
    empty = client.post("/archive/search", data={}, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "请至少输入一个查询条件" in empty


def test_every_search_is_audited_without_the_clear_id_number(client, factory, org, sample) -> None:
    viewer = factory.user("viewer", org.office_c)
    login(client, viewer.username)
    client.post("/archive/search", data={"owner_id": "310115199001011234"})
    client.post("/archive/search", data={"owner_id": "310115199001011234", "cross": "1", "reason": "协查 2026-118"})
    entries = audit_entries("archive.searched")
    assert len(entries) == 2
    own, across = (json.loads(e.detail) for e in entries)
    assert own["cross"] is False and own["count"] == 0 and entries[0].reason == ""
    assert across["cross"] is True and across["count"] == 1 and entries[1].reason == "协查 2026-118"
    assert across["owner_id_masked"] == "310***********1234"
    assert across["owner_id_index"] == blind_index(ID_NUMBER, "310115199001011234")
    for entry in entries:
        assert "310115199001011234" not in entry.detail and "199001011" not in entry.detail


def test_cross_department_needs_a_reason(client, factory, org, sample) -> None:
    viewer = factory.user("viewer", org.office_c)
    login(client, viewer.username)
    page = client.get("/archive/search").get_data(as_text=True)
    assert "跨部门查询" in page and 'name="reason"' in page
    no_reason = client.post("/archive/search", data={"serial": "S-A-001", "cross": "1", "reason": "  "})
    assert "跨部门查询须填写查询事由" in no_reason.get_data(as_text=True)
    assert audit_entries("archive.searched") == []
    found = client.post("/archive/search", data={"serial": "S-A-001", "cross": "1", "reason": "协查"})
    html = found.get_data(as_text=True)
    link = re.search(r'href="(/archive/business/\d+\?[^"]+)"', html)
    assert link is not None and "cross=1" in link.group(1) and "reason=" in link.group(1)
    opened = client.get(link.group(1).replace("&amp;", "&"))
    assert opened.status_code == 200 and "S-A-001" in opened.get_data(as_text=True)


def test_get_with_criteria_runs_the_search(client, factory, org, sample) -> None:
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    html = client.get("/archive/search?plate=沪A10003").get_data(as_text=True)
    assert "S-A-003" in html and "共 1 条" in html


def test_permission(client, factory, org) -> None:
    admin = factory.user("sysadmin", org.hq)
    login(client, admin.username)
    assert client.get("/archive/search").status_code == 403
    assert client.post("/archive/search", data={"serial": "x"}).status_code == 403
