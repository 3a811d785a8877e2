"""`portal stats …`: the statistics' summary rows (see `portal.stats.summary`)."""

from __future__ import annotations

import time
from typing import Any

import click
from flask.cli import with_appcontext

from portal.db import db


def register(target: Any) -> None:
    """Add the commands to `app.cli` (pass the Flask app or any click group)."""
    group: click.Group = getattr(target, "cli", target)
    group.add_command(stats_group)


@click.group("stats")
def stats_group() -> None:
    """Workload statistics."""


@stats_group.command("rebuild")
@with_appcontext
def stats_rebuild() -> None:
    """Recompute the summary row of every business (after an upgrade or a change of the server's
    time zone). Safe while the portal runs; commits every batch."""
    from portal.audit.services import Actor, record
    from portal.stats import summary

    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        click.echo(f"  {done:,} / {total:,} business ids", err=True)

    written = summary.rebuild(progress, commit=True)
    seconds = time.monotonic() - started
    record("stats.summaries_rebuilt", actor=Actor.cli(), object_type="capture_summary", object_id="*",
           detail={"written": written, "seconds": round(seconds, 1)})
    db.session.commit()
    click.echo(f"capture summaries rebuilt: {written:,} rows written in {seconds:.1f} s")


@stats_group.command("repair")
@with_appcontext
def stats_repair() -> None:
    """Refresh the summaries that are missing or older than their business (what the scheduler's
    `stats_summaries` job does)."""
    from portal.stats import summary

    total = 0
    while True:
        repaired = summary.repair()
        db.session.commit()
        total += repaired
        if repaired < summary.REPAIR_LIMIT:
            break
    click.echo(f"capture summaries repaired: {total:,} businesses")
