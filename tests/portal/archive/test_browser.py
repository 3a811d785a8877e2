"""In the real browser: a viewer in office C finds office A's business with a reason and pages
through its images with the keyboard."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PASSWORD
from tests.portal.archive.conftest import audit_entries
from tests.portal.browser_support import sign_in

pytestmark = pytest.mark.browser

REASON = "协查 案件 2026-118"


def _image_ready(page, selector: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }", arg=selector)


def test_cross_department_lookup_and_keyboard_viewer(page, live_server, factory, org, pages) -> None:
    business = factory.business(org.office_a, serial="BRW-0001", plate_number="沪A77777")
    first = pages.add(business, "ID_PROOF")
    pages.add(business, "ID_PROOF", supersedes=first)
    pages.add(business, "ID_PROOF")
    pages.add(business, "APPLICATION")
    viewer = factory.user("viewer", org.office_c)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    sign_in(page, live_server, viewer.username, PASSWORD)  # lands on 档案查询, the first entry
    assert page.url.endswith("/archive/search")
    assert page.locator("nav.sidebar a.active").inner_text() == "档案查询"

    # Without looking across, office C does not find office A's business.
    page.fill("input[name=plate]", "沪A77777")
    page.wait_for_selector("#archive-count")
    assert "没有符合条件的业务档案" in page.inner_text("#archive-results")

    page.check("input[name=cross]")
    page.wait_for_selector("text=跨部门查询须填写查询事由")
    page.fill("input[name=reason]", REASON)
    page.press("input[name=reason]", "Enter")
    page.wait_for_selector("table.archive-results >> text=BRW-0001")
    assert "共 1 条" in page.inner_text("#archive-count")

    page.click("table.archive-results >> text=BRW-0001")
    page.wait_for_selector("h1 >> text=BRW-0001")
    assert REASON in page.inner_text("main")
    _image_ready(page, ".archive-thumb img")

    page.click("#open-viewer")
    page.wait_for_selector("#viewer.js-viewer")
    _image_ready(page, "#viewer-main")
    assert page.inner_text("#viewer-position") == "第 1 / 3 页"
    first_src = page.get_attribute("#viewer-main", "src")

    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('viewer-position').textContent === '第 2 / 3 页'")
    _image_ready(page, "#viewer-main")
    assert page.get_attribute("#viewer-main", "src") != first_src
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('viewer-position').textContent === '第 3 / 3 页'")
    assert "非机动车登记申请表" in page.inner_text("#viewer-label")
    page.keyboard.press("ArrowRight")  # stays on the last page
    assert page.inner_text("#viewer-position") == "第 3 / 3 页"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.getElementById('viewer-position').textContent === '第 1 / 3 页'")
    _image_ready(page, "#viewer-main")

    width = page.evaluate("() => document.getElementById('viewer-main').getBoundingClientRect().width")
    page.keyboard.press("+")
    assert page.inner_text("#viewer-zoom").endswith("%")
    wider = page.evaluate("() => document.getElementById('viewer-main').getBoundingClientRect().width")
    assert wider > width * 1.2
    page.keyboard.press("r")
    assert page.get_attribute("#viewer", "data-rotation") == "90"
    page.keyboard.press("w")
    assert page.inner_text("#viewer-zoom") == "适合宽度"

    # Compare the first page with its earlier version side by side.
    page.select_option("#viewer-compare-select", str(first.id))
    _image_ready(page, "#viewer-compare")
    assert page.is_visible("#viewer-compare-pane")
    assert "已替换" in page.inner_text("#viewer-compare-caption")
    assert not errors, errors  # no CSP violation or script error

    searched = [e for e in audit_entries("archive.searched") if json.loads(e.detail)["cross"]]
    assert searched and searched[-1].reason == REASON
    assert audit_entries("archive.viewed", "success")[-1].reason == REASON
    views = audit_entries("archive.page_viewed")
    assert [json.loads(e.detail)["view"] for e in views] == ["thumbnails", "viewer"]
    assert all(e.reason == REASON for e in views)
