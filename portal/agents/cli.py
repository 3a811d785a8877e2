"""`portal agents …` and `portal demo-agent`."""

from __future__ import annotations

import time
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import select

from portal.agents import services
from portal.audit.services import Actor
from portal.db import db
from portal.org.models import Department, Window


@click.group("agents")
def agents_group() -> None:
    """Scanner agents."""


def _window(spec: str) -> Window:
    """`DEPARTMENT_CODE/WINDOW_CODE`."""
    department_code, _, window_code = spec.partition("/")
    window = db.session.scalar(
        select(Window).join(Department).where(Department.code == department_code, Window.code == window_code)
    )
    if window is None:
        raise click.UsageError(f"no window {spec!r} (expected DEPARTMENT_CODE/WINDOW_CODE)")
    return window


@agents_group.command("enrolment-code")
@click.argument("window_spec")
@with_appcontext
def enrolment_code(window_spec: str) -> None:
    """Print a one-time enrolment code for WINDOW_SPEC (DEPARTMENT_CODE/WINDOW_CODE)."""
    code, row = services.create_enrolment_code(_window(window_spec), Actor.system())
    db.session.commit()
    click.echo(code)
    click.echo(f"valid until {row.expires_at.isoformat(timespec='minutes')}, single use", err=True)


@click.command("demo-agent")
@click.option("--url", required=True, help="the portal's URL")
@click.option("--window", "window_spec", default="310115A/W01", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="default: <instance>/demo-agent")
@with_appcontext
def demo_agent(url: str, window_spec: str, data_dir: Path | None) -> None:
    """Enrol (once) and run a scanner agent with the demo driver, for demos on one machine."""
    from flask import current_app

    from scanner_agent.cli import main as agent_main

    data_dir = data_dir or Path(current_app.instance_path) / "demo-agent"
    if not (data_dir / "enrolment.json").exists():
        code, _ = services.create_enrolment_code(_window(window_spec), Actor.system())
        db.session.commit()
        for _ in range(60):
            status = agent_main(["--data-dir", str(data_dir), "enroll", "--portal", url, "--code", code,
                                 "--driver", "demo"])
            if status == 0:
                break
            if status != 3:  # 3: portal not reachable yet
                raise click.ClickException("demo agent enrolment failed")
            time.sleep(1)
    db.session.remove()
    raise SystemExit(agent_main(["--data-dir", str(data_dir), "run", "--headless"]))


def register(app: Flask) -> None:
    app.cli.add_command(agents_group)
    app.cli.add_command(demo_agent)


@agents_group.command("publish-update")
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("envelope", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def publish_update(package: Path, envelope: Path) -> None:
    """Offer a signed agent update (PACKAGE and its ENVELOPE from `python -m scanner_agent.updates sign`).

    The portal only checks that the envelope describes this package; agents verify the signature
    against their pinned release key before using it."""
    import json

    from gmcrypto.sm3 import sm3_hex
    from portal.agents.models import AgentUpdate
    from portal.audit.services import record

    data = package.read_bytes()
    env = json.loads(envelope.read_text(encoding="utf-8"))
    payload = env.get("payload", {}) if isinstance(env, dict) else {}
    if payload.get("sm3") != sm3_hex(data) or payload.get("size") != len(data):
        raise click.ClickException("the envelope does not describe this package (size or SM3 differ)")
    version = str(payload.get("version", ""))
    if db.session.scalar(select(AgentUpdate).where(AgentUpdate.version == version)) is not None:
        raise click.ClickException(f"version {version} is already published")
    db.session.add(AgentUpdate(version=version, filename=package.name, package=data,
                               envelope=json.dumps(env, ensure_ascii=False)))
    record("agents.update_published", actor=Actor.system(), object_type="agent_update", object_id=version,
           detail={"filename": package.name, "sm3": payload.get("sm3")})
    db.session.commit()
    click.echo(f"published agent update {version} ({len(data)} bytes)")
