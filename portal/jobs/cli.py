"""`portal jobs …`: the scheduler process."""

from __future__ import annotations

import logging
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def register(app: Flask) -> None:
    app.cli.add_command(jobs_group)


@click.group("jobs")
def jobs_group() -> None:
    """Periodic jobs (registry sync, audit checkpoints, …)."""


@jobs_group.command("list")
@with_appcontext
def list_command() -> None:
    """Show the registered jobs and their intervals."""
    from portal.jobs.registry import JOBS

    for job in JOBS:
        seconds = job.interval(current_app)
        click.echo(f"{job.name:<24} {'every ' + str(seconds) + ' s' if seconds else 'off'}")


@jobs_group.command("run")
@click.option("--lease-seconds", default=60, show_default=True, envvar="PORTAL_JOBS_LEASE_SECONDS",
              type=click.IntRange(10, 3600), help="leader lease time; another host takes over after it")
@click.option("--once", is_flag=True, help="run every job once (if this process gets the lease) and exit")
@click.option("--holder", default=None, help="lease holder id (default: host:pid:random)")
@with_appcontext
def run_command(lease_seconds: int, once: bool, holder: str | None) -> None:
    """Start the scheduler in this process. Run it on any number of hosts: one leads."""
    from portal.db import db
    from portal.jobs.registry import JOBS
    from portal.jobs.scheduler import JobRunner, LeaderElection

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    election = LeaderElection(db.engine, holder, ttl=timedelta(seconds=lease_seconds))
    runner = JobRunner(app, JOBS, election)
    if once:
        ran = runner.run_once()
        election.resign()
        for name, done in ran.items():
            click.echo(f"{name}: {'ran' if done else 'skipped (another host leads)'}")
        return
    click.echo(f"scheduler {election.holder} starting ({len(JOBS)} jobs, lease {lease_seconds} s)")
    runner.run_forever()
