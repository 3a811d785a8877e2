"""TWAIN driver: contract tests of OUR side (page loop, threading, cancel, error mapping).

TWAIN needs Windows and a data source; here a fake ``twain`` module (tests/agent/fake_twain.py)
is injected at the import boundary (``sys.modules["twain"]``), so these tests check how the
driver drives pytwain's API, not TWAIN itself.  The manual Windows smoke test is in
docs/manual-tests.md.
"""

from __future__ import annotations

import sys
import threading

import pytest

from scanner_agent.drivers import (
    CoverOpen,
    DeviceBusy,
    DeviceOffline,
    FeederEmpty,
    PaperJam,
    ScanCancelled,
    ScannerIOError,
    ScanOptions,
    get_driver,
)
from scanner_agent.drivers.twain_driver import map_twain_error

from . import fake_twain

FEEDER = ScanOptions(source="feeder", color_mode="gray", dpi=150)
DEVICE = "Fake Scanner TW-1"


@pytest.fixture
def scenario(monkeypatch):
    scn = fake_twain.Scenario()
    monkeypatch.setitem(sys.modules, "twain", fake_twain.build(scn))
    return scn


@pytest.fixture
def driver(scenario):
    drv = get_driver("twain", parent_window_factory=None, page_timeout=10, call_timeout=10)
    yield drv
    drv.close()


def _scan(driver, options=FEEDER, cancel=None):
    return list(driver.scan(DEVICE, options, cancel or threading.Event()))


def test_multi_page_loop_transfers_every_pending_image(driver, scenario):
    scenario.pages = 4
    pages = _scan(driver)
    assert [p.index for p in pages] == [0, 1, 2, 3]
    assert [p.image.getextrema()[0] for p in pages] == [20, 60, 100, 140]
    assert all(p.image.mode == "L" and p.image.info["dpi"] == (150, 150) for p in pages)
    # every DIB handle was converted and freed, nothing leaked
    assert len(scenario.freed) == 4 and scenario.handles == {}
    assert scenario.acquire_args == {"show_ui": False, "modal_ui": False}
    tw = sys.modules["twain"]
    assert scenario.caps_set[tw.CAP_FEEDERENABLED] is True
    assert scenario.caps_set[tw.ICAP_PIXELTYPE] == tw.TWPT_GRAY
    assert scenario.caps_set[tw.ICAP_XRESOLUTION] == 150.0  # CheckStatus (rounded) is fine
    assert scenario.caps_set[tw.CAP_XFERCOUNT] == -1
    assert [name for name, _ in scenario.calls].count("source.close") == 1


def test_every_twain_call_runs_on_one_dedicated_thread(driver, scenario):
    _scan(driver)
    driver.list_devices()
    driver.capabilities(DEVICE)
    threads = {ident for _, ident in scenario.calls}
    assert threads == {driver.thread_ident}
    assert driver.thread_ident != threading.get_ident()
    assert [name for name, _ in scenario.calls].count("SourceManager") == 1


def test_flatbed_scans_one_page(driver, scenario):
    pages = _scan(driver, ScanOptions(source="flatbed", color_mode="color", dpi=100))
    assert len(pages) == 1
    assert pages[0].image.mode == "RGB"
    tw = sys.modules["twain"]
    assert scenario.caps_set[tw.CAP_FEEDERENABLED] is False
    assert scenario.caps_set[tw.CAP_XFERCOUNT] == 1


def test_empty_feeder_is_detected_before_acquiring(driver, scenario):
    scenario.feeder_loaded = False
    with pytest.raises(FeederEmpty) as info:
        _scan(driver)
    assert info.value.pages_received == 0
    assert "request_acquire" not in [name for name, _ in scenario.calls]


def test_paper_jam_after_pages(driver, scenario):
    scenario.pages, scenario.error_on_page = 5, 2
    pages = []
    with pytest.raises(PaperJam) as info:
        for page in driver.scan(DEVICE, FEEDER, threading.Event()):
            pages.append(page)
    assert len(pages) == 2
    assert info.value.pages_received == 2
    assert scenario.handles == {}


@pytest.mark.parametrize(
    ("open_error", "expected"),
    [
        ("CheckDeviceOnlineError", DeviceOffline),
        ("MaxConnectionsError", DeviceBusy),
        ("NoDataSourceError", DeviceOffline),
    ],
)
def test_open_errors(driver, scenario, open_error, expected):
    scenario.open_error = open_error
    with pytest.raises(expected):
        _scan(driver)


def test_unknown_condition_codes_are_mapped(driver, scenario):
    scenario.pages, scenario.error_on_page = 3, 0
    scenario.page_error, scenario.page_error_message = "UnknownError", "ConditionCode = 24"
    with pytest.raises(CoverOpen):
        _scan(driver)


def test_nomedia_after_pages_is_the_normal_end(driver, scenario):
    scenario.pages, scenario.error_on_page = 5, 3
    scenario.page_error, scenario.page_error_message = "UnknownError", "ConditionCode = 29"
    assert len(_scan(driver)) == 3


def test_cancel_between_transfers_resets_pending_and_drops_nothing_partial(driver, scenario):
    scenario.pages = 5
    scenario.transfer_gate = threading.Event()
    cancel = threading.Event()
    pages = []
    with pytest.raises(ScanCancelled) as info:
        for page in driver.scan(DEVICE, FEEDER, cancel):
            pages.append(page)
            cancel.set()
            scenario.transfer_gate.set()
    assert len(pages) <= 2  # the page in flight when cancel was set may be dropped
    assert len(pages) >= 1
    assert info.value.code == "cancelled"
    # closing the source reset the remaining transfers (the feeder stops)
    assert scenario.closed_with_pending and scenario.closed_with_pending[0] >= 2


def test_user_cancel_on_the_device(driver, scenario):
    scenario.pages, scenario.error_on_page, scenario.page_error = 3, 1, "DSTransferCancelled"
    with pytest.raises(ScanCancelled):
        _scan(driver)


def test_devices_and_capabilities(driver, scenario):
    assert [d.id for d in driver.list_devices()] == ["Fake Scanner TW-1", "Fake Flatbed"]
    caps = driver.capabilities(DEVICE)
    assert caps["sources"] == ["flatbed", "feeder"]
    assert caps["feeder_loaded"] is True


def test_error_mapping_by_class_name():
    exc = fake_twain._exceptions_module()
    assert isinstance(map_twain_error(exc.PaperDoubleFeedError()), PaperJam)
    assert isinstance(map_twain_error(exc.GeneralFailure()), ScannerIOError)
    assert isinstance(map_twain_error(exc.UnknownError("ConditionCode = 29")), FeederEmpty)
    assert isinstance(map_twain_error(RuntimeError("Unexpected result: 7")), ScannerIOError)


def test_missing_pytwain_means_offline(monkeypatch):
    monkeypatch.setitem(sys.modules, "twain", None)  # import twain -> ImportError
    drv = get_driver("twain", parent_window_factory=None, call_timeout=5)
    try:
        with pytest.raises(DeviceOffline):
            drv.list_devices()
    finally:
        drv.close()
