"""Helpers for the audit tests: fill the chain, tamper with it through plain SQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask


@pytest.fixture
def checkpoint_every(app: Flask) -> Callable[[int], None]:
    """Change `audit_checkpoint_every` for this test's app."""

    def set_every(n: int) -> None:
        app.config["SETTINGS"] = app.config["SETTINGS"].replace(audit_checkpoint_every=n)

    return set_every


@pytest.fixture
def fill(app: Flask) -> Callable[..., list[int]]:
    """Append `n` entries through the service and commit; return their seqs."""
    from portal.audit.services import Actor, record
    from portal.db import db

    def fill_chain(n: int, action: str = "test.filled", **kwargs: object) -> list[int]:
        entries = [
            record(
                action, actor=Actor("user", 7, "alice", 3, "10.0.0.1"), object_type="business",
                object_id=f"T{i:04d}", detail={"i": i, "名称": "测试"}, **kwargs,  # type: ignore[arg-type]
            )
            for i in range(n)
        ]
        db.session.commit()  # appends them: their seqs are known from here on
        return [entry.seq for entry in entries]

    return fill_chain
