"""SM2 signatures and encryption (GB/T 32918) with OpenSSL-compatible key and data formats.

Two interchangeable engines do the curve arithmetic (see :mod:`gmcrypto._backends`): the native
``gmssl-pyx`` when importable, else the pure-Python ``gmssl``; ``$GMCRYPTO_BACKEND`` forces
one. Everything around them is common: input validation, the Z value and SM3 digest (computed
with ``cryptography``), and DER/PEM encodings.

Signatures are DER ``SEQUENCE {r, s}`` like OpenSSL's; :meth:`PrivateKey.sign_raw` gives the
64-byte ``r||s`` form. Ciphertexts are raw ``C1||C3||C2`` (``04||x||y||C3||C2``);
:func:`ciphertext_raw_to_der` / :func:`ciphertext_der_to_raw` convert to and from the ASN.1
form of ``openssl pkeyutl``.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from cryptography.hazmat.primitives import hashes

from . import _asn1, _backends, _keys, _sm2der
from ._curve import CURVE_BYTES, N, point_from_bytes, point_to_bytes
from .errors import DecryptionError, InvalidKey, InvalidSignature
from .sm3 import sm3

DEFAULT_UID = b"1234567812345678"
MAX_UID_LENGTH = 8191  # ENTL is a 16-bit count of bits
SIGNATURE_RAW_SIZE = 64
CIPHERTEXT_OVERHEAD = _sm2der.RAW_HEADER  # 97 bytes: 04||x||y (65) + C3 (32)

_backend: _backends.Backend = _backends.load()


def backend_name() -> str:
    """Name of the engine in use: ``"gmssl-pyx"`` or ``"gmssl"``."""
    return _backend.name


def set_backend(name: str | None = None) -> None:
    """Switch the engine (``"gmssl-pyx"``, ``"gmssl"``, or ``None`` for the default choice).

    Process-wide; meant for tests and benchmarks. Keys are plain values and keep working.
    """
    global _backend
    _backend = _backends.load(name)


def _as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes")


def _digest(point: bytes, message: bytes, uid: bytes) -> bytes:
    """e = SM3(Z || M) with Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)."""
    uid = _as_bytes(uid, "uid")
    if len(uid) > MAX_UID_LENGTH:
        raise ValueError("uid too long")
    z = sm3((len(uid) * 8).to_bytes(2, "big") + uid + CURVE_BYTES + point)
    h = hashes.Hash(hashes.SM3())
    h.update(z)
    h.update(_as_bytes(message, "message"))
    return h.finalize()


def signature_der_to_raw(der: bytes) -> bytes:
    """DER ``SEQUENCE {r, s}`` to 64-byte ``r||s``; :class:`InvalidSignature` if malformed."""
    try:
        r, s = _sm2der.signature_from_der(_as_bytes(der, "signature"))
    except (_asn1.DERError, TypeError) as exc:
        raise InvalidSignature(f"malformed DER signature: {exc}") from None
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_to_rs(raw: object) -> tuple[int, int]:
    data = _as_bytes(raw, "signature")
    if len(data) != SIGNATURE_RAW_SIZE:
        raise InvalidSignature("raw signature must be 64 bytes r||s")
    r = int.from_bytes(data[:32], "big")
    s = int.from_bytes(data[32:], "big")
    if not (0 < r < N and 0 < s < N):
        raise InvalidSignature("signature integers out of range")
    return r, s


def signature_raw_to_der(raw: bytes) -> bytes:
    """64-byte ``r||s`` to DER; :class:`InvalidSignature` if malformed."""
    try:
        r, s = _raw_to_rs(raw)
    except TypeError as exc:
        raise InvalidSignature(str(exc)) from None
    return _sm2der.signature_to_der(r, s)


def ciphertext_raw_to_der(raw: bytes) -> bytes:
    """Raw ``04||x||y||C3||C2`` to the ASN.1 form ``openssl pkeyutl -decrypt`` reads."""
    try:
        return _sm2der.ciphertext_raw_to_der(_as_bytes(raw, "ciphertext"))
    except (_asn1.DERError, TypeError) as exc:
        raise DecryptionError(f"malformed SM2 ciphertext: {exc}") from None


def ciphertext_der_to_raw(der: bytes) -> bytes:
    """The ASN.1 form ``openssl pkeyutl -encrypt`` writes to raw ``04||x||y||C3||C2``."""
    try:
        return _sm2der.ciphertext_der_to_raw(_as_bytes(der, "ciphertext"))
    except (_asn1.DERError, TypeError) as exc:
        raise DecryptionError(f"malformed DER SM2 ciphertext: {exc}") from None


class PublicKey:
    """An SM2 public key (a validated point of the recommended curve)."""

    __slots__ = ("_point",)

    def __init__(self, point: bytes) -> None:
        """Internal (64-byte ``x||y``): use :meth:`from_bytes` or :meth:`from_pem`."""
        if len(point) != 64:
            raise InvalidKey("internal point must be 64 bytes x||y")
        try:
            point_from_bytes(point)
        except ValueError as exc:
            raise InvalidKey(f"invalid SM2 public key: {exc}") from None
        self._point = bytes(point)

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        """From 65-byte ``04||x||y`` (also 64-byte ``x||y`` or 33-byte compressed)."""
        try:
            x, y = point_from_bytes(_as_bytes(raw, "public key"))
        except (ValueError, TypeError) as exc:
            raise InvalidKey(f"invalid SM2 public key: {exc}") from None
        return cls(point_to_bytes(x, y))

    @classmethod
    def from_der(cls, der: bytes) -> PublicKey:
        """From a DER SubjectPublicKeyInfo (id-ecPublicKey with the SM2 curve OID)."""
        try:
            point = _keys.spki_decode(_as_bytes(der, "public key"))
        except (ValueError, TypeError) as exc:
            raise InvalidKey(f"invalid SM2 public key: {exc}") from None
        return cls.from_bytes(point)

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PublicKey:
        """From ``-----BEGIN PUBLIC KEY-----`` as written by ``openssl pkey -pubout``."""
        try:
            _, der = _keys.pem_decode(pem, ("PUBLIC KEY",))
        except ValueError as exc:
            raise InvalidKey(f"invalid SM2 public key PEM: {exc}") from None
        return cls.from_der(der)

    def to_bytes(self) -> bytes:
        """65 bytes ``04||x||y``."""
        return b"\x04" + self._point

    def to_der(self) -> bytes:
        return _keys.spki_encode(self.to_bytes())

    def to_pem(self) -> bytes:
        return _keys.pem_encode("PUBLIC KEY", self.to_der())

    def key_id(self) -> str:
        """Hex of the first 16 bytes of SM3(04||x||y): a stable 32-character key name."""
        return sm3(self.to_bytes())[:16].hex()

    def verify(self, message: bytes, signature: bytes, uid: bytes = DEFAULT_UID) -> bool:
        """Check a DER signature. Never raises: anything malformed is simply ``False``."""
        try:
            r, s = _sm2der.signature_from_der(_as_bytes(signature, "signature"))
            e = _digest(self._point, message, uid)
        except Exception:
            return False
        return _backend.verify_digest(self._point, e, r, s)

    def verify_raw(self, message: bytes, signature_rs: bytes, uid: bytes = DEFAULT_UID) -> bool:
        """Check a 64-byte ``r||s`` signature. Never raises."""
        try:
            r, s = _raw_to_rs(signature_rs)
            e = _digest(self._point, message, uid)
        except Exception:
            return False
        return _backend.verify_digest(self._point, e, r, s)

    def encrypt(self, plaintext: bytes) -> bytes:
        """SM2-encrypt; returns raw ``C1||C3||C2`` (97 bytes longer than the plaintext).

        Meant for short secrets (keys): :mod:`gmcrypto.hybrid` wraps bulk data.
        """
        plaintext = _as_bytes(plaintext, "plaintext")
        if not plaintext:
            raise ValueError("SM2 cannot encrypt an empty message")
        return _backend.encrypt(self._point, plaintext)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other._point == self._point

    def __hash__(self) -> int:
        return hash(self._point)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id()!r})"


class Signer(Protocol):
    """Anything that signs like :class:`PrivateKey` (e.g. a future HSM/USB-key provider)."""

    def sign(self, message: bytes, uid: bytes = DEFAULT_UID) -> bytes: ...

    def public_key(self) -> PublicKey: ...


class PrivateKey:
    """An SM2 private key. ``repr`` never shows the secret."""

    __slots__ = ("_d", "_public")

    def __init__(self, d: int, public: PublicKey) -> None:
        """Internal: use :meth:`generate`, :meth:`from_bytes` or :meth:`from_pem`."""
        self._d = d
        self._public = public

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the OS random source (GmSSL's or :mod:`secrets`)."""
        d, point = _backend.generate()
        return cls(d, PublicKey(point))

    @classmethod
    def _from_scalar(cls, d: int, embedded_point: bytes | None = None) -> PrivateKey:
        if not 0 < d < N - 1:
            raise InvalidKey("SM2 private scalar must be in [1, n-2]")
        public = PublicKey(_backend.public_from_private(d))
        if embedded_point is not None:
            try:
                embedded = PublicKey.from_bytes(embedded_point)
            except InvalidKey:
                raise InvalidKey("embedded public key is invalid") from None
            if embedded != public:
                raise InvalidKey("embedded public key does not match the private key")
        return cls(d, public)

    @classmethod
    def from_bytes(cls, d: bytes) -> PrivateKey:
        """From the 32-byte big-endian private scalar."""
        try:
            data = _as_bytes(d, "private key")
        except TypeError as exc:
            raise InvalidKey(str(exc)) from None
        if len(data) != 32:
            raise InvalidKey("SM2 private key must be 32 bytes")
        return cls._from_scalar(int.from_bytes(data, "big"))

    @classmethod
    def from_der(cls, der: bytes, password: bytes | str | None = None) -> PrivateKey:
        """From DER PKCS#8 (``PrivateKeyInfo``, or ``EncryptedPrivateKeyInfo`` with password)."""
        try:
            der = _as_bytes(der, "private key")
            items = _asn1.parse_sequence(der)
            encrypted = bool(items) and items[0][0] == _asn1.SEQUENCE
        except (ValueError, TypeError) as exc:
            raise InvalidKey(f"invalid SM2 private key: {exc}") from None
        return cls._decode("ENCRYPTED PRIVATE KEY" if encrypted else "PRIVATE KEY", der, password)

    @classmethod
    def from_pem(cls, pem: bytes | str, password: bytes | str | None = None) -> PrivateKey:
        """From PKCS#8 PEM (``openssl genpkey -algorithm SM2``), encrypted PKCS#8 (PBES2 with
        PBKDF2 and SM4/AES-CBC) or SEC1 ``EC PRIVATE KEY`` / ``SM2 PRIVATE KEY``."""
        try:
            label, der = _keys.pem_decode(
                pem, ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY", "SM2 PRIVATE KEY")
            )
        except ValueError as exc:
            raise InvalidKey(f"invalid SM2 private key PEM: {exc}") from None
        return cls._decode(label, der, password)

    @classmethod
    def _decode(cls, label: str, der: bytes, password: bytes | str | None) -> PrivateKey:
        try:
            if label == "ENCRYPTED PRIVATE KEY":
                if password is None:
                    raise InvalidKey("the private key is encrypted: a password is required")
                if isinstance(password, str):
                    password = password.encode("utf-8")
                der = _keys.pbes2_decrypt(der, _as_bytes(password, "password"))
                label = "PRIVATE KEY"
            if label == "PRIVATE KEY":
                d, point = _keys.pkcs8_decode(der)
            else:
                d, point = _keys.sec1_decode(der, need_curve=label == "EC PRIVATE KEY")
        except (ValueError, TypeError) as exc:
            raise InvalidKey(f"invalid SM2 private key: {exc}") from None
        return cls._from_scalar(d, point)

    def to_bytes(self) -> bytes:
        """The 32-byte private scalar. Handle with care."""
        return self._d.to_bytes(32, "big")

    def to_der(
        self,
        password: bytes | str | None = None,
        *,
        prf: str = "hmacWithSM3",
        iterations: int = _keys.DEFAULT_ITERATIONS,
    ) -> bytes:
        """DER PKCS#8; with a password, PBES2 encrypted (see :meth:`to_pem`)."""
        der = _keys.pkcs8_encode(self._d, self._public.to_bytes())
        if password is None:
            return der
        if isinstance(password, str):
            password = password.encode("utf-8")
        if not password:
            raise ValueError("empty password")
        return _keys.pbes2_encrypt(der, password, prf=prf, iterations=iterations)

    def to_pem(
        self,
        password: bytes | str | None = None,
        *,
        prf: str = "hmacWithSM3",
        iterations: int = _keys.DEFAULT_ITERATIONS,
    ) -> bytes:
        """PKCS#8 PEM, readable by ``openssl pkey``.

        With a password: PBES2 with PBKDF2 and SM4-CBC. The default PRF is HMAC-SM3 (national
        algorithms only; OID 1.2.156.10197.1.401.3.1, read by Tongsuo and newer OpenSSL, not by
        OpenSSL 3.0). ``prf="hmacWithSHA256"`` gives a file OpenSSL 3.0 can read.
        """
        der = self.to_der(password, prf=prf, iterations=iterations)
        return _keys.pem_encode("PRIVATE KEY" if password is None else "ENCRYPTED PRIVATE KEY", der)

    def public_key(self) -> PublicKey:
        return self._public

    def _sign_rs(self, message: bytes, uid: bytes) -> tuple[int, int]:
        return _backend.sign_digest(self._d, _digest(self._public._point, message, uid))

    def sign(self, message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
        """SM2 signature with SM3 and the Z value of ``uid``; DER encoded (OpenSSL's form)."""
        return _sm2der.signature_to_der(*self._sign_rs(message, uid))

    def sign_raw(self, message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
        """Like :meth:`sign` but returns 64-byte ``r||s``."""
        r, s = self._sign_rs(message, uid)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Decrypt raw ``C1||C3||C2``. C3 is always checked; every failure (short input, C1 off
        the curve, wrong key, tampering) is a :class:`DecryptionError`."""
        try:
            data = _as_bytes(ciphertext, "ciphertext")
        except TypeError as exc:
            raise DecryptionError(str(exc)) from None
        if len(data) <= CIPHERTEXT_OVERHEAD or data[0] != 4:
            raise DecryptionError("SM2 ciphertext too short or not in C1C3C2 form")
        try:
            point_from_bytes(data[1:65])
        except ValueError:
            raise DecryptionError("SM2 ciphertext C1 is not a point of the curve") from None
        try:
            return _backend.decrypt(self._d, data)
        except DecryptionError:
            raise
        except Exception:
            raise DecryptionError("SM2 decryption failed") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and hmac.compare_digest(
            self.to_bytes(), other.to_bytes()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self._public.key_id()!r})"


# --------------------------------------------------------------------------- test hooks


def _sign_with_k(
    key: PrivateKey, message: bytes, k: int, uid: bytes = DEFAULT_UID
) -> tuple[int, int]:
    """Known-answer tests only: sign with a chosen nonce on the pure engine."""
    pure = _backends.load("gmssl")
    assert isinstance(pure, _backends.GmsslBackend)
    return pure.sign_digest(key._d, _digest(key._public._point, message, uid), k)


def _encrypt_with_k(key: PublicKey, plaintext: bytes, k: int) -> bytes:
    """Known-answer tests only: encrypt with a chosen ephemeral scalar on the pure engine."""
    pure = _backends.load("gmssl")
    assert isinstance(pure, _backends.GmsslBackend)
    return pure.encrypt(key._point, plaintext, k)
