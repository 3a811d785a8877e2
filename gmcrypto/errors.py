"""Exception hierarchy of gmcrypto.

Every failure caused by untrusted input (a signature, a key, a ciphertext, an envelope) is
reported as a subclass of :class:`CryptoError`, so callers can catch one type at the trust
boundary. Programming errors (a 15-byte SM4 key, a float in a payload) raise ``ValueError`` or
``TypeError`` instead.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every gmcrypto error."""


class InvalidSignature(CryptoError):
    """A signature, or a signed envelope, is malformed or does not verify."""


class InvalidKey(CryptoError):
    """A key is malformed, not an SM2 key, not on the curve, or its password is wrong."""


class DecryptionError(CryptoError):
    """A ciphertext is malformed, truncated, tampered with, or meant for another key."""
