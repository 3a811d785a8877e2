"""The per-viewer watermark drawn into the pixels of every displayed or exported page."""

from __future__ import annotations

import io
import math
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)


def vendored_font_path() -> str | None:
    """The font shipped in static/fonts/ (WenQuanYi Micro Hei, Apache-2.0), when present."""
    from portal.paths import resource_dir

    try:
        candidate = resource_dir("static") / "fonts" / "wqy-microhei" / "wqy-microhei.ttc"
    except RuntimeError:
        return None
    return str(candidate) if candidate.is_file() else None


def cjk_font_path() -> str | None:
    """A TrueType font with CJK glyphs: the vendored copy first, then common system fonts."""
    vendored = vendored_font_path()
    if vendored is not None:
        return vendored
    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = cjk_font_path()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def watermark_text(name: str, badge: str, when: datetime) -> str:
    return f"{name} {badge} {when.astimezone().strftime('%Y-%m-%d %H:%M')}"


def apply_watermark(data: bytes, text: str, quality: int = 82) -> bytes:
    """Tile `text` diagonally across the image, semi-transparent, and return JPEG bytes."""
    with Image.open(io.BytesIO(data)) as source:
        base = source.convert("RGB")
    base.paste(_ink(base.size), (0, 0), _alpha(base.size, text))
    out = io.BytesIO()
    base.save(out, "JPEG", quality=quality)
    return out.getvalue()


@lru_cache(maxsize=8)
def _alpha(size: tuple[int, int], text: str) -> Image.Image:
    """The watermark's alpha mask for an image of `size` (cached: the pages of one export, and a
    viewer paging through scans of one size, share it; the text changes every minute)."""
    width, height = size
    font_size = max(12, min(width, height) // 28)
    font = _font(font_size)
    left, top, right, bottom = font.getbbox(text)
    text_w, text_h = right - left + font_size * 2, bottom - top + font_size * 3
    tile = Image.new("L", (text_w, text_h), 0)
    ImageDraw.Draw(tile).text((font_size, font_size), text, font=font, fill=255)
    tile = tile.rotate(30, expand=True)
    mask = Image.new("L", size, 0)
    step_x, step_y = tile.width, tile.height
    offset = int(step_x / 2)
    for row, y in enumerate(range(-step_y, height + step_y, step_y)):
        for x in range(-step_x + (offset if row % 2 else 0), width + step_x, step_x):
            mask.paste(tile, (x, y), tile)
    return mask.point(lambda v: math.floor(v * 0.28))


@lru_cache(maxsize=4)
def _ink(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (200, 30, 30))


def cjk_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The CJK font at `size` pixels (Pillow's default font when no CJK font exists)."""
    return _font(size)
