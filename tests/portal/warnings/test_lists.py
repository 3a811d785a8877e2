"""Warning lists and actions through the web: scoping, views, levels, exception, badge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.auth.models import User
from portal.db import db
from portal.warnings.models import CaptureWarning, WarningClosure
from portal.warnings.services import evaluate_all, open_warning
from tests.conftest import login
from tests.portal.stats.helpers import add_page, required_materials
from tests.portal.warnings.test_evaluation import ACCEPTED, set_rule


def _setup(factory, org):  # type: ignore[no-untyped-def]
    set_rule(t1=60, t2=240, t3=1440)
    a_old = factory.business(org.office_a, serial="A-OLD", accepted_at=ACCEPTED, clerk_code="K1")
    a_new = factory.business(org.office_a, serial="A-NEW", accepted_at=ACCEPTED + timedelta(days=2, hours=22),
                             clerk_code="K2")
    b = factory.business(org.office_b, serial="B-ONE", accepted_at=ACCEPTED, clerk_code="K3")
    c = factory.business(org.office_c, serial="C-ONE", accepted_at=ACCEPTED, clerk_code="K1")
    evaluate_all(ACCEPTED + timedelta(days=3))
    db.session.commit()
    return a_old, a_new, b, c


def _with_clerk_code(user: User, code: str) -> User:
    user.registry_clerk_code = code
    db.session.commit()
    return user


def test_supervisor_sees_only_the_subtree(client, factory, org) -> None:
    _, _, _, c = _setup(factory, org)
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    page = client.get("/warnings/").get_data(as_text=True)
    assert "A-OLD" in page and "A-NEW" in page and "B-ONE" in page
    assert "C-ONE" not in page
    # A department outside the subtree is not found; so is a warning there.
    assert client.get(f"/warnings/?department={org.office_c.id}").status_code == 404
    assert client.get(f"/warnings/?view=window&window={org.window_c.id}").status_code == 404
    warning_c = open_warning(c.id)
    response = client.post(f"/warnings/{warning_c.id}/exception", data={"reason": "越权关闭测试"})
    assert response.status_code == 404
    db.session.expire_all()
    assert open_warning(c.id) is not None
    # Narrowing to one office of the subtree, and filtering by level.
    only_b = client.get(f"/warnings/?department={org.office_b.id}").get_data(as_text=True)
    assert "B-ONE" in only_b and "A-OLD" not in only_b
    escalated = client.get("/warnings/?level=3").get_data(as_text=True)
    assert "A-OLD" in escalated and "A-NEW" not in escalated


def test_clerk_sees_own_warnings_and_window(client, factory, org) -> None:
    a_old, _, _, _ = _setup(factory, org)
    clerk = _with_clerk_code(factory.user("clerk", org.office_a, window=org.window_a), "K1")
    login(client, clerk.username)
    mine = client.get("/warnings/").get_data(as_text=True)  # default view for a clerk: mine
    assert "A-OLD" in mine
    assert "A-NEW" not in mine  # another clerk's
    assert "C-ONE" not in mine  # same clerk code, but another detachment
    assert "例外关闭" not in mine  # clerks cannot close by exception
    assert f'href="/capture/business/{a_old.id}"' in mine  # straight to where the warning is resolved
    # The window view: businesses of clerks at the window, and businesses captured there.
    a_new = db.session.scalar(select(CaptureWarning).where(CaptureWarning.clerk_code == "K2")).business
    add_page(a_new, required_materials(a_new)[0], captured_at=ACCEPTED, window_id=org.window_a.id)
    db.session.commit()
    window = client.get("/warnings/?view=window").get_data(as_text=True)
    assert "A-OLD" in window and "A-NEW" in window and "B-ONE" not in window
    assert client.get(f"/warnings/{open_warning(a_old.id).id}/exception").status_code == 405


def test_clerk_without_code_gets_a_clear_message(client, factory, org) -> None:
    _setup(factory, org)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    page = client.get("/warnings/?view=mine").get_data(as_text=True)
    assert "未关联登记系统民警编号" in page
    assert "A-OLD" not in page


def test_exception_through_the_page_is_audited(client, factory, org) -> None:
    a_old, *_ = _setup(factory, org)
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    warning_id = open_warning(a_old.id).id
    empty = client.post(f"/warnings/{warning_id}/exception", data={"reason": ""}, headers={"HX-Request": "true"})
    assert empty.status_code == 422
    assert "请填写例外原因" in empty.get_data(as_text=True)
    ok = client.post(f"/warnings/{warning_id}/exception", data={"reason": "申请人材料由上级部门留存"},
                     headers={"HX-Request": "true"})
    assert ok.status_code == 200
    assert "已记录例外并关闭" in ok.get_data(as_text=True)
    db.session.expire_all()
    warning = db.session.get(CaptureWarning, warning_id)
    assert warning.closure == WarningClosure.EXCEPTION and warning.closed_by_id == supervisor.id
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "warnings.exception_recorded")).one()
    assert (entry.object_id, entry.reason) == (str(warning_id), "申请人材料由上级部门留存")
    assert entry.user_id == supervisor.id
    assert "A-OLD" not in client.get("/warnings/").get_data(as_text=True)
    listed = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "warnings.listed")).all()
    assert listed and listed[-1].user_id == supervisor.id and listed[-1].object_id == "department"
    assert f'"department_id":{supervisor.department_id}' in listed[-1].detail
    # Without JavaScript the form posts and comes back to the list with a message.
    other = open_warning(db.session.scalar(select(CaptureWarning.business_id).where(
        CaptureWarning.clerk_code == "K3")))
    plain = client.post(f"/warnings/{other.id}/exception", data={"reason": "无需采集的测试业务"})
    assert plain.status_code == 302 and plain.headers["Location"].endswith("/warnings/")
    assert "已记录例外并关闭业务 B-ONE 的预警" in client.get("/warnings/").get_data(as_text=True)
    closed = client.get("/warnings/?state=closed").get_data(as_text=True)
    assert "A-OLD" in closed and "申请人材料由上级部门留存" in closed


def test_badge_counts_and_stops_for_users_without_warnings(client, factory, org) -> None:
    _setup(factory, org)
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    response = client.get("/warnings/badge", headers={"HX-Request": "true", "X-Portal-Poll": "1"})
    assert response.status_code == 200
    assert '<span class="nav-count"' in response.get_data(as_text=True)
    assert ">3<" in response.get_data(as_text=True)
    client.post("/logout")
    clerk = _with_clerk_code(factory.user("clerk", org.office_a), "K2")
    login(client, clerk.username)
    assert ">1<" in client.get("/warnings/badge").get_data(as_text=True)
    client.post("/logout")
    admin = factory.user("sysadmin", org.hq)
    login(client, admin.username)
    assert client.get("/warnings/badge").status_code == 286
    assert client.get("/warnings/").status_code == 403


def test_times_in_the_list_are_now_relative(client, factory, org) -> None:
    set_rule()
    now = datetime.now(UTC)
    factory.business(org.office_a, serial="RECENT", accepted_at=now - timedelta(hours=2, minutes=5))
    evaluate_all(now)
    db.session.commit()
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    page = client.get("/warnings/").get_data(as_text=True)
    assert "RECENT" in page and "2小时5分" in page


def test_nav_badge_snippet_polls_without_counting_as_activity(app) -> None:
    from flask import render_template

    with app.test_request_context("/"):
        html = render_template("warnings/_nav_badge.html")
    assert 'hx-get="/warnings/badge"' in html
    assert 'hx-trigger="load, every 15s"' in html
    assert '"X-Portal-Poll": "1"' in html
