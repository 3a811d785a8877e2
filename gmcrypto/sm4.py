"""SM4 (GB/T 32907) in GCM (RFC 8998), CBC with PKCS#7 padding, and raw single blocks.

All modes run on OpenSSL through ``cryptography`` (~100 MB/s GCM). GCM is the mode for new
data; CBC exists for interoperability with ``openssl enc -sm4-cbc`` and carries no integrity.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import DecryptionError

KEY_SIZE = 16
BLOCK_SIZE = 16
GCM_NONCE_SIZE = 12
GCM_TAG_SIZE = 16


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise ValueError("SM4 key must be 16 bytes")


def gcm_encrypt(
    key: bytes, plaintext: bytes, aad: bytes = b"", nonce: bytes | None = None
) -> bytes:
    """Encrypt with SM4-GCM; return ``nonce(12) || ciphertext || tag(16)``.

    The nonce is drawn from :mod:`secrets` unless given (only known-answer tests should give
    one: a nonce reused under the same key destroys GCM's security).
    """
    _check_key(key)
    if nonce is None:
        nonce = secrets.token_bytes(GCM_NONCE_SIZE)
    elif len(nonce) != GCM_NONCE_SIZE:
        raise ValueError("SM4-GCM nonce must be 12 bytes")
    enc = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return nonce + body + enc.tag


def gcm_decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """Decrypt a blob made by :func:`gcm_encrypt`; :class:`DecryptionError` if anything is off."""
    _check_key(key)
    if not isinstance(blob, bytes | bytearray) or len(blob) < GCM_NONCE_SIZE + GCM_TAG_SIZE:
        raise DecryptionError("SM4-GCM blob too short")
    nonce = bytes(blob[:GCM_NONCE_SIZE])
    tag = bytes(blob[-GCM_TAG_SIZE:])
    try:
        dec = Cipher(algorithms.SM4(bytes(key)), modes.GCM(nonce, tag)).decryptor()
        if aad:
            dec.authenticate_additional_data(aad)
        return dec.update(blob[GCM_NONCE_SIZE:-GCM_TAG_SIZE]) + dec.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM authentication failed") from None


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC with PKCS#7 padding, byte-compatible with ``openssl enc -sm4-cbc -K .. -iv ..``."""
    _check_key(key)
    if len(iv) != BLOCK_SIZE:
        raise ValueError("SM4-CBC IV must be 16 bytes")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.SM4(bytes(key)), modes.CBC(bytes(iv))).encryptor()
    return enc.update(padded) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Reverse :func:`cbc_encrypt`; :class:`DecryptionError` on a bad length or padding.

    CBC is unauthenticated: never expose the difference between padding errors and other
    failures to a remote party (padding oracle). Prefer :func:`gcm_decrypt`.
    """
    _check_key(key)
    if len(iv) != BLOCK_SIZE:
        raise ValueError("SM4-CBC IV must be 16 bytes")
    if not ciphertext or len(ciphertext) % BLOCK_SIZE:
        raise DecryptionError("SM4-CBC ciphertext length is not a positive multiple of 16")
    dec = Cipher(algorithms.SM4(bytes(key)), modes.CBC(bytes(iv))).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError("SM4-CBC padding is invalid") from None


def ecb_encryptor(key: bytes) -> Callable[[bytes], bytes]:
    """Return a function that encrypts whole 16-byte blocks with one reused SM4 context."""
    _check_key(key)
    enc = Cipher(algorithms.SM4(bytes(key)), modes.ECB()).encryptor()  # noqa: S305 (raw blocks)

    def encrypt_block(block: bytes) -> bytes:
        if len(block) != BLOCK_SIZE:
            raise ValueError("SM4 block must be 16 bytes")
        return enc.update(block)

    return encrypt_block


def ecb_encrypt_block(key: bytes, block: bytes) -> bytes:
    """Encrypt one raw 16-byte block (for the GB/T 32907 known-answer vectors)."""
    return ecb_encryptor(key)(block)


def ecb_decrypt_block(key: bytes, block: bytes) -> bytes:
    """Decrypt one raw 16-byte block."""
    _check_key(key)
    if len(block) != BLOCK_SIZE:
        raise ValueError("SM4 block must be 16 bytes")
    dec = Cipher(algorithms.SM4(bytes(key)), modes.ECB()).decryptor()  # noqa: S305
    return dec.update(block) + dec.finalize()
