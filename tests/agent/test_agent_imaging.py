"""Imaging: JPEG encoding with DPI, blank-page detection, size limits."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from scanner_agent import imaging
from scanner_agent.drivers.demo_driver import (
    load_font,
    render_blank,
    render_cover_sheet,
    render_document,
)
from scanner_agent.imaging import ImageLimitError, encode_page, ink_stats, is_blank


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(("color_mode", "mode"), [("color", "RGB"), ("gray", "L"), ("bw", "L")])
def test_encode_page_is_jpeg_with_dpi(color_mode, mode):
    data = encode_page(render_document("invoice", dpi=100), color_mode, 100)
    assert data[:3] == b"\xff\xd8\xff"
    image = _decode(data)
    assert image.format == "JPEG"
    assert image.mode == mode
    assert image.size == (827, 1169)
    assert tuple(round(v) for v in image.info["dpi"]) == (100, 100)


def test_bw_is_thresholded_before_encoding():
    image = _decode(encode_page(render_document("invoice", dpi=100), "bw", 100))
    hist = image.histogram()
    extremes = sum(hist[:40]) + sum(hist[216:])
    assert extremes / sum(hist) > 0.97  # nearly every pixel black or white (JPEG ringing aside)


def test_encoded_size_grows_with_dpi_and_quality():
    small = encode_page(render_document("application", dpi=100, seed=3), "gray", 100)
    large = encode_page(render_document("application", dpi=200, seed=3), "gray", 200)
    assert len(small) < len(large)
    low_q = encode_page(render_document("application", dpi=100, seed=3), "gray", 100, jpeg_quality=40)
    assert len(low_q) < len(small)
    # an A4 page at 200 dpi stays far below the page limit
    assert len(large) < imaging.MAX_PAGE_BYTES / 20


def test_limits_defaults_and_errors():
    assert imaging.MAX_PAGE_BYTES == 20 * 1024 * 1024
    assert imaging.MAX_PIXELS == 60_000_000
    page = render_document(dpi=100)
    with pytest.raises(ImageLimitError) as info:
        encode_page(page, "color", 100, max_pixels=500_000)
    assert info.value.code == "too_many_pixels"
    assert "MP" in str(info.value) and info.value.user_message
    with pytest.raises(ImageLimitError) as info:
        encode_page(page, "color", 100, max_bytes=10_000)
    assert info.value.code == "page_too_large"
    with pytest.raises(ImageLimitError):
        imaging.check_pixels((8000, 8000))  # 64 MP > 60 MP default


def test_open_image_bytes_guards_declared_size():
    data = encode_page(render_document(dpi=50), "gray", 50)
    assert imaging.open_image_bytes(data).size == (413, 585)
    with pytest.raises(ImageLimitError):
        imaging.open_image_bytes(data, max_pixels=1000)


@pytest.mark.parametrize("dpi", [50, 100, 200])
def test_demo_blank_pages_are_blank_and_documents_are_not(dpi):
    assert is_blank(render_blank(dpi=dpi, seed=dpi))
    for material in ("id_copy", "invoice", "application"):
        assert not is_blank(render_document(material, dpi=dpi, seed=dpi))
    assert not is_blank(render_cover_sheet("ZC-2024-000001", dpi=dpi))


@pytest.mark.parametrize("dpi", [75, 200])
def test_a_page_with_a_few_lines_of_text_is_not_blank(dpi):
    image = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 250)
    draw = ImageDraw.Draw(image)
    font = load_font(round(dpi * 0.15))
    for i in range(3):
        draw.text((dpi, dpi * (2 + 0.4 * i)), "本人承诺所提交的材料真实有效。", font=font, fill=30)
    assert not is_blank(image)


def test_a_single_short_line_is_not_blank():
    dpi = 150
    image = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
    ImageDraw.Draw(image).text((dpi, 3 * dpi), "同意办理。签名：张伟", font=load_font(30), fill=0)
    assert not is_blank(image)


def test_noisy_white_scans_are_blank():
    rng = random.Random(5)
    width, height = 827, 1169
    # Gaussian sensor noise around an off-white paper level
    noisy = Image.effect_noise((width, height), 20).point(lambda v: max(0, min(255, 235 + v - 128)))
    assert is_blank(noisy)
    # salt-and-pepper dust: 0.5 % isolated dark pixels
    dusty = Image.new("L", (width, height), 245)
    for _ in range(int(width * height * 0.005)):
        dusty.putpixel((rng.randrange(width), rng.randrange(height)), rng.randrange(0, 90))
    assert is_blank(dusty)
    # dark scanner-lid shadow along the edge stays in the ignored margin
    shadow = Image.new("L", (width, height), 245)
    ImageDraw.Draw(shadow).rectangle((0, 0, width, 25), fill=60)
    assert is_blank(shadow)
    assert ink_stats(dusty).ink_fraction < 0.0005


def test_mask_boxes_hide_ink():
    image = Image.new("L", (400, 400), 255)
    ImageDraw.Draw(image).rectangle((150, 150, 250, 250), fill=0)
    assert ink_stats(image).ink_fraction > 0.05
    assert ink_stats(image, mask_boxes=[(140, 140, 260, 260)]).ink_fraction == 0
