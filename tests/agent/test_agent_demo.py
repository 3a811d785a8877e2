"""Demo driver: synthetic A4 documents, cover sheets, blank pages, injected errors."""

from __future__ import annotations

import threading

import pytest
from PIL import Image, ImageDraw, ImageFont

from scanner_agent.barcode import find_serial
from scanner_agent.drivers import (
    FeederEmpty,
    PaperJam,
    ScanCancelled,
    ScanOptions,
    UnsupportedSetting,
    get_driver,
)
from scanner_agent.drivers.demo_driver import load_font, page_size_px, render_document
from scanner_agent.imaging import is_blank

FEEDER = ScanOptions(source="feeder", color_mode="gray", dpi=50)


def _scan(driver, options=FEEDER, cancel=None):
    return list(driver.scan("demo:0", options, cancel or threading.Event()))


def test_feeder_gives_all_pages_flatbed_one():
    driver = get_driver("demo", pages=4)
    pages = _scan(driver)
    assert [p.index for p in pages] == [0, 1, 2, 3]
    assert all(p.image.size == page_size_px(50) == (413, 585) for p in pages)
    assert len(_scan(driver, ScanOptions(source="flatbed", dpi=50))) == 1
    assert len(_scan(driver, ScanOptions(source="feeder", dpi=50, max_pages=2))) == 2


@pytest.mark.parametrize(("color_mode", "mode"), [("color", "RGB"), ("gray", "L"), ("bw", "1")])
def test_color_modes(color_mode, mode):
    pages = _scan(get_driver("demo", pages=1), ScanOptions(source="feeder", color_mode=color_mode, dpi=50))
    assert pages[0].image.mode == mode
    assert pages[0].image.info["dpi"] == (50, 50)


def test_color_page_has_a_red_stamp():
    image = render_document("invoice", dpi=50, seed=1)
    colors = image.getcolors(1 << 20)
    red = sum(n for n, (r, g, b) in colors if r > 150 and g < 90 and b < 90)
    assert red > 200


def test_seed_makes_pages_deterministic():
    a = render_document(dpi=50, seed=7).tobytes()
    assert a == render_document(dpi=50, seed=7).tobytes()
    assert a != render_document(dpi=50, seed=8).tobytes()


def test_cover_sheet_carries_the_serial_as_qr():
    pages = _scan(get_driver("demo", pages=2, cover_sheet_serial="ZC20240517-0042"))
    assert len(pages) == 3
    assert pages[0].meta["kind"] == "cover"
    assert find_serial(pages[0].image) == "ZC20240517-0042"
    assert find_serial(pages[1].image) is None


def test_blank_every_injects_blank_pages():
    pages = _scan(get_driver("demo", pages=6, blank_every=3))
    kinds = [p.meta["kind"] for p in pages]
    assert kinds == ["document", "document", "blank", "document", "document", "blank"]
    assert [is_blank(p.image) for p in pages] == [k == "blank" for k in kinds]


def test_injected_error_after_pages():
    driver = get_driver("demo", pages=5, error_after=2, error_code="paper_jam")
    pages = []
    with pytest.raises(PaperJam) as info:
        for page in driver.scan("demo:0", FEEDER, threading.Event()):
            pages.append(page)
    assert len(pages) == 2
    assert info.value.pages_received == 2


def test_empty_feeder_and_cancel_and_duplex():
    with pytest.raises(FeederEmpty):
        _scan(get_driver("demo", pages=0))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ScanCancelled):
        _scan(get_driver("demo", pages=3), cancel=cancel)
    with pytest.raises(UnsupportedSetting):
        _scan(get_driver("demo"), ScanOptions(source="feeder", duplex=True, dpi=50))


def test_cjk_font_is_used(cjk_font_available):
    assert cjk_font_available, "install fonts-wqy-microhei (scripts/system-packages.sh)"
    font = load_font(24)
    assert isinstance(font, ImageFont.FreeTypeFont)
    # a CJK glyph is not the "missing glyph" box: two different characters render differently

    def render(ch):
        image = Image.new("L", (40, 40), 255)
        ImageDraw.Draw(image).text((4, 4), ch, font=font, fill=0)
        return image.tobytes()

    assert render("机") != render("证")
    assert render("机") != render(" ")
