"""Shared fixtures: every SM2 test runs once per back end."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from gmcrypto import sm2

BACKENDS = ["gmssl-pyx", "gmssl"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Switch gmcrypto's SM2 engine for the duration of one test."""
    name = request.param
    assert name != "gmssl-pyx" or importlib.util.find_spec("gmssl_pyx") is not None, (
        "gmssl-pyx is not installed (setup.cfg installs it on x86-64)")
    previous = sm2.backend_name()
    sm2.set_backend(name)
    try:
        yield name
    finally:
        sm2.set_backend(previous)


@pytest.fixture
def key(backend: str) -> sm2.PrivateKey:
    return sm2.PrivateKey.generate()
