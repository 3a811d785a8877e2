"""Hybrid sealing (SM2-wrapped SM4-GCM) and SM4 misuse."""

from __future__ import annotations

import os

import pytest

from gmcrypto import hybrid, sm2, sm4
from gmcrypto.errors import DecryptionError

KEY = bytes(range(16))


def test_seal_round_trip(key: sm2.PrivateKey) -> None:
    for size in (0, 1, 4096, 300_000):
        data = os.urandom(size)
        blob = hybrid.seal(data, key.public_key(), aad=b"manifest-sm3")
        assert blob.startswith(b"GMS1")
        assert len(blob) == size + hybrid.OVERHEAD
        assert hybrid.unseal(blob, key, aad=b"manifest-sm3") == data
    assert hybrid.seal(b"x", key.public_key()) != hybrid.seal(b"x", key.public_key())


def test_unseal_detects_tampering(key: sm2.PrivateKey) -> None:
    blob = hybrid.seal(b"scanned page" * 100, key.public_key(), aad=b"ctx")
    positions = [0, 3, 4, 5, 6, 30, 100, 118, 119, 125, 131, 200, len(blob) - 17, len(blob) - 1]
    for pos in positions:
        tampered = bytearray(blob)
        tampered[pos] ^= 0x40
        with pytest.raises(DecryptionError):
            hybrid.unseal(bytes(tampered), key, aad=b"ctx")
    for bad in (b"", blob[:10], blob[:-1], blob[: hybrid.OVERHEAD - 1], blob + b"\x00"):
        with pytest.raises(DecryptionError):
            hybrid.unseal(bad, key, aad=b"ctx")
    with pytest.raises(DecryptionError):
        hybrid.unseal(blob, key, aad=b"other context")
    with pytest.raises(DecryptionError):
        hybrid.unseal(blob, key)
    with pytest.raises(DecryptionError):
        hybrid.unseal(blob, sm2.PrivateKey.generate(), aad=b"ctx")
    with pytest.raises(DecryptionError):
        hybrid.unseal("text", key)  # type: ignore[arg-type]


def test_wrapped_key_swap_is_detected(key: sm2.PrivateKey) -> None:
    # Re-wrapping the same content key changes the header, which GCM authenticates.
    blob = hybrid.seal(b"data", key.public_key())
    content_key = key.decrypt(blob[6:119])
    rewrapped = blob[:6] + key.public_key().encrypt(content_key) + blob[119:]
    with pytest.raises(DecryptionError):
        hybrid.unseal(rewrapped, key)


# --------------------------------------------------------------------------- SM4


def test_gcm_round_trip_and_tamper() -> None:
    blob = sm4.gcm_encrypt(KEY, b"hello", aad=b"a")
    assert len(blob) == 12 + 5 + 16
    assert sm4.gcm_decrypt(KEY, blob, aad=b"a") == b"hello"
    assert sm4.gcm_encrypt(KEY, b"hello")[:12] != sm4.gcm_encrypt(KEY, b"hello")[:12]
    for pos in range(len(blob)):
        tampered = bytearray(blob)
        tampered[pos] ^= 1
        with pytest.raises(DecryptionError):
            sm4.gcm_decrypt(KEY, bytes(tampered), aad=b"a")
    for bad in (b"", blob[:27], blob[:-1]):
        with pytest.raises(DecryptionError):
            sm4.gcm_decrypt(KEY, bad, aad=b"a")
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(KEY, blob, aad=b"b")
    with pytest.raises(DecryptionError):
        sm4.gcm_decrypt(bytes(16), blob, aad=b"a")


def test_sm4_argument_checks() -> None:
    for bad_key in (b"", bytes(15), bytes(32)):
        with pytest.raises(ValueError):
            sm4.gcm_encrypt(bad_key, b"x")
        with pytest.raises(ValueError):
            sm4.cbc_encrypt(bad_key, bytes(16), b"x")
    with pytest.raises(ValueError):
        sm4.gcm_encrypt(KEY, b"x", nonce=bytes(16))
    with pytest.raises(ValueError):
        sm4.cbc_encrypt(KEY, bytes(8), b"x")
    with pytest.raises(ValueError):
        sm4.ecb_encrypt_block(KEY, bytes(15))


def test_cbc_round_trip_and_bad_padding() -> None:
    iv = bytes(16)
    for size in (0, 1, 16, 33):
        data = os.urandom(size)
        assert sm4.cbc_decrypt(KEY, iv, sm4.cbc_encrypt(KEY, iv, data)) == data
    ct = sm4.cbc_encrypt(KEY, iv, b"exactly sixteen!")
    assert len(ct) == 32
    for bad in (b"", ct[:-1], ct + b"\x00"):
        with pytest.raises(DecryptionError):
            sm4.cbc_decrypt(KEY, iv, bad)
    # A block whose plaintext ends in 0x00 cannot carry valid padding.
    zero_block = sm4.ecb_encrypt_block(KEY, bytes(16))
    with pytest.raises(DecryptionError):
        sm4.cbc_decrypt(KEY, bytes(16), zero_block)
