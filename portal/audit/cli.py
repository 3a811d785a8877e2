"""`portal audit …`: verify the chain, sign and export checkpoints, print PostgreSQL grants."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from gmcrypto.envelope import envelope_to_bytes
from gmcrypto.errors import InvalidKey
from gmcrypto.sm2 import PublicKey
from portal.db import db


def register(target: Any) -> None:
    """Add the commands to `app.cli` (pass the Flask app or any click group)."""
    group: click.Group = getattr(target, "cli", target)
    group.add_command(audit_group)


def _cli_actor():  # type: ignore[no-untyped-def]
    from portal.audit.services import Actor

    return Actor.cli()


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@click.option("--checkpoints", "checkpoint_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="also check against checkpoints exported earlier (JSON lines)")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(exists=True,
              dir_okay=False, path_type=Path),
              help="trust this SM2 public key (PEM) for checkpoint signatures instead of the "
                   "portal's current key (repeatable, e.g. after a signing-key change)")
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(100, 100_000))
@click.option("--no-record", is_flag=True,
              help="do not append an audit.verified entry (read-only check, e.g. on a restored copy)")
@with_appcontext
def verify_command(checkpoint_file: Path | None, public_keys: tuple[Path, ...], batch_size: int,
                   no_record: bool) -> None:
    """Recompute the whole chain and check every signed checkpoint; exit 1 at the first bad entry."""
    from portal.audit.services import read_checkpoint_file, run_verification, verify_chain

    options: dict[str, object] = {"batch_size": batch_size}
    if public_keys:
        try:
            options["trusted_keys"] = [PublicKey.from_pem(p.read_bytes()) for p in public_keys]
        except InvalidKey as exc:
            raise click.UsageError(str(exc)) from exc
    if checkpoint_file is not None:
        try:
            options["checkpoints"] = read_checkpoint_file(checkpoint_file)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        options["checkpoints_source"] = checkpoint_file.name
    if no_record:
        result = verify_chain(**options)  # type: ignore[arg-type]
        db.session.rollback()
    else:
        result = run_verification(_cli_actor(), **options)
        db.session.commit()
    click.echo(result.summary())
    if not result.ok:
        sys.exit(1)


@audit_group.command("checkpoint")
@with_appcontext
def checkpoint_command() -> None:
    """Sign the current chain head now (e.g. right before an export)."""
    from portal.audit.services import create_checkpoint, latest_checkpoint

    checkpoint = create_checkpoint()
    db.session.commit()
    if checkpoint is None:
        last = latest_checkpoint()
        click.echo(f"nothing to sign: head already checkpointed (seq {last.seq if last else 0})")
    else:
        click.echo(f"signed checkpoint at seq {checkpoint.seq}")


@audit_group.command("export-checkpoints")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSON-lines file of signed envelopes ('-' for standard output)")
@click.option("--since", default=0, show_default=True, type=click.IntRange(0),
              help="only checkpoints with seq greater than this (the last one exported before)")
@click.option("--append", is_flag=True, help="append to FILE instead of replacing it")
@with_appcontext
def export_checkpoints_command(out: str, since: int, append: bool) -> None:
    """Write signed checkpoints for keeping off this host; verify later with --checkpoints."""
    from portal.audit.services import iter_checkpoint_envelopes

    count = last = 0
    if out == "-":
        for envelope in iter_checkpoint_envelopes(since):
            sys.stdout.buffer.write(envelope_to_bytes(envelope) + b"\n")
            count, last = count + 1, envelope["payload"]["seq"]
        sys.stdout.flush()
    else:
        path = Path(out)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            if append and path.exists():
                fh.write(path.read_bytes())
            for envelope in iter_checkpoint_envelopes(since):
                fh.write(envelope_to_bytes(envelope) + b"\n")
                count, last = count + 1, envelope["payload"]["seq"]
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    db.session.rollback()
    message = f"exported {count} checkpoints" + (f" (last seq {last})" if count else "")
    click.echo(message, err=out == "-")


@audit_group.command("pg-grants")
@click.option("--role", required=True, help="the PostgreSQL role the portal connects as")
@click.option("--schema", default="public", show_default=True)
def pg_grants_command(role: str, schema: str) -> None:
    """Print the SQL that makes the audit tables append-only for the application role."""
    from portal.audit.pg_roles import pg_grants_sql

    try:
        click.echo(pg_grants_sql(role, schema), nl=False)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
