"""Durable local outbox: a scanned page is on disk before any upload, removed only after ack.

Layout of ``path_dir``::

    outbox.sqlite3      SQLite (WAL, synchronous=FULL): one row per page not yet acknowledged
    outbox.lock         exclusive lock of the owner (the agent), see ``owner``
    pages/<uuid>.jpg    the page bytes (exactly what will be uploaded)
    pages/<uuid>.tmp    a page being written (removed by recover())

Write protocol of :meth:`Outbox.add` (every step survives SIGKILL / power loss):

1. write ``pages/<uuid>.tmp``, ``fsync`` it, ``rename`` to ``pages/<uuid>.jpg``, ``fsync`` the
   directory;
2. ``INSERT`` the row and ``COMMIT`` (synchronous=FULL: durable when commit returns).

A crash before 2 leaves at most a file without a row; :meth:`recover` deletes it (``add``
never returned, so the caller never counted that page).  :meth:`ack` deletes the row first
(commit), then the file; a crash in between again leaves only an orphan file.  Hence no
half-written page is ever visible and no sequence number is reused (``AUTOINCREMENT``).

States: ``pending`` (due at ``next_attempt_at``) → ``uploading`` (claimed by
:meth:`next_due`) → deleted by :meth:`ack`, or back to ``pending`` with exponential backoff
by :meth:`mark_retry`, or ``failed`` by :meth:`reject` (permanent rejection, kept with its
code and message for the clerk; :meth:`requeue` or :meth:`discard` act on it).
``recover()`` at start puts ``uploading`` rows back to ``pending`` and marks rows whose file
is missing (or corrupt) ``failed`` with code ``file_missing`` (``file_corrupt``).

``page_uuid`` is stable for the life of the page and is what the uploader sends as the
idempotency key; ``sequence`` is strictly increasing per outbox.  The SM3 digest of the bytes
is recorded at add time and checked by :meth:`read_bytes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes

PENDING = "pending"
UPLOADING = "uploading"
FAILED = "failed"
STATES = (PENDING, UPLOADING, FAILED)

DB_NAME = "outbox.sqlite3"
LOCK_NAME = "outbox.lock"
PAGES_DIR = "pages"
PAGE_SUFFIX = ".jpg"
TMP_SUFFIX = ".tmp"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    sequence        INTEGER PRIMARY KEY AUTOINCREMENT,
    page_uuid       TEXT    NOT NULL UNIQUE,
    job_id          TEXT,
    business_serial TEXT,
    material_code   TEXT,
    page_number     INTEGER,
    file_name       TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    sm3             TEXT    NOT NULL,
    meta            TEXT    NOT NULL DEFAULT '{}',
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'uploading', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0,
    last_error      TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS pages_due ON pages (state, next_attempt_at, sequence);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SCHEMA_VERSION = "1"


class OutboxError(Exception):
    pass


class OutboxLocked(OutboxError):
    """Another process (or another Outbox object) already owns this outbox directory."""


class OutboxFileError(OutboxError):
    """The page file is missing or does not match its recorded digest (row marked failed)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownPage(OutboxError, KeyError):
    pass


@dataclass(frozen=True)
class OutboxPage:
    sequence: int
    page_uuid: str
    job_id: str | None
    business_serial: str | None
    material_code: str | None
    page_number: int | None
    size: int
    sm3: str
    meta: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    error_code: str | None
    error_message: str | None
    created_at: float
    updated_at: float
    path: Path = field(compare=False)

    @property
    def id(self) -> int:
        """The page id used by ack/mark_retry/reject (same as ``sequence``)."""
        return self.sequence


def sm3_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory for fsync; NTFS journals renames
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open(path, "a+b")  # noqa: SIM115 - held for the object's lifetime
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                self._fh.seek(0)
                msvcrt.locking(self._fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            raise OutboxLocked(f"outbox {path.parent} is in use by another process") from exc

    def release(self) -> None:
        if not self._fh.closed:
            self._fh.close()  # closing the descriptor drops the lock


class Outbox:
    """The agent's durable page queue (see module docstring).

    :param path_dir: directory holding the database and page files (created if missing).
    :param backoff_base: first retry delay in seconds; doubles per attempt ...
    :param backoff_cap: ... up to this cap (seconds).
    :param recover: run :meth:`recover` when opening (the agent's start).
    :param owner: take the exclusive ``outbox.lock`` (default: same as ``recover``).  Only one
        owner per directory (:class:`OutboxLocked` otherwise); ``recover()`` needs ownership
        because it deletes files nobody committed.  Non-owners (``recover=False``, e.g. the
        ``scanner-agent outbox`` command while the agent runs) share the database safely
        through SQLite's own locking.
    """

    def __init__(
        self,
        path_dir: str | os.PathLike[str],
        *,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        recover: bool = True,
        owner: bool | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.root = Path(path_dir)
        self.pages_dir = self.root / PAGES_DIR
        self.pages_dir.mkdir(parents=True, exist_ok=True)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._inflight: set[str] = set()  # files of add() calls not yet committed
        self._file_lock: _FileLock | None = None
        if recover if owner is None else owner:
            self._file_lock = _FileLock(self.root / LOCK_NAME)
        #: test hook, called with a phase name at each step of add()/ack()
        self._crash_hook: Callable[[str], None] | None = None
        try:
            self._db = sqlite3.connect(self.root / DB_NAME, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._tx():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('schema_version', ?)",
                    (SCHEMA_VERSION,),
                )
        except BaseException:
            self._release_lock()
            raise
        self.last_recovery: dict[str, int] | None = None
        if recover:
            self.last_recovery = self.recover()

    # -- plumbing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _hook(self, phase: str) -> None:
        if self._crash_hook is not None:
            self._crash_hook(phase)

    def close(self) -> None:
        with self._lock:
            if getattr(self, "_db", None) is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            self._release_lock()

    def _release_lock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    @property
    def is_owner(self) -> bool:
        return self._file_lock is not None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _path(self, file_name: str) -> Path:
        return self.pages_dir / file_name

    def _row_to_page(self, row: sqlite3.Row) -> OutboxPage:
        return OutboxPage(
            sequence=row["sequence"],
            page_uuid=row["page_uuid"],
            job_id=row["job_id"],
            business_serial=row["business_serial"],
            material_code=row["material_code"],
            page_number=row["page_number"],
            size=row["size"],
            sm3=row["sm3"],
            meta=json.loads(row["meta"]),
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            path=self._path(row["file_name"]),
        )

    def _row(self, page_id: int) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM pages WHERE sequence = ?", (page_id,)).fetchone()
        if row is None:
            raise UnknownPage(page_id)
        return row

    # -- API ----------------------------------------------------------------------------------
    def add(
        self,
        job_id: str | None,
        business_serial: str | None,
        material_code: str | None,
        page_number: int | None,
        image_bytes: bytes,
        meta: dict[str, Any] | None = None,
    ) -> OutboxPage:
        """Store a page durably; when this returns, the page survives any crash."""
        if not image_bytes:
            raise ValueError("refusing to store an empty page")
        meta_json = json.dumps(meta or {}, ensure_ascii=False, sort_keys=True)
        page_uuid = str(uuid.uuid4())
        file_name = page_uuid + PAGE_SUFFIX
        final = self._path(file_name)
        tmp = self._path(page_uuid + TMP_SUFFIX)
        digest = sm3_hex(image_bytes)
        with self._lock:
            self._inflight.add(file_name)
        try:
            return self._add(
                page_uuid,
                file_name,
                final,
                tmp,
                digest,
                image_bytes,
                meta_json,
                (job_id, business_serial, material_code, page_number),
            )
        finally:
            with self._lock:
                self._inflight.discard(file_name)

    def _add(self, page_uuid, file_name, final, tmp, digest, image_bytes, meta_json, keys):
        job_id, business_serial, material_code, page_number = keys
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            view = memoryview(image_bytes)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._hook("tmp_written")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._hook("tmp_synced")
        os.replace(tmp, final)
        _fsync_dir(self.pages_dir)
        self._hook("renamed")
        now = self._clock()
        try:
            with self._tx() as db:
                cur = db.execute(
                    "INSERT INTO pages (page_uuid, job_id, business_serial, material_code,"
                    " page_number, file_name, size, sm3, meta, state, next_attempt_at,"
                    " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        page_uuid,
                        job_id,
                        business_serial,
                        material_code,
                        page_number,
                        file_name,
                        len(image_bytes),
                        digest,
                        meta_json,
                        PENDING,
                        now,
                        now,
                        now,
                    ),
                )
                self._hook("inserted")
                # read back inside the transaction: another thread may ack it right after
                row = self._row(cur.lastrowid)
        except BaseException:
            with contextlib.suppress(OSError):
                final.unlink()
            raise
        self._hook("committed")
        return self._row_to_page(row)

    def get(self, page_id: int) -> OutboxPage:
        with self._lock:
            return self._row_to_page(self._row(page_id))

    def next_due(self, now: float | None = None, *, claim: bool = True) -> OutboxPage | None:
        """The oldest pending page whose retry time has come; claimed (state ``uploading``,
        ``attempts`` + 1) unless ``claim=False``."""
        now = self._clock() if now is None else now
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM pages WHERE state = ? AND next_attempt_at <= ? ORDER BY sequence LIMIT 1",
                (PENDING, now),
            ).fetchone()
            if row is None:
                return None
            if claim:
                db.execute(
                    "UPDATE pages SET state = ?, attempts = attempts + 1, updated_at = ? WHERE sequence = ?",
                    (UPLOADING, now, row["sequence"]),
                )
                row = self._row(row["sequence"])
            return self._row_to_page(row)

    def next_due_at(self) -> float | None:
        """When the next pending page becomes due (None when nothing is pending)."""
        with self._lock:
            value = self._db.execute("SELECT MIN(next_attempt_at) FROM pages WHERE state = ?", (PENDING,)).fetchone()[0]
        return value

    def backoff_delay(self, attempts: int) -> float:
        """Delay before retry number ``attempts`` (>= 1): exponential, capped, "equal jitter"
        (uniform in [d/2, d]) so that many agents do not retry in lockstep."""
        delay = min(self.backoff_cap, self.backoff_base * (2 ** max(0, attempts - 1)))
        return self._rng.uniform(delay / 2, delay)

    def mark_retry(self, page_id: int, error: str, now: float | None = None) -> OutboxPage:
        """The upload failed transiently: back to pending, due after the backoff delay."""
        now = self._clock() if now is None else now
        with self._tx() as db:
            row = self._row(page_id)
            if row["state"] == FAILED:
                raise OutboxError(f"page {page_id} was rejected; requeue() it first")
            delay = self.backoff_delay(max(1, row["attempts"]))
            db.execute(
                "UPDATE pages SET state = ?, next_attempt_at = ?, last_error = ?, updated_at = ? WHERE sequence = ?",
                (PENDING, now + delay, str(error)[:2000], now, page_id),
            )
            return self._row_to_page(self._row(page_id))

    def ack(self, page_id: int) -> None:
        """The portal stored the page: forget it (row first, then the file)."""
        with self._lock:
            with self._tx() as db:
                row = self._row(page_id)
                db.execute("DELETE FROM pages WHERE sequence = ?", (page_id,))
                self._hook("ack_deleted_row")
            self._hook("ack_committed")
            with contextlib.suppress(FileNotFoundError):
                self._path(row["file_name"]).unlink()

    def reject(self, page_id: int, code: str, message: str) -> OutboxPage:
        """The portal refused the page for good: keep it as failed for the clerk to see."""
        now = self._clock()
        with self._tx() as db:
            self._row(page_id)
            db.execute(
                "UPDATE pages SET state = ?, error_code = ?, error_message = ?, updated_at = ? WHERE sequence = ?",
                (FAILED, code, message, now, page_id),
            )
            return self._row_to_page(self._row(page_id))

    def requeue(self, page_id: int) -> OutboxPage:
        """Give a failed page another chance (e.g. after the clerk fixed its business)."""
        now = self._clock()
        with self._tx() as db:
            row = self._row(page_id)
            if row["state"] != FAILED:
                raise OutboxError(f"page {page_id} is {row['state']}, not failed")
            if not self._path(row["file_name"]).exists():
                raise OutboxFileError("file_missing", f"page {page_id} has no file any more")
            db.execute(
                "UPDATE pages SET state = ?, attempts = 0, next_attempt_at = ?, error_code = NULL,"
                " error_message = NULL, updated_at = ? WHERE sequence = ?",
                (PENDING, now, now, page_id),
            )
            return self._row_to_page(self._row(page_id))

    def discard(self, page_id: int) -> None:
        """Delete a *failed* page on the clerk's explicit decision."""
        with self._lock:
            row = self._row(page_id)
            if row["state"] != FAILED:
                raise OutboxError(f"only failed pages can be discarded; page {page_id} is {row['state']}")
            self.ack(page_id)

    def pending(self) -> list[OutboxPage]:
        """Pages not yet acknowledged and not failed (pending and uploading), by sequence."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM pages WHERE state IN (?, ?) ORDER BY sequence", (PENDING, UPLOADING)
            ).fetchall()
        return [self._row_to_page(r) for r in rows]

    def failed(self) -> list[OutboxPage]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM pages WHERE state = ? ORDER BY sequence", (FAILED,)).fetchall()
        return [self._row_to_page(r) for r in rows]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes,"
                " MIN(created_at) AS oldest FROM pages GROUP BY state"
            ).fetchall()
            last_seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'pages'").fetchone()
        out: dict[str, Any] = {s: 0 for s in STATES}
        out.update(bytes=0, oldest_created_at=None, next_due_at=self.next_due_at())
        for r in rows:
            out[r["state"]] = r["n"]
            out["bytes"] += r["bytes"]
            if out["oldest_created_at"] is None or r["oldest"] < out["oldest_created_at"]:
                out["oldest_created_at"] = r["oldest"]
        out["total"] = sum(out[s] for s in STATES)
        out["last_sequence"] = last_seq[0] if last_seq else 0
        return out

    def read_bytes(self, page: OutboxPage | int) -> bytes:
        """The stored bytes, verified against size and SM3; a missing or corrupt file marks the
        page failed (``file_missing`` / ``file_corrupt``) and raises :class:`OutboxFileError`."""
        page_id = page if isinstance(page, int) else page.sequence
        with self._lock:
            row = self._row(page_id)
        path = self._path(row["file_name"])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._fail_file(page_id, "file_missing", f"page file {path.name} is missing")
        if len(data) != row["size"] or sm3_hex(data) != row["sm3"]:
            self._fail_file(page_id, "file_corrupt", f"page file {path.name} does not match its SM3")
        return data

    def _fail_file(self, page_id: int, code: str, message: str) -> NoReturn:
        self.reject(page_id, code, message)
        raise OutboxFileError(code, message)

    def recover(self) -> dict[str, int]:
        """Repair after a crash; safe to run at every start (see module docstring)."""
        with self._lock:
            if self._file_lock is None:
                self._file_lock = _FileLock(self.root / LOCK_NAME)  # OutboxLocked if in use
        report = {"requeued": 0, "tmp_removed": 0, "orphans_removed": 0, "file_missing": 0}
        now = self._clock()
        with self._tx() as db:
            report["requeued"] = db.execute(
                "UPDATE pages SET state = ?, updated_at = ? WHERE state = ?",
                (PENDING, now, UPLOADING),
            ).rowcount
            rows = db.execute("SELECT sequence, file_name, state FROM pages").fetchall()
            known = {r["file_name"] for r in rows}
            for r in rows:
                if r["state"] != FAILED and not self._path(r["file_name"]).exists():
                    db.execute(
                        "UPDATE pages SET state = ?, error_code = 'file_missing',"
                        " error_message = 'page file missing at recovery', updated_at = ?"
                        " WHERE sequence = ?",
                        (FAILED, now, r["sequence"]),
                    )
                    report["file_missing"] += 1
            for entry in os.scandir(self.pages_dir):
                if not entry.is_file():
                    continue
                if entry.name.endswith(TMP_SUFFIX):
                    if entry.name[: -len(TMP_SUFFIX)] + PAGE_SUFFIX in self._inflight:
                        continue
                    os.unlink(entry.path)
                    report["tmp_removed"] += 1
                elif entry.name not in known and entry.name not in self._inflight:
                    # written but never committed (crash inside add) or acked but not yet
                    # unlinked (crash inside ack): nobody owns it
                    os.unlink(entry.path)
                    report["orphans_removed"] += 1
        if report["tmp_removed"] or report["orphans_removed"]:
            _fsync_dir(self.pages_dir)
        return report
