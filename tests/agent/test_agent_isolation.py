"""IsolatedDriver: a crashing, hanging or cancelled driver never takes the agent down."""

from __future__ import annotations

import os
import threading
import time

import pytest

from scanner_agent.drivers import (
    DriverCrashed,
    DriverTimeout,
    PaperJam,
    ScanCancelled,
    ScanOptions,
)
from scanner_agent.drivers.isolation import IsolatedDriver

from . import crashy_driver
from .crashy_driver import page_level

CRASHY = f"{crashy_driver.__name__}:CrashyDriver"
OPTIONS = ScanOptions(source="feeder", color_mode="gray", dpi=100)


def _isolated(**config) -> IsolatedDriver:
    timeout = config.pop("page_timeout", 30.0)
    grace = config.pop("cancel_grace", 5.0)
    return IsolatedDriver(CRASHY, config, page_timeout=timeout, cancel_grace=grace)


def _collect(driver, cancel=None):
    pages = []
    cancel = cancel or threading.Event()
    try:
        for page in driver.scan("crashy:0", OPTIONS, cancel):
            pages.append(page)
    except Exception as exc:
        return pages, exc
    return pages, None


def _assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"driver child {pid} is still running")


def test_pages_cross_the_process_boundary_intact():
    pages, exc = _collect(_isolated(behaviour="ok", pages=3, size=(120, 170)))
    assert exc is None
    assert [p.index for p in pages] == [0, 1, 2]
    for i, page in enumerate(pages):
        assert page.image.size == (120, 170)
        assert page.image.mode == "L"
        assert page.image.getextrema() == (page_level(i), page_level(i))
        assert page.image.info["dpi"] == (100, 100)
        assert page.meta["n"] == i
        assert page.meta["pid"] != os.getpid()  # really scanned in another process
    _assert_gone(pages[0].meta["pid"])


def test_exit_in_driver_gives_pages_then_driver_crashed():
    pages, exc = _collect(_isolated(behaviour="exit", pages=5, after=2))
    assert [p.image.getextrema()[0] for p in pages] == [page_level(0), page_level(1)]
    assert isinstance(exc, DriverCrashed)
    assert exc.pages_received == 2
    assert "exit code 7" in exc.message


def test_segfault_in_driver_gives_pages_then_driver_crashed():
    pages, exc = _collect(_isolated(behaviour="segfault", pages=5, after=1))
    assert len(pages) == 1
    assert isinstance(exc, DriverCrashed)
    assert exc.code == "driver_crashed"
    assert exc.pages_received == 1
    assert exc.user_message  # Chinese text for the clerk


def test_hang_is_killed_after_page_timeout():
    started = time.monotonic()
    pages, exc = _collect(_isolated(behaviour="hang", pages=5, after=1, page_timeout=1.5))
    elapsed = time.monotonic() - started
    assert len(pages) == 1
    assert isinstance(exc, DriverTimeout)
    assert exc.pages_received == 1
    assert elapsed < 15
    _assert_gone(pages[0].meta["pid"])


def test_python_exception_in_driver_is_a_crash_with_its_message():
    pages, exc = _collect(_isolated(behaviour="raise", pages=3, after=2))
    assert len(pages) == 2
    assert isinstance(exc, DriverCrashed)
    assert "boom in driver" in exc.message


def test_scanner_errors_keep_their_class_across_the_pipe():
    pages, exc = _collect(_isolated(behaviour="jam", pages=4, after=3))
    assert len(pages) == 3
    assert isinstance(exc, PaperJam)
    assert exc.pages_received == 3


def test_cancel_stops_a_cooperative_driver():
    cancel = threading.Event()
    driver = _isolated(behaviour="slow", pages=50, interval=0.2)
    pages = []
    started = time.monotonic()
    with pytest.raises(ScanCancelled) as info:
        for page in driver.scan("crashy:0", OPTIONS, cancel):
            pages.append(page)
            if len(pages) == 2:
                cancel.set()
    assert len(pages) == 2
    assert info.value.pages_received == 2
    assert time.monotonic() - started < 15
    _assert_gone(pages[0].meta["pid"])


def test_cancel_kills_a_driver_that_ignores_it():
    cancel = threading.Event()
    driver = _isolated(behaviour="hang", pages=5, after=1, cancel_grace=0.5)
    pages = []
    timer = None
    with pytest.raises(ScanCancelled):
        for page in driver.scan("crashy:0", OPTIONS, cancel):
            pages.append(page)
            timer = threading.Timer(0.3, cancel.set)
            timer.start()
    assert len(pages) == 1
    _assert_gone(pages[0].meta["pid"])
    if timer:
        timer.join()


def test_abandoning_the_generator_stops_the_child():
    driver = _isolated(behaviour="slow", pages=50, interval=0.1)
    gen = driver.scan("crashy:0", OPTIONS, threading.Event())
    first = next(gen)
    gen.close()
    _assert_gone(first.meta["pid"])


def test_list_devices_and_capabilities_run_isolated():
    driver = _isolated(behaviour="ok")
    devices = driver.list_devices()
    assert [d.id for d in devices] == ["crashy:0"]
    caps = driver.capabilities("crashy:0")
    assert caps["pid"] != os.getpid()
    with pytest.raises(DriverCrashed):
        _isolated(behaviour="exit").list_devices()
