"""Incremental sync from a registration-system adapter.

One run: take the source's sync lock (a `scheduler_lease` row, so two hosts or a scheduled run and
a "sync now" never interleave), read pages of records changed since the watermark minus an overlap
margin (clock skew between the hosts, transactions that commit late at the source), apply each
page with `apply_records` (idempotent: a re-read record is "unchanged"), quarantine records that
name an unknown business type or department, log and count malformed ones, move the watermark
forward after each page, and record a SyncRun and the SyncState.

`commit=True` (CLI, scheduler) commits after every page, so an interrupted run keeps its
progress; `commit=False` (a request) only flushes and leaves the commit to the request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.db import db, utcnow
from portal.jobs.lease import new_holder_id, release, try_acquire
from portal.registry.adapters import RegistryAdapter, RegistryError
from portal.registry.models import SyncRun, SyncState
from portal.registry.services import Lookups, apply_records, fetch_business, quarantine

__all__ = ["SyncBusy", "SyncResult", "fetch_business", "run_sync", "sync_configured_source"]

log = logging.getLogger(__name__)

LOCK_PREFIX = "registry-sync:"
LOCK_TTL = timedelta(minutes=10)  # renewed after every page
MAX_PAGES = 100_000


class SyncBusy(Exception):
    """Another sync of the same source is running."""


@dataclass
class SyncResult:
    run_id: int
    source: str
    ok: bool
    partial: bool
    records_in: int
    created: int
    updated: int
    unchanged: int
    failed: int
    quarantined: int
    watermark_before: datetime | None
    watermark_after: datetime | None
    error: str
    seconds: float

    def summary(self) -> str:
        head = "sync OK" if self.ok else "sync FAILED"
        if self.partial:
            head += " (stopped at the time limit; the rest follows in the next run)"
        text = (
            f"{head}: {self.records_in} records in, {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.failed} failed, {self.quarantined} quarantined "
            f"in {self.seconds:.1f} s; watermark {_fmt(self.watermark_before)} -> {_fmt(self.watermark_after)}"
        )
        return f"{text}; error: {self.error}" if self.error else text


def _fmt(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "none"


class _Lock:
    """The source's sync lock, on its own connection (commit mode) or in the request's session."""

    def __init__(self, source: str, commit: bool) -> None:
        self.name, self.commit = LOCK_PREFIX + source, commit
        self.holder = new_holder_id("sync")

    def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        if self.commit:
            with db.engine.begin() as conn:
                return fn(conn, self.name, self.holder, *args)
        return fn(db.session, self.name, self.holder, *args)

    def acquire(self) -> bool:
        return self._run(try_acquire, LOCK_TTL) is not None

    def release(self) -> None:
        try:
            self._run(release)
        except Exception:  # the lock then simply expires
            log.warning("could not release sync lock %s", self.name, exc_info=True)


def _state(source: str) -> SyncState:
    state = db.session.get(SyncState, source)
    if state is None:
        state = SyncState(source=source, last_error="")
        db.session.add(state)
        db.session.flush()
    return state


def run_sync(
    adapter: RegistryAdapter,
    *,
    source: str | None = None,
    overlap: timedelta = timedelta(minutes=5),
    full: bool = False,
    time_limit: float | None = None,
    commit: bool = True,
) -> SyncResult:
    """One sync run. Raises SyncBusy when the source's lock is held; source errors do not raise:
    they end the run with `ok=False` and are recorded in the SyncRun and SyncState."""
    source = source or adapter.name
    lock = _Lock(source, commit)
    if not lock.acquire():
        raise SyncBusy(f"a sync of {source!r} is already running")
    try:
        return _run(adapter, source, overlap, full, time_limit, commit, lock)
    finally:
        lock.release()


def _run(
    adapter: RegistryAdapter, source: str, overlap: timedelta, full: bool, time_limit: float | None,
    commit: bool, lock: _Lock,
) -> SyncResult:
    started, t0 = utcnow(), time.monotonic()
    state = _state(source)
    before = state.watermark
    since = None if full or before is None else before - overlap
    run = SyncRun(source=source, started_at=started, watermark_before=before, error="")
    db.session.add(run)
    db.session.flush()
    run_id = run.id
    if commit:
        db.session.commit()
    lookups = Lookups.load()
    counts = {"in": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0, "quarantined": 0}
    error, partial = "", False
    token: str | None = None
    seen_tokens: set[str] = set()
    try:
        for _ in range(MAX_PAGES):
            page = adapter.changed_since(since, token)
            counts["in"] += len(page.records) + len(page.malformed)
            for bad in page.malformed:
                log.warning("registry record %s skipped: %s", bad.serial or "(no serial)", bad.reason)
            result = apply_records(page.records, lookups)
            for rec, exc in result.rejected:
                quarantine(rec, exc.label, run_id)
            counts["created"] += result.created
            counts["updated"] += result.updated
            counts["unchanged"] += result.unchanged + result.duplicates
            counts["failed"] += len(page.malformed) + len(result.failed)
            counts["quarantined"] += len(result.rejected)
            if page.new_watermark is not None and (state.watermark is None or page.new_watermark > state.watermark):
                state.watermark = page.new_watermark
            _progress(run, state, counts)
            if commit:
                db.session.commit()
                lock.acquire()  # renew
            if page.next_token is None:
                break
            if page.next_token in seen_tokens:
                raise RegistryError("the source returned a page token it had already returned")
            seen_tokens.add(page.next_token)
            token = page.next_token
            if time_limit is not None and time.monotonic() - t0 > time_limit:
                partial = True
                break
        else:
            raise RegistryError(f"more than {MAX_PAGES} pages in one run")
    except RegistryError as exc:
        error = str(exc)
        log.warning("registry sync of %s failed: %s", source, error)
    except Exception as exc:
        if not commit:
            raise
        log.exception("registry sync of %s failed unexpectedly", source)
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        db.session.rollback()
        state = _state(source)
        run = db.session.get(SyncRun, run_id) or run
    finished = utcnow()
    run.finished_at = finished
    run.error = error
    _progress(run, state, counts)
    if error:
        state.last_error, state.last_error_at = error, finished
    else:
        state.last_success_at = finished
    db.session.flush()
    if commit:
        db.session.commit()
    return SyncResult(
        run_id=run_id, source=source, ok=not error, partial=partial, records_in=counts["in"],
        created=counts["created"], updated=counts["updated"], unchanged=counts["unchanged"],
        failed=counts["failed"], quarantined=counts["quarantined"], watermark_before=before,
        watermark_after=state.watermark, error=error, seconds=time.monotonic() - t0,
    )


def _progress(run: SyncRun, state: SyncState, counts: dict[str, int]) -> None:
    run.records_in = counts["in"]
    run.records_created = counts["created"]
    run.records_updated = counts["updated"]
    run.records_failed = counts["failed"]
    run.watermark_after = state.watermark
    db.session.flush()


def sync_configured_source(app: object | None = None, *, interactive: bool = False,
                           time_limit: float | None = None, commit: bool = True) -> SyncResult | None:
    """Sync the configured HTTP source (None when PORTAL_REGISTRY_URL is empty)."""
    from portal.registry.adapters import adapter_from_app
    from portal.registry.options import registry_options

    adapter = adapter_from_app(app, interactive=interactive)  # type: ignore[arg-type]
    if adapter is None:
        return None
    options = registry_options(app)  # type: ignore[arg-type]
    return run_sync(
        adapter, overlap=timedelta(seconds=options.overlap_seconds), time_limit=time_limit, commit=commit
    )
