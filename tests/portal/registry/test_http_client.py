"""The JSON-over-HTTP client: paging, retries with backoff, errors, authentication, signing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gmcrypto.request import verify_request
from gmcrypto.sm2 import PrivateKey
from portal.db import utcnow
from portal.registry.adapters import SIGNATURE_HEADER, HttpRegistryAdapter, RegistryError, RegistryUnavailable
from portal.registry.models import BusinessStatus
from portal.registry.simulator import RegistrySimulator, SimulatorServer
from tests.portal.registry.conftest import TOKEN, make_adapter


def test_pages_cover_the_window_once_in_order(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    simulator.seed(1234)
    adapter = make_adapter(sim_server, page_size=100)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = adapter.changed_since(None, token)
        pages += 1
        seen.extend(r.serial for r in page.records)
        if page.next_token is None:
            break
        assert page.new_watermark is not None
        token = page.next_token
    assert pages == 13 and len(seen) == 1234 and len(set(seen)) == 1234
    assert page.new_watermark is not None and page.new_watermark <= utcnow()


def test_records_changed_during_paging_come_in_the_next_window(
    simulator: RegistrySimulator, sim_server: SimulatorServer
) -> None:
    simulator.seed(30)
    adapter = make_adapter(sim_server, page_size=10)
    first = adapter.changed_since(None, None)
    moved = first.records[0].serial  # already read; now changes after the window was fixed
    simulator.set_status(moved, BusinessStatus.WITHDRAWN)
    rest = []
    token = first.next_token
    while token:
        page = adapter.changed_since(None, token)
        rest.extend(r.serial for r in page.records)
        token = page.next_token
    assert moved not in rest and len(rest) == 20
    following = adapter.changed_since(page.new_watermark - timedelta(seconds=1), None)
    assert [r.serial for r in following.records] == [moved]
    assert following.records[0].status == BusinessStatus.WITHDRAWN


def test_retries_5xx_with_exponential_backoff_then_unavailable(
    simulator: RegistrySimulator, sim_server: SimulatorServer
) -> None:
    delays: list[float] = []
    adapter = make_adapter(sim_server, retries=3, sleep=delays.append)
    sim_server.go_down("503")
    before = simulator.requests
    with pytest.raises(RegistryUnavailable, match="4 attempt"):
        adapter.changed_since(None, None)
    assert simulator.requests - before == 4
    assert delays == [0.5, 1.0, 2.0]
    assert adapter.health() is False


def test_recovers_when_the_source_comes_back_between_retries(
    simulator: RegistrySimulator, sim_server: SimulatorServer
) -> None:
    simulator.seed(3)
    sim_server.go_down("503")
    adapter = make_adapter(sim_server, retries=2, sleep=lambda s: sim_server.come_back())
    page = adapter.changed_since(None, None)
    assert len(page.records) == 3


def test_refused_connection_is_unavailable(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    sim_server.go_down("refuse")
    adapter = make_adapter(sim_server, retries=1)
    with pytest.raises(RegistryUnavailable, match="ConnectionError"):
        adapter.fetch("E1")
    sim_server.come_back()
    assert adapter.health() is True


def test_wrong_token_is_an_error_without_retries(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    adapter = HttpRegistryAdapter(sim_server.url, "wrong", retries=3, sleep=lambda s: None)
    before = simulator.requests
    with pytest.raises(RegistryError, match="credentials") as info:
        adapter.changed_since(None, None)
    assert not isinstance(info.value, RegistryUnavailable)
    assert simulator.requests - before == 1


def test_fetch_one_and_unknown(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    serial = simulator.add(1)[0]
    adapter = make_adapter(sim_server)
    record = adapter.fetch(serial)
    assert record is not None and record.serial == serial and record.status == BusinessStatus.ACCEPTED
    assert adapter.fetch("NO-SUCH/../serial") is None


def test_requests_can_be_signed_with_sm2(simulator: RegistrySimulator, sim_server: SimulatorServer) -> None:
    key = PrivateKey.generate()
    seen: list[str | None] = []
    original = simulator.dispatch

    def checking(request):  # type: ignore[no-untyped-def]
        seen.append(request.headers.get(SIGNATURE_HEADER))
        signed = verify_request(
            request.headers.get(SIGNATURE_HEADER), "GET", request.full_path.rstrip("?"), b"",
            lambda key_id: key.public_key() if key_id == key.public_key().key_id() else None,
        )
        assert signed.signer == key.public_key().key_id()
        return original(request)

    simulator.dispatch = checking  # type: ignore[method-assign]
    simulator.seed(2)
    adapter = make_adapter(sim_server, signer=key)
    assert len(adapter.changed_since(utcnow() - timedelta(days=400), None).records) == 2
    assert seen and all(seen)


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpRegistryAdapter("ftp://example", TOKEN)
