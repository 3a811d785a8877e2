"""Exports of a statistics table: Excel (openpyxl) and PDF (reportlab, embedded CJK font).

The first page (or the top of the sheet) shows the query parameters and who exported when.
Auditing is the view's job (`stats.exported`), in the same transaction as the answer.
"""

from __future__ import annotations

import io
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from portal.auth.models import User
from portal.paths import resource_dir
from portal.stats.services import COLUMNS, StatsResult, StatsRow, format_duration, format_rate

FONT_NAME = "WQYMicroHei"
SYSTEM_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
TITLE = "非机动车档案影像系统 · 工作量统计"
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


class FontMissing(RuntimeError):
    """No CJK TrueType font to embed into the PDF."""


def font_path() -> Path:
    """The vendored WenQuanYi Micro Hei (static/fonts), else Debian's copy."""
    vendored = resource_dir("static") / "fonts" / "wqy-microhei" / "wqy-microhei.ttc"
    for candidate in (vendored, SYSTEM_FONT):
        if candidate.is_file():
            return candidate
    raise FontMissing(
        f"no CJK font for PDF export: expected {vendored} (vendored) or {SYSTEM_FONT} "
        "(Debian package fonts-wqy-microhei)"
    )


@cache
def _register_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont(FONT_NAME, str(font_path()), subfontIndex=0))
    return FONT_NAME


def exporter_text(user: User) -> str:
    badge = f"，警号 {user.badge_number}" if user.badge_number else ""
    return f"{user.full_name}（{user.username}{badge}，{user.department.name}）"


def filename(result: StatsResult, fmt: str) -> str:
    q = result.query
    return f"workload-{q.dimension.value}-{q.start.isoformat()}-{q.end.isoformat()}.{fmt}"


def _value(row: StatsRow, key: str) -> Any:
    return getattr(row, key)


def _text(row: StatsRow, key: str, kind: str) -> str:
    value = _value(row, key)
    if kind == "rate":
        return format_rate(value)
    if kind == "duration":
        return format_duration(value)
    return f"{value:,}"


# Excel --------------------------------------------------------------------------------------------


def to_xlsx(result: StatsResult, user: User, generated_at: datetime) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "工作量统计"
    bold = Font(bold=True)
    ws.append([TITLE])
    ws["A1"].font = Font(bold=True, size=14)
    for label, value in result.parameters():
        ws.append([label, value])
    ws.append(["导出人", exporter_text(user)])
    ws.append(["导出时间", generated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")])
    ws.append([])
    header = [result.query.dimension.label] + [
        c.label + ("（小时）" if c.kind == "duration" else "") for c in COLUMNS
    ]
    ws.append(header)
    header_row = ws.max_row
    fill = PatternFill("solid", fgColor="E8F0FA")
    for cell in ws[header_row]:
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(horizontal="center")
    for row in [*result.rows, result.total]:
        values: list[Any] = [row.label]
        for c in COLUMNS:
            value = _value(row, c.key)
            if c.kind == "duration" and value is not None:
                value = round(value / 3600, 2)
            values.append(value)
        ws.append(values)
        for index, c in enumerate(COLUMNS, start=2):
            cell = ws.cell(row=ws.max_row, column=index)
            if c.kind == "rate":
                cell.number_format = "0.0%"
            elif c.kind == "duration":
                cell.number_format = "0.00"
    for cell in ws[ws.max_row]:
        cell.font = bold
    ws.column_dimensions["A"].width = 28
    for letter in "BCDEFGHIJK":
        ws.column_dimensions[letter].width = 14
    ws.freeze_panes = ws.cell(row=header_row + 1, column=2)

    reasons = wb.create_sheet("补充采集原因")
    reasons.append(["原因", "补充采集页数", "涉及业务数"])
    for cell in reasons[1]:
        cell.font, cell.fill = bold, fill
    for r in result.reasons:
        reasons.append([r.label, r.pages, r.businesses])
    reasons.column_dimensions["A"].width = 20
    reasons.column_dimensions["B"].width = 16
    reasons.column_dimensions["C"].width = 16
    wb.properties.creator = user.username
    wb.properties.title = TITLE
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# PDF ----------------------------------------------------------------------------------------------


def to_pdf(result: StatsResult, user: User, generated_at: datetime) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = _register_font()
    title_style = ParagraphStyle("title", fontName=font, fontSize=16, leading=22, spaceAfter=6)
    heading = ParagraphStyle("heading", fontName=font, fontSize=12, leading=18, spaceBefore=8, spaceAfter=4)
    cell_style = ParagraphStyle("cell", fontName=font, fontSize=8.5, leading=11)
    stamp = generated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    exporter = exporter_text(user)

    def grid(data: list[list[Any]], widths: list[float], numeric_from: int = 1) -> Table:
        table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("FONTNAME", (0, 0), (-1, -1), font),
            ("FONTSIZE", (0, 0), (-1, -1), 8.5),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8F0FA")),
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#B0B8C4")),
            ("ALIGN", (numeric_from, 1), (-1, -1), "RIGHT"),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]))
        return table

    story: list[Any] = [Paragraph(TITLE, title_style)]
    params = [[label, Paragraph(value, cell_style)] for label, value in result.parameters()]
    params += [["导出人", Paragraph(exporter, cell_style)], ["导出时间", stamp]]
    story.append(grid([["查询条件", ""], *params], [35 * mm, 200 * mm], numeric_from=2))
    story.append(Paragraph("统计结果", heading))
    head_style = ParagraphStyle("head", parent=cell_style, alignment=2)
    data: list[list[Any]] = [
        [result.query.dimension.label, *[Paragraph(c.label, head_style) for c in COLUMNS]]
    ]
    for row in [*result.rows, result.total]:
        data.append([Paragraph(row.label, cell_style), *[_text(row, c.key, c.kind) for c in COLUMNS]])
    table = grid(data, [52 * mm] + [21.5 * mm] * len(COLUMNS))
    table.setStyle(TableStyle([("BACKGROUND", (0, len(data) - 1), (-1, len(data) - 1), colors.HexColor("#F4F6F9"))]))
    story.append(table)
    if not result.rows or result.empty:
        story.append(Paragraph("该时段内没有符合条件的业务。", cell_style))
    story.append(Spacer(1, 4 * mm))
    story.append(Paragraph("补充采集原因", heading))
    reasons = [[r.label, f"{r.pages:,}", f"{r.businesses:,}"] for r in result.reasons]
    story.append(grid([["原因", "补充采集页数", "涉及业务数"], *reasons], [50 * mm, 35 * mm, 35 * mm]))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.setFillColor(colors.HexColor("#5F6368"))
        canvas.drawString(15 * mm, 8 * mm, f"导出人：{exporter}　导出时间：{stamp}")
        canvas.drawRightString(landscape(A4)[0] - 15 * mm, 8 * mm, f"第 {doc.page} 页")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out, pagesize=landscape(A4), leftMargin=15 * mm, rightMargin=15 * mm, topMargin=14 * mm,
        bottomMargin=16 * mm, title=TITLE, author=user.username, subject="工作量统计",
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
