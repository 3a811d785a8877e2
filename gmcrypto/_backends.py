"""The two SM2 engines behind :mod:`gmcrypto.sm2`.

Both take inputs that :mod:`gmcrypto.sm2` has already validated (public keys on the curve,
r and s in [1, n-1], ciphertext C1 on the curve) and digests computed with ``cryptography``.

* ``gmssl-pyx``: the GmSSL C library. Sign ~0.5 ms, verify ~1 ms.
* ``gmssl``: the pure-Python package, used only for its point arithmetic and its sign/verify
  equations. It is wrapped because of its known defects: it draws nonces from ``random``
  (we pass k from :mod:`secrets`), strips leading ``0``/``4`` hex digits from public keys
  (we set the key attribute after construction), raises on bad input (caught: "invalid"),
  and never checks C3 when decrypting (encryption and decryption are done here, with only
  the scalar multiplication taken from gmssl).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from . import _sm2der
from ._curve import G_BYTES, N
from .errors import DecryptionError
from .sm3 import kdf_sm3, sm3

ENV_VAR = "GMCRYPTO_BACKEND"
NATIVE_MAX_PLAINTEXT = 255  # gmssl_pyx.sm2_encrypt / sm2_decrypt limit


class Backend(Protocol):
    name: str

    def generate(self) -> tuple[int, bytes]: ...
    def public_from_private(self, d: int) -> bytes: ...
    def sign_digest(self, d: int, e: bytes) -> tuple[int, int]: ...
    def verify_digest(self, pub: bytes, e: bytes, r: int, s: int) -> bool: ...
    def encrypt(self, pub: bytes, plaintext: bytes) -> bytes: ...
    def decrypt(self, d: int, ciphertext: bytes) -> bytes: ...


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def encrypt_with(
    mul: Callable[[int, bytes], bytes], pub: bytes, plaintext: bytes, k: int | None = None
) -> bytes:
    """SM2 encryption (GB/T 32918.4) given a scalar multiplication; returns raw C1C3C2."""
    while True:
        kk = k if k is not None else secrets.randbelow(N - 1) + 1
        c1 = mul(kk, G_BYTES)
        shared = mul(kk, pub)
        t = kdf_sm3(shared, len(plaintext))
        if any(t):
            c3 = sm3(shared[:32] + plaintext + shared[32:])
            return b"\x04" + c1 + c3 + _xor(plaintext, t)
        if k is not None:
            raise ValueError("injected k gives an all-zero key stream")


def decrypt_with(mul: Callable[[int, bytes], bytes], d: int, ciphertext: bytes) -> bytes:
    """SM2 decryption of raw C1C3C2, always checking C3."""
    c1, c3, c2 = ciphertext[1:65], ciphertext[65:97], ciphertext[97:]
    try:
        shared = mul(d, c1)
    except Exception:
        raise DecryptionError("SM2 decryption failed") from None
    t = kdf_sm3(shared, len(c2))
    if not any(t):
        raise DecryptionError("SM2 decryption failed")
    message = _xor(c2, t)
    if not hmac.compare_digest(sm3(shared[:32] + message + shared[32:]), c3):
        raise DecryptionError("SM2 ciphertext integrity check (C3) failed")
    return message


class GmsslBackend:
    """Pure Python, on the ``gmssl`` package's curve arithmetic."""

    name = "gmssl"

    def __init__(self) -> None:
        from gmssl.sm2 import CryptSM2, default_ecc_table

        self._cls = CryptSM2
        self._table = dict(default_ecc_table)

    def _engine(self, d: int | None = None, pub: bytes | None = None) -> Any:
        engine = self._cls(
            private_key=f"{d:064x}" if d is not None else "", public_key="", ecc_table=self._table
        )
        # Set after construction: the constructor would lstrip("04") the hex string.
        engine.public_key = pub.hex() if pub is not None else ""
        return engine

    def mul(self, k: int, point: bytes) -> bytes:
        """k * point, both as 64-byte x||y; k must be in [1, n-1]."""
        if not 0 < k < N:
            raise ValueError("scalar out of range")
        out = self._engine()._kg(k, point.hex())
        if not isinstance(out, str) or len(out) != 128:
            raise ArithmeticError("point at infinity")
        return bytes.fromhex(out)

    def generate(self) -> tuple[int, bytes]:
        d = secrets.randbelow(N - 2) + 1  # [1, n-2]: sign needs (1 + d) invertible
        return d, self.public_from_private(d)

    def public_from_private(self, d: int) -> bytes:
        return self.mul(d, G_BYTES)

    def sign_digest(self, d: int, e: bytes, k: int | None = None) -> tuple[int, int]:
        engine = self._engine(d=d)
        while True:
            kk = k if k is not None else secrets.randbelow(N - 1) + 1
            sig = engine.sign(e, f"{kk:064x}")
            if sig:
                return int(sig[:64], 16), int(sig[64:], 16)
            if k is not None:
                raise ValueError("injected k gives a degenerate signature")

    def verify_digest(self, pub: bytes, e: bytes, r: int, s: int) -> bool:
        try:
            return self._engine(pub=pub).verify(f"{r:064x}{s:064x}", e) is True
        except Exception:
            return False

    def encrypt(self, pub: bytes, plaintext: bytes, k: int | None = None) -> bytes:
        return encrypt_with(self.mul, pub, plaintext, k)

    def decrypt(self, d: int, ciphertext: bytes) -> bytes:
        return decrypt_with(self.mul, d, ciphertext)


class GmsslPyxBackend:
    """Native GmSSL through ``gmssl_pyx``.

    It has no call to derive a public key from a private one, and its encryption is limited
    to 255-byte messages; those cases use the pure engine's arithmetic.
    """

    name = "gmssl-pyx"

    def __init__(self, pure: GmsslBackend) -> None:
        import gmssl_pyx

        self._g = gmssl_pyx
        self._pure = pure

    def generate(self) -> tuple[int, bytes]:
        for _ in range(16):
            pub, priv = self._g.sm2_key_generate()
            d = int.from_bytes(priv, "big")
            if 0 < d < N - 1 and len(pub) == 64:
                return d, bytes(pub)
        raise RuntimeError("gmssl_pyx.sm2_key_generate keeps returning unusable keys")

    def public_from_private(self, d: int) -> bytes:
        return self._pure.public_from_private(d)

    def sign_digest(self, d: int, e: bytes) -> tuple[int, int]:
        der = self._g.sm2_sign_sm3_digest(d.to_bytes(32, "big"), e)
        return _sm2der.signature_from_der(der)

    def verify_digest(self, pub: bytes, e: bytes, r: int, s: int) -> bool:
        try:
            ok = self._g.sm2_verify_sm3_digest(pub, e, _sm2der.signature_to_der(r, s))
        except Exception:
            return False
        return ok is True

    def encrypt(self, pub: bytes, plaintext: bytes) -> bytes:
        if not 0 < len(plaintext) <= NATIVE_MAX_PLAINTEXT:
            return encrypt_with(self._pure.mul, pub, plaintext)
        return _sm2der.ciphertext_der_to_raw(self._g.sm2_encrypt(pub, plaintext))

    def decrypt(self, d: int, ciphertext: bytes) -> bytes:
        if len(ciphertext) - _sm2der.RAW_HEADER > NATIVE_MAX_PLAINTEXT:
            return decrypt_with(self._pure.mul, d, ciphertext)
        try:
            der = _sm2der.ciphertext_raw_to_der(ciphertext)
            # On failure GmSSL also prints a trace to stderr; only tampered input gets here.
            message = self._g.sm2_decrypt(d.to_bytes(32, "big"), der)
        except Exception:
            raise DecryptionError("SM2 decryption failed") from None
        if len(message) != len(ciphertext) - _sm2der.RAW_HEADER:
            raise DecryptionError("SM2 decryption failed")
        return bytes(message)


BACKEND_NAMES = ("gmssl-pyx", "gmssl")
_cache: dict[str, Backend] = {}


def load(name: str | None = None) -> Backend:
    """Return the named back end; ``None`` means $GMCRYPTO_BACKEND, else native if importable."""
    requested = name or os.environ.get(ENV_VAR) or None
    if requested is not None and requested not in BACKEND_NAMES:
        raise ValueError(f"unknown SM2 back end {requested!r}; choose one of {BACKEND_NAMES}")
    candidates = [requested] if requested else list(BACKEND_NAMES)
    error: Exception | None = None
    for candidate in candidates:
        if candidate in _cache:
            return _cache[candidate]
        try:
            pure = _cache.get("gmssl") or GmsslBackend()
            _cache["gmssl"] = pure
            backend: Backend = GmsslPyxBackend(pure) if candidate == "gmssl-pyx" else pure
        except ImportError as exc:
            error = exc
            continue
        _cache[candidate] = backend
        return backend
    raise RuntimeError(f"no SM2 back end available ({error})")
