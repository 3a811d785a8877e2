"""`portal keys …` (master-key rotation) and `portal storage …` (image store checks)."""

from __future__ import annotations

import sys
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from portal.db import db


def register(target: Any) -> None:
    """Add the commands to `app.cli` (pass the Flask app or any click group)."""
    group: click.Group = getattr(target, "cli", target)
    group.add_command(keys_group)
    group.add_command(storage_group)


def _cli_actor():  # type: ignore[no-untyped-def]
    from portal.audit.services import Actor

    return Actor.cli()


@click.group("keys")
def keys_group() -> None:
    """The portal's keys."""


@keys_group.command("status")
@with_appcontext
def keys_status() -> None:
    """Show the master keys (active first) and how many image keys each one wraps."""
    from portal.keys import key_provider
    from portal.storage.services import blobs_by_master_key

    provider = key_provider()
    counts = blobs_by_master_key()
    for index, kid in enumerate(provider.master_ids()):
        state = "active " if index == 0 else "retired"
        click.echo(f"{kid}  {state}  {counts.pop(kid, 0)} image keys")
    for kid, n in counts.items():
        click.echo(f"{kid}  MISSING  {n} image keys wrapped by a key not in master.key")
    click.echo(f"portal signing key: {provider.public_key.key_id()}")


@keys_group.command("public-key")
@with_appcontext
def keys_public_key() -> None:
    """Print the portal's SM2 public key (PEM): keep it with exported audit checkpoints."""
    from portal.keys import key_provider

    click.echo(key_provider().public_key.to_pem().decode("ascii"), nl=False)


@keys_group.command("rotate")
@click.option("--finish", is_flag=True,
              help="re-wrap anything left, then drop retired keys from master.key")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@with_appcontext
def keys_rotate(finish: bool, batch_size: int) -> None:
    """Rotate the master key: new key first in master.key, re-wrap every image key (resumable).

    Image files are never rewritten. Run it again after an interruption; run it with --finish
    once every portal host uses the new master.key, to remove the retired keys.
    """
    from portal.storage.services import rotate_master_key

    result = rotate_master_key(finish=finish, batch_size=batch_size, actor=_cli_actor())
    if result.started:
        click.echo(f"new active master key {result.active_key} (older keys kept until --finish)")
    elif finish and not result.dropped and not result.remaining and not result.failed:
        click.echo(f"nothing to finish: master key {result.active_key} is the only key")
    click.echo(f"re-wrapped {result.rewrapped} image keys under {result.active_key}")
    for blob_id, problem in result.failed[:20]:
        click.echo(f"  blob {blob_id}: {problem}", err=True)
    if result.failed:
        click.echo(f"{len(result.failed)} image keys could not be re-wrapped", err=True)
        sys.exit(1)
    if any(result.remaining.values()):
        click.echo(f"still wrapped by retired keys: {result.remaining}; run again", err=True)
        sys.exit(1)
    if result.dropped:
        click.echo(f"dropped retired master keys: {', '.join(result.dropped)}")
    elif not finish:
        click.echo("every image key is under the active key; copy master.key to every portal "
                   "host, then run `portal keys rotate --finish`")


@click.group("storage")
def storage_group() -> None:
    """The encrypted image store."""


@storage_group.command("verify")
@click.option("--limit", default=0, type=click.IntRange(0), help="check at most N blobs (0: all)")
@with_appcontext
def storage_verify(limit: int) -> None:
    """Decrypt every stored image and re-check its SM3; exit 1 when any fails."""
    from portal.storage.models import ImageBlob
    from portal.storage.services import BlobIntegrityError, load_image

    checked = bad = 0
    last_id = 0
    while not limit or checked < limit:
        blobs = list(db.session.scalars(
            select(ImageBlob).where(ImageBlob.id > last_id).order_by(ImageBlob.id).limit(200)
        ))
        if not blobs:
            break
        for blob in blobs:
            if limit and checked >= limit:
                break
            checked += 1
            try:
                load_image(blob)
            except BlobIntegrityError as exc:
                bad += 1
                click.echo(f"blob {blob.id}: {exc.problem}", err=True)
            last_id = blob.id
        db.session.expunge_all()
    click.echo(f"checked {checked} blobs, {bad} failed")
    if bad:
        sys.exit(1)
