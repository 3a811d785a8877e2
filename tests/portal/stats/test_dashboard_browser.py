"""In a real browser: the dashboard shows a warning, and it disappears on the next poll once the
business is captured, without reloading the page or re-creating the chart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portal.db import db, utcnow
from portal.registry.changes import businesses_changed
from portal.warnings.services import evaluate_all, open_warning
from tests.portal.browser_support import sign_in
from tests.portal.stats.helpers import capture
from tests.portal.warnings.test_evaluation import set_rule

pytestmark = pytest.mark.browser


def test_warning_disappears_from_the_dashboard_after_capture(app, factory, org, live_server, page) -> None:
    app.config["PORTAL_POLL_SECONDS"] = 1
    set_rule()
    accepted = utcnow() - timedelta(days=2)
    business = factory.business(org.office_a, serial="BROWSER-1", accepted_at=accepted)
    factory.business(org.office_c, serial="BROWSER-OTHER", accepted_at=accepted)  # another detachment
    evaluate_all()
    db.session.commit()
    supervisor = factory.user("supervisor", org.det1)

    sign_in(page, live_server, supervisor.username)
    page.goto(f"{live_server}/stats/")
    table = page.locator("#severe-table")
    table.get_by_text("BROWSER-1").wait_for()
    assert page.locator("#dash-levels .kpi-danger .kpi-value").inner_text() == "1"
    assert page.get_by_text("BROWSER-OTHER").count() == 0
    page.wait_for_function("() => window.portalCharts && window.portalCharts.charts['trend-chart']")
    page.evaluate("() => { window.__marker = 'same page';"
                  " window.__chart = window.portalCharts.charts['trend-chart'].chart; }")
    before = page.evaluate("() => window.__chart.data.datasets[0].data.slice()")
    assert 100 not in before

    capture(business, captured_at=utcnow())
    businesses_changed([business.id])  # what confirming a capture does next
    assert open_warning(business.id) is None
    db.session.commit()

    page.get_by_text("没有未关闭的预警。").wait_for()  # the next poll (1 s here, 15 s in production)
    assert page.get_by_text("BROWSER-1").count() == 0
    assert page.locator("#dash-levels .kpi-danger .kpi-value").inner_text() == "0"
    # Same document, same chart object, new data.
    assert page.evaluate("() => window.__marker") == "same page"
    assert page.evaluate("() => window.portalCharts.charts['trend-chart'].chart === window.__chart")
    page.wait_for_function("() => window.__chart.data.datasets[0].data.includes(100)")
    assert page.locator("#trend-chart").count() == 1
    assert page.errors == []  # no CSP violation or script error
