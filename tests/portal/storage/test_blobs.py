"""The encrypted, content-addressed image store."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from gmcrypto.sm3 import sm3_hex
from portal.db import db
from portal.keys import key_provider
from portal.storage.models import ImageBlob
from portal.storage.services import (
    FILE_MAGIC,
    BlobIntegrityError,
    BlobNotFound,
    LocalBlobStore,
    blob_store,
    load_image,
    store_image,
)

JPEG = b"\xff\xd8\xff\xe0" + b"scan of an ID card " * 500 + b"\xff\xd9"


def _path(blob: ImageBlob):  # type: ignore[no-untyped-def]
    store = blob_store()
    assert isinstance(store, LocalBlobStore)
    return store.path(blob.content_sm3)


def test_round_trip_and_layout(app):
    blob = store_image(JPEG, "image/jpeg")
    db.session.commit()
    digest = sm3_hex(JPEG)
    assert blob.content_sm3 == digest and blob.byte_size == len(JPEG)
    assert blob.master_key_id == key_provider().active_master_id
    path = app.config["SETTINGS"].data_dir / "blobs" / digest[:2] / digest[2:4] / digest
    assert path.is_file() and _path(blob) == path
    on_disk = path.read_bytes()
    assert on_disk.startswith(FILE_MAGIC)
    assert b"scan of an ID card" not in on_disk  # encrypted at rest
    assert load_image(blob) == JPEG
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_same_content_is_stored_once(app):
    first = store_image(JPEG, "image/jpeg")
    second = store_image(JPEG, "image/jpeg")
    db.session.commit()
    assert first.id == second.id
    assert db.session.scalar(select(func.count()).select_from(ImageBlob)) == 1
    assert len(list((app.config["SETTINGS"].data_dir / "blobs").rglob("*"))) == 3  # ab/, cd/, file


def test_every_blob_has_its_own_key(app):
    a = store_image(JPEG, "image/jpeg")
    b = store_image(JPEG + b"!", "image/jpeg")
    provider = key_provider()
    key_a = provider.unwrap(a.master_key_id, a.wrapped_key, a.content_sm3.encode())
    key_b = provider.unwrap(b.master_key_id, b.wrapped_key, b.content_sm3.encode())
    assert len(key_a) == 16 and key_a != key_b


def test_a_tampered_file_fails_integrity(app):
    blob = store_image(JPEG, "image/jpeg")
    path = _path(blob)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobIntegrityError, match="altered or replaced"):
        load_image(blob)


def test_a_missing_file_fails_integrity_and_a_new_upload_restores_it(app):
    blob = store_image(JPEG, "image/jpeg")
    db.session.commit()
    _path(blob).unlink()
    with pytest.raises(BlobIntegrityError, match="missing") as info:
        load_image(blob)
    assert info.value.content_sm3 == blob.content_sm3
    again = store_image(JPEG, "image/jpeg")
    assert again.id == blob.id and load_image(blob) == JPEG


def test_a_file_swapped_for_another_blob_fails(app):
    a = store_image(JPEG, "image/jpeg")
    b = store_image(JPEG + b"other", "image/jpeg")
    _path(b).write_bytes(_path(a).read_bytes())  # valid ciphertext, wrong address
    with pytest.raises(BlobIntegrityError):
        load_image(b)
    assert load_image(a) == JPEG


def test_a_key_swapped_between_rows_fails(app):
    a = store_image(JPEG, "image/jpeg")
    b = store_image(JPEG + b"other", "image/jpeg")
    b.wrapped_key = a.wrapped_key  # the AAD of the wrap binds the content hash
    with pytest.raises(BlobIntegrityError, match="cannot be unwrapped"):
        load_image(b)


def test_a_file_that_is_not_a_blob_fails(app):
    blob = store_image(JPEG, "image/jpeg")
    _path(blob).write_bytes(JPEG)  # someone "restored" the clear image
    with pytest.raises(BlobIntegrityError, match="not an encrypted blob"):
        load_image(blob)


def test_a_failed_write_leaves_no_partial_file(app, monkeypatch):
    def crash(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store_image(JPEG, "image/jpeg")
    root = app.config["SETTINGS"].data_dir / "blobs"
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_empty_images_are_refused(app):
    with pytest.raises(ValueError):
        store_image(b"", "image/jpeg")


def test_local_store_interface(tmp_path):
    store = LocalBlobStore(tmp_path)
    address = "ab" * 32
    assert not store.exists(address)
    with pytest.raises(BlobNotFound):
        store.get(address)
    store.put(address, b"one")
    store.put(address, b"two")  # atomic replace
    assert store.get(address) == b"two" and store.exists(address)
    store.delete(address)
    assert not store.exists(address)
    with pytest.raises(ValueError):
        store.path("../../etc/passwd")


@dataclass
class MemoryStore:
    """What an S3-compatible store has to provide: the four BlobStore methods."""

    objects: dict[str, bytes] = field(default_factory=dict)

    def put(self, address: str, data: bytes) -> None:
        self.objects[address] = data

    def get(self, address: str) -> bytes:
        try:
            return self.objects[address]
        except KeyError:
            raise BlobNotFound(address) from None

    def exists(self, address: str) -> bool:
        return address in self.objects

    def delete(self, address: str) -> None:
        self.objects.pop(address, None)


def test_another_store_behind_the_interface(app):
    store = MemoryStore()
    blob = store_image(JPEG, "image/png", store=store)
    assert list(store.objects) == [blob.content_sm3]
    assert load_image(blob, store=store) == JPEG
    store.objects[blob.content_sm3] = store.objects[blob.content_sm3][:-1]
    with pytest.raises(BlobIntegrityError):
        load_image(blob, store=store)


def test_concurrent_stores_of_the_same_image_agree(app):
    """Threads racing to store the same bytes end with one row whose key opens the one file."""
    key_provider()
    barrier = threading.Barrier(5)
    ids: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            with app.app_context():
                blob = store_image(JPEG, "image/jpeg")
                db.session.commit()
                ids.append(blob.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(set(ids)) == 1 and len(ids) == 5
    blob = db.session.scalar(select(ImageBlob))
    assert load_image(blob) == JPEG


def test_storage_verify_command(app):
    from portal.storage.cli import register

    register(app.cli)
    runner = app.test_cli_runner()
    good = store_image(JPEG, "image/jpeg")
    bad = store_image(JPEG + b"2", "image/jpeg")
    db.session.commit()
    result = runner.invoke(args=["storage", "verify"])
    assert result.exit_code == 0 and "checked 2 blobs, 0 failed" in result.output
    _path(bad).unlink()
    result = runner.invoke(args=["storage", "verify"])
    assert result.exit_code == 1
    assert f"blob {bad.id}: the file is missing" in result.output
    assert f"blob {good.id}:" not in result.output
