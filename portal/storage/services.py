"""The encrypted, content-addressed image store.

An image is addressed by the SM3 of its clear bytes: the same content is stored once. Each blob
is encrypted with its own fresh SM4-GCM key whose AAD binds the content hash (a file copied under
another address fails to decrypt); the per-image key is wrapped by the active master key of the
key provider and kept in the `image_blob` row with the id of the master key that wrapped it.
`load_image` decrypts and re-checks the SM3, so a tampered, swapped or missing file is a
`BlobIntegrityError` and never wrong bytes.

Files live behind the small `BlobStore` interface: the local filesystem now
(`<data_dir>/blobs/ab/cd/<sm3>`, written atomically), an S3-compatible store later.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flask import current_app
from sqlalchemy import func, select, update

from gmcrypto import sm4
from gmcrypto.errors import DecryptionError
from gmcrypto.sm3 import sm3_hex
from portal.db import db
from portal.keys import FileKeyProvider, key_provider
from portal.storage.models import ImageBlob

FILE_MAGIC = b"GMB1"  # format marker: "GM blob, version 1" = magic ‖ SM4-GCM(nonce ‖ ct ‖ tag)
_ADDRESS = re.compile(r"^[0-9a-f]{64}$")


class BlobIntegrityError(Exception):
    """A stored image cannot be returned intact: its file is missing, altered, swapped, or its
    key cannot be unwrapped. The viewer shows "integrity failed" (影像完整性校验失败)."""

    def __init__(self, content_sm3: str, problem: str) -> None:
        super().__init__(f"image blob {content_sm3}: {problem}")
        self.content_sm3 = content_sm3
        self.problem = problem


class BlobNotFound(Exception):
    """The store has no object at this address."""


class BlobStore(Protocol):
    """Where encrypted blob files live. Addresses are 64 lowercase hex characters (SM3)."""

    def put(self, address: str, data: bytes) -> None:
        """Store `data` at `address` atomically (readers see the old or the new object)."""
        ...

    def get(self, address: str) -> bytes:
        """The object's bytes; `BlobNotFound` when there is none."""
        ...

    def exists(self, address: str) -> bool: ...

    def delete(self, address: str) -> None: ...


def _check_address(address: str) -> str:
    if not _ADDRESS.match(address):
        raise ValueError(f"not a blob address: {address!r}")
    return address


@dataclass
class LocalBlobStore:
    """Blob files under `root/ab/cd/<address>`: two fan-out levels keep directories small."""

    root: Path

    def path(self, address: str) -> Path:
        _check_address(address)
        return self.root / address[:2] / address[2:4] / address

    def put(self, address: str, data: bytes) -> None:
        final = self.path(address)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{address}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o640)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if os.name == "posix":
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def get(self, address: str) -> bytes:
        try:
            return self.path(address).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(address) from None

    def exists(self, address: str) -> bool:
        return self.path(address).is_file()

    def delete(self, address: str) -> None:
        self.path(address).unlink(missing_ok=True)


def blob_store() -> BlobStore:
    """The application's store (created once per app)."""
    store = current_app.extensions.get("portal_blob_store")
    if store is None:
        store = LocalBlobStore(Path(current_app.config["SETTINGS"].data_dir) / "blobs")
        current_app.extensions["portal_blob_store"] = store
    return store


def _blob_aad(content_sm3: str) -> bytes:
    return b"image-blob|v1|" + content_sm3.encode("ascii")


def _key_aad(content_sm3: str) -> bytes:
    return content_sm3.encode("ascii")  # the provider prefixes "image-key|"


def _encrypt_file(image_key: bytes, data: bytes, content_sm3: str) -> bytes:
    return FILE_MAGIC + sm4.gcm_encrypt(image_key, data, aad=_blob_aad(content_sm3))


def _insert_blob_row(values: dict[str, Any]) -> int | None:
    """INSERT … ON CONFLICT DO NOTHING: the id of the new row, or None when another transaction
    stored the same content first (on PostgreSQL this waits for that transaction to end)."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - only SQLite and PostgreSQL(-compatible) are supported
        blob = ImageBlob(**values)
        db.session.add(blob)
        db.session.flush()
        return blob.id
    stmt = (
        insert(ImageBlob)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["content_sm3"])
        .returning(ImageBlob.id)
    )
    return db.session.execute(stmt).scalar()


def _by_address(content_sm3: str) -> ImageBlob | None:
    return db.session.scalar(select(ImageBlob).where(ImageBlob.content_sm3 == content_sm3))


def store_image(
    data: bytes,
    media_type: str,
    *,
    store: BlobStore | None = None,
    keys: FileKeyProvider | None = None,
) -> ImageBlob:
    """Store image bytes encrypted; the same bytes return the existing blob (flushed)."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise ValueError("an image must be non-empty bytes")
    data = bytes(data)
    store = store or blob_store()
    keys = keys or key_provider()
    content_sm3 = sm3_hex(data)
    existing = _by_address(content_sm3)
    if existing is None:
        image_key = secrets.token_bytes(sm4.KEY_SIZE)
        master_id, wrapped = keys.wrap(image_key, _key_aad(content_sm3))
        new_id = _insert_blob_row({
            "content_sm3": content_sm3, "byte_size": len(data), "media_type": media_type[:40],
            "wrapped_key": wrapped, "master_key_id": master_id,
        })
        if new_id is not None:
            # Only the transaction that won the row writes the file, so row and file always
            # agree on the key. If it rolls back, the file is an orphan a later store overwrites.
            store.put(content_sm3, _encrypt_file(image_key, data, content_sm3))
            blob = db.session.get(ImageBlob, new_id)
            assert blob is not None
            return blob
        existing = _by_address(content_sm3)
        assert existing is not None
    if not store.exists(content_sm3):
        # The row outlived its file (lost disk, restore from an older file backup): the same
        # bytes are here again, so write them back under the blob's own key.
        image_key = _unwrap(existing, keys)
        store.put(content_sm3, _encrypt_file(image_key, data, content_sm3))
    return existing


def _unwrap(blob: ImageBlob, keys: FileKeyProvider) -> bytes:
    try:
        return keys.unwrap(blob.master_key_id, blob.wrapped_key, _key_aad(blob.content_sm3))
    except DecryptionError as exc:
        raise BlobIntegrityError(blob.content_sm3, f"its key cannot be unwrapped ({exc})") from None


def load_image(
    blob: ImageBlob, *, store: BlobStore | None = None, keys: FileKeyProvider | None = None
) -> bytes:
    """The clear bytes of `blob`, checked against its SM3; `BlobIntegrityError` otherwise."""
    store = store or blob_store()
    keys = keys or key_provider()
    try:
        raw = store.get(blob.content_sm3)
    except BlobNotFound:
        raise BlobIntegrityError(blob.content_sm3, "the file is missing") from None
    if not raw.startswith(FILE_MAGIC):
        raise BlobIntegrityError(blob.content_sm3, "the file is not an encrypted blob")
    image_key = _unwrap(blob, keys)
    try:
        data = sm4.gcm_decrypt(image_key, raw[len(FILE_MAGIC):], aad=_blob_aad(blob.content_sm3))
    except DecryptionError:
        raise BlobIntegrityError(
            blob.content_sm3, "the file was altered or replaced (authentication failed)"
        ) from None
    if len(data) != blob.byte_size or sm3_hex(data) != blob.content_sm3:
        raise BlobIntegrityError(blob.content_sm3, "the decrypted bytes do not match the SM3")
    return data


# Master-key rotation ------------------------------------------------------------------------------


@dataclass
class RewrapReport:
    rewrapped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (blob id, problem)


def blobs_by_master_key() -> dict[str, int]:
    rows = db.session.execute(
        select(ImageBlob.master_key_id, func.count()).group_by(ImageBlob.master_key_id)
    ).all()
    return {kid: int(n) for kid, n in rows}


def rewrap_batch(
    keys: FileKeyProvider, *, after_id: int = 0, batch_size: int = 500
) -> tuple[RewrapReport, int | None]:
    """Re-wrap up to `batch_size` image keys not under the active master key, with id > after_id.

    Only the small `wrapped_key`/`master_key_id` columns change: image files are never rewritten.
    Returns the report and the last id looked at (None when nothing was left). Flushes; the
    caller commits each batch, so a killed run loses at most one batch and a rerun resumes.
    """
    active = keys.active_master_id
    rows = db.session.execute(
        select(ImageBlob.id, ImageBlob.content_sm3, ImageBlob.master_key_id, ImageBlob.wrapped_key)
        .where(ImageBlob.master_key_id != active, ImageBlob.id > after_id)
        .order_by(ImageBlob.id)
        .limit(batch_size)
    ).all()
    report = RewrapReport()
    for blob_id, content_sm3, master_id, wrapped in rows:
        try:
            new_id, new_wrapped = keys.rewrap(master_id, wrapped, _key_aad(content_sm3))
        except DecryptionError as exc:
            report.failed.append((blob_id, str(exc)))
            continue
        # Guarded by the old wrapping: a concurrent rotation that got here first wins.
        result = db.session.execute(
            update(ImageBlob)
            .where(ImageBlob.id == blob_id, ImageBlob.master_key_id == master_id)
            .values(wrapped_key=new_wrapped, master_key_id=new_id)
            .execution_options(synchronize_session=False)
        )
        report.rewrapped += result.rowcount or 0  # type: ignore[attr-defined]
    db.session.flush()
    return report, (rows[-1][0] if rows else None)


@dataclass
class RotationResult:
    active_key: str
    started: bool  # a new master key was generated by this run
    rewrapped: int
    failed: list[tuple[int, str]]
    remaining: dict[str, int]  # retired key id -> blobs still wrapped by it
    dropped: list[str]

    @property
    def complete(self) -> bool:
        return not self.failed and not any(self.remaining.values())


def rotate_master_key(
    *,
    keys: FileKeyProvider | None = None,
    commit: Callable[[], None] | None = None,
    batch_size: int = 500,
    finish: bool = False,
    actor: Any = None,
    max_batches: int | None = None,
) -> RotationResult:
    """Start or resume a master-key rotation; with `finish`, also drop retired keys.

    - master.key holds one key: generate a new one and put it first (the old stays, retired);
    - master.key already holds retired keys: a rotation is under way, resume it;
    - re-wrap every image key not under the active key, batch by batch, calling `commit` after
      each batch (resumable: kill it and run it again);
    - `finish` (never starts a rotation): when no blob is wrapped by a retired key any more, remove those keys from
      master.key. Without `finish` they are kept, so that processes on other hosts that still
      use an older copy of master.key can read what they wrote (see docs/operations-audit.md).
    `max_batches` stops early (tests simulate a killed run with it).
    """
    from portal.audit.services import record

    keys = keys or key_provider()
    commit = commit or db.session.commit
    started = False
    if len(keys.master_ids()) == 1 and not finish:
        retired = keys.master_ids()
        new_id = keys.add_master_key()
        started = True
        record(
            "keys.master_rotated", actor=actor, object_type="master_key", object_id=new_id,
            detail={"retired": retired},
        )
        commit()
    active = keys.active_master_id
    total = 0
    failed: list[tuple[int, str]] = []
    after_id, batches = 0, 0
    while max_batches is None or batches < max_batches:
        report, last_id = rewrap_batch(keys, after_id=after_id, batch_size=batch_size)
        commit()
        batches += 1
        total += report.rewrapped
        failed.extend(report.failed)
        if last_id is None:
            break
        after_id = last_id
    counts = blobs_by_master_key()
    remaining = {kid: n for kid, n in counts.items() if kid != active}
    dropped: list[str] = []
    if total or failed:
        record(
            "keys.rewrapped", actor=actor, outcome="failure" if failed else "success",
            object_type="master_key", object_id=active,
            detail={"rewrapped": total, "failed_blob_ids": [i for i, _ in failed][:100],
                    "remaining": remaining},
        )
    if finish and not failed and not any(remaining.values()):
        retired = [kid for kid in keys.master_ids() if kid != active]
        # Re-check right before the file changes: a blob wrapped by another process with a
        # retired key since the count above keeps that key in the file.
        still_used = {
            kid for kid, n in blobs_by_master_key().items() if kid != active and n
        }
        dropped = keys.drop_master_keys([kid for kid in retired if kid not in still_used])
        remaining = {kid: n for kid, n in blobs_by_master_key().items() if kid != active}
        if dropped:
            record(
                "keys.master_retired", actor=actor, object_type="master_key", object_id=active,
                detail={"dropped": dropped},
            )
    commit()
    return RotationResult(active, started, total, failed, remaining, dropped)
