"""Confidentiality for uploads: SM4-GCM under a fresh key, the key SM2-encrypted to the
recipient.

Blob layout (self-describing, all lengths big-endian)::

    b"GMS1" | u16 len(wrapped) | wrapped key (SM2 C1C3C2 of the 16-byte SM4 key) | GCM blob

The GCM blob is ``nonce(12) || ciphertext || tag(16)`` from :func:`gmcrypto.sm4.gcm_encrypt`;
its associated data is the header (magic, length, wrapped key) followed by the caller's
``aad``, so neither the header nor the context can be swapped without detection.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from . import sm4
from .errors import DecryptionError
from .sm2 import CIPHERTEXT_OVERHEAD, PublicKey

MAGIC = b"GMS1"
_HEADER = len(MAGIC) + 2
_WRAPPED_SIZE = CIPHERTEXT_OVERHEAD + sm4.KEY_SIZE
OVERHEAD = _HEADER + _WRAPPED_SIZE + sm4.GCM_NONCE_SIZE + sm4.GCM_TAG_SIZE  # 147 bytes


class Decrypter(Protocol):
    """Anything that SM2-decrypts like :class:`~gmcrypto.sm2.PrivateKey`."""

    def decrypt(self, ciphertext: bytes) -> bytes: ...


def seal(plaintext: bytes, recipient: PublicKey, aad: bytes = b"") -> bytes:
    """Encrypt ``plaintext`` so that only ``recipient``'s private key can open it."""
    key = secrets.token_bytes(sm4.KEY_SIZE)
    wrapped = recipient.encrypt(key)
    header = MAGIC + len(wrapped).to_bytes(2, "big") + wrapped
    return header + sm4.gcm_encrypt(key, plaintext, aad=header + aad)


def unseal(blob: bytes, key: Decrypter, aad: bytes = b"") -> bytes:
    """Open a :func:`seal` blob; :class:`DecryptionError` on anything wrong."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise DecryptionError("sealed blob must be bytes")
    blob = bytes(blob)
    if len(blob) < OVERHEAD or blob[: len(MAGIC)] != MAGIC:
        raise DecryptionError("not a GMS1 sealed blob")
    size = int.from_bytes(blob[len(MAGIC) : _HEADER], "big")
    if size != _WRAPPED_SIZE:
        raise DecryptionError("unexpected wrapped-key length")
    header = blob[: _HEADER + size]
    content_key = key.decrypt(header[_HEADER:])
    if len(content_key) != sm4.KEY_SIZE:
        raise DecryptionError("unexpected content-key length")
    return sm4.gcm_decrypt(content_key, blob[_HEADER + size :], aad=header + aad)
