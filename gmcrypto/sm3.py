"""SM3 hashing (GB/T 32905), HMAC-SM3, PBKDF2-HMAC-SM3 and the SM3 KDF of GB/T 32918.4.

Everything runs on OpenSSL through ``cryptography`` (~250 MB/s). The pure-Python SM3 of the
``gmssl`` package runs at ~0.17 MB/s and must never see image bytes.
"""

from __future__ import annotations

import hmac as _hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _chmac
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

DIGEST_SIZE = 32


def sm3(data: bytes) -> bytes:
    """Return the 32-byte SM3 digest of ``data``."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sm3_hex(data: bytes) -> str:
    """Return the SM3 digest of ``data`` as 64 lowercase hex characters."""
    return sm3(data).hex()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """Return HMAC-SM3(key, data), 32 bytes."""
    h = _chmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def hmac_sm3_verify(key: bytes, data: bytes, mac: bytes) -> bool:
    """Check an HMAC-SM3 tag in constant time."""
    return _hmac.compare_digest(hmac_sm3(key, data), mac)


def pbkdf2_sm3(password: bytes, salt: bytes, iterations: int, length: int = 32) -> bytes:
    """PBKDF2 (RFC 8018) with HMAC-SM3 as the pseudo-random function."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    if length < 1:
        raise ValueError("length must be at least 1")
    return PBKDF2HMAC(hashes.SM3(), length, salt, iterations).derive(password)


def kdf_sm3(z: bytes, length: int) -> bytes:
    """The key derivation function of GB/T 32918.4 (SM2 encryption), 32-bit big-endian counter."""
    out = bytearray()
    counter = 1
    while len(out) < length:
        h = hashes.Hash(hashes.SM3())
        h.update(z)
        h.update(counter.to_bytes(4, "big"))
        out += h.finalize()
        counter += 1
    return bytes(out[:length])


class SM3Stream:
    """Incremental SM3, for hashing a file chunk by chunk.

    >>> s = SM3Stream(); s.update(b"a"); s.update(b"bc"); s.hexdigest()[:8]
    '66c7f0f4'
    """

    __slots__ = ("_h",)

    def __init__(self, data: bytes = b"") -> None:
        self._h = hashes.Hash(hashes.SM3())
        if data:
            self._h.update(data)

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def copy(self) -> SM3Stream:
        clone = SM3Stream.__new__(SM3Stream)
        clone._h = self._h.copy()
        return clone

    def digest(self) -> bytes:
        """Return the digest of everything so far; the stream can keep being updated."""
        return self._h.copy().finalize()

    def hexdigest(self) -> str:
        return self.digest().hex()
