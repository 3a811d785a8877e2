"""Registry fixtures: a simulated registration system served on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.db import db
from portal.registry.adapters import HttpRegistryAdapter
from portal.registry.models import Business, BusinessStatus
from portal.registry.options import RegistryOptions
from portal.registry.simulator import RegistrySimulator, SimulatorServer

DEPARTMENTS = ("OA", "OB", "OC")
TOKEN = "sim-token-1"


@pytest.fixture
def simulator() -> RegistrySimulator:
    return RegistrySimulator(DEPARTMENTS, token=TOKEN, clerks=[("J031501", "陈晓明"), ("J031502", "李静")])


@pytest.fixture
def sim_server(simulator: RegistrySimulator) -> Iterator[SimulatorServer]:
    server = SimulatorServer(simulator).start()
    yield server
    server.stop()


@pytest.fixture
def registry_app(app: Flask, org: object, sim_server: SimulatorServer) -> Flask:
    """The app pointed at the simulator, with fast retries."""
    app.config["SETTINGS"] = app.config["SETTINGS"].replace(registry_url=sim_server.url, registry_token=TOKEN)
    app.config["REGISTRY_OPTIONS"] = RegistryOptions(timeout_seconds=3, retries=1, page_size=500, overlap_seconds=120)
    return app


def make_adapter(server: SimulatorServer, **kwargs: object) -> HttpRegistryAdapter:
    options: dict[str, object] = {"timeout": 3.0, "retries": 2, "page_size": 500, "sleep": lambda s: None}
    options.update(kwargs)
    return HttpRegistryAdapter(server.url, TOKEN, **options)  # type: ignore[arg-type]


def business_count(status: BusinessStatus | None = None) -> int:
    stmt = select(func.count()).select_from(Business)
    if status is not None:
        stmt = stmt.where(Business.status == status)
    return db.session.scalar(stmt) or 0


OVERLAP = timedelta(minutes=2)
