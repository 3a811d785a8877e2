"""`portal registry …`: sync once, import a file, fetch one serial, run the simulator."""

from __future__ import annotations

import getpass
import ipaddress
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import db


def _cli_actor():  # type: ignore[no-untyped-def]
    from portal.audit.services import Actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor("system", None, f"cli:{who}"[:64])


def register(app: Flask) -> None:
    app.cli.add_command(registry_group)


@click.group("registry")
def registry_group() -> None:
    """The registration system (非机动车登记系统): sync, import, simulator."""


@registry_group.command("sync")
@click.option("--url", default=None, help="source base URL (default: PORTAL_REGISTRY_URL)")
@click.option("--full", is_flag=True, help="ignore the watermark and re-read everything (idempotent)")
@with_appcontext
def sync_command(url: str | None, full: bool) -> None:
    """Run one incremental sync; exit status 1 when it fails."""
    from portal.registry.adapters import HttpRegistryAdapter, adapter_from_app
    from portal.registry.options import registry_options
    from portal.registry.sync import SyncBusy, run_sync

    options = registry_options()
    if url:
        adapter = HttpRegistryAdapter(
            url, current_app.config["SETTINGS"].registry_token, timeout=options.timeout_seconds,
            retries=options.retries, page_size=options.page_size,
        )
    else:
        adapter = adapter_from_app()
    if adapter is None:
        raise click.ClickException("no registry source configured: set PORTAL_REGISTRY_URL or pass --url")
    try:
        result = run_sync(adapter, overlap=timedelta(seconds=options.overlap_seconds), full=full)
    except SyncBusy as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())
    if not result.ok:
        sys.exit(1)


@registry_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check every row and report; write nothing")
@click.option("--encoding", default=None, help="CSV encoding (default: UTF-8, else GBK/GB18030)")
@click.option("--sheet", default=None, help="worksheet of an .xlsx (default: the first)")
@click.option("--batch-size", default=2000, show_default=True, type=click.IntRange(1, 50_000))
@with_appcontext
def import_command(file: Path, dry_run: bool, encoding: str | None, sheet: str | None, batch_size: int) -> None:
    """Import businesses from a CSV or .xlsx export; exit status 1 when any row was bad."""
    from portal.registry.fileimport import ImportFileError, import_file

    try:
        report = import_file(file, dry_run=dry_run, actor=_cli_actor(), encoding=encoding, sheet=sheet,
                             batch_size=batch_size)
    except ImportFileError as exc:
        db.session.rollback()
        raise click.ClickException(f"{file}: {exc}") from exc
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        sys.exit(1)


@registry_group.command("fetch")
@click.argument("serial")
@click.option("--refresh", is_flag=True, help="fetch even when the business is already here")
@with_appcontext
def fetch_command(serial: str, refresh: bool) -> None:
    """Fetch one business by serial from the source (what the capture screen does)."""
    from portal.registry.services import BusinessQuarantined, RegistrySourceError, fetch_business

    try:
        business = fetch_business(serial, refresh=refresh)
    except BusinessQuarantined as exc:
        db.session.commit()
        raise click.ClickException(f"{serial}: quarantined ({exc.__cause__})") from exc
    except RegistrySourceError as exc:
        raise click.ClickException(f"{serial}: source error ({exc.__cause__})") from exc
    db.session.commit()
    if business is None:
        raise click.ClickException(f"{serial}: unknown here and at the source")
    click.echo(f"{business.serial}: business {business.id}, {business.business_type.code}, "
               f"{business.department.code}, {business.status.value}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@registry_group.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="a loopback address")
@click.option("--port", default=8765, show_default=True)
@click.option("--initial", default=2000, show_default=True, help="historical businesses at start")
@click.option("--per-minute", default=20.0, show_default=True, help="new businesses per minute")
@click.option("--tick", default=5.0, show_default=True, help="seconds between changes")
@click.option("--token", envvar="PORTAL_REGISTRY_TOKEN", default="", help="require this bearer token")
@click.option("--departments", default="", help="comma-separated department codes (default: offices in the DB)")
@click.option("--seed", default=7, show_default=True)
@with_appcontext
def simulate_command(host: str, port: int, initial: int, per_minute: float, tick: float, token: str,
                     departments: str, seed: int) -> None:
    """Serve a simulated registration system with a steadily growing stream of businesses."""
    from portal.registry.simulator import RegistrySimulator, SimulatorServer, demo_departments

    if not _loopback(host):
        raise click.UsageError("the simulator serves loopback addresses only (127.0.0.1, ::1, localhost)")
    codes = [c.strip() for c in departments.split(",") if c.strip()] or demo_departments()
    db.session.rollback()
    if not codes:
        raise click.UsageError("no departments: run `portal demo` first or pass --departments")
    simulator = RegistrySimulator(codes, token=token, seed=seed)
    simulator.seed(initial)
    server = SimulatorServer(simulator, host, port).start()
    click.echo(f"registry simulator on {server.url}/api/v1 with {len(simulator)} businesses "
               f"(departments {', '.join(codes)}); Ctrl+C stops")
    click.echo(f"  PORTAL_REGISTRY_URL={server.url}" + (" PORTAL_REGISTRY_TOKEN=…" if token else ""))
    rng = random.Random(seed)
    stop = threading.Event()
    carry = 0.0
    try:
        while not stop.wait(tick):
            carry += per_minute * tick / 60
            new = int(carry)
            carry -= new
            finish = rng.randint(0, max(1, new + 1))
            withdraw = 1 if rng.random() < 0.05 else 0
            simulator.tick(new, finish, withdraw)
            if new or finish or withdraw:
                click.echo(f"{time.strftime('%H:%M:%S')} +{new} new, {finish} finished, {withdraw} withdrawn "
                           f"({len(simulator)} businesses)")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
