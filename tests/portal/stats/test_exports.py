"""Excel and PDF exports: same numbers as the table, parameters and exporter on the first page, audited."""

from __future__ import annotations

import io

from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.db import db
from portal.stats.services import StatsQuery, workload
from tests.conftest import login
from tests.portal.stats.conftest import NOV, Dataset
from tests.portal.stats.test_workload import NOV_END, expect

ARGS = {"range": "custom", "start": "2026-11-01", "end": "2026-11-30", "by": "department"}


def test_xlsx_has_the_same_numbers(client, dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    response = client.get("/stats/export.xlsx", query_string=ARGS)
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    wb = load_workbook(io.BytesIO(response.data))
    ws = wb["工作量统计"]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    params = {r[0]: r[1] for r in rows[1:9] if r and r[0]}
    assert params["统计时段"].startswith("2026-11-01 至 2026-11-30")
    assert supervisor.full_name in params["导出人"] and supervisor.username in params["导出人"]
    header_at = next(i for i, r in enumerate(rows) if r[0] == "部门")
    header = rows[header_at]
    table = {r[0]: dict(zip(header, r, strict=True)) for r in rows[header_at + 1:] if r[0]}
    e = expect(dataset.specs, {"a"})
    a = table["甲登记点"]
    assert (a["业务数"], a["完整采集业务"], a["采集页数"], a["补充采集业务"]) == (
        e["businesses"], e["complete"], e["pages"], e["supplemented"])
    assert a["完整率"] == e["complete"] / e["businesses"]
    total = expect(dataset.specs, {"a", "b"})
    assert table["合计"]["业务数"] == total["businesses"]
    assert abs(table["合计"]["采集时长中位数（小时）"] - total["median_delay"] / 3600) < 0.01
    # The same numbers as the page's service computes.
    result = workload(supervisor, StatsQuery(start=NOV, end=NOV_END, range="custom"))
    assert [table[r.label]["业务数"] for r in result.rows] == [r.businesses for r in result.rows]
    reasons = {r[0]: r[1:] for r in wb["补充采集原因"].iter_rows(min_row=2, values_only=True)}
    assert reasons["图像质量差"] == (1, 1)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "stats.exported")).one()
    assert entry.user_id == supervisor.id and '"format":"xlsx"' in entry.detail


def test_pdf_is_valid_and_names_the_exporter(client, dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1, username="lizhang")
    login(client, supervisor.username)
    response = client.get("/stats/export.pdf", query_string=ARGS)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(response.data))
    first = reader.pages[0].extract_text()
    assert "lizhang" in first
    assert supervisor.full_name in first  # Chinese text survives (embedded font with a ToUnicode map)
    assert "2026-11-01" in first and "甲登记点" in first
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    cjk = [f for f in fonts if "WenQuanYi" in str(f["/BaseFont"])]
    # Embedded (a subset of the TrueType font) with a ToUnicode map, not referenced by name only.
    assert cjk and all("/FontFile2" in f["/FontDescriptor"].get_object() and "/ToUnicode" in f for f in cjk)
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "stats.exported")).one()
    assert '"format":"pdf"' in entry.detail


def test_export_of_bad_input_or_foreign_department_is_refused(client, dataset: Dataset, factory, org) -> None:
    supervisor = factory.user("supervisor", org.det1)
    login(client, supervisor.username)
    bad = client.get("/stats/export.pdf", query_string={**ARGS, "end": "2026-10-01"})
    assert bad.status_code == 422 and "结束日期不能早于开始日期" in bad.get_data(as_text=True)
    assert client.get("/stats/export.xlsx", query_string={**ARGS, "department": org.office_c.id}).status_code == 404
    assert client.get("/stats/export.csv", query_string=ARGS).status_code == 404
    assert db.session.scalars(select(AuditEntry).where(AuditEntry.action == "stats.exported")).all() == []
