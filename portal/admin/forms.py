"""Parsing the administration forms into plain values (CSRF is checked app-wide by Flask-WTF)."""

from __future__ import annotations

from collections.abc import Mapping


def text(form: Mapping[str, str], name: str, max_length: int = 200) -> str:
    return (form.get(name) or "").strip()[:max_length]


INT_MAX = 2**31 - 1  # the database's INTEGER: a bigger id or number is bad input, never a 500


def optional_int(form: Mapping[str, str], name: str) -> int | None:
    """An integer field; None when empty or not a number (the service then says what is wrong)."""
    raw = (form.get(name) or "").strip()
    if not raw or len(raw) > 12:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if -INT_MAX <= value <= INT_MAX else None


def checkbox(form: Mapping[str, str], name: str) -> bool:
    return form.get(name) in {"1", "on", "true", "yes"}
