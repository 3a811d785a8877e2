"""Barcode association: find a business serial on a page and split a stack by it.

A batch scanned without a job (e.g. a whole day's pile through the feeder) is split at pages
that carry a business serial as a QR code or Code128 (also Code39, DataMatrix, PDF417):

* a **dedicated cover sheet** (the code and little else, e.g. the sheet printed by the portal)
  starts a new group and is *not* kept as a page of the business (``keep_cover_sheets=False``);
  it is kept aside in the group's ``covers`` list;
* any **other page carrying a serial** (e.g. the application form printed with its barcode)
  starts a new group and *is* kept as the group's first page;
* a page carrying the *same* serial as the current group does not start a new group;
* pages before the first serial form a group with serial ``None``: the agent reports them as
  unassigned, they are never dropped.  A cover sheet directly followed by another cover sheet
  yields a group with an empty page list (so that the clerk sees "cover without pages").

"Dedicated cover sheet" is decided simply: after painting the barcode area white, the page's
ink (see :func:`scanner_agent.imaging.ink_stats`) is below ``cover_max_ink`` (default 2 % of
the page).  The portal's cover sheet (title + serial) measures about 1 %; a form or a letter is well
above it (the demo documents measure 3-5 %).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from .imaging import ink_stats

#: letters, digits and dashes, 8-32 characters (the business serial, 流水号)
DEFAULT_SERIAL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9-]{6,30}[A-Za-z0-9]"
DEFAULT_FORMATS = ("QRCode", "Code128", "Code39", "DataMatrix", "PDF417")
COVER_MAX_INK = 0.02

_MAX_DECODE_SIDE = 2400  # zxing is fast, but there is no need to feed it 600 dpi A4


@dataclass(frozen=True)
class SerialHit:
    serial: str
    format: str
    box: tuple[int, int, int, int]  # in the page's pixel coordinates (left, top, right, bottom)


class BatchGroup:
    """One business of a split stack; unpacks as ``(serial, pages)``.

    ``covers`` holds the dedicated cover sheets that were left out of ``pages`` (so that a
    misjudged page is still at hand, never silently lost)."""

    __slots__ = ("covers", "pages", "serial")

    def __init__(self, serial: str | None, pages: list[Any] | None = None) -> None:
        self.serial = serial
        self.pages: list[Any] = pages if pages is not None else []
        self.covers: list[Any] = []

    def __iter__(self):
        return iter((self.serial, self.pages))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        return (self.serial, self.pages)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BatchGroup):
            return (self.serial, self.pages, self.covers) == (other.serial, other.pages, other.covers)
        if isinstance(other, tuple):
            return (self.serial, self.pages) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BatchGroup(serial={self.serial!r}, pages={len(self.pages)}, covers={len(self.covers)})"


def _zxing():
    import zxingcpp

    return zxingcpp


def _formats(names: Sequence[str]) -> tuple:
    zx = _zxing()
    return tuple(getattr(zx.BarcodeFormat, name) for name in names)


def _image_of(page: Any) -> Image.Image:
    return page if isinstance(page, Image.Image) else page.image


def find_serial_hits(
    image: Image.Image,
    pattern: str = DEFAULT_SERIAL_PATTERN,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> list[SerialHit]:
    """Every barcode on the page whose text fully matches ``pattern``."""
    zx = _zxing()
    gray = image.convert("L") if image.mode != "L" else image
    scale = 1.0
    if max(gray.size) > _MAX_DECODE_SIDE:
        scale = max(gray.size) / _MAX_DECODE_SIDE
        gray = gray.resize((round(gray.width / scale), round(gray.height / scale)), Image.Resampling.BOX)
    regex = re.compile(pattern)
    hits = []
    for result in zx.read_barcodes(gray, formats=_formats(formats)):
        text = (result.text or "").strip()
        if not text or not regex.fullmatch(text):
            continue
        pos = result.position
        xs = [pos.top_left.x, pos.top_right.x, pos.bottom_left.x, pos.bottom_right.x]
        ys = [pos.top_left.y, pos.top_right.y, pos.bottom_left.y, pos.bottom_right.y]
        box = tuple(round(v * scale) for v in (min(xs), min(ys), max(xs) + 1, max(ys) + 1))
        hits.append(SerialHit(text, str(result.format), box))  # type: ignore[arg-type]
    return hits


def find_serial(
    image: Image.Image,
    pattern: str = DEFAULT_SERIAL_PATTERN,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> str | None:
    """The business serial carried by the page as a barcode, or None."""
    hits = find_serial_hits(image, pattern, formats)
    return hits[0].serial if hits else None


def is_cover_sheet(image: Image.Image, hits: Sequence[SerialHit], cover_max_ink: float = COVER_MAX_INK) -> bool:
    """True when the page holds (almost) nothing but its serial barcode(s)."""
    if not hits:
        return False
    boxes = []
    for hit in hits:
        left, top, right, bottom = hit.box
        pad = max(8, round(0.15 * max(right - left, bottom - top)))  # quiet zone + wobble
        boxes.append(
            (
                max(0, left - pad),
                max(0, top - pad),
                min(image.width, right + pad),
                min(image.height, bottom + pad),
            )
        )
    return ink_stats(image, mask_boxes=boxes).ink_fraction < cover_max_ink


def split_batch(
    pages: Iterable[Any],
    pattern: str = DEFAULT_SERIAL_PATTERN,
    *,
    keep_cover_sheets: bool = False,
    cover_max_ink: float = COVER_MAX_INK,
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> list[BatchGroup]:
    """Split a stack of pages (ScannedPage-like objects with ``.image``, or PIL images) into
    ``[(serial, [pages])]`` groups, in stack order; see the module docstring for the rules."""
    groups: list[BatchGroup] = []
    current: BatchGroup | None = None
    for page in pages:
        image = _image_of(page)
        hits = find_serial_hits(image, pattern, formats)
        serial = hits[0].serial if hits else None
        cover = bool(hits) and is_cover_sheet(image, hits, cover_max_ink)
        if serial is not None and (current is None or serial != current.serial):
            current = BatchGroup(serial, [])
            groups.append(current)
        elif current is None:
            current = BatchGroup(None, [])
            groups.append(current)
        if cover and not keep_cover_sheets:
            current.covers.append(page)
            continue
        current.pages.append(page)
    return groups
