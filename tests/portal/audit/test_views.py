"""The audit administrator's pages: search (HTMX fragment and full page), paging, verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from portal.audit.models import AuditEntry
from portal.audit.services import Actor, AuditFilter, record, search_entries
from portal.db import db
from tests.conftest import login

HX = {"HX-Request": "true"}


@pytest.fixture
def auditor(client, factory):  # type: ignore[no-untyped-def]
    user = factory.user("auditadmin", username="auditor1")
    assert login(client, user.username).status_code == 302
    return user


def _entries(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
    ))


def _seed() -> None:
    clerk = Actor("user", 501, "clerk_wang", 3, "10.1.1.1")
    agent = Actor.of_agent(9, "abcd")
    record("capture.page_added", actor=clerk, object_type="business", object_id="S001")
    record("capture.page_deleted", actor=clerk, object_type="business", object_id="S002",
           reason="页面倾斜")
    record("archive.viewed", actor=clerk, object_type="business", object_id="S001")
    record("agent.upload", actor=agent, outcome="denied", object_type="page", object_id="77")
    db.session.commit()


def test_only_the_audit_administrator_reads_the_log(client, factory):
    clerk = factory.user("clerk")
    login(client, clerk.username)
    response = client.get("/audit/")
    assert response.status_code == 403
    denied = _entries("security.forbidden")
    assert denied and denied[-1].username == clerk.username and denied[-1].outcome == "denied"
    assert _entries("audit.searched") == []


def test_index_renders_the_page_and_audits_the_search(client, auditor):
    _seed()
    response = client.get("/audit/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in page and "审计日志" in page and "立即校验" in page
    assert "capture.page_deleted" in page and "页面倾斜" in page
    searched = _entries("audit.searched")
    assert len(searched) == 1 and searched[0].username == "auditor1"
    assert json.loads(searched[0].detail)["results"] >= 4


def test_htmx_search_returns_only_the_results_fragment(client, auditor):
    _seed()
    response = client.get("/audit/?action=capture.", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in html and 'id="audit-table"' in html
    assert "capture.page_added" in html and "capture.page_deleted" in html
    assert "archive.viewed" not in html
    assert "HX-Request" in response.headers.get("Vary", "")
    detail = json.loads(_entries("audit.searched")[-1].detail)
    assert detail["action"] == "capture."
    # A boosted navigation gets the whole page.
    boosted = client.get("/audit/?action=capture.", headers={**HX, "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "present", "absent"),
    [
        ("user=clerk_wang", ["capture.page_added", "archive.viewed"], ["agent.upload"]),
        ("user=agent:9:abcd", ["agent.upload"], ["archive.viewed"]),
        ("outcome=denied", ["agent.upload"], ["capture.page_added"]),
        ("object_type=business&object_id=S001", ["capture.page_added", "archive.viewed"],
         ["capture.page_deleted"]),
        ("action=archive", ["archive.viewed"], ["capture.page_added"]),
    ],
)
def test_filters(client, auditor, query, present, absent):
    _seed()
    html = client.get(f"/audit/?{query}", headers=HX).get_data(as_text=True)
    for action in present:
        assert f"<td>{action}</td>" in html, (query, action)
    for action in absent:
        assert f"<td>{action}</td>" not in html, (query, action)


def test_user_filter_uses_the_account_of_a_known_user(client, auditor, factory):
    clerk = factory.user("clerk", username="li_si")
    record("capture.started", actor=Actor.of_user(clerk))
    record("capture.started", actor=Actor("user", None, "someone_else"))
    db.session.commit()
    page = search_entries(AuditFilter(user="LI_SI"))
    assert [e.username for e in page.entries if e.action == "capture.started"] == ["li_si"]


def test_time_range(client, auditor):
    _seed()
    old = _entries("capture.page_added")[0]
    db.session.execute(
        update(AuditEntry).where(AuditEntry.seq == old.seq)
        .values(at=datetime(2026, 1, 10, 8, 0, tzinfo=UTC))
    )  # (breaks the chain, irrelevant here)
    db.session.commit()
    html = client.get("/audit/?start=2026-01-10&end=2026-01-10", headers=HX).get_data(as_text=True)
    assert "capture.page_added" in html and "archive.viewed" not in html
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    html = client.get(f"/audit/?start={tomorrow}", headers=HX).get_data(as_text=True)
    assert "没有符合条件的日志记录" in html


def test_invalid_input_is_explained_in_chinese(client, auditor):
    html = client.get("/audit/?start=yesterday&outcome=maybe", headers=HX).get_data(as_text=True)
    assert "开始时间格式无效" in html and "结果取值无效" in html
    html = client.get("/audit/?start=2026-02-02&end=2026-02-01", headers=HX).get_data(as_text=True)
    assert "结束时间必须晚于开始时间" in html


def test_keyset_paging_newest_first(client, auditor):
    for i in range(60):
        record("test.paged", object_id=str(i))
    db.session.commit()
    first = search_entries(AuditFilter(action="test.paged"), limit=50)
    assert len(first.entries) == 50 and first.entries[0].object_id == "59"
    assert first.next_before == first.entries[-1].seq
    second = search_entries(AuditFilter(action="test.paged"), before=first.next_before, limit=50)
    assert [e.object_id for e in second.entries] == [str(i) for i in range(9, -1, -1)]
    assert second.next_before is None
    html = client.get("/audit/?action=test.paged", headers=HX).get_data(as_text=True)
    assert f"before={first.next_before}" in html and "更早的记录" in html
    older = client.get(f"/audit/?action=test.paged&before={first.next_before}", headers=HX)
    older_html = older.get_data(as_text=True)
    assert "回到最新" in older_html and "更早的记录" not in older_html
    assert older_html.count('<td class="num">') == 10


def test_verify_now_records_the_result_and_shows_it(client, auditor):
    _seed()
    response = client.post("/audit/verify", headers=HX)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'id="audit-verify-status"' in html and "通过" in html and "未通过" not in html
    verified = _entries("audit.verified")
    assert len(verified) == 1 and verified[0].username == "auditor1"
    assert json.loads(verified[0].detail)["ok"] is True
    # The full page shows the last verification too.
    assert "auditor1" in client.get("/audit/").get_data(as_text=True)


def test_verify_now_reports_tampering(client, auditor):
    _seed()
    db.session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(reason="改过"))
    db.session.commit()
    html = client.post("/audit/verify", headers=HX).get_data(as_text=True)
    assert "未通过" in html and "第 2 条记录异常" in html
    verified = _entries("audit.verified")[-1]
    assert verified.outcome == "failure" and json.loads(verified.detail)["first_bad_seq"] == 2
    # Without HTMX: redirect back with a flash message.
    response = client.post("/audit/verify")
    assert response.status_code == 302
    assert "校验未通过" in client.get("/audit/").get_data(as_text=True)
