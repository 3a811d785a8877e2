"""What follows when businesses change (a sync or import applied records, a capture was
confirmed): their capture warnings are evaluated at once (closed when withdrawn or captured,
moved with the business, raised or reopened when due) and their statistics summaries are
recomputed — in the caller's transaction, so a supervisor sees the change on the next refresh.

The scheduler evaluates the whole city every 5 minutes (`warnings_evaluate`: warnings that rise
only because time passed) and repairs any summary a path that does not come through here left
behind (`stats_summaries`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def businesses_changed(business_ids: Iterable[int], now: datetime | None = None) -> None:
    # Imported here: warnings and statistics build on the registry, not the other way round.
    from portal.stats import summary
    from portal.warnings.services import evaluate_businesses

    ids = sorted(set(business_ids))
    if ids:
        evaluate_businesses(ids, now)
        summary.refresh(ids)
