"""`portal verify-export FILE SIG [--key PEM]`: check an exported archive PDF against its signature."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask


def register(app: Flask) -> None:
    app.cli.add_command(verify_export_command)


def _portal_public_key():  # type: ignore[no-untyped-def]
    """The portal's own SM2 public key (needs the portal's configuration and key files)."""
    from flask import current_app
    from flask.cli import ScriptInfo

    from portal.keys import key_provider

    if current_app:
        return key_provider().public_key
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()  # pragma: no cover
    with app.app_context():  # pragma: no cover
        return key_provider().public_key


@click.command("verify-export")
@click.argument("pdf_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("sig_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM file of the portal's SM2 public key (default: this portal's own key)")
def verify_export_command(pdf_file: Path, sig_file: Path, key_file: Path | None) -> None:
    """Verify an exported archive PDF and its .sig.json; exit 0 and "OK", or non-zero with the reason."""
    from gmcrypto.sm2 import PublicKey
    from portal.archive.export import ExportInvalid, verify_export

    if key_file is not None:
        try:
            public = PublicKey.from_pem(key_file.read_bytes())
        except Exception as exc:
            click.echo(f"FAILED: cannot read the public key {key_file}: {exc}", err=True)
            raise SystemExit(2) from None
    else:
        public = _portal_public_key()
    try:
        payload = verify_export(pdf_file.read_bytes(), sig_file.read_bytes(), public)
    except ExportInvalid as exc:
        click.echo(f"FAILED: {exc}", err=True)
        raise SystemExit(1) from None
    failures = payload.get("integrity_failures") or []
    click.echo(
        f"OK: {pdf_file.name} is the archive of business {payload.get('serial')} exported at "
        f"{payload.get('exported_at')} by {payload.get('exported_by')}, {payload.get('pages')} image pages, "
        f"signed by portal key {payload.get('key_id')}"
        + (f"; {len(failures)} page(s) failed their integrity check at export" if failures else "")
    )
