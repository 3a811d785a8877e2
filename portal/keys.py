"""The key provider: the one place the portal touches key material.

File-based by default (key files in the instance folder, never in the database). A certified
crypto module (HSM, USB key) replaces this class behind the same methods.

- master keys (SM4, 16 bytes) wrap the per-image keys; `master.key` holds one key per line,
  "<key id> <hex>", the first line is active, later lines are kept until `portal keys rotate`
  has re-wrapped every image key;
- the data key (32 bytes) derives the SM4 key for personal-data fields and the HMAC-SM3 key of
  the blind index;
- the portal's SM2 key signs audit checkpoints and exported archives, and decrypts the
  per-page keys that agents wrap to it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gmcrypto import sm4
from gmcrypto.errors import DecryptionError
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.sm3 import hmac_sm3


class KeyError_(Exception):  # noqa: N801  (avoid shadowing the builtin KeyError)
    """A key file is missing, malformed or does not know the requested key."""


def _write_secret(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_master_keys(path: Path) -> list[tuple[str, bytes]]:
    keys = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key_id, hex_key = line.split()
            key = bytes.fromhex(hex_key)
        except ValueError as exc:
            raise KeyError_(f"{path}:{number}: expected '<key id> <32 hex digits>'") from exc
        if len(key) != 16:
            raise KeyError_(f"{path}:{number}: an SM4 master key is 16 bytes")
        keys.append((key_id, key))
    if not keys:
        raise KeyError_(f"{path}: no master key")
    return keys


def write_master_keys(path: Path, keys: list[tuple[str, bytes]]) -> None:
    _write_secret(path, "".join(f"{kid} {key.hex()}\n" for kid, key in keys))


def new_master_key() -> tuple[str, bytes]:
    return secrets.token_hex(4), secrets.token_bytes(16)


@dataclass
class FileKeyProvider:
    master_key_file: Path
    data_key_file: Path
    signing_key_file: Path
    _masters: list[tuple[str, bytes]] = field(default_factory=list, repr=False)
    _data_key: bytes = field(default=b"", repr=False)
    _signing_key: PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: object) -> FileKeyProvider:
        provider = cls(
            settings.master_key_file, settings.data_key_file, settings.portal_key_file  # type: ignore[attr-defined]
        )
        provider.load(create_missing=True)
        return provider

    def load(self, create_missing: bool = False) -> None:
        if not self.master_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing master key file {self.master_key_file}")
            write_master_keys(self.master_key_file, [new_master_key()])
        self._masters = read_master_keys(self.master_key_file)
        if not self.data_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing data key file {self.data_key_file}")
            _write_secret(self.data_key_file, secrets.token_hex(32) + "\n")
        try:
            self._data_key = bytes.fromhex(self.data_key_file.read_text().strip())
        except ValueError as exc:
            raise KeyError_(f"{self.data_key_file}: expected 64 hex digits") from exc
        if len(self._data_key) != 32:
            raise KeyError_(f"{self.data_key_file}: the data key is 32 bytes")
        if not self.signing_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing signing key file {self.signing_key_file}")
            _write_secret(self.signing_key_file, PrivateKey.generate().to_pem())
        self._signing_key = PrivateKey.from_pem(self.signing_key_file.read_bytes())

    # Master keys: wrap and unwrap per-image keys --------------------------------------------
    @property
    def active_master_id(self) -> str:
        return self._masters[0][0]

    def master_ids(self) -> list[str]:
        return [kid for kid, _ in self._masters]

    def wrap(self, image_key: bytes, aad: bytes) -> tuple[str, bytes]:
        kid, master = self._masters[0]
        return kid, sm4.gcm_encrypt(master, image_key, aad=b"image-key|" + aad)

    def unwrap(self, master_id: str, wrapped: bytes, aad: bytes) -> bytes:
        for kid, master in self._masters:
            if kid == master_id:
                return sm4.gcm_decrypt(master, wrapped, aad=b"image-key|" + aad)
        raise DecryptionError(f"master key {master_id!r} is not in {self.master_key_file}")

    # Personal-data fields ---------------------------------------------------------------------
    def _field_key(self) -> bytes:
        return hmac_sm3(self._data_key, b"sm4-field-key-v1")[:16]

    def encrypt_field(self, value: str, aad: bytes) -> bytes:
        return sm4.gcm_encrypt(self._field_key(), value.encode("utf-8"), aad=aad)

    def decrypt_field(self, cipher: bytes, aad: bytes) -> str:
        return sm4.gcm_decrypt(self._field_key(), cipher, aad=aad).decode("utf-8")

    def blind_index(self, kind: str, normalized: str) -> str:
        key = hmac_sm3(self._data_key, b"blind-index-v1|" + kind.encode())
        return hmac_sm3(key, normalized.encode("utf-8")).hex()

    # The portal's own SM2 key -------------------------------------------------------------------
    @property
    def signing_key(self) -> PrivateKey:
        assert self._signing_key is not None
        return self._signing_key

    @property
    def public_key(self) -> PublicKey:
        return self.signing_key.public_key()


def key_provider() -> FileKeyProvider:
    """The application's provider (created once per app)."""
    from flask import current_app

    provider = current_app.extensions.get("portal_keys")
    if provider is None:
        provider = FileKeyProvider.from_settings(current_app.config["SETTINGS"])
        current_app.extensions["portal_keys"] = provider
    return provider
