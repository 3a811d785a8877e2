"""SM2 key containers, OpenSSL compatible: PEM, SubjectPublicKeyInfo, PKCS#8 (plain and
PBES2-encrypted) and SEC1 ``EC PRIVATE KEY``. ``cryptography`` cannot load SM2 keys
("Curve 1.2.156.10197.1.301 is not supported"), hence this module.

Every parse error is a ``ValueError``; :mod:`gmcrypto.sm2` turns them into ``InvalidKey``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from . import _asn1

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"
OID_PBES2 = "1.2.840.113549.1.5.13"
OID_PBKDF2 = "1.2.840.113549.1.5.12"
OID_HMAC_SHA1 = "1.2.840.113549.2.7"

# PBKDF2 pseudo-random functions. Two OIDs for HMAC-SM3 exist (GM/T 0091-2020 Annex A vs
# GM/T 0006): OpenSSL >= 3.x/Tongsuo emit 1.2.156.10197.1.401.3.1, GmSSL 1.2.156.10197.1.401.2.
PRF_OIDS: dict[str, str] = {
    "hmacWithSM3": "1.2.156.10197.1.401.3.1",
    "hmacWithSHA256": "1.2.840.113549.2.9",
}
_PRF_BY_OID: dict[str, type[hashes.HashAlgorithm]] = {
    "1.2.156.10197.1.401.3.1": hashes.SM3,
    "1.2.156.10197.1.401.2": hashes.SM3,
    OID_HMAC_SHA1: hashes.SHA1,
    "1.2.840.113549.2.8": hashes.SHA224,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
OID_SM4_CBC = "1.2.156.10197.1.104.2"
_CIPHERS: dict[str, tuple[type[algorithms.SM4] | type[algorithms.AES], int]] = {
    OID_SM4_CBC: (algorithms.SM4, 16),
    "2.16.840.1.101.3.4.1.2": (algorithms.AES, 16),  # aes-128-cbc
    "2.16.840.1.101.3.4.1.22": (algorithms.AES, 24),  # aes-192-cbc
    "2.16.840.1.101.3.4.1.42": (algorithms.AES, 32),  # aes-256-cbc (openssl's default)
}
MAX_ITERATIONS = 10_000_000
DEFAULT_ITERATIONS = 200_000


class KeyFormatError(ValueError):
    """A key container is malformed or holds something other than an SM2 key."""


# --------------------------------------------------------------------------- PEM

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_encode(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode(
        "ascii"
    )


def pem_decode(data: bytes | str, labels: tuple[str, ...]) -> tuple[str, bytes]:
    """Return ``(label, der)`` of the first PEM block whose label is in ``labels``."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("ascii")
        except UnicodeDecodeError:
            raise KeyFormatError("PEM must be ASCII text") from None
    elif isinstance(data, str):
        text = data
    else:
        raise KeyFormatError("PEM must be bytes or str")
    for match in _PEM_RE.finditer(text):
        label, body = match.group(1), match.group(2)
        if label not in labels:
            continue
        if ":" in body:
            raise KeyFormatError(
                "legacy PEM encryption (Proc-Type/DEK-Info) is not supported; "
                "convert with `openssl pkcs8 -topk8`"
            )
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise KeyFormatError("PEM body is not valid base64") from None
        if not der:
            raise KeyFormatError("empty PEM body")
        return label, der
    raise KeyFormatError(f"no PEM block labelled {' or '.join(labels)}")


# --------------------------------------------------------------------------- public keys


def _algorithm_identifier() -> bytes:
    return _asn1.sequence(_asn1.oid(OID_EC_PUBLIC_KEY), _asn1.oid(OID_SM2))


def _check_sm2_algorithm(der_value: bytes) -> None:
    items = _asn1.parse_elements(der_value)
    if not items:
        raise KeyFormatError("empty algorithm identifier")
    algorithm = _asn1.decode_oid(_asn1.expect(items[0], _asn1.OID))
    params = items[1:]
    if algorithm == OID_EC_PUBLIC_KEY:
        if len(params) != 1 or params[0][0] != _asn1.OID:
            raise KeyFormatError("EC key without a named curve")
        curve = _asn1.decode_oid(params[0][1])
        if curve != OID_SM2:
            raise KeyFormatError(f"not an SM2 key (curve {curve})")
    elif algorithm == OID_SM2:  # some toolkits put the curve OID in the algorithm field
        if len(params) > 1 or (params and params[0][0] not in (_asn1.NULL, _asn1.OID)):
            raise KeyFormatError("unexpected SM2 algorithm parameters")
    else:
        raise KeyFormatError(f"not an EC/SM2 key (algorithm {algorithm})")


def spki_encode(point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of an uncompressed point (65 bytes, 04||x||y)."""
    return _asn1.sequence(_algorithm_identifier(), _asn1.bit_string(point))


def spki_decode(der: bytes) -> bytes:
    """Return the encoded point held by an SM2 SubjectPublicKeyInfo."""
    items = _asn1.parse_sequence(der)
    if len(items) != 2:
        raise KeyFormatError("SubjectPublicKeyInfo must have two elements")
    _check_sm2_algorithm(_asn1.expect(items[0], _asn1.SEQUENCE))
    return _asn1.decode_bit_string(_asn1.expect(items[1], _asn1.BIT_STRING))


# --------------------------------------------------------------------------- private keys


def _ec_private_key(d: int, point: bytes) -> bytes:
    """RFC 5915 ECPrivateKey without parameters (they live in the PKCS#8 wrapper)."""
    return _asn1.sequence(
        _asn1.integer(1),
        _asn1.octet_string(d.to_bytes(32, "big")),
        _asn1.explicit(1, _asn1.bit_string(point)),
    )


def pkcs8_encode(d: int, point: bytes) -> bytes:
    """PKCS#8 PrivateKeyInfo, the same layout as ``openssl genpkey -algorithm SM2``."""
    return _asn1.sequence(
        _asn1.integer(0), _algorithm_identifier(), _asn1.octet_string(_ec_private_key(d, point))
    )


def sec1_decode(der: bytes, *, need_curve: bool) -> tuple[int, bytes | None]:
    """Parse ECPrivateKey; return ``(d, encoded point or None)``."""
    items = _asn1.parse_sequence(der)
    if len(items) < 2:
        raise KeyFormatError("ECPrivateKey too short")
    if _asn1.decode_integer(_asn1.expect(items[0], _asn1.INTEGER)) != 1:
        raise KeyFormatError("unsupported ECPrivateKey version")
    secret = _asn1.expect(items[1], _asn1.OCTET_STRING)
    if not 0 < len(secret) <= 32:
        raise KeyFormatError("private scalar must be at most 32 bytes")
    point: bytes | None = None
    has_curve = False
    for tag, value in items[2:]:
        if tag == 0xA0:
            curve = _asn1.decode_oid(_asn1.parse_single(value, _asn1.OID))
            if curve != OID_SM2:
                raise KeyFormatError(f"not an SM2 key (curve {curve})")
            has_curve = True
        elif tag == 0xA1:
            point = _asn1.decode_bit_string(_asn1.parse_single(value, _asn1.BIT_STRING))
        else:
            raise KeyFormatError("unexpected element in ECPrivateKey")
    if need_curve and not has_curve:
        raise KeyFormatError("EC PRIVATE KEY without the SM2 curve OID")
    return int.from_bytes(secret, "big"), point


def pkcs8_decode(der: bytes) -> tuple[int, bytes | None]:
    """Parse an unencrypted SM2 PrivateKeyInfo; return ``(d, encoded point or None)``."""
    items = _asn1.parse_sequence(der)
    if len(items) < 3:
        raise KeyFormatError("PrivateKeyInfo too short")
    if _asn1.decode_integer(_asn1.expect(items[0], _asn1.INTEGER)) not in (0, 1):
        raise KeyFormatError("unsupported PrivateKeyInfo version")
    _check_sm2_algorithm(_asn1.expect(items[1], _asn1.SEQUENCE))
    for tag, _ in items[3:]:
        if tag not in (0xA0, 0x81, 0xA1):
            raise KeyFormatError("unexpected element in PrivateKeyInfo")
    return sec1_decode(_asn1.expect(items[2], _asn1.OCTET_STRING), need_curve=False)


# --------------------------------------------------------------------------- PBES2


def _algorithm(der_value: bytes) -> tuple[str, list[tuple[int, bytes]]]:
    items = _asn1.parse_elements(der_value)
    if not items:
        raise KeyFormatError("empty algorithm identifier")
    return _asn1.decode_oid(_asn1.expect(items[0], _asn1.OID)), items[1:]


def pbes2_encrypt(
    plain_der: bytes, password: bytes, *, prf: str = "hmacWithSM3", iterations: int
) -> bytes:
    """EncryptedPrivateKeyInfo with PBES2: PBKDF2(``prf``) and SM4-CBC."""
    if prf not in PRF_OIDS:
        raise ValueError(f"prf must be one of {sorted(PRF_OIDS)}")
    if not 0 < iterations <= MAX_ITERATIONS:
        raise ValueError("iterations out of range")
    salt = secrets.token_bytes(16)
    iv = secrets.token_bytes(16)
    hash_cls = _PRF_BY_OID[PRF_OIDS[prf]]
    key = PBKDF2HMAC(hash_cls(), 16, salt, iterations).derive(password)
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    data = enc.update(padder.update(plain_der) + padder.finalize()) + enc.finalize()
    kdf = _asn1.sequence(
        _asn1.oid(OID_PBKDF2),
        _asn1.sequence(
            _asn1.octet_string(salt),
            _asn1.integer(iterations),
            _asn1.sequence(_asn1.oid(PRF_OIDS[prf]), _asn1.null()),
        ),
    )
    scheme = _asn1.sequence(_asn1.oid(OID_SM4_CBC), _asn1.octet_string(iv))
    return _asn1.sequence(
        _asn1.sequence(_asn1.oid(OID_PBES2), _asn1.sequence(kdf, scheme)),
        _asn1.octet_string(data),
    )


def pbes2_decrypt(der: bytes, password: bytes) -> bytes:
    """Decrypt an EncryptedPrivateKeyInfo (PBES2/PBKDF2 with SM4/AES-CBC); return the PKCS#8."""
    items = _asn1.parse_sequence(der)
    if len(items) != 2:
        raise KeyFormatError("EncryptedPrivateKeyInfo must have two elements")
    scheme_oid, scheme_params = _algorithm(_asn1.expect(items[0], _asn1.SEQUENCE))
    data = _asn1.expect(items[1], _asn1.OCTET_STRING)
    if scheme_oid != OID_PBES2 or len(scheme_params) != 1:
        raise KeyFormatError(f"unsupported key encryption scheme {scheme_oid} (PBES2 only)")
    parts = _asn1.parse_elements(_asn1.expect(scheme_params[0], _asn1.SEQUENCE))
    if len(parts) != 2:
        raise KeyFormatError("malformed PBES2 parameters")
    kdf_oid, kdf_params = _algorithm(_asn1.expect(parts[0], _asn1.SEQUENCE))
    if kdf_oid != OID_PBKDF2 or len(kdf_params) != 1:
        raise KeyFormatError(f"unsupported key derivation {kdf_oid} (PBKDF2 only)")
    fields = _asn1.parse_elements(_asn1.expect(kdf_params[0], _asn1.SEQUENCE))
    if len(fields) < 2:
        raise KeyFormatError("malformed PBKDF2 parameters")
    salt = _asn1.expect(fields[0], _asn1.OCTET_STRING)
    iterations = _asn1.decode_integer(_asn1.expect(fields[1], _asn1.INTEGER))
    key_length: int | None = None
    prf_oid = OID_HMAC_SHA1
    for tag, value in fields[2:]:
        if tag == _asn1.INTEGER and key_length is None:
            key_length = _asn1.decode_integer(value)
        elif tag == _asn1.SEQUENCE:
            prf_oid, _ = _algorithm(value)
        else:
            raise KeyFormatError("malformed PBKDF2 parameters")
    if not 0 < iterations <= MAX_ITERATIONS:
        raise KeyFormatError("PBKDF2 iteration count out of range")
    if prf_oid not in _PRF_BY_OID:
        raise KeyFormatError(f"unsupported PBKDF2 PRF {prf_oid}")
    cipher_oid, cipher_params = _algorithm(_asn1.expect(parts[1], _asn1.SEQUENCE))
    if cipher_oid not in _CIPHERS or len(cipher_params) != 1:
        raise KeyFormatError(f"unsupported key encryption cipher {cipher_oid}")
    iv = _asn1.expect(cipher_params[0], _asn1.OCTET_STRING)
    algorithm, size = _CIPHERS[cipher_oid]
    if key_length not in (None, size) or len(iv) != 16 or not data or len(data) % 16:
        raise KeyFormatError("malformed PBES2 cipher parameters")
    key = PBKDF2HMAC(_PRF_BY_OID[prf_oid](), size, salt, iterations).derive(password)
    dec = Cipher(algorithm(key), modes.CBC(iv)).decryptor()
    padded = dec.update(data) + dec.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise KeyFormatError("wrong password or corrupted key") from None
