"""SANE driver against SANE's own ``test`` backend (a real libsane driver stack).

Options of the test backend used here (python-sane spelling, ``-`` → ``_``):
``source`` ("Flatbed" / "Automatic Document Feeder": 10 sheets, then SANE_STATUS_NO_DOCS),
``read_return_value`` (injects a SANE status from sane_read), ``read_delay`` +
``read_delay_duration`` (µs per pipe buffer, to make a page take time), ``test_picture``,
``depth``.  The scan area is 200 x 200 mm at most.  Option values persist on the backend's device
across close/open within one ``sane.init()``.
"""

from __future__ import annotations

import threading
import time

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
    UnsupportedSetting,
    get_driver,
)
from scanner_agent.drivers.isolation import IsolatedDriver
from scanner_agent.drivers.sane_driver import map_sane_error

pytestmark = pytest.mark.sane

DEVICE = "test:0"
DPI = 50
# A4 clipped to the test device's 200 x 200 mm
EXPECTED_PX = round(200 / 25.4 * DPI)


# The test backend keeps option values on its device across close/open within one
# sane.init(): every driver here sets the injected options explicitly, back to normal.
NORMAL = {"read_return_value": "Default", "read_delay": False, "test_picture": "Solid black"}


def _driver(config_dir, **extra):
    return get_driver("sane", config_dir=str(config_dir), extra_options={**NORMAL, **extra})


def _scan(driver, **options):
    options.setdefault("dpi", DPI)
    return list(driver.scan(DEVICE, ScanOptions(**options), threading.Event()))


def _assert_full_size(page):
    width, height = page.image.size
    assert abs(width - EXPECTED_PX) <= 1 and abs(height - EXPECTED_PX) <= 1, page.image.size


def test_list_devices_finds_the_test_device(sane_config_dir):
    devices = _driver(sane_config_dir).list_devices()
    assert [d.id for d in devices] == [DEVICE]
    assert devices[0].vendor == "Noname"
    assert devices[0].sources == ["flatbed", "feeder"]


def test_capabilities(sane_config_dir):
    caps = _driver(sane_config_dir).capabilities(DEVICE)
    assert caps["sources"] == ["flatbed", "feeder"]
    assert "Automatic Document Feeder" in caps["raw_sources"]
    assert caps["color_modes"] == ["color", "gray", "bw"]
    assert caps["dpi"]["max"] == 1200


def test_flatbed_gives_one_page_of_the_expected_size(sane_config_dir):
    pages = _scan(_driver(sane_config_dir, test_picture="Grid"), color_mode="gray")
    assert len(pages) == 1
    _assert_full_size(pages[0])
    assert pages[0].image.mode == "L"
    assert pages[0].image.info["dpi"] == (DPI, DPI)
    low, high = pages[0].image.getextrema()
    assert low < 50 and high > 200  # the grid pattern really arrived


@pytest.mark.parametrize(("color_mode", "mode"), [("color", "RGB"), ("bw", "1")])
def test_color_modes(sane_config_dir, color_mode, mode):
    pages = _scan(_driver(sane_config_dir), color_mode=color_mode)
    assert pages[0].image.mode == mode
    _assert_full_size(pages[0])


def test_feeder_gives_exactly_ten_pages_then_ends_normally(sane_config_dir):
    pages = _scan(_driver(sane_config_dir), source="feeder", color_mode="gray")
    assert [p.index for p in pages] == list(range(10))
    for page in pages:
        _assert_full_size(page)


def test_max_pages_stops_the_feeder(sane_config_dir):
    pages = _scan(_driver(sane_config_dir), source="feeder", color_mode="gray", max_pages=3)
    assert len(pages) == 3


def test_sixteen_bit_default_is_forced_to_eight(sane_config_dir_16bit):
    # with depth 16, python-sane returns an image of twice the height (corrupt)
    pages = _scan(_driver(sane_config_dir_16bit), color_mode="color")
    _assert_full_size(pages[0])


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("SANE_STATUS_JAMMED", PaperJam),
        ("SANE_STATUS_DEVICE_BUSY", DeviceBusy),
        ("SANE_STATUS_COVER_OPEN", CoverOpen),
        ("SANE_STATUS_IO_ERROR", ScannerIOError),
        ("SANE_STATUS_NO_DOCS", FeederEmpty),
    ],
)
def test_injected_status_surfaces_as_our_error(sane_config_dir, status, error):
    driver = _driver(sane_config_dir, read_return_value=status)
    with pytest.raises(error) as info:
        _scan(driver, source="feeder", color_mode="gray")
    assert info.value.pages_received == 0
    assert info.value.user_message


def test_unknown_device_is_offline(sane_config_dir):
    driver = _driver(sane_config_dir)
    with pytest.raises(DeviceOffline):
        list(driver.scan("test:9", ScanOptions(dpi=DPI), threading.Event()))


def test_duplex_is_refused_when_the_device_has_none(sane_config_dir):
    with pytest.raises(UnsupportedSetting):
        _scan(_driver(sane_config_dir), source="feeder", duplex=True)


def test_cancel_mid_batch_drops_the_truncated_page(sane_config_dir):
    # ~1.1 s per page at 50 dpi: the backend sleeps 100 ms after each of ~11 pipe buffers
    driver = _driver(sane_config_dir, read_delay=True, read_delay_duration=100000, test_picture="Grid")
    cancel = threading.Event()
    pages = []
    timer = None
    started = time.monotonic()
    with pytest.raises(ScanCancelled) as info:
        for page in driver.scan(DEVICE, ScanOptions(source="feeder", color_mode="gray", dpi=DPI), cancel):
            pages.append(page)
            if len(pages) == 2:
                # cancel while page 3 is being read: python-sane would hand back a
                # truncated image without error here
                timer = threading.Timer(0.2, cancel.set)
                timer.start()
                page_two_at = time.monotonic()
    assert len(pages) == 2
    assert info.value.pages_received == 2
    for page in pages:
        _assert_full_size(page)
    assert time.monotonic() - page_two_at < 0.9  # did not wait for page 3 to complete
    assert time.monotonic() - started < 10
    timer.join()


def test_sane_error_texts_map_to_our_hierarchy():
    class Fake(Exception):
        pass

    assert isinstance(map_sane_error(Fake("Document feeder jammed")), PaperJam)
    assert isinstance(map_sane_error(Fake("Device busy")), DeviceBusy)
    assert isinstance(map_sane_error(Fake("Scanner cover is open")), CoverOpen)
    assert isinstance(map_sane_error(Fake("Document feeder out of documents")), FeederEmpty)
    assert isinstance(map_sane_error(Fake("Operation was canceled")), ScanCancelled)
    assert isinstance(map_sane_error(Fake("something new")), ScannerIOError)


def test_sane_in_an_isolated_child_process(sane_config_dir):
    env = {"SANE_CONFIG_DIR": str(sane_config_dir)}
    driver = IsolatedDriver("sane", {}, env=env, page_timeout=30)
    pages = list(driver.scan(DEVICE, ScanOptions(source="feeder", color_mode="gray", dpi=DPI), threading.Event()))
    assert len(pages) == 10
    _assert_full_size(pages[-1])
    assert [d.id for d in driver.list_devices()] == [DEVICE]

    jammed = IsolatedDriver("sane", {"extra_options": {"read-return-value": "SANE_STATUS_JAMMED"}}, env=env)
    with pytest.raises(PaperJam):
        list(jammed.scan(DEVICE, ScanOptions(source="feeder", dpi=DPI), threading.Event()))
