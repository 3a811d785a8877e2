"""docs/agent-api.yaml is a valid OpenAPI document and lists every agent route."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

SPEC = Path(__file__).resolve().parents[3] / "docs" / "agent-api.yaml"


def test_spec_is_valid_and_complete(app) -> None:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    validate(spec)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    prefix = spec["servers"][0]["url"]
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("agent_api."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).removeprefix(prefix)
            path = path.replace("{public_id}", "{id}")
            routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == documented
