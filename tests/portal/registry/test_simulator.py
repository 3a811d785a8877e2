"""The simulator: the documented contract, a growing stream, controls."""

from __future__ import annotations

import requests

from portal.registry.models import BusinessStatus
from portal.registry.simulator import RegistrySimulator, SimulatorServer
from tests.portal.registry.conftest import TOKEN


def _get(server: SimulatorServer, path: str, token: str = TOKEN, **params: object) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, headers={"Authorization": f"Bearer {token}"},
                        timeout=5)


def test_contract_endpoints(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    serial = simulator.add(3)[0]
    health = requests.get(f"{sim_server.url}/api/v1/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    listing = _get(sim_server, "/api/v1/businesses", limit=2)
    body = listing.json()
    assert listing.status_code == 200 and len(body["items"]) == 2 and body["next_page_token"]
    assert body["window_end"].endswith("+08:00")
    rest = _get(sim_server, "/api/v1/businesses", limit=2, page_token=body["next_page_token"]).json()
    assert len(rest["items"]) == 1 and rest["next_page_token"] is None
    one = _get(sim_server, f"/api/v1/businesses/{serial}")
    assert one.json()["serial"] == serial and one.json()["status"] == "accepted"
    assert _get(sim_server, "/api/v1/businesses/NOPE").status_code == 404
    assert _get(sim_server, "/api/v1/businesses", token="bad").status_code == 401
    assert _get(sim_server, "/api/v1/businesses", limit=0).status_code == 400
    assert _get(sim_server, "/api/v1/businesses", page_token="garbage").status_code == 400
    assert _get(sim_server, "/api/v1/businesses", updated_since="yesterday").status_code == 400


def test_stream_grows_and_statuses_move(simulator: RegistrySimulator) -> None:
    simulator.seed(100)
    simulator.add(10)
    assert len(simulator) == 110
    accepted_before = {r["serial"] for r in simulator.records() if r["status"] == "accepted"}
    finished, withdrawn = simulator.advance(finish=5, withdraw=2)
    assert len(finished) == 5 and len(withdrawn) == 2
    for serial in finished:
        data = simulator.record(serial)
        assert data["status"] == BusinessStatus.FINISHED.value and data["finished_at"]
    changed = sorted(simulator.records(), key=lambda r: r["updated_at"])[-7:]
    assert {r["serial"] for r in changed} == set(finished) | set(withdrawn)
    assert accepted_before >= set(finished)  # only accepted businesses finish


def test_outage_modes(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    sim_server.go_down("503")
    assert requests.get(f"{sim_server.url}/api/v1/health", timeout=5).status_code == 503
    sim_server.come_back()
    port = sim_server.port
    sim_server.go_down("refuse")
    try:
        requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
        refused = False
    except requests.ConnectionError:
        refused = True
    assert refused
    sim_server.come_back()
    assert sim_server.port == port
    assert requests.get(f"{sim_server.url}/api/v1/health", timeout=5).status_code == 200


def test_cli_simulate_refuses_non_loopback_hosts(app, org) -> None:  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(args=["registry", "simulate", "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code != 0 and "loopback" in result.output
