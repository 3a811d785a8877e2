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

import logging
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gmcrypto import sm4
from gmcrypto.errors import DecryptionError
from gmcrypto.sm2 import PrivateKey, PublicKey
from gmcrypto.sm3 import hmac_sm3

log = logging.getLogger(__name__)


class KeyError_(Exception):
    """A key file is missing, malformed or does not know the requested key."""


def _temp_secret(path: Path, content: str | bytes, suffix: str) -> Path:
    """Write `content` durably to a fresh owner-only (0600) temp file beside `path`."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _write_secret(path: Path, content: str | bytes) -> None:
    """Atomically replace `path` (mode 0600): a crash leaves the old or the new file, never half."""
    tmp = _temp_secret(path, content, ".tmp")
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_secret(path: Path, content: str | bytes) -> None:
    """Create `path` (mode 0600) unless it exists: when two processes start at once on a fresh
    instance, the first key written wins and both then read that one."""
    tmp = _temp_secret(path, content, ".new")
    try:
        try:
            os.link(tmp, path)  # atomic and exclusive: fails when the file exists
        except FileExistsError:
            return
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(tmp, path)
            return
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return  # Windows cannot open a directory; NTFS journals the rename
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def new_master_key(taken: Iterable[str] = ()) -> tuple[str, bytes]:
    taken = set(taken)
    while True:
        key_id = secrets.token_hex(4)
        if key_id not in taken:
            return key_id, secrets.token_bytes(16)


@dataclass
class FileKeyProvider:
    master_key_file: Path
    data_key_file: Path
    signing_key_file: Path
    _masters: list[tuple[str, bytes]] = field(default_factory=list, repr=False)
    _data_key: bytes = field(default=b"", repr=False)
    _signing_key: PrivateKey | None = field(default=None, repr=False)
    _master_stamp: tuple[int, int, int] | None = field(default=None, repr=False)
    transport_key_file: Path | None = None
    _transport_key: PrivateKey | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: object) -> FileKeyProvider:
        provider = cls(
            settings.master_key_file, settings.data_key_file, settings.portal_key_file,  # type: ignore[attr-defined]
            transport_key_file=settings.transport_key_file  # type: ignore[attr-defined]
            or settings.portal_key_file.with_name("portal-transport-sm2.pem"),  # type: ignore[attr-defined]
        )
        provider.load(create_missing=True)
        return provider

    def load(self, create_missing: bool = False) -> None:
        if not self.master_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing master key file {self.master_key_file}")
            log.warning("creating a new master key file %s", self.master_key_file)
            kid, key = new_master_key()
            _create_secret(self.master_key_file, f"{kid} {key.hex()}\n")
        self._load_masters()
        if not self.data_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing data key file {self.data_key_file}")
            log.warning("creating a new data key file %s", self.data_key_file)
            _create_secret(self.data_key_file, secrets.token_hex(32) + "\n")
        try:
            self._data_key = bytes.fromhex(self.data_key_file.read_text().strip())
        except ValueError as exc:
            raise KeyError_(f"{self.data_key_file}: expected 64 hex digits") from exc
        if len(self._data_key) != 32:
            raise KeyError_(f"{self.data_key_file}: the data key is 32 bytes")
        if not self.signing_key_file.exists():
            if not create_missing:
                raise KeyError_(f"missing signing key file {self.signing_key_file}")
            log.warning("creating a new portal SM2 signing key %s", self.signing_key_file)
            _create_secret(self.signing_key_file, PrivateKey.generate().to_pem())
        self._signing_key = PrivateKey.from_pem(self.signing_key_file.read_bytes())
        if self.transport_key_file is not None:
            if not self.transport_key_file.exists():
                if not create_missing:
                    raise KeyError_(f"missing transport key file {self.transport_key_file}")
                _create_secret(self.transport_key_file, PrivateKey.generate().to_pem())
            self._transport_key = PrivateKey.from_pem(self.transport_key_file.read_bytes())

    # Master keys: wrap and unwrap per-image keys --------------------------------------------
    #
    # Every use re-reads master.key when the file changed (a stat per call), so that a
    # `portal keys rotate` run by the operator reaches running web and scheduler processes
    # without a restart: they wrap new image keys under the new active key at once.

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.master_key_file.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load_masters(self) -> None:
        stamp = self._stamp()
        self._masters = read_master_keys(self.master_key_file)
        self._master_stamp = stamp

    def _current_masters(self) -> list[tuple[str, bytes]]:
        stamp = self._stamp()
        if stamp is not None and stamp != self._master_stamp:
            self._load_masters()
        return self._masters

    @property
    def active_master_id(self) -> str:
        return self._current_masters()[0][0]

    def master_ids(self) -> list[str]:
        return [kid for kid, _ in self._current_masters()]

    def wrap(self, image_key: bytes, aad: bytes) -> tuple[str, bytes]:
        kid, master = self._current_masters()[0]
        return kid, sm4.gcm_encrypt(master, image_key, aad=b"image-key|" + aad)

    def unwrap(self, master_id: str, wrapped: bytes, aad: bytes) -> bytes:
        for kid, master in self._current_masters():
            if kid == master_id:
                return sm4.gcm_decrypt(master, wrapped, aad=b"image-key|" + aad)
        raise DecryptionError(f"master key {master_id!r} is not in {self.master_key_file}")

    def rewrap(self, master_id: str, wrapped: bytes, aad: bytes) -> tuple[str, bytes]:
        """Re-wrap an image key under the active master key (the clear key never leaves here;
        a crypto module can do this inside the device)."""
        return self.wrap(self.unwrap(master_id, wrapped, aad), aad)

    def add_master_key(self) -> str:
        """Start a rotation: a new master key becomes active, the others stay for unwrapping."""
        masters = read_master_keys(self.master_key_file)
        kid, key = new_master_key(kid for kid, _ in masters)
        write_master_keys(self.master_key_file, [(kid, key), *masters])
        self._load_masters()
        return kid

    def drop_master_keys(self, retired: Iterable[str]) -> list[str]:
        """Remove retired (non-active) keys from master.key; return the ids removed."""
        retired = set(retired)
        masters = read_master_keys(self.master_key_file)
        if masters[0][0] in retired:
            raise KeyError_("the active master key cannot be dropped")
        kept = [(kid, key) for kid, key in masters if kid not in retired]
        dropped = [kid for kid, _ in masters if kid in retired]
        if dropped:
            write_master_keys(self.master_key_file, kept)
        self._load_masters()
        return dropped

    # Personal-data fields ---------------------------------------------------------------------
    def _field_key(self) -> bytes:
        return self._derived(b"sm4-field-key-v1")[:16]

    def _derived(self, label: bytes) -> bytes:
        """Keys derived from the data key, cached (imports protect two fields per record)."""
        cache: dict[tuple[bytes, bytes], bytes] = self.__dict__.setdefault("_derived_cache", {})
        slot = (self._data_key, label)
        if slot not in cache:
            cache[slot] = hmac_sm3(self._data_key, label)
        return cache[slot]

    def encrypt_field(self, value: str, aad: bytes) -> bytes:
        return sm4.gcm_encrypt(self._field_key(), value.encode("utf-8"), aad=aad)

    def decrypt_field(self, cipher: bytes, aad: bytes) -> str:
        return sm4.gcm_decrypt(self._field_key(), cipher, aad=aad).decode("utf-8")

    def blind_index(self, kind: str, normalized: str) -> str:
        key = self._derived(b"blind-index-v1|" + kind.encode())
        return hmac_sm3(key, normalized.encode("utf-8")).hex()

    # The portal's own SM2 key -------------------------------------------------------------------
    @property
    def signing_key(self) -> PrivateKey:
        assert self._signing_key is not None
        return self._signing_key

    @property
    def public_key(self) -> PublicKey:
        return self.signing_key.public_key()

    # The portal's SM2 transport key: agents wrap each page's SM4 key to it. Separate from the
    # signing key so that decryption and signatures never share a key.
    @property
    def transport_key(self) -> PrivateKey:
        if self._transport_key is None:
            raise KeyError_("no transport key configured")
        return self._transport_key

    @property
    def transport_public_key(self) -> PublicKey:
        return self.transport_key.public_key()


_PROVIDER_LOCK = threading.Lock()


def key_provider() -> FileKeyProvider:
    """The application's provider (created once per app, also when threads race for it)."""
    from flask import current_app

    provider = current_app.extensions.get("portal_keys")
    if provider is None:
        with _PROVIDER_LOCK:
            provider = current_app.extensions.get("portal_keys")
            if provider is None:
                provider = FileKeyProvider.from_settings(current_app.config["SETTINGS"])
                current_app.extensions["portal_keys"] = provider
    return provider
