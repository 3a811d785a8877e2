"""In a real browser (Debian chromium), against the served portal, with a real in-process agent
(AgentRuntime + the demo driver + the outbox, over HTTP): a clerk opens a business by its serial,
scans both required materials, watches the pages arrive, confirms, and sees the business turn
complete; a supplemental capture replaces one page and both versions are in the history.

Screenshots (1366×768) go to $PORTAL_SCREENSHOTS when set (docs/screenshots), else tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gmcrypto.sm2 import PrivateKey
from portal.audit.services import Actor
from portal.capture import services
from portal.capture.models import CapturedPage, JobState, PageStatus
from portal.db import db
from portal.registry.models import Business, CaptureState
from scanner_agent.config import AgentConfig
from scanner_agent.drivers import get_driver
from scanner_agent.outbox import Outbox
from scanner_agent.portal_client import PortalClient, requests_transport
from scanner_agent.runner import AgentRuntime, wait_for
from tests.conftest import PASSWORD
from tests.portal.agents.conftest import enrolment_code
from tests.portal.browser_support import htmx_settled, sign_in
from tests.portal.capture.conftest import material, pages_of

pytestmark = pytest.mark.browser


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("PORTAL_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def runtime(live_server, org, tmp_path) -> Iterator[AgentRuntime]:  # type: ignore[no-untyped-def]
    """The agent of office A's window, running in this process with the demo driver (2 pages per
    scan, a short delay per page so that the pages arrive one by one)."""
    config = AgentConfig(data_dir=tmp_path / "agent", portal_url=live_server, driver="demo", device="demo:0",
                         poll_wait_seconds=2, heartbeat_seconds=1)
    config.data_dir.mkdir(parents=True)
    client = PortalClient(requests_transport(live_server), key=PrivateKey.generate())
    client.enrol(enrolment_code(org.window_a), hostname="counter-a1", version="0.1.0")
    outbox = Outbox(config.outbox_dir)
    agent = AgentRuntime(config, client, outbox, get_driver("demo", pages=2, delay=0.4, seed=7), "demo:0")
    agent.start()
    assert wait_for(lambda: agent.state.portal_reachable, 15), "the agent never reached the portal"
    yield agent
    agent.shutdown()
    outbox.close()


def _watch_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Script errors, CSP violations and failed requests. Screenshots use caret="initial": hiding the
    caret would make Playwright set an inline style, which the CSP rightly blocks."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    expected = ("/favicon.ico", "/capture/open")  # the browser's own probe; the unknown-serial message
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith(expected) else None)
    return errors


def _open_by_serial(page, live_server: str, serial: str, shot: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/capture/")
    field = page.locator("#serial-input")
    assert field.evaluate("el => el === document.activeElement")  # autofocused for the barcode reader
    if shot is not None:
        page.keyboard.type("NO-SUCH-1")
        page.keyboard.press("Enter")
        page.locator(".cap-serial-error", has_text="未找到流水号为 NO-SUCH-1 的业务").wait_for()
        page.screenshot(path=str(shot), caret="initial")
        # The text is selected after the message: the next scan replaces it.
        assert page.evaluate("() => document.getSelection().toString() || "
                             "(document.activeElement.selectionEnd - document.activeElement.selectionStart)")
    page.keyboard.type(serial)  # what a keyboard-wedge barcode reader does …
    page.keyboard.press("Enter")  # … followed by Enter
    page.wait_for_url("**/capture/business/*")
    page.locator(".cap-serial-no", has_text=serial).wait_for()
    htmx_settled(page)


def _scan_selected_material(page, pages: int = 2) -> None:  # type: ignore[no-untyped-def]
    page.locator(".cap-actions .cap-btn-scan").first.click()
    job = page.locator(".cap-job").first
    job.wait_for()
    # Pages appear live while the agent scans; the box turns "completed" when the job ends.
    job.locator(".cap-page img").nth(pages - 1).wait_for(timeout=30_000)
    page.locator('.cap-job[data-job-state="completed"]').wait_for(timeout=30_000)
    assert page.locator(".cap-job .cap-page img").count() == pages


def _business(serial: str) -> Business:
    db.session.rollback()
    return db.session.scalar(select(Business).where(Business.serial == serial))


def test_clerk_scans_confirms_and_business_turns_complete(app, factory, org, live_server, page, runtime,
                                                          shots) -> None:
    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    business = factory.business(org.office_a, serial="LOCK-2026-0001", type_code="LOCK", owner_name="李四",
                                plate_number="沪B54321")
    errors = _watch_errors(page)
    sign_in(page, live_server, clerk.username, PASSWORD)
    _open_by_serial(page, live_server, business.serial, shots / "capture-start.png")
    assert page.locator("#business-state").get_attribute("data-state") == "none"
    assert "310***********1234" in page.locator(".cap-facts").inner_text()  # masked
    page.locator(".cap-agent-online").wait_for()

    # First required material (selected by default): scan, watch the pages arrive, rotate, confirm.
    assert "所有人身份证明" in page.locator(".cap-panel h2").inner_text()
    _scan_selected_material(page)
    page.screenshot(path=str(shots / "capture-staged.png"), caret="initial")
    page.locator(".cap-job .cap-page").first.get_by_role("button", name="向右旋转").click()
    page.wait_for_function("() => document.querySelector('.cap-job .cap-page img').src.includes('r=90')")
    page.locator(".cap-btn-confirm").click()
    page.locator(".cap-message", has_text="已确认 2 页").wait_for()
    assert page.locator(".cap-item.tone-success", has_text="所有人身份证明").count() == 1
    assert page.locator("#business-state").get_attribute("data-state") == "partial"

    # Second required material.
    with page.expect_response(lambda r: "material=" in r.url):
        page.locator(".cap-item", has_text="锁定/解锁申请书").click()
    page.locator(".cap-panel h2", has_text="锁定/解锁申请书").wait_for()
    _scan_selected_material(page)
    page.locator(".cap-btn-confirm").click()
    page.locator(".cap-complete").wait_for()
    assert page.locator("#business-state").get_attribute("data-state") == "complete"
    assert "2/2" in page.locator(".cap-state-count").inner_text()
    page.screenshot(path=str(shots / "capture-complete.png"), caret="initial")

    stored = _business(business.serial)
    assert stored.capture_state == CaptureState.COMPLETE
    id_pages = pages_of(stored, "ID_PROOF", PageStatus.CONFIRMED)
    assert [p.position for p in id_pages] == [1, 2]
    assert id_pages[0].rotation == 90
    assert all(p.signature_verified and p.agent_id is not None for p in id_pages)
    assert errors == [], errors


def test_supplemental_capture_replaces_a_page_and_keeps_both_versions(app, factory, org, live_server, page,
                                                                       runtime, shots) -> None:
    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    business = factory.business(org.office_a, serial="LOCK-2026-0002", type_code="LOCK")
    # Captured earlier: ID_PROOF (2 pages) and LOCK_REQUEST, through the same agent.
    for code in ("ID_PROOF", "LOCK_REQUEST"):
        job = services.request_capture(business=business, material=material(code), window=org.window_a,
                                       actor=Actor.of_user(clerk))
        db.session.commit()
        job_id = job.id

        def finished(job_id: int = job_id) -> bool:
            db.session.rollback()
            job = services.job_of(business, job_id)
            return job.state == JobState.COMPLETED and len(services.job_staged_pages(job)) == 2

        assert wait_for(finished, 30), f"{code} was not scanned"
        db.session.rollback()
        services.confirm_job(services.job_of(business, job_id), Actor.of_user(clerk))
        db.session.commit()
    old = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)[0]
    assert _business(business.serial).capture_state == CaptureState.COMPLETE

    errors = _watch_errors(page)
    sign_in(page, live_server, clerk.username, PASSWORD)
    _open_by_serial(page, live_server, business.serial)
    with page.expect_response(lambda r: "material=" in r.url):
        page.locator(".cap-item", has_text="所有人身份证明").click()
    page.locator(".cap-panel h2", has_text="所有人身份证明").wait_for()
    with page.expect_response(lambda r: "replace=" in r.url):
        page.locator(".cap-current .cap-page").first.get_by_text("替换此页").click()
    form = page.locator(".cap-supplement-form")
    form.get_by_text("替换第 1 页").wait_for()
    assert form.locator('input[value="replace_page"]').is_checked()
    form.get_by_text("图像质量差").click()
    form.get_by_role("button", name="扫描补充页").click()
    page.locator('.cap-job[data-job-state="completed"]').wait_for(timeout=30_000)
    # The feeder gave two pages; a page is replaced by exactly one: discard the second.
    page.locator(".cap-job .cap-page").nth(1).get_by_role("button", name="删除此页").click()
    page.wait_for_function("() => document.querySelectorAll('.cap-job .cap-page').length === 1")
    page.locator(".cap-btn-confirm", has_text="确认替换").click()
    page.locator(".cap-message", has_text="保留为历史版本").wait_for()

    history = page.locator(".cap-history")
    history.locator("summary").click()
    rows = history.locator("tbody tr")
    assert rows.count() == 3  # page 1 in versions 2 and 1, page 2 in version 1
    assert "第 2 版" in rows.nth(0).inner_text() and "当前" in rows.nth(0).inner_text()
    assert "图像质量差" in rows.nth(0).inner_text()
    assert "第 1 版" in rows.nth(1).inner_text() and "已被替换" in rows.nth(1).inner_text()
    page.screenshot(path=str(shots / "capture-supplement-history.png"), full_page=True, caret="initial")

    db.session.rollback()
    versions = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED, PageStatus.SUPERSEDED)
    first = [p for p in versions if p.position == 1]
    assert [(p.version, p.status) for p in first] == [(1, PageStatus.SUPERSEDED), (2, PageStatus.CONFIRMED)]
    assert first[1].supersedes_id == old.id and first[1].reason is not None
    assert db.session.get(CapturedPage, old.id).status == PageStatus.SUPERSEDED
    assert _business(business.serial).capture_state == CaptureState.COMPLETE
    assert errors == [], errors


def test_browser_upload_fallback_when_no_agent_is_online(app, factory, org, live_server, page, tmp_path) -> None:
    from tests.portal.agents.conftest import page_image

    clerk = factory.user("clerk", org.office_a, window=org.window_a)
    business = factory.business(org.office_a, serial="LOCK-2026-0003", type_code="LOCK")
    files = []
    for name in ("front.jpg", "back.png"):
        path = tmp_path / name
        path.write_bytes(page_image(name, fmt="PNG" if name.endswith("png") else "JPEG"))
        files.append(str(path))
    errors = _watch_errors(page)
    sign_in(page, live_server, clerk.username, PASSWORD)
    _open_by_serial(page, live_server, business.serial)
    assert page.locator(".cap-btn-scan").first.is_enabled()
    assert "未登记扫描终端" in page.locator("#window-state").inner_text()

    page.locator(".cap-upload input[type=file]").set_input_files(files)
    page.locator(".cap-message", has_text="已上传 2 页").wait_for()
    job = page.locator(".cap-job")
    assert "浏览器上传 2 页" in job.locator(".cap-job-title").inner_text()
    assert job.locator(".cap-page img").count() == 2
    page.locator(".cap-btn-confirm").click()
    page.locator(".cap-message", has_text="已确认 2 页").wait_for()

    # A missing page, added later by supplemental capture from the browser: reason first.
    page.locator(".cap-supplement summary").click()
    page.locator(".cap-supplement-form").get_by_text("缺页").click()
    page.locator(".cap-supplement-form input[type=file]").set_input_files(files[:1])
    page.locator(".cap-job-meta", has_text="补充采集 · 追加页面 · 缺页").wait_for()
    page.locator(".cap-btn-confirm").click()
    page.locator(".cap-message", has_text="已确认 1 页").wait_for()
    pages = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)
    assert [(p.position, p.kind.value, p.source.value) for p in pages] == [
        (1, "initial", "browser"), (2, "initial", "browser"), (3, "supplemental", "browser")]
    assert errors == [], errors
