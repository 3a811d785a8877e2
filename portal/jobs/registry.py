"""The scheduler's jobs. A feature adds its periodic job with one line in `JOBS`.

`func(app)` runs inside an application context on the leader only; the runner commits after it
returns and rolls back when it raises. `interval_seconds` is a number or a function of the app
(for intervals that come from settings); 0 switches the job off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    func: Callable[[Flask], object]
    interval_seconds: int | Callable[[Flask], int]

    def interval(self, app: Flask) -> int:
        value = self.interval_seconds(app) if callable(self.interval_seconds) else self.interval_seconds
        return max(0, int(value))


def registry_sync(app: Flask) -> None:
    """Incremental sync of the configured registration-system source (PORTAL_REGISTRY_URL)."""
    from portal.registry.sync import SyncBusy, sync_configured_source

    try:
        result = sync_configured_source(app)
    except SyncBusy as exc:
        log.info("registry sync skipped: %s", exc)
        return
    if result is None:
        log.info("registry sync skipped: no source configured (PORTAL_REGISTRY_URL)")
    elif result.ok:
        log.info("registry %s", result.summary())
    else:
        log.warning("registry %s", result.summary())


def registry_sync_interval(app: Flask) -> int:
    from portal.registry.options import registry_options

    return registry_options(app).sync_minutes * 60


def audit_checkpoint(app: Flask) -> None:
    """Sign an audit checkpoint when PORTAL_AUDIT_CHECKPOINT_MINUTES have passed since the last."""
    from portal.audit.services import checkpoint_if_due

    checkpoint = checkpoint_if_due()
    if checkpoint is not None:
        log.info("audit checkpoint signed at seq %s", checkpoint.seq)


def warnings_evaluate(app: Flask) -> None:
    """Raise, escalate and close capture warnings for the whole city (set-based SQL)."""
    from portal.warnings.services import evaluate_all_job

    log.info("warnings evaluated: %s", evaluate_all_job(app))


def stats_summaries(app: Flask) -> None:
    """Refresh statistics summaries that lag behind their business (a safety net: captures and
    syncs refresh them at once)."""
    from portal.stats.summary import repair

    repaired = repair()
    if repaired:
        log.info("capture summaries repaired: %d", repaired)


def audit_verify(app: Flask) -> None:
    """Nightly verification of the whole audit chain (its result is itself audited)."""
    from portal.audit.services import run_verification

    result = run_verification()
    (log.info if result.ok else log.error)("audit verification: %s", result)


JOBS: list[Job] = [
    Job("registry_sync", registry_sync, registry_sync_interval),
    Job("audit_checkpoint", audit_checkpoint, 60),
    Job("warnings_evaluate", warnings_evaluate, 300),
    Job("stats_summaries", stats_summaries, 600),
    Job("audit_verify", audit_verify, 24 * 3600),
]
