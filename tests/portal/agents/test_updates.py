"""Agent updates: signed by the release key, published by the portal, verified by the agent."""

from __future__ import annotations

import base64
import json

import pytest

from gmcrypto.sm2 import PrivateKey
from scanner_agent.updates import UpdateRejected, sign_update, verify_update


def test_publish_download_and_verify(app, agent_client, tmp_path) -> None:
    release = PrivateKey.generate()
    package = tmp_path / "agent-0.2.0.zip"
    package.write_bytes(b"PK\x03\x04 pretend installer")
    envelope = tmp_path / "agent-0.2.0.sig.json"
    envelope.write_text(json.dumps(sign_update(package.read_bytes(), package.name, "0.2.0", release)))
    result = app.test_cli_runner().invoke(args=["agents", "publish-update", str(package), str(envelope)])
    assert result.exit_code == 0, result.output
    again = app.test_cli_runner().invoke(args=["agents", "publish-update", str(package), str(envelope)])
    assert again.exit_code != 0 and "already published" in again.output

    update = agent_client.latest_update()
    data = base64.b64decode(update["package_b64"])
    assert verify_update(data, update["envelope"], release.public_key(), "0.1.0")["version"] == "0.2.0"
    with pytest.raises(UpdateRejected, match="not newer"):
        verify_update(data, update["envelope"], release.public_key(), "0.2.0")
    with pytest.raises(UpdateRejected, match="does not match"):
        verify_update(data + b"x", update["envelope"], release.public_key(), "0.1.0")
    with pytest.raises(UpdateRejected, match="signature"):
        verify_update(data, update["envelope"], PrivateKey.generate().public_key(), "0.1.0")


def test_publish_refuses_a_mismatched_envelope(app, tmp_path) -> None:
    package = tmp_path / "a.zip"
    package.write_bytes(b"one")
    envelope = tmp_path / "a.sig.json"
    envelope.write_text(json.dumps(sign_update(b"other", "a.zip", "0.3.0", PrivateKey.generate())))
    result = app.test_cli_runner().invoke(args=["agents", "publish-update", str(package), str(envelope)])
    assert result.exit_code != 0 and "does not describe" in result.output
