"""What follows when businesses change (a sync or import applied records, a capture was
confirmed): the warnings of those now withdrawn or captured close, warnings follow a moved
business, and their statistics summaries are recomputed — in the caller's transaction, so a
supervisor sees the change on the next refresh.

Warnings that open or rise because time passed come from the scheduler's `warnings_evaluate`
(every 5 minutes); its `stats_summaries` job also repairs any summary a path that does not come
through here left behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def businesses_changed(business_ids: Iterable[int], now: datetime | None = None) -> None:
    # Imported here: warnings and statistics build on the registry, not the other way round.
    from portal.stats import summary
    from portal.warnings.services import settle_businesses

    ids = sorted(set(business_ids))
    if ids:
        settle_businesses(ids, now)
        summary.refresh(ids)
