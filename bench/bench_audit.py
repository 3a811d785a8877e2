"""Audit-log throughput: appends per second and chain verification rows per second.

Run from the repository root:

    python bench/bench_audit.py                       # SQLite file in a temp folder, 100k rows
    python bench/bench_audit.py --entries 1000000
    python bench/bench_audit.py --database-url postgresql+psycopg://…/bench_audit  (emptied!)

Prints a Markdown table (and the machine it ran on) to stdout. Phases:

1. appends, one transaction each (what a request does: `record()` + commit), `--single` entries;
2. appends from `--threads` threads at once, one transaction each (contention on the head);
3. bulk fill up to `--entries` (1000 appends per transaction);
4. `verify_chain()` over everything, with the peak Python heap it used (streaming: it does not
   grow with the log).
Checkpoints are signed every `--checkpoint-every` entries throughout (default 500, as deployed).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def _rate(n: int, wall: float, cpu: float, unit: str) -> str:
    """Throughput on the wall clock, and per CPU-second of this process (robust to a busy host;
    for SQLite that is the whole cost but I/O waits, for PostgreSQL the server's share is not in
    it)."""
    return f"{n / wall:,.0f} {unit}/s ({n / cpu:,.0f} per CPU-second)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--per-thread", type=int, default=250)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=5000, help="verification batch")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (SQLite file)")
    args = parser.parse_args()

    from sqlalchemy import func, select

    from gmcrypto.sm2 import backend_name
    from portal.app import create_app
    from portal.audit.models import AuditEntry
    from portal.audit.services import Actor, record, verify_chain
    from portal.config import Settings
    from portal.db import Base, db

    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    keys = tmp / "keys"
    settings = Settings(
        instance_dir=tmp, database_url=url, data_dir=tmp / "data", secret_key="bench",
        master_key_file=keys / "master.key", portal_key_file=keys / "portal-sm2.pem",
        data_key_file=keys / "data.key", audit_checkpoint_every=args.checkpoint_every,
    )
    app = create_app(settings)
    actor = Actor("user", 17, "bench_clerk", 4, "10.20.30.40")
    detail = {"business": "310120261100001234", "material": "身份证明", "page": 3, "agent": 12}
    rows: list[tuple[str, str, str]] = []

    def append() -> None:
        record("capture.page_added", actor=actor, object_type="business",
               object_id="310120261100001234", detail=detail)

    with app.app_context():
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)

        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.single):
            append()
            db.session.commit()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows.append(("append, one transaction each", f"{args.single:,}",
                     _rate(args.single, elapsed, cpu, "appends")))

        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(args.per_thread):
                    with app.app_context():
                        append()
                        db.session.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        start, cpu = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if errors:
            raise SystemExit(f"concurrent appends failed: {errors[0]!r}")
        total = args.threads * args.per_thread
        rows.append((f"append from {args.threads} threads, one transaction each", f"{total:,}",
                     _rate(total, elapsed, cpu, "appends")))

        have = db.session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        todo = max(0, args.entries - have)
        start, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < todo:
            for _ in range(min(1000, todo - done)):
                append()
            db.session.commit()
            db.session.expunge_all()
            done = min(todo, done + 1000)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if todo:
            rows.append(("append, 1000 per transaction (bulk fill)", f"{todo:,}",
                         _rate(todo, elapsed, cpu, "appends")))

        db.session.remove()
        start, cpu = time.perf_counter(), time.process_time()
        result = verify_chain(batch_size=args.batch_size)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if not result.ok:
            raise SystemExit(f"verification failed: {result.reason}")
        rows.append((
            f"verify_chain (batch {args.batch_size:,}, {result.checkpoints_checked:,} "
            "signed checkpoints)",
            f"{result.entries_checked:,}",
            _rate(result.entries_checked, elapsed, cpu, "rows") + f" ({elapsed:.1f} s)",
        ))
        # Memory, measured in a second pass (tracemalloc slows Python down several times).
        db.session.remove()
        tracemalloc.start()
        verify_chain(batch_size=args.batch_size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append(("verify_chain peak Python heap", f"{result.entries_checked:,}",
                     f"{peak / 1024 / 1024:.1f} MB"))
        dialect = db.engine.dialect.name

    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    print(f"Machine: {_machine()}{load}; SM2 back end {backend_name()}; database {dialect}"
          + (" (file on local disk, WAL)" if dialect == "sqlite" else ""))
    print(f"Command: python bench/bench_audit.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("| phase | entries | result |")
    print("|---|---:|---|")
    for phase, n, result_text in rows:
        print(f"| {phase} | {n} | {result_text} |")


if __name__ == "__main__":
    main()
