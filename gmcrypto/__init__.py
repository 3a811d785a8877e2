"""Chinese national cryptography (SM2, SM3, SM4) and the signed-envelope format shared by
the portal and the scanner agent. Pure functions over bytes: no I/O, no framework."""

from .envelope import (
    canonical,
    envelope_from_bytes,
    envelope_to_bytes,
    sign_envelope,
    verify_envelope,
)
from .errors import CryptoError, DecryptionError, InvalidKey, InvalidSignature
from .hybrid import seal, unseal
from .sm2 import (
    DEFAULT_UID,
    PrivateKey,
    PublicKey,
    Signer,
    backend_name,
    ciphertext_der_to_raw,
    ciphertext_raw_to_der,
    set_backend,
    signature_der_to_raw,
    signature_raw_to_der,
)
from .sm3 import SM3Stream, hmac_sm3, hmac_sm3_verify, kdf_sm3, pbkdf2_sm3, sm3, sm3_hex
from .sm4 import (
    cbc_decrypt,
    cbc_encrypt,
    ecb_decrypt_block,
    ecb_encrypt_block,
    ecb_encryptor,
    gcm_decrypt,
    gcm_encrypt,
)

__all__ = [
    "DEFAULT_UID",
    "CryptoError",
    "DecryptionError",
    "InvalidKey",
    "InvalidSignature",
    "PrivateKey",
    "PublicKey",
    "SM3Stream",
    "Signer",
    "backend_name",
    "canonical",
    "cbc_decrypt",
    "cbc_encrypt",
    "ciphertext_der_to_raw",
    "ciphertext_raw_to_der",
    "ecb_decrypt_block",
    "ecb_encrypt_block",
    "ecb_encryptor",
    "envelope_from_bytes",
    "envelope_to_bytes",
    "gcm_decrypt",
    "gcm_encrypt",
    "hmac_sm3",
    "hmac_sm3_verify",
    "kdf_sm3",
    "pbkdf2_sm3",
    "seal",
    "set_backend",
    "sign_envelope",
    "signature_der_to_raw",
    "signature_raw_to_der",
    "sm3",
    "sm3_hex",
    "unseal",
    "verify_envelope",
]
