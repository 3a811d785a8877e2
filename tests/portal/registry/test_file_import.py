"""Batch import from CSV (UTF-8, GBK) and .xlsx: dry-run report, bad rows, duplicates, quarantine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from portal.audit.models import AuditEntry
from portal.audit.services import Actor, write_pending
from portal.db import db
from portal.org.models import DepartmentKind
from portal.org.services import create_department
from portal.protect import ID_NUMBER, reveal
from portal.registry.fileimport import ImportFileError, import_file, read_table
from portal.registry.models import Business, BusinessStatus, QuarantinedRecord, SyncRun
from portal.registry.services import QuarantineError, dismiss_quarantined, retry_quarantined
from tests.portal.registry.conftest import business_count

HEADER = "流水号,业务类型,号牌号码,整车编码,所有人,身份证明号码,联系电话,办理部门,经办人,受理时间,办结时间,状态"
ROWS = [
    "F0001,注册登记,沪A00001,VC0001,张三,310115199001011234,13800000001,OA,李警官,2026-11-02 09:30,"
    "2026-11-02 10:00,已办结",
    "F0002,TRANSFER,沪A00002,VC0002,李四,310115199001011235,13800000002,甲登记点,王警官,2026/11/02 10:15:00,,受理",
    ",REGISTER,沪A00003,VC0003,王五,310115199001011236,13800000003,OA,王警官,2026-11-02 10:20,,",
    "F0004,REGISTER,沪A00004,VC0004,赵六,310115199001011237,13800000004,OA,王警官,昨天上午,,",
    "F0005,新业务,沪A00005,VC0005,钱七,310115199001011238,13800000005,OA,王警官,2026-11-02 10:40,,",
    "F0006,REGISTER,沪A00006,VC0006,孙八,310115199001011239,13800000006,ZZ,王警官,2026-11-02 10:50,,",
    "F0002,TRANSFER,沪A00022,VC0002,李四,310115199001011235,13800000002,OB,王警官,2026-11-02 10:15,,已受理",
    "F0009,REGISTER,沪A00009,VC0009,周九,310115199001011240,13800000009,OA,王警官,2026-11-02 11:00,,作废了",
    "",
    "F0011,REGISTER," + "沪" * 30 + ",VC0011,吴十,310115199001011241,13800000011,OA,王警官,2026-11-02 11:10,,",
    "F0012,<b>CHANGE</b>,沪A00012,VC0012,<script>alert(1)</script>,310115199001011242,13800000012,OC,王警官,"
    "2026-11-02T11:20:00+08:00,,",
]


def write_csv(tmp_path: Path, encoding: str = "utf-8", name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join([HEADER, *ROWS]) + "\n").encode(encoding))
    return path


def _bad_lines(report) -> dict[int, str]:  # type: ignore[no-untyped-def]
    return {line: reason for line, _, reason in report.bad}


def test_dry_run_reports_every_bad_row_with_its_line_and_writes_nothing(org, tmp_path: Path) -> None:
    report = import_file(write_csv(tmp_path), dry_run=True)
    assert report.encoding == "utf-8" and report.rows == 10  # the blank line 10 is no row
    bad = _bad_lines(report)
    assert set(bad) == {4, 5, 9, 11}
    assert bad[4] == "missing 流水号 (serial)"
    assert bad[5].startswith("受理时间 (accepted_at): not a time") and "昨天上午" in bad[5]
    assert "状态 (status)" in bad[9] and "作废了" in bad[9]
    assert "号牌号码 (plate_number) longer than 20" in bad[11]
    assert report.duplicates == [(3, "F0002", 8)]
    assert {(line, serial) for line, serial, _ in report.quarantined} == {(6, "F0005"), (7, "F0006"), (12, "F0012")}
    text = "\n".join(report.lines())
    assert "line 4: missing 流水号 (serial)" in text
    assert "line 3: F0002: duplicate serial, superseded by line 8" in text
    assert "line 7: F0006: unknown department 'ZZ' (would be quarantined)" in text
    assert "2 rows to apply" in text and "nothing was written" in text
    assert not report.ok
    assert business_count() == 0
    assert db.session.scalars(select(QuarantinedRecord)).all() == []
    assert db.session.scalars(select(SyncRun)).all() == []


def test_real_run_applies_good_rows_quarantines_unknown_codes_and_last_duplicate_wins(org, tmp_path: Path) -> None:
    report = import_file(write_csv(tmp_path), dry_run=False, actor=Actor.system())
    assert (report.created, report.updated, len(report.bad), len(report.quarantined)) == (2, 0, 4, 3)
    first = db.session.scalar(select(Business).where(Business.serial == "F0001"))
    assert first.business_type.code == "REGISTER" and first.department.code == "OA"
    assert first.status == BusinessStatus.FINISHED
    assert first.accepted_at == datetime(2026, 11, 2, 1, 30, tzinfo=UTC)  # Beijing time
    assert reveal(ID_NUMBER, "F0001", first.owner_id_cipher) == "310115199001011234"
    second = db.session.scalar(select(Business).where(Business.serial == "F0002"))
    assert second.plate_number == "沪A00022" and second.department.code == "OB"  # the last row won
    quarantined = {q.serial: q for q in db.session.scalars(select(QuarantinedRecord))}
    assert set(quarantined) == {"F0005", "F0006", "F0012"}
    assert quarantined["F0006"].reason == "未知办理部门：ZZ"
    assert quarantined["F0006"].sync_run_id == report.run_id
    run = db.session.get(SyncRun, report.run_id)
    assert run.source == "file" and run.records_in == 10 and run.records_created == 2 and run.records_failed == 4
    audit = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "registry.imported"))
    assert audit is not None and audit.object_id == str(report.run_id)

    # Importing the same file again changes nothing and duplicates nothing.
    again = import_file(write_csv(tmp_path), dry_run=False)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert business_count() == 2
    assert len(db.session.scalars(select(QuarantinedRecord)).all()) == 3


def test_quarantined_rows_are_retried_after_the_department_exists_or_dismissed(org, tmp_path: Path, factory) -> None:
    import_file(write_csv(tmp_path), dry_run=False)
    admin = factory.user("sysadmin", department=org.hq)
    actor = Actor.of_user(admin)
    rows = {q.serial: q for q in db.session.scalars(select(QuarantinedRecord))}
    with pytest.raises(QuarantineError, match="未知办理部门"):
        retry_quarantined(rows["F0006"].id, actor)
    create_department(code="ZZ", name="新登记点", kind=DepartmentKind.OFFICE, parent=org.det2)
    row, outcome = retry_quarantined(rows["F0006"].id, actor)
    assert outcome == "created" and row.resolved_at is not None and row.resolved_by_id == admin.id
    business = db.session.scalar(select(Business).where(Business.serial == "F0006"))
    assert business.department.code == "ZZ"
    assert reveal(ID_NUMBER, "F0006", business.owner_id_cipher) == "310115199001011239"  # unsealed intact
    dismissed = dismiss_quarantined(rows["F0005"].id, actor, "登记系统测试数据")
    assert dismissed.resolved_at is not None
    with pytest.raises(QuarantineError, match="已被处理"):
        dismiss_quarantined(rows["F0005"].id, actor)
    write_pending()  # entries are appended at commit
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == "registry.quarantine_resolved").order_by(AuditEntry.seq)
    ).all()
    assert ['"retried"' in e.detail for e in entries] == [True, False]
    assert entries[1].reason == "登记系统测试数据" and entries[0].user_id == admin.id
    assert business_count() == 3


def test_file_adapter_implements_the_adapter_interface(org, tmp_path: Path) -> None:
    from portal.registry.adapters import FileAdapter

    adapter = FileAdapter(write_csv(tmp_path))
    assert adapter.health() and not FileAdapter(tmp_path / "nope.csv").health()
    page = adapter.changed_since(None, None)
    assert page.next_token is None
    assert [r.serial for r in page.records] == ["F0001", "F0005", "F0006", "F0002", "F0012"]
    assert next(r for r in page.records if r.serial == "F0002").plate_number == "沪A00022"
    assert sorted(m.reason.split(":")[0] for m in page.malformed) == ["line 11", "line 4", "line 5", "line 9"]
    fetched = adapter.fetch("F0002")
    assert fetched is not None and fetched.department_code == "OB"
    assert adapter.fetch("NOPE") is None


def test_gbk_csv_is_detected(org, tmp_path: Path) -> None:
    report = import_file(write_csv(tmp_path, "gbk"), dry_run=False)
    assert report.encoding == "gbk"
    assert report.created == 2
    owner = db.session.scalar(select(Business.owner_name).where(Business.serial == "F0001"))
    assert owner == "张三"


def test_xlsx_with_date_cells_numbers_and_line_numbers(org, tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["业务流水号", "业务类型", "号牌号码", "所有人", "身份证明号码", "联系电话", "办理部门", "经办人",
                  "受理时间", "办结时间", "状态", "备注"])
    sheet.append(["X0001", "REGISTER", "沪B00001", "陈一", "31011519900101123X", 13900000001, "OA", "李警官",
                  datetime(2026, 11, 3, 8, 0), datetime(2026, 11, 3, 8, 40), "办结", "无"])
    sheet.append([None] * 12)
    sheet.append(["X0002", "注销登记", "沪B00002", "陈二", 310115199001011234.0, "13900000002", "OA", "李警官",
                  datetime(2026, 11, 3, 9, 0), None, None, ""])
    sheet.append(["X0003", "注销登记", "沪B00003", "陈三", "310115199001011236", "13900000003", "OB", "李警官",
                  "2026-11-03 09:30", None, "退办", ""])
    path = tmp_path / "clerk.xlsx"
    workbook.save(path)
    table = read_table(path)
    assert table.encoding == "xlsx" and table.ignored == ["备注"]
    report = import_file(path, dry_run=False)
    assert report.created == 2
    assert [(line, serial) for line, serial, _ in report.bad] == [(4, "X0002")]
    assert "lost digits" in report.bad[0][2]
    one = db.session.scalar(select(Business).where(Business.serial == "X0001"))
    assert one.accepted_at == datetime(2026, 11, 3, 0, 0, tzinfo=UTC) and one.status == BusinessStatus.FINISHED
    assert one.phone_masked == "139****0001"
    three = db.session.scalar(select(Business).where(Business.serial == "X0003"))
    assert three.status == BusinessStatus.WITHDRAWN and three.business_type.code == "DEREGISTER"


def test_missing_required_column_or_empty_file_is_refused(org, tmp_path: Path) -> None:
    path = tmp_path / "nocolumns.csv"
    path.write_text("流水号,号牌号码\nA1,沪A1\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="业务类型"):
        import_file(path, dry_run=True)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="empty"):
        read_table(empty)


def test_cli_import_dry_run_and_real_run(app, org, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["registry", "import", str(write_csv(tmp_path)), "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert "line 5: F0004: 受理时间 (accepted_at): not a time" in dry.output
    assert business_count() == 0
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join([HEADER, ROWS[0], ROWS[1]]) + "\n", encoding="utf-8")
    real = runner.invoke(args=["registry", "import", str(clean)])
    assert real.exit_code == 0, real.output
    assert "2 created" in real.output
    db.session.expire_all()
    assert business_count() == 2
    broken = runner.invoke(args=["registry", "import", str(tmp_path / "missing.csv")])
    assert broken.exit_code != 0
