"""The PDF of an exported archive (reportlab): cover, catalogue, one page per archived image.

Pure layout: no database, no request. Chinese text uses an embedded TrueType subset of the CJK
font found by `portal.storage.watermark.cjk_font_path()` (the vendored WenQuanYi Micro Hei), so
the PDF renders the same everywhere; only when no CJK font exists at all does it fall back to
reportlab's non-embedded CID font STSong-Light (viewers substitute a system font).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab import rl_config
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from portal.storage.watermark import cjk_font_path

log = logging.getLogger(__name__)

FONT_NAME = "PortalCJK"
_FONT_LOCK = threading.Lock()
_font_name: str | None = None

MARGIN = 15 * mm
CATALOGUE_ROWS_PER_PAGE = 28
BLUE = HexColor("#1f5fae")
GREY = HexColor("#5f6368")
LINE = HexColor("#dde2e8")
RED = HexColor("#c5221f")


class JpegReader(ImageReader):
    """JPEG bytes that reportlab embeds as they are (DCTDecode, no re-encoding).

    reportlab names every image by a digest of its decoded pixels (to store repeated images once):
    that decodes each page again just to hash it, ~0.15 s per scan. The JPEG bytes identify the
    image as well, so they are what the digest is taken of here."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._jpeg = data

    def getRGBData(self) -> bytes:
        self._dataA = None
        return self._jpeg


def pdf_font() -> str:
    """Register the CJK font once per process; its reportlab name."""
    global _font_name
    if _font_name is not None:
        return _font_name
    with _FONT_LOCK:
        if _font_name is None:
            path = cjk_font_path()
            if path is not None:
                from reportlab.pdfbase.ttfonts import TTFont

                kwargs = {"subfontIndex": 0} if path.lower().endswith((".ttc", ".otc")) else {}
                pdfmetrics.registerFont(TTFont(FONT_NAME, path, **kwargs))
                _font_name = FONT_NAME
            else:  # pragma: no cover - the font is vendored in static/fonts
                from reportlab.pdfbase.cidfonts import UnicodeCIDFont

                log.warning("no CJK TrueType font found: PDF exports use the non-embedded STSong-Light")
                pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
                _font_name = "STSong-Light"
    return _font_name


@dataclass(frozen=True)
class CatalogueLine:
    name: str
    requirement: str
    pages: int
    first_page: int | None  # PDF page number of its first image


@dataclass(frozen=True)
class PdfPage:
    """One image page: JPEG bytes already rotated and watermarked."""

    jpeg: bytes
    width: int
    height: int
    heading: str  # e.g. "身份证明 第 1/2 页 · 第 2 版"
    note: str  # e.g. signature state, capture time
    failed: bool = False  # integrity placeholder instead of the image


@dataclass(frozen=True)
class PdfDocument:
    serial: str
    title: str
    facts: Sequence[tuple[str, str]]  # business data, masked
    export_facts: Sequence[tuple[str, str]]  # who, when, why, signature note
    qr_png: bytes
    catalogue: Sequence[CatalogueLine]
    pages: Sequence[PdfPage]
    footer: str
    watermark: str


def catalogue_page_count(lines: int) -> int:
    return max(1, -(-lines // CATALOGUE_ROWS_PER_PAGE))


def first_image_page(lines: int) -> int:
    """The PDF page number of the first image: after the cover and the catalogue."""
    return 1 + catalogue_page_count(lines) + 1


def _watermark(c: Canvas, font: str, text: str, width: float, height: float) -> None:
    c.saveState()
    c.setFillColor(Color(0.78, 0.12, 0.12, alpha=0.12))
    c.setFont(font, 14)
    step_x, step_y = int(pdfmetrics.stringWidth(text, font, 14)) + 60, 120
    c.translate(width / 2, height / 2)
    c.rotate(30)
    span = int(max(width, height))
    for row, y in enumerate(range(-span, span, step_y)):
        for x in range(-span + (step_x // 2 if row % 2 else 0), span, step_x):
            c.drawString(x, y, text)
    c.restoreState()


def _footer(c: Canvas, font: str, doc: PdfDocument, number: int, total: int, width: float) -> None:
    c.setStrokeColor(LINE)
    c.line(MARGIN, MARGIN - 3 * mm, width - MARGIN, MARGIN - 3 * mm)
    c.setFillColor(GREY)
    c.setFont(font, 8)
    c.drawString(MARGIN, MARGIN - 7 * mm, doc.footer)
    c.drawRightString(width - MARGIN, MARGIN - 7 * mm, f"第 {number} / {total} 页")


def _cover(c: Canvas, font: str, doc: PdfDocument, total: int) -> None:
    width, height = A4
    _watermark(c, font, doc.watermark, width, height)
    y = height - MARGIN - 10 * mm
    c.setFillColor(BLUE)
    c.setFont(font, 22)
    c.drawString(MARGIN, y, doc.title)
    c.setFont(font, 12)
    c.setFillColor(GREY)
    c.drawString(MARGIN, y - 9 * mm, f"流水号 {doc.serial}")
    qr = 38 * mm
    c.drawImage(ImageReader(io.BytesIO(doc.qr_png)), width - MARGIN - qr, height - MARGIN - qr, qr, qr)
    c.setFont(font, 7)
    c.drawCentredString(width - MARGIN - qr / 2, height - MARGIN - qr - 3 * mm, "流水号二维码")
    y = height - MARGIN - qr - 14 * mm
    y = _facts(c, font, "业务信息", doc.facts, y, width)
    y -= 6 * mm
    _facts(c, font, "导出信息", doc.export_facts, y, width)
    _footer(c, font, doc, 1, total, width)


def _facts(c: Canvas, font: str, heading: str, facts: Sequence[tuple[str, str]], y: float, width: float) -> float:
    c.setFillColor(BLUE)
    c.setFont(font, 13)
    c.drawString(MARGIN, y, heading)
    y -= 3 * mm
    c.setStrokeColor(LINE)
    c.line(MARGIN, y, width - MARGIN, y)
    y -= 6.5 * mm
    for label, value in facts:
        c.setFillColor(GREY)
        c.setFont(font, 10)
        c.drawString(MARGIN, y, label)
        c.setFillColor(HexColor("#202124"))
        c.setFont(font, 10.5)
        for line in _wrap(value or "—", font, 10.5, width - 2 * MARGIN - 38 * mm):
            c.drawString(MARGIN + 38 * mm, y, line)
            y -= 6 * mm
        y -= 0.8 * mm
    return y


def _wrap(text: str, font: str, size: float, max_width: float) -> list[str]:
    lines, current = [], ""
    for char in text:
        if char == "\n" or pdfmetrics.stringWidth(current + char, font, size) > max_width:
            lines.append(current)
            current = "" if char == "\n" else char
        else:
            current += char
    lines.append(current)
    return lines


def _catalogue(c: Canvas, font: str, doc: PdfDocument, lines: Sequence[CatalogueLine], start: int,
               number: int, total: int) -> None:
    first = start == 0
    width, height = A4
    _watermark(c, font, doc.watermark, width, height)
    y = height - MARGIN - 6 * mm
    c.setFillColor(BLUE)
    c.setFont(font, 16)
    c.drawString(MARGIN, y, "材料目录" if first else "材料目录（续）")
    c.setFillColor(GREY)
    c.setFont(font, 9)
    c.drawRightString(width - MARGIN, y, f"共 {len(doc.pages)} 页影像")
    y -= 10 * mm
    columns = [(MARGIN, "序号"), (MARGIN + 14 * mm, "材料"), (MARGIN + 95 * mm, "要求"),
               (MARGIN + 120 * mm, "页数"), (MARGIN + 140 * mm, "所在页码")]
    c.setFillColor(HexColor("#f1f3f6"))
    c.rect(MARGIN, y - 2.5 * mm, width - 2 * MARGIN, 8 * mm, stroke=0, fill=1)
    c.setFillColor(HexColor("#202124"))
    c.setFont(font, 10)
    for x, label in columns:
        c.drawString(x + 2 * mm, y, label)
    y -= 9 * mm
    for offset, line in enumerate(lines, start + 1):
        pages = f"{line.first_page}–{line.first_page + line.pages - 1}" if line.pages and line.first_page else "—"
        c.setFillColor(HexColor("#202124") if line.pages else GREY)
        for (x, _), value in zip(columns, (str(offset), line.name, line.requirement, str(line.pages), pages),
                                 strict=True):
            c.drawString(x + 2 * mm, y, value)
        c.setStrokeColor(LINE)
        c.line(MARGIN, y - 2.5 * mm, width - MARGIN, y - 2.5 * mm)
        y -= 8 * mm
    _footer(c, font, doc, number, total, width)


def _image_page(c: Canvas, font: str, doc: PdfDocument, page: PdfPage, number: int, total: int) -> None:
    size = landscape(A4) if page.width > page.height else A4
    c.setPageSize(size)
    width, height = size
    top = height - MARGIN
    c.setFillColor(RED if page.failed else BLUE)
    c.setFont(font, 11)
    c.drawString(MARGIN, top - 4 * mm, page.heading)
    c.setFillColor(GREY)
    c.setFont(font, 8)
    c.drawRightString(width - MARGIN, top - 4 * mm, page.note)
    box_w, box_h = width - 2 * MARGIN, height - 2 * MARGIN - 10 * mm
    scale = min(box_w / page.width, box_h / page.height)
    w, h = page.width * scale, page.height * scale
    x = (width - w) / 2
    y = MARGIN + (box_h - h) / 2
    c.drawImage(JpegReader(page.jpeg), x, y, w, h)
    c.setStrokeColor(LINE)
    c.rect(x, y, w, h, stroke=1, fill=0)
    _footer(c, font, doc, number, total, width)


def build_pdf(doc: PdfDocument, *, author: str) -> bytes:
    # Binary streams, not ASCII85: reportlab's pure-Python ASCII85 encoder (used when its C
    # accelerator is not installed) takes seconds per scan, and the file grows by a quarter.
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        return _build_pdf(doc, author=author)
    finally:
        rl_config.useA85 = previous


def _build_pdf(doc: PdfDocument, *, author: str) -> bytes:
    font = pdf_font()
    out = io.BytesIO()
    c = Canvas(out, pagesize=A4, pageCompression=1)
    c.setTitle(f"{doc.title} {doc.serial}")
    c.setAuthor(author)
    c.setSubject("非机动车档案影像导出")
    c.setCreator("非机动车档案影像系统")
    c.setKeywords([doc.serial])
    catalogue_pages = catalogue_page_count(len(doc.catalogue))
    total = 1 + catalogue_pages + len(doc.pages)
    _cover(c, font, doc, total)
    c.showPage()
    for index in range(catalogue_pages):
        chunk = doc.catalogue[index * CATALOGUE_ROWS_PER_PAGE:(index + 1) * CATALOGUE_ROWS_PER_PAGE]
        _catalogue(c, font, doc, chunk, index * CATALOGUE_ROWS_PER_PAGE, 2 + index, total)
        c.showPage()
    for number, page in enumerate(doc.pages, 2 + catalogue_pages):
        _image_page(c, font, doc, page, number, total)
        c.showPage()
    c.save()
    return out.getvalue()
