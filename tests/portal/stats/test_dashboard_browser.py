"""In real browsers, side by side: a supervisor's dashboard shows a warning appear for an overdue
incomplete business; the clerk completes it at the window (browser upload, confirm); the warning
leaves the dashboard on the next poll, without reloading the page or re-creating the chart; and
the statistics table shows the counts the test computes on its own from what it created."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from portal.db import db, utcnow
from portal.registry.changes import businesses_changed
from portal.registry.models import BusinessStatus
from portal.warnings.services import open_warning
from tests.conftest import PASSWORD
from tests.portal.agents.conftest import page_image
from tests.portal.browser_support import htmx_settled, sign_in
from tests.portal.stats.helpers import capture, required_materials
from tests.portal.warnings.test_evaluation import set_rule

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Seeded:
    """A business of the statistics table as the test means it, independent of the portal."""

    office: str
    complete: bool = False
    partial: bool = False
    withdrawn: bool = False


SEEDED = [
    Seeded("a", complete=True), Seeded("a", complete=True), Seeded("a", partial=True), Seeded("a"),
    Seeded("a", withdrawn=True), Seeded("b", complete=True), Seeded("b"),
]


def _seed(factory, org) -> None:  # type: ignore[no-untyped-def]
    """The businesses of SEEDED, accepted three days ago (so escalated unless complete), captured
    with one page per material as described."""
    offices = {"a": org.office_a, "b": org.office_b}
    accepted = utcnow() - timedelta(days=3)
    for n, spec in enumerate(SEEDED):
        b = factory.business(offices[spec.office], serial=f"SEED-{n}", type_code="LOCK", accepted_at=accepted,
                             status=BusinessStatus.WITHDRAWN if spec.withdrawn else BusinessStatus.ACCEPTED)
        if spec.complete or spec.partial:
            materials = required_materials(b)
            captured = materials if spec.complete else materials[:1]
            capture(b, captured_at=accepted + timedelta(hours=2), materials=captured)
            businesses_changed([b.id])  # what confirming a capture does next
    db.session.commit()


def _expected(office: str, extra_complete: int) -> dict[str, str]:
    """The table cells of an office row, counted from SEEDED (+ businesses completed in the test,
    two pages each): withdrawn businesses are not counted; a LOCK business needs two materials."""
    rows = [s for s in SEEDED if s.office == office and not s.withdrawn]
    businesses = len(rows) + extra_complete
    complete = sum(s.complete for s in rows) + extra_complete
    captured = complete + sum(s.partial for s in rows)
    pages = 2 * complete + sum(s.partial for s in rows)
    return {
        "businesses": str(businesses), "captured": str(captured), "complete": str(complete),
        "pages": str(pages), "completeness_rate": f"{complete / businesses * 100:.1f}%",
    }


def _cells(page, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    row = page.locator(f'#stats-table tr[data-key="{key}"]')
    return {col: row.locator(f'td[data-col="{col}"]').inner_text()
            for col in ("businesses", "captured", "complete", "pages", "completeness_rate")}


def _upload_and_confirm(page, material_name: str, image: Path) -> None:  # type: ignore[no-untyped-def]
    page.locator(".cap-checklist a", has_text=material_name).click()
    page.locator(".cap-panel h2", has_text=material_name).wait_for()
    htmx_settled(page)
    page.locator(".cap-upload input[type=file]").set_input_files(str(image))
    page.locator(".cap-message", has_text="已上传 1 页").wait_for()
    page.locator(".cap-btn-confirm").click()
    page.locator(".cap-message", has_text="已确认 1 页").wait_for()
    htmx_settled(page)


def test_supervisor_sees_a_warning_come_and_go_and_the_table_matches(
        app, factory, org, live_server, page, second_page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app.config["PORTAL_POLL_SECONDS"] = 1
    set_rule("LOCK", t1=60, t2=240, t3=1440)
    _seed(factory, org)
    supervisor = factory.user("supervisor", org.det1)
    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    image = tmp_path / "page.jpg"
    image.write_bytes(page_image("page.jpg"))

    # The supervisor's dashboard: the seeded open warnings (incomplete ones of detachment 1).
    sign_in(page, live_server, supervisor.username)
    page.goto(f"{live_server}/stats/")
    escalations = page.locator("#dash-levels .kpi-danger .kpi-value")
    assert escalations.inner_text() == "3"  # SEED-2 (partial), SEED-3, SEED-6; SEED-4 is withdrawn
    assert page.locator("#severe-table").get_by_text("LATE-1").count() == 0
    page.wait_for_function("() => window.portalCharts && window.portalCharts.charts['trend-chart']")
    page.evaluate("() => { window.__marker = 'same page';"
                  " window.__chart = window.portalCharts.charts['trend-chart'].chart; }")

    # A sync brings a business accepted 26 hours ago with nothing captured: escalated at once,
    # and on the open dashboard at its next poll.
    late = factory.business(org.office_a, serial="LATE-1", type_code="LOCK",
                            accepted_at=utcnow() - timedelta(hours=26))
    assert open_warning(late.id) is not None
    page.locator("#severe-table").get_by_text("LATE-1").wait_for()
    assert escalations.inner_text() == "4"

    # The clerk completes it at the window.
    sign_in(second_page, live_server, clerk.username, PASSWORD)
    second_page.goto(f"{live_server}/capture/business/{late.id}")
    _upload_and_confirm(second_page, "所有人身份证明", image)
    _upload_and_confirm(second_page, "锁定/解锁申请书", image)
    assert second_page.locator("#business-state").get_attribute("data-state") == "complete"
    assert second_page.errors == []

    # Gone from the supervisor's dashboard at the next poll: same document, same chart object.
    page.wait_for_function("() => document.querySelector('#dash-levels .kpi-danger .kpi-value')"
                           ".textContent.trim() === '3'")
    assert page.locator("#severe-table").get_by_text("LATE-1").count() == 0
    assert page.evaluate("() => window.__marker") == "same page"
    assert page.evaluate("() => window.portalCharts.charts['trend-chart'].chart === window.__chart")

    # The statistics table, last 30 days by department, against the test's own counts.
    page.get_by_role("link", name="统计报表").click()
    page.locator("#stats-form").wait_for()
    htmx_settled(page)
    page.select_option("select[name=range]", "last_30")
    page.locator("#stats-form button[type=submit]").click()
    page.wait_for_url("**range=last_30**")
    page.locator("#stats-table").wait_for()
    assert _cells(page, str(org.office_a.id)) == _expected("a", extra_complete=1)
    assert _cells(page, str(org.office_b.id)) == _expected("b", extra_complete=0)
    total = page.locator('#stats-table tr[data-key="total"] td[data-col="businesses"]').inner_text()
    assert total == str(len([s for s in SEEDED if not s.withdrawn]) + 1)
    assert "丙登记点" not in page.locator("#stats-table").inner_text()  # another detachment
    assert page.errors == []
