"""Batch import of businesses from a file: a CSV (UTF-8 or GBK/GB18030) or an Excel `.xlsx`, the
format an export of the registration system or a clerk's spreadsheet has.

Columns are recognised by their Chinese headers (流水号, 业务类型, 号牌号码, 整车编码, 所有人,
身份证明号码, 联系电话, 办理部门, 经办人, 受理时间, 办结时间, 状态, …) or by the field names of
the HTTP contract; unknown columns are ignored and reported. Business types and departments may
be given by code or by exact name.

A dry run reports every bad row with its line number and reason and what a real run would do;
a real run applies the good rows in batches (committing each), quarantines rows that name an
unknown business type or department, and records a SyncRun. A serial given twice: the last row
wins and the earlier ones are reported.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portal.audit.services import Actor, record
from portal.db import db, utcnow
from portal.registry.models import SyncRun
from portal.registry.records import FIELD_NAMES, BusinessRecord, MalformedRecord, build_record
from portal.registry.services import Lookups, _current_rows, apply_records, quarantine

log = logging.getLogger(__name__)

_ALIASES: dict[str, tuple[str, ...]] = {
    "serial": ("流水号", "业务流水号", "业务流水", "serial_number", "lsh"),
    "business_type_code": ("业务类型", "业务类型代码", "业务种类", "业务类别", "business_type", "type"),
    "department_code": ("办理部门", "办理部门代码", "部门", "部门代码", "受理部门", "登记点", "department"),
    "plate_number": ("号牌号码", "号牌", "车牌号", "车牌号码", "plate"),
    "vehicle_code": ("整车编码", "整车编号", "车辆识别代码", "车架号", "vin"),
    "owner_name": ("所有人", "所有人姓名", "车主", "车主姓名", "owner"),
    "owner_id_number": ("身份证明号码", "身份证号", "身份证号码", "证件号码", "所有人身份证明号码", "owner_id"),
    "phone": ("联系电话", "电话", "手机", "手机号", "手机号码", "联系方式"),
    "clerk_code": ("经办人编号", "经办人代码", "经办人警号", "经办人工号"),
    "clerk_name": ("经办人", "经办人姓名", "clerk"),
    "accepted_at": ("受理时间", "受理日期"),
    "finished_at": ("办结时间", "办结日期"),
    "status": ("状态", "业务状态", "办理状态"),
    "updated_at": ("更新时间", "最后更新时间", "修改时间"),
}
REQUIRED_COLUMNS = ("serial", "business_type_code", "department_code", "accepted_at")


def _normalize_header(text: Any) -> str:
    value = str(text or "").replace("\ufeff", "").strip().lower()
    value = re.sub(r"[\s*＊:：]", "", value)
    return re.sub(r"[（(].*?[）)]$", "", value)  # "受理时间(yyyy-mm-dd)" → "受理时间"


HEADER_ALIASES: dict[str, str] = {}
for _field, _names in _ALIASES.items():
    for _name in (_field, *_names):
        HEADER_ALIASES[_normalize_header(_name)] = _field


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, no header, a required column missing)."""


@dataclass
class Row:
    line: int
    record: BusinessRecord | None
    error: str = ""
    serial: str = ""


@dataclass
class Table:
    encoding: str
    columns: dict[str, str]  # field → header as written in the file
    ignored: list[str]
    rows: list[Row]


def _decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise ImportFileError(f"cannot decode the file as {encoding}: {exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file is neither UTF-8 nor GBK text ({exc})") from None


def _csv_rows(path: Path, encoding: str | None) -> tuple[Iterator[tuple[int, list[Any]]], str]:
    text, used = _decode(path.read_bytes(), encoding)
    first = text.split("\n", 1)[0]
    delimiter = max((",", "\t", ";", "|"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for cells in reader:
                yield reader.line_num, cells
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: {exc}") from None

    return rows(), used


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as exc:
        raise ImportFileError(f"cannot open the workbook: {exc}") from None
    try:
        if sheet:
            if sheet not in workbook.sheetnames:
                raise ImportFileError(f"no sheet named {sheet!r} (sheets: {', '.join(workbook.sheetnames)})")
            worksheet = workbook[sheet]
        else:
            worksheet = workbook.worksheets[0]
        for number, cells in enumerate(worksheet.iter_rows(values_only=True), start=1):
            yield number, list(cells)
    finally:
        workbook.close()


def _blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _cell(value: Any, field_name: str) -> Any:
    if field_name in ("owner_id_number", "phone", "serial", "vehicle_code") and isinstance(value, float):
        if not value.is_integer() or abs(value) >= 2**53:
            raise MalformedRecord("", f"{field_name} is stored as a number and has lost digits "
                                      "(format the column as text)")
        return str(int(value))
    return value


def _explain(reason: str, columns: dict[str, str]) -> str:
    """Name the column as the file spells it: 'missing accepted_at' → 'missing 受理时间 (accepted_at)'."""
    for field_name, header in columns.items():
        if header != field_name and re.search(rf"\b{field_name}\b", reason):
            return re.sub(rf"\b{field_name}\b", f"{header} ({field_name})", reason, count=1)
    return reason


def read_table(path: Path, *, encoding: str | None = None, sheet: str | None = None) -> Table:
    """Parse every row of the file (nothing is applied). Raises ImportFileError for the whole file."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"no such file: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        rows, used = _xlsx_rows(path, sheet), "xlsx"
    elif path.suffix.lower() == ".xls":
        raise ImportFileError("old .xls workbooks are not supported: save the file as .xlsx or CSV")
    else:
        rows, used = _csv_rows(path, encoding)
    header: list[Any] | None = None
    for _line, cells in rows:
        if not _blank(cells):
            header = cells
            break
    if header is None:
        raise ImportFileError("the file is empty")
    positions: dict[str, int] = {}
    columns: dict[str, str] = {}
    ignored: list[str] = []
    for index, title in enumerate(header):
        field_name = HEADER_ALIASES.get(_normalize_header(title))
        if field_name is None or field_name in positions:
            if str(title or "").strip():
                ignored.append(str(title).strip())
            continue
        positions[field_name] = index
        columns[field_name] = str(title).strip()
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        wanted = ", ".join(f"{_ALIASES[name][0]} ({name})" for name in missing)
        raise ImportFileError(f"required column(s) missing from the header: {wanted}")
    table = Table(used, columns, ignored, [])
    for line, cells in rows:
        if _blank(cells):
            continue
        values: dict[str, Any] = {}
        raw_serial = cells[positions["serial"]] if positions["serial"] < len(cells) else None
        serial = str(raw_serial if raw_serial is not None else "").strip()[:40]
        try:
            for field_name, index in positions.items():
                values[field_name] = _cell(cells[index] if index < len(cells) else None, field_name)
            rec = build_record({name: values.get(name) for name in FIELD_NAMES})
        except MalformedRecord as exc:
            table.rows.append(Row(line, None, _explain(exc.reason, columns), exc.serial or serial))
            continue
        table.rows.append(Row(line, rec, "", rec.serial))
    return table


@dataclass
class ImportReport:
    path: str
    encoding: str = ""
    dry_run: bool = True
    rows: int = 0
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, serial, reason)
    duplicates: list[tuple[int, str, int]] = field(default_factory=list)  # (line, serial, superseded by line)
    quarantined: list[tuple[int, str, str]] = field(default_factory=list)  # (line, serial, reason)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    existing: int = 0  # dry run: serials already here (updated if anything changed)
    ignored_columns: list[str] = field(default_factory=list)
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.bad

    def lines(self) -> list[str]:
        out = [f"{'dry run of' if self.dry_run else 'imported'} {self.path} ({self.encoding}): {self.rows} data rows"]
        if self.ignored_columns:
            out.append(f"ignored columns: {', '.join(self.ignored_columns)}")
        for line, serial, reason in self.bad:
            out.append(f"line {line}: {serial + ': ' if serial else ''}{reason}")
        for line, serial, later in self.duplicates:
            out.append(f"line {line}: {serial}: duplicate serial, superseded by line {later}")
        verb = "would be quarantined" if self.dry_run else "quarantined"
        for line, serial, reason in self.quarantined:
            out.append(f"line {line}: {serial}: {reason} ({verb})")
        if self.dry_run:
            good = self.rows - len(self.bad) - len(self.duplicates) - len(self.quarantined)
            out.append(
                f"summary: {good} rows to apply ({good - self.existing} new, {self.existing} already present), "
                f"{len(self.bad)} bad, {len(self.duplicates)} duplicates, {len(self.quarantined)} to quarantine; "
                "nothing was written"
            )
        else:
            out.append(
                f"summary: {self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{len(self.bad)} bad, {len(self.duplicates)} duplicates, {len(self.quarantined)} quarantined "
                f"(sync run {self.run_id})"
            )
        return out


def import_file(
    path: Path,
    *,
    dry_run: bool,
    actor: Actor | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    batch_size: int = 2000,
    commit: bool = True,
) -> ImportReport:
    """Check (dry run) or apply a file. Raises ImportFileError when the file cannot be read at all.

    A real run commits after each batch when `commit` (the CLI); otherwise it only flushes.
    """
    table = read_table(Path(path), encoding=encoding, sheet=sheet)
    report = ImportReport(str(path), table.encoding, dry_run, len(table.rows), ignored_columns=table.ignored)
    report.bad = [(row.line, row.serial, row.error) for row in table.rows if row.record is None]
    latest: dict[str, tuple[int, BusinessRecord]] = {}
    for row in table.rows:
        if row.record is None:
            continue
        earlier = latest.pop(row.record.serial, None)
        if earlier is not None:
            report.duplicates.append((earlier[0], row.record.serial, row.line))
        latest[row.record.serial] = (row.line, row.record)
    lines = {serial: line for serial, (line, _) in latest.items()}
    lookups = Lookups.load()
    if dry_run:
        from portal.registry.services import RecordRejected

        good: list[str] = []
        for serial, (line, rec) in latest.items():
            try:
                lookups.resolve(rec)
            except RecordRejected as exc:
                report.quarantined.append((line, serial, str(exc)))
                continue
            good.append(serial)
        report.existing = len(_current_rows(good))
        return report

    run = SyncRun(source="file", started_at=utcnow(), records_in=len(table.rows))
    db.session.add(run)
    db.session.flush()
    report.run_id = run.id
    pending = [rec for _, rec in latest.values()]
    for start in range(0, len(pending), batch_size):
        result = apply_records(pending[start:start + batch_size], lookups)
        report.created += result.created
        report.updated += result.updated
        report.unchanged += result.unchanged
        for rec, exc in result.rejected:
            quarantine(rec, exc.label, run.id)
            report.quarantined.append((lines[rec.serial], rec.serial, str(exc)))
        for serial, reason in result.failed:
            report.bad.append((lines[serial], serial, reason))
        run.records_created, run.records_updated = report.created, report.updated
        run.records_failed = len(report.bad)
        if commit:
            db.session.commit()
    report.bad.sort()
    run.records_failed = len(report.bad)
    run.finished_at = utcnow()
    if report.bad:
        run.error = f"{len(report.bad)} bad row(s) in {Path(path).name}"
    record(
        "registry.imported", actor=actor, object_type="sync_run", object_id=str(run.id),
        detail={"file": Path(path).name, "rows": report.rows, "created": report.created,
                "updated": report.updated, "bad": len(report.bad), "quarantined": len(report.quarantined),
                "duplicates": len(report.duplicates)},
    )
    db.session.flush()
    if commit:
        db.session.commit()
    log.info("file import %s: %s", path, report.lines()[-1])
    return report
