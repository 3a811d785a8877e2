"""Shared fixtures for browser tests (Playwright driving Debian's chromium).

Use them from a test package's conftest.py:

    from tests.portal.browser_support import browser, live_server, page  # noqa: F401

and mark the tests `@pytest.mark.browser`. `live_server` serves the test's `app` (the same object,
so its settings and database) over HTTP on 127.0.0.1 from a thread; each request gets its own app
context and database session, as in production, so commit what the browser should see.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 768}  # the counter PCs' screens


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The base URL of the test app served from a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="session")
def _playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(_playwright: Any) -> Iterator[Any]:
    instance = _playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield instance
    finally:
        instance.close()


def _new_page(browser: Any) -> tuple[Any, Any]:
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN")
    new_page = context.new_page()
    new_page.set_default_timeout(30_000)  # the test machine may be busy
    new_page.errors = []
    new_page.on("pageerror", lambda exc: new_page.errors.append(str(exc)))
    new_page.on("console", lambda msg: _console_error(new_page, msg))
    return context, new_page


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (own cookies) at 1366×768; script errors and console errors (CSP violations,
    failed requests) are collected in `page.errors`."""
    context, new_page = _new_page(browser)
    try:
        yield new_page
    finally:
        context.close()


@pytest.fixture
def second_page(browser: Any) -> Iterator[Any]:
    """Another user's browser beside `page` (its own context, so its own session)."""
    context, new_page = _new_page(browser)
    try:
        yield new_page
    finally:
        context.close()


def _console_error(page: Any, message: Any) -> None:
    # The browser asks for /favicon.ico on its own; the portal has none.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        page.errors.append(message.text)


def sign_in(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the login form and wait for the landing page."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def htmx_settled(page: Any) -> None:
    """Wait until htmx has finished swapping and processing new content. htmx attaches the
    triggers of swapped-in elements only when it settles (20 ms after the swap), so acting on an
    element the moment it appears (setting a file input, say) can beat its `hx-trigger`."""
    page.wait_for_function(
        "() => window.htmx && !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
    )
