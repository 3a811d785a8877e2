"""The public names other packages code against."""

from __future__ import annotations

import inspect

import gmcrypto
from gmcrypto import envelope, errors, hybrid, sm2, sm4
from gmcrypto import sm3 as sm3_function
from gmcrypto.sm3 import SM3Stream, hmac_sm3, pbkdf2_sm3, sm3, sm3_hex


def test_exports() -> None:
    for name in gmcrypto.__all__:
        assert hasattr(gmcrypto, name), name
    assert sm3_function is sm3  # the package attribute `sm3` is the function, not the module
    assert issubclass(errors.InvalidSignature, errors.CryptoError)
    assert issubclass(errors.InvalidKey, errors.CryptoError)
    assert issubclass(errors.DecryptionError, errors.CryptoError)
    assert sm2.DEFAULT_UID == b"1234567812345678"
    assert sm2.backend_name() in ("gmssl-pyx", "gmssl")
    for fn in (sm3, sm3_hex, hmac_sm3, pbkdf2_sm3, SM3Stream):
        assert callable(fn)


def test_signatures() -> None:
    params = inspect.signature(sm4.gcm_encrypt).parameters
    assert list(params) == ["key", "plaintext", "aad", "nonce"]
    assert list(inspect.signature(sm4.gcm_decrypt).parameters) == ["key", "blob", "aad"]
    assert list(inspect.signature(sm4.cbc_encrypt).parameters) == ["key", "iv", "plaintext"]
    assert list(inspect.signature(pbkdf2_sm3).parameters) == [
        "password",
        "salt",
        "iterations",
        "length",
    ]
    assert list(inspect.signature(envelope.verify_envelope).parameters) == [
        "envelope",
        "resolve_key",
        "purpose",
    ]
    assert list(inspect.signature(hybrid.seal).parameters) == ["plaintext", "recipient", "aad"]
    assert list(inspect.signature(sm2.PublicKey.verify).parameters) == [
        "self",
        "message",
        "signature",
        "uid",
    ]
    # No nonce injection in the public signing API.
    for method in (sm2.PrivateKey.sign, sm2.PrivateKey.sign_raw, sm2.PublicKey.encrypt):
        assert not any(p.startswith("k") for p in inspect.signature(method).parameters)
