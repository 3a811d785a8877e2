"""Batch import of a registration-system export into a fresh SQLite portal.

Run from the repository root:  python bench/bench_import.py [--rows 100000] [--encoding gbk]
Generates a CSV with Chinese column headers (portal.registry.sample records), then times a dry
run, the real import (`portal registry import`'s code path) and a second import of the same file
(every row unchanged). Prints a Markdown table and the machine it ran on.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADER = ["流水号", "业务类型", "号牌号码", "整车编码", "所有人", "身份证明号码", "联系电话", "办理部门",
          "经办人编号", "经办人", "受理时间", "办结时间", "状态"]
STATUS = {"accepted": "已受理", "finished": "已办结", "withdrawn": "已退办"}
OFFICES = ["OA", "OB", "OC", "OD"]


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    import sqlalchemy

    return (f"CPU `{model}`, nproc = {os.cpu_count()}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}, SQLAlchemy {sqlalchemy.__version__}, "
            f"SQLite {__import__('sqlite3').sqlite_version}, load average {os.getloadavg()[0]:.1f} at start")


def write_csv(path: Path, rows: int, encoding: str) -> None:
    from portal.registry import sample

    local = timedelta(hours=8)
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for rec in sample.records(rows, OFFICES, start=datetime(2026, 1, 1, tzinfo=UTC), span=timedelta(days=300)):
            writer.writerow([
                rec.serial, rec.business_type_code, rec.plate_number, rec.vehicle_code, rec.owner_name,
                rec.owner_id_number, rec.phone, rec.department_code, rec.clerk_code, rec.clerk_name,
                (rec.accepted_at + local).strftime("%Y-%m-%d %H:%M:%S"),
                (rec.finished_at + local).strftime("%Y-%m-%d %H:%M:%S") if rec.finished_at else "",
                STATUS[rec.status.value],
            ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "gbk"])
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()
    info = machine()

    from portal.app import create_app
    from portal.config import Settings
    from portal.db import Base, db
    from portal.dictionary.seed import seed_dictionary
    from portal.org.models import DepartmentKind as K
    from portal.org.services import create_department
    from portal.registry.fileimport import import_file, read_table

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        base = Path(tmp)
        keys = base / "instance" / "keys"
        settings = Settings(
            instance_dir=base / "instance", database_url=f"sqlite:///{base / 'portal.sqlite3'}",
            data_dir=base / "data", secret_key="bench", master_key_file=keys / "master.key",
            portal_key_file=keys / "portal-sm2.pem", data_key_file=keys / "data.key",
        )
        settings.instance_dir.mkdir(parents=True)
        app = create_app(settings)
        results: list[tuple[str, float, float, str]] = []
        with app.app_context():
            Base.metadata.create_all(db.engine)
            seed_dictionary()
            hq = create_department(code="HQ", name="总队", kind=K.HEADQUARTERS, parent=None)
            for code in OFFICES:
                create_department(code=code, name=f"登记点{code}", kind=K.OFFICE, parent=hq)
            db.session.commit()

            path = base / f"export-{args.rows}.csv"
            start, cpu = time.perf_counter(), time.process_time()
            write_csv(path, args.rows, args.encoding)
            results.append(("generate CSV", time.perf_counter() - start, time.process_time() - cpu,
                            f"{path.stat().st_size / 1024 / 1024:.1f} MB, {args.encoding}"))

            start, cpu = time.perf_counter(), time.process_time()
            table = read_table(path)
            results.append(("parse only (read_table)", time.perf_counter() - start, time.process_time() - cpu,
                            f"{len(table.rows)} rows"))
            del table

            start, cpu = time.perf_counter(), time.process_time()
            report = import_file(path, dry_run=True)
            results.append(("dry run", time.perf_counter() - start, time.process_time() - cpu,
                            f"{len(report.bad)} bad rows"))

            start, cpu = time.perf_counter(), time.process_time()
            report = import_file(path, dry_run=False, batch_size=args.batch_size)
            seconds = time.perf_counter() - start
            results.append(("import (empty database)", seconds, time.process_time() - cpu,
                            f"{report.created} created, {len(report.bad)} bad, {args.rows / seconds:,.0f} rows/s"))

            start, cpu = time.perf_counter(), time.process_time()
            again = import_file(path, dry_run=False, batch_size=args.batch_size)
            seconds = time.perf_counter() - start
            results.append(("import again (all unchanged)", seconds, time.process_time() - cpu,
                            f"{again.unchanged} unchanged, {args.rows / seconds:,.0f} rows/s"))
        db_size = (base / "portal.sqlite3").stat().st_size / 1024 / 1024

    print(f"Machine: {info}\n")
    print(f"Command: python bench/bench_import.py --rows {args.rows} --encoding {args.encoding} "
          f"--batch-size {args.batch_size}\n")
    print("| step | wall s | CPU s | notes |\n|---|---:|---:|---|")
    for label, secs, cpu_secs, note in results:
        print(f"| {label} | {secs:.1f} | {cpu_secs:.1f} | {note} |")
    print(f"\nSQLite file after import: {db_size:.0f} MB")


if __name__ == "__main__":
    main()
