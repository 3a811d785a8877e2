"""The supervisor dashboard: today's figures, warnings by level, trend data, windows, offline agents."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from portal.agents.models import Agent, AgentStatus
from portal.audit.models import AuditEntry
from portal.capture.models import PageStatus
from portal.db import db, utcnow
from portal.stats.services import dashboard, local_midnight, local_today
from portal.warnings.models import CaptureWarning
from portal.warnings.services import evaluate_all
from tests.conftest import login
from tests.portal.stats.helpers import add_page, capture, required_materials
from tests.portal.warnings.test_evaluation import set_rule


def _agent(window, key_id: str, heartbeat: datetime | None, status=AgentStatus.ACTIVE) -> Agent:  # type: ignore[no-untyped-def]
    agent = Agent(window_id=window.id, key_id=key_id, public_key_pem="-", status=status, hostname=f"pc-{key_id}",
                  last_heartbeat_at=heartbeat)
    db.session.add(agent)
    return agent


def _today_data(factory, org, now: datetime):  # type: ignore[no-untyped-def]
    set_rule()
    done = factory.business(org.office_a, serial="TODAY-1", accepted_at=now - timedelta(minutes=20))
    capture(done, captured_at=now - timedelta(minutes=5), window_id=org.window_a.id)
    partial = factory.business(org.office_b, serial="TODAY-2", accepted_at=now - timedelta(minutes=10))
    add_page(partial, required_materials(partial)[0], captured_at=now - timedelta(minutes=1),
             window_id=org.window_b.id)
    add_page(partial, required_materials(partial)[1], captured_at=now, status=PageStatus.STAGED,
             window_id=org.window_b.id)
    other = factory.business(org.office_c, serial="TODAY-3", accepted_at=now - timedelta(minutes=10))
    capture(other, captured_at=now, window_id=org.window_c.id)
    old = factory.business(org.office_a, serial="OLD-1", accepted_at=now - timedelta(days=3))
    factory.business(org.office_c, serial="OLD-C", accepted_at=now - timedelta(days=3))
    _agent(org.window_a, "ka", now - timedelta(seconds=30))
    _agent(org.window_b, "kb", now - timedelta(minutes=5))
    _agent(org.window_c, "kc", None)
    _agent(org.window_a, "kr", None, status=AgentStatus.REVOKED)
    # Creating the businesses evaluated them at the real time; this test's clock is `now`.
    db.session.execute(delete(CaptureWarning))
    evaluate_all(now)
    db.session.commit()
    return done, partial, old


def test_dashboard_figures_are_scoped(factory, org) -> None:
    noon = local_midnight(local_today()) + timedelta(hours=12)  # every "today" figure is unambiguous
    _today_data(factory, org, noon)
    supervisor = factory.user("supervisor", org.det1)
    board = dashboard(supervisor, noon)
    assert board.today == local_today()
    # Today in D1: 4 pages of TODAY-1 and 1 confirmed page of TODAY-2 (the staged one is not archived yet).
    assert (board.pages_today, board.businesses_captured_today, board.completed_today) == (5, 2, 1)
    assert board.accepted_today == 2
    assert board.warning_levels == {1: 0, 2: 0, 3: 1}
    assert [w.business.serial for w in board.severe_warnings] == ["OLD-1"]
    assert [(label, pages) for label, pages, _ in board.busiest_windows] == [("甲登记点 1号窗口", 4),
                                                                             ("乙登记点 1号窗口", 1)]
    assert [a.key_id for a in board.offline_agents] == ["kb"]  # kc is another detachment; kr is revoked
    assert len(board.trend_labels) == 30 and board.trend_labels[-1] == local_today().isoformat()[5:]
    hq = factory.user("supervisor", org.hq)
    board = dashboard(hq, noon)
    assert {a.key_id for a in board.offline_agents} == {"kb", "kc"}
    assert (board.accepted_today, board.pages_today) == (3, 9)


def test_dashboard_page_and_live_parts(client, factory, org) -> None:
    _today_data(factory, org, utcnow())
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    page = client.get("/stats/").get_data(as_text=True)
    assert "OLD-1" in page and "OLD-C" not in page
    assert 'hx-trigger="every 15s"' in page and '"X-Portal-Poll": "1"' in page
    assert '<canvas id="trend-chart"' in page
    data = json.loads(re.search(r'<script type="application/json" id="trend-data">(.*?)</script>', page, re.S)[1])
    assert len(data["labels"]) == 30 and [d["label"] for d in data["datasets"]] == ["完整率（%）", "时限内完成率（%）"]
    assert "<script>" not in page  # CSP: no inline scripts
    live = client.get("/stats/live", headers={"HX-Request": "true", "X-Portal-Poll": "1"})
    assert live.status_code == 200
    body = live.get_data(as_text=True)
    for part in ("dash-today", "dash-levels", "dash-trend-data", "dash-warnings", "dash-windows", "dash-agents"):
        assert f'id="{part}" hx-swap-oob="innerHTML"' in body
    assert "<canvas" not in body  # the chart is never re-created by polling
    # Opening the dashboard is audited, its polls are not.
    client.get("/stats/live", headers={"HX-Request": "true", "X-Portal-Poll": "1"})
    [opened] = db.session.scalars(select(AuditEntry).where(AuditEntry.action.like("stats.%"))).all()
    assert (opened.action, opened.user_id) == ("stats.dashboard_viewed", supervisor.id)
    assert "pc-kb" in body
