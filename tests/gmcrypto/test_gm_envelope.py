"""The signed envelope: canonical form, round trip, and every way it must fail."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmcrypto import sm2
from gmcrypto.envelope import (
    canonical,
    envelope_from_bytes,
    envelope_to_bytes,
    sign_envelope,
    verify_envelope,
)
from gmcrypto.errors import InvalidSignature

PAYLOAD = {
    "business": "320100202400001",
    "material": "购车发票",
    "page": 3,
    "sm3": "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    "tags": ["正本", None, True, {"z": 1, "a": [2, 3]}],
}


def resolver(*keys: sm2.PrivateKey) -> Callable[[str], sm2.PublicKey | None]:
    table = {k.public_key().key_id(): k.public_key() for k in keys}
    return table.get


# --------------------------------------------------------------------------- canonical


def test_canonical_is_stable_and_utf8() -> None:
    a = {"b": 1, "a": {"y": "档案", "x": [1, "é"]}}
    b = {"a": {"x": [1, "é"], "y": "档案"}, "b": 1}
    assert canonical(a) == canonical(b)
    assert canonical(a) == '{"a":{"x":[1,"é"],"y":"档案"},"b":1}'.encode()
    assert canonical({"t": (1, 2)}) == canonical({"t": [1, 2]})
    assert canonical({"big": 2**80, "neg": -5, "f": False}) == (
        b'{"big":1208925819614629174706176,"f":false,"neg":-5}'
    )
    assert canonical({"q": 'a"\\\n'}) == b'{"q":"a\\"\\\\\\n"}'


@pytest.mark.parametrize(
    "bad",
    [
        {"x": 1.5},
        {"x": 1.0},
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [0.1]},
        {1: "int key"},
        {"x": {(1, 2): 3}},
        {"x": b"bytes"},
        {"x": {1, 2}},
        {"x": object()},
        {"x": "\ud800"},  # unpaired surrogate
    ],
)
def test_canonical_rejects_ambiguous_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        canonical(bad)


def test_canonical_requires_a_dict() -> None:
    with pytest.raises(ValueError):
        canonical([1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- round trip


def test_round_trip(key: sm2.PrivateKey) -> None:
    env = sign_envelope(PAYLOAD, key, "upload-manifest")
    assert env["v"] == 1 and env["alg"] == "SM2-with-SM3"
    assert env["signer"] == key.public_key().key_id()
    assert set(env) == {"v", "alg", "purpose", "signer", "payload", "sig"}
    assert verify_envelope(env, resolver(key), "upload-manifest") == PAYLOAD
    wire = envelope_to_bytes(env)
    assert wire == canonical(env)
    assert "购车发票".encode() in wire  # not \\u-escaped
    again = envelope_from_bytes(wire)
    assert again == json.loads(wire)
    assert verify_envelope(again, resolver(key), "upload-manifest") == PAYLOAD


def test_signature_is_over_canonical_form(key: sm2.PrivateKey) -> None:
    env = sign_envelope(PAYLOAD, key, "p")
    signed = canonical({k: env[k] for k in ("v", "alg", "purpose", "signer", "payload")})
    assert key.public_key().verify(signed, base64.b64decode(env["sig"]))
    # reordering keys of the payload does not matter
    env2 = dict(env, payload=dict(reversed(list(PAYLOAD.items()))))
    assert verify_envelope(env2, resolver(key), "p") == PAYLOAD


# --------------------------------------------------------------------------- failures


def _tampered(env: dict) -> list[tuple[str, dict]]:
    out = []
    for field, value in [
        ("v", 2),
        ("v", True),
        ("v", "1"),
        ("alg", "SM2"),
        ("purpose", "other"),
        ("signer", "00" * 16),
        ("signer", 7),
        ("payload", []),
        ("sig", "!!!"),
        ("sig", 5),
        ("sig", base64.b64encode(b"\x30\x00").decode()),
    ]:
        e = copy.deepcopy(env)
        e[field] = value
        out.append((f"{field}={value!r}", e))
    e = copy.deepcopy(env)
    e["payload"]["page"] = 4
    out.append(("payload.page", e))
    e = copy.deepcopy(env)
    e["payload"]["extra"] = "x"
    out.append(("payload.extra", e))
    e = copy.deepcopy(env)
    e["payload"]["tags"][3]["a"].append(4)
    out.append(("payload nested", e))
    e = copy.deepcopy(env)
    e["payload"]["page"] = 3.0
    out.append(("payload float", e))
    e = copy.deepcopy(env)
    e["extra"] = 1
    out.append(("extra field", e))
    e = copy.deepcopy(env)
    del e["sig"]
    out.append(("missing sig", e))
    sig = bytearray(base64.b64decode(env["sig"]))
    sig[-1] ^= 1
    e = copy.deepcopy(env)
    e["sig"] = base64.b64encode(bytes(sig)).decode()
    out.append(("sig bit", e))
    return out


def test_any_tampering_is_rejected(key: sm2.PrivateKey) -> None:
    env = sign_envelope(PAYLOAD, key, "upload-manifest")
    for label, bad in _tampered(env):
        with pytest.raises(InvalidSignature):
            verify_envelope(bad, resolver(key), "upload-manifest")
            pytest.fail(f"accepted tampered envelope: {label}")


def test_clear_messages(key: sm2.PrivateKey) -> None:
    env = sign_envelope(PAYLOAD, key, "agent-request")
    with pytest.raises(InvalidSignature, match="purpose is 'agent-request', expected 'update'"):
        verify_envelope(env, resolver(key), "update")
    with pytest.raises(InvalidSignature, match="unknown signer"):
        verify_envelope(env, resolver(), "agent-request")
    other = sm2.PrivateKey.generate()
    with pytest.raises(InvalidSignature, match="does not match signer"):
        verify_envelope(env, lambda _kid: other.public_key(), "agent-request")
    forged = sign_envelope(PAYLOAD, other, "agent-request")
    forged["signer"] = env["signer"]
    with pytest.raises(InvalidSignature, match="bad signature"):
        verify_envelope(forged, resolver(key, other), "agent-request")
    with pytest.raises(InvalidSignature, match="unsupported envelope version"):
        verify_envelope(dict(env, v=2), resolver(key), "agent-request")
    with pytest.raises(InvalidSignature, match="malformed envelope"):
        verify_envelope({"payload": {}}, resolver(key), "agent-request")
    with pytest.raises(InvalidSignature, match="JSON object"):
        verify_envelope([], resolver(key), "agent-request")  # type: ignore[arg-type]


def test_sign_rejects_bad_arguments(key: sm2.PrivateKey) -> None:
    with pytest.raises(ValueError):
        sign_envelope({"x": 0.5}, key, "p")
    with pytest.raises(ValueError):
        sign_envelope({"x": 1}, key, "")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'"s"',
        b"{",
        b'{"a":1,"a":2}',
        b'{"a":1.5}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"\xff\xfe",
        b'{"a":' * 100_000,
    ],
)
def test_envelope_from_bytes_rejects_malformed(data: bytes) -> None:
    with pytest.raises(InvalidSignature):
        envelope_from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_envelope_from_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidSignature):
        assert isinstance(envelope_from_bytes(data), dict)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), _json, max_size=4))
def test_canonical_round_trips_through_json(payload: dict) -> None:
    try:
        data = canonical(payload)
    except ValueError:
        return  # unpaired surrogates
    assert canonical(json.loads(data)) == data
