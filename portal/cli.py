"""The `portal` command: Flask's CLI (db upgrade, routes, shell) plus the portal's own commands."""

from __future__ import annotations

import getpass
import sys

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext

from portal.db import db


def _create_app() -> Flask:
    from portal.app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def main() -> None:
    """Archive-imaging portal administration."""


def register_commands(app: Flask) -> None:
    app.cli.add_command(user_group)
    app.cli.add_command(demo_command)
    app.cli.add_command(dictionary_group)
    from portal.agents import cli as agents_cli
    from portal.archive import cli as archive_cli
    from portal.audit import cli as audit_cli
    from portal.jobs import cli as jobs_cli
    from portal.registry import cli as registry_cli
    from portal.stats import cli as stats_cli
    from portal.storage import cli as storage_cli

    for module in (agents_cli, archive_cli, audit_cli, jobs_cli, registry_cli, stats_cli, storage_cli):
        module.register(app)


@click.group("user")
def user_group() -> None:
    """Manage user accounts."""


@user_group.command("create")
@click.option("--username", required=True)
@click.option("--full-name", default="")
@click.option("--role", "roles", multiple=True, required=True,
              help="clerk, supervisor, viewer, sysadmin, secadmin or auditadmin (repeatable)")
@click.option("--department", "department_code", required=True, help="department code")
@click.option("--badge", default="")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@with_appcontext
def user_create(username: str, full_name: str, roles: tuple[str, ...], department_code: str,
                badge: str, password_stdin: bool) -> None:
    """Create an account; the password comes from a prompt or stdin, never the command line."""
    from sqlalchemy import select

    from portal.auth.roles import Role
    from portal.auth.services import AuthError, create_user
    from portal.org.models import Department

    try:
        role_values = [Role(r) for r in roles]
    except ValueError as exc:
        raise click.UsageError(f"unknown role: {exc}") from exc
    department = db.session.scalar(select(Department).where(Department.code == department_code))
    if department is None:
        raise click.UsageError(f"unknown department code {department_code!r}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise click.UsageError("the passwords do not match")
    try:
        user = create_user(
            username=username, full_name=full_name, department=department, roles=role_values,
            password=password, settings=current_app.config["SETTINGS"], badge_number=badge,
        )
    except AuthError as exc:
        db.session.rollback()
        raise click.ClickException(f"cannot create user: {exc}") from exc
    db.session.commit()
    click.echo(f"created user {user.username} (id {user.id}); password change required at first sign-in")


@click.group("dictionary")
def dictionary_group() -> None:
    """The data dictionary."""


@dictionary_group.command("seed")
@with_appcontext
def dictionary_seed() -> None:
    """Insert the default business types, materials and checklist (existing rows are kept)."""
    from portal.dictionary.seed import seed_dictionary

    created = seed_dictionary()
    db.session.commit()
    click.echo(f"dictionary seeded: {created} rows created")


@click.command("demo")
@click.option("--businesses", default=300, show_default=True)
@click.option("--password", envvar="PORTAL_DEMO_PASSWORD", default=None,
              help="password for every demo account (default: generated and printed)")
@with_appcontext
def demo_command(businesses: int, password: str | None) -> None:
    """Seed demo departments, windows, one user per role, the dictionary and sample businesses."""
    from portal.demo import seed_demo

    result = seed_demo(businesses=businesses, password=password)
    db.session.commit()
    click.echo(result.summary())


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--threads", default=8, show_default=True)
def serve_command(host: str, port: int, threads: int) -> None:
    """Serve the portal with waitress (production-grade, also on Windows)."""
    from waitress import serve

    from portal.app import create_app

    app = create_app()
    click.echo(f"portal listening on http://{host}:{port}/")
    serve(app, host=host, port=port, threads=threads, ident="portal")


main.add_command(serve_command)
main.add_command(shell_command)
main.add_command(routes_command)
