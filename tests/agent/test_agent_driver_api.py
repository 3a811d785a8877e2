"""The driver interface: options, errors, registry."""

from __future__ import annotations

import pickle

import pytest

from scanner_agent.drivers import (
    DeviceInfo,
    DriverCrashed,
    FeederEmpty,
    PaperJam,
    ScannerDriver,
    ScannerError,
    ScanOptions,
    available_drivers,
    error_from_code,
    get_driver,
    register_driver,
)
from scanner_agent.drivers.base import convert_mode
from scanner_agent.drivers.demo_driver import DemoDriver
from scanner_agent.drivers.errors import ERROR_CLASSES


def test_error_codes_are_stable_and_have_chinese_user_messages():
    expected = {
        "feeder_empty",
        "paper_jam",
        "cover_open",
        "busy",
        "offline",
        "cancelled",
        "driver_crashed",
        "driver_timeout",
    }
    assert expected <= set(ERROR_CLASSES)
    for code, cls in ERROR_CLASSES.items():
        err = cls()
        assert err.code == code
        assert err.message and err.message.isascii()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in err.user_message), code
        assert isinstance(err, ScannerError)


def test_errors_survive_pickling_and_rebuild_from_code():
    err = PaperJam("jam at sheet 3", pages_received=2)
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(copy) is PaperJam
    assert (copy.message, copy.pages_received) == ("jam at sheet 3", 2)
    assert copy.to_dict()["code"] == "paper_jam"
    assert isinstance(error_from_code("feeder_empty"), FeederEmpty)
    assert type(error_from_code("something_new", "x")) is ScannerError


def test_scan_options_validate():
    assert ScanOptions().source == "flatbed" and ScanOptions().dpi == 200
    for bad in ({"color_mode": "sepia"}, {"dpi": 10}, {"max_pages": 0}, {"source": ""}):
        with pytest.raises(ValueError):
            ScanOptions(**bad)
    opts = ScanOptions(source="feeder", duplex=True, max_pages=5, page_size_mm=None)
    assert ScanOptions.from_dict(opts.to_dict()) == opts
    assert opts.uses_feeder and not ScanOptions().uses_feeder
    assert ScanOptions(source="ADF Duplex").uses_feeder


def test_registry():
    assert set(available_drivers()) >= {"sane", "twain", "folder", "demo"}
    assert isinstance(get_driver("demo", pages=1), DemoDriver)
    assert isinstance(get_driver("scanner_agent.drivers.demo_driver:DemoDriver"), DemoDriver)
    with pytest.raises(ValueError):
        get_driver("nope")

    class Mine(ScannerDriver):
        name = "mine"

        def list_devices(self):
            return [DeviceInfo("m", "v", "m", "virtual", [])]

        def capabilities(self, device_id):
            return {}

        def scan(self, device_id, options, cancel):
            raise DriverCrashed()

    register_driver("mine-test", Mine)
    assert get_driver("mine-test").list_devices()[0].id == "m"


def test_twain_module_imports_without_pytwain():
    # the driver module must import on Linux; only using it needs pytwain
    from scanner_agent.drivers import twain_driver

    assert twain_driver.TwainDriver.name == "twain"


def test_convert_mode():
    from PIL import Image

    image = Image.new("RGB", (4, 4), (200, 200, 200))
    assert convert_mode(image, "color").mode == "RGB"
    assert convert_mode(image, "gray").mode == "L"
    bw = convert_mode(image, "bw")
    assert bw.mode == "1" and bw.getextrema() == (255, 255)


def test_agent_package_never_imports_portal():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "scanner_agent"
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import portal" not in text and "from portal" not in text, path
