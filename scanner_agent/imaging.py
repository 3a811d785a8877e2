"""Page images: encoding for upload, blank-page detection, size limits.

Decisions
---------
* Every page is uploaded as a baseline JPEG with its resolution in the JFIF header
  (``dpi=(n, n)``).  ``color`` → RGB JPEG, ``gray`` → 8-bit grayscale JPEG, and ``bw`` →
  the page is thresholded to pure black/white and then stored as an 8-bit **grayscale JPEG**
  (values 0/255).  One format for every page keeps the portal, the PDF export and the viewer
  simple; a bilevel page costs a little more than a G4 TIFF would but stays small at 85 %.
* Blank pages are *flagged* (:func:`is_blank`), never dropped: the clerk decides.
* Limits protect the agent and the portal: :data:`MAX_PIXELS` (checked before encoding) and
  :data:`MAX_PAGE_BYTES` (checked after).  Both raise :class:`ImageLimitError` with a stable
  ``code``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter

MAX_PAGE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 60_000_000

JPEG_MIME = "image/jpeg"


class ImageLimitError(ValueError):
    """A page exceeds a size limit; ``code`` is ``too_many_pixels`` or ``page_too_large``."""

    def __init__(self, code: str, message: str, user_message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.user_message = user_message


def check_pixels(size: tuple[int, int], max_pixels: int | None = None) -> None:
    """Raise :class:`ImageLimitError` if ``width * height`` exceeds the limit."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLimitError("empty_image", f"image has no pixels ({width}x{height})", "扫描图像为空，请重新扫描。")
    if width * height > limit:
        raise ImageLimitError(
            "too_many_pixels",
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of {limit / 1e6:.1f} MP",
            "扫描图像像素过多，请降低分辨率后重新扫描。",
        )


def prepare_for_mode(image: Image.Image, color_mode: str) -> Image.Image:
    """Return the image in the JPEG mode used for ``color_mode`` (RGB or L)."""
    if color_mode == "color":
        return image if image.mode == "RGB" else image.convert("RGB")
    if color_mode == "gray":
        return image if image.mode == "L" else image.convert("L")
    if color_mode == "bw":
        if image.mode == "1":
            return image.convert("L")
        gray = image if image.mode == "L" else image.convert("L")
        return gray.point(lambda v: 255 if v >= 128 else 0)
    raise ValueError(f"unknown color_mode {color_mode!r}")


def encode_page(
    image: Image.Image,
    color_mode: str,
    dpi: int,
    jpeg_quality: int = 85,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> bytes:
    """Encode a page as JPEG (see module docstring), with ``dpi`` in the JFIF header."""
    check_pixels(image.size, max_pixels)
    if not 1 <= jpeg_quality <= 95:
        raise ValueError("jpeg_quality must be in 1..95")
    prepared = prepare_for_mode(image, color_mode)
    out = io.BytesIO()
    prepared.save(
        out,
        format="JPEG",
        quality=jpeg_quality,
        dpi=(dpi, dpi),
        optimize=True,
        subsampling=2 if prepared.mode == "RGB" else 0,
    )
    data = out.getvalue()
    limit = MAX_PAGE_BYTES if max_bytes is None else max_bytes
    if len(data) > limit:
        raise ImageLimitError(
            "page_too_large",
            f"encoded page is {len(data) / 1e6:.1f} MB, over the limit of {limit / 1e6:.1f} MB",
            "扫描页面文件过大，请降低分辨率或改用灰度模式后重新扫描。",
        )
    return data


def open_image_bytes(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Open an encoded image after checking its declared size (image-bomb guard)."""
    image = Image.open(io.BytesIO(data))
    check_pixels(image.size, max_pixels)
    image.load()
    return image


# -- blank page detection ---------------------------------------------------------------------


@dataclass(frozen=True)
class InkStats:
    ink_fraction: float  # share of analysed pixels that are ink (after despeckling)
    background: int  # estimated paper level (0-255)
    analysed_pixels: int


_WORK_LONG_SIDE = 1000  # analyse at most ~1000 px on the long side (≈ 85 dpi for A4)


def ink_stats(
    image: Image.Image,
    *,
    margin: float = 0.05,
    contrast: int = 70,
    mask_boxes: list[tuple[int, int, int, int]] | None = None,
) -> InkStats:
    """Measure how much "ink" a page carries.

    Steps: grayscale; downscale with box averaging to ≤ 1000 px long side; cut a ``margin``
    (fraction of each side: scanner edge shadows, punch holes); estimate the paper level as
    the 90th percentile; pixels darker than ``paper - contrast`` are ink; isolated ink pixels
    (fewer than 2 ink neighbours in their 3×3 neighbourhood) are noise and do not count, thin
    text strokes (≥ 2 neighbours along the stroke) do.  ``mask_boxes`` (in original pixel
    coordinates) are painted as paper before measuring (used to ignore a barcode).
    """
    gray = image.convert("L") if image.mode != "L" else image
    if mask_boxes:
        gray = gray.copy()
        for box in mask_boxes:
            gray.paste(255, box)
    scale = max(gray.size) / _WORK_LONG_SIDE
    if scale > 1:
        size = (max(1, round(gray.width / scale)), max(1, round(gray.height / scale)))
        gray = gray.resize(size, Image.Resampling.BOX)
    mx, my = round(gray.width * margin), round(gray.height * margin)
    if gray.width - 2 * mx >= 8 and gray.height - 2 * my >= 8:
        gray = gray.crop((mx, my, gray.width - mx, gray.height - my))
    total = gray.width * gray.height
    hist = gray.histogram()
    background = _percentile(hist, total, 0.90)
    threshold = background - contrast
    if threshold <= 0:
        # A (nearly) uniformly dark page: no contrast against its own background.
        return InkStats(0.0, background, total)
    ink = gray.point(lambda v: 255 if v < threshold else 0)
    # 3x3 neighbourhood count of ink pixels (self included), as 0..255 average.
    neighbours = ink.filter(ImageFilter.BoxBlur(1))
    # keep pixels whose neighbourhood holds at least 3 ink pixels (self + 2): 3/9*255 = 85
    keep = neighbours.point(lambda v: 255 if v >= 84 else 0)
    solid = ImageChops.multiply(ink, keep)
    count = solid.histogram()[255]
    return InkStats(count / total, background, total)


def _percentile(hist: list[int], total: int, q: float) -> int:
    target = total * q
    running = 0
    for value, n in enumerate(hist):
        running += n
        if running >= target:
            return value
    return 255


def is_blank(image: Image.Image, *, ink_fraction: float = 0.001, margin: float = 0.05) -> bool:
    """True when the page carries (almost) no ink: less than ``ink_fraction`` (default 0.1 %)
    of the analysed area.  A single line of text on A4 is well above that; scanner noise,
    dust and edge shadows are below."""
    return ink_stats(image, margin=margin).ink_fraction < ink_fraction
