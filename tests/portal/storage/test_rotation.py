"""`portal keys rotate`: new master key, resumable re-wrap, retired keys dropped at the end."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from portal.audit.models import AuditEntry
from portal.audit.services import verify_chain
from portal.db import db
from portal.keys import FileKeyProvider, key_provider, read_master_keys
from portal.storage.models import ImageBlob
from portal.storage.services import (
    LocalBlobStore,
    blob_store,
    load_image,
    rewrap_batch,
    rotate_master_key,
    store_image,
)

IMAGES = [f"page {i} ".encode() * (200 + i) for i in range(7)]


@pytest.fixture
def run(app):  # type: ignore[no-untyped-def]
    from portal.storage.cli import register

    register(app.cli)
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["keys", *args])


@pytest.fixture
def blobs(app) -> list[ImageBlob]:
    stored = [store_image(data, "image/jpeg") for data in IMAGES]
    db.session.commit()
    return stored


def _files() -> dict[str, bytes]:
    store = blob_store()
    assert isinstance(store, LocalBlobStore)
    return {p.name: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}


def _by_key() -> dict[str, int]:
    rows = db.session.execute(select(ImageBlob.master_key_id, ImageBlob.id)).all()
    counts: dict[str, int] = {}
    for kid, _ in rows:
        counts[kid] = counts.get(kid, 0) + 1
    return counts


def _actions(prefix: str) -> list[str]:
    return list(db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.seq)
    ))


def test_rotate_rewraps_every_key_and_finish_drops_the_old_one(app, blobs, run):
    provider = key_provider()
    old = provider.active_master_id
    files_before = _files()

    result = run("rotate", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    new = provider.active_master_id
    assert new != old and f"new active master key {new}" in result.output
    assert "re-wrapped 7 image keys" in result.output
    assert [kid for kid, _ in read_master_keys(provider.master_key_file)] == [new, old]
    db.session.expire_all()
    assert _by_key() == {new: 7}
    assert _files() == files_before  # image files are never rewritten
    assert [load_image(b) for b in db.session.scalars(select(ImageBlob).order_by(ImageBlob.id))] \
        == IMAGES

    result = run("rotate", "--finish")
    assert result.exit_code == 0, result.output
    assert f"dropped retired master keys: {old}" in result.output
    assert [kid for kid, _ in read_master_keys(provider.master_key_file)] == [new]
    db.session.expire_all()
    assert [load_image(b) for b in db.session.scalars(select(ImageBlob).order_by(ImageBlob.id))] \
        == IMAGES
    assert _actions("keys.") == ["keys.master_rotated", "keys.rewrapped", "keys.master_retired"]
    assert verify_chain().ok


def test_an_interrupted_rotation_resumes_without_a_new_key(app, blobs, run):
    provider = key_provider()
    old = provider.active_master_id
    # A run killed after its first committed batch of two.
    partial = rotate_master_key(batch_size=2, max_batches=1)
    assert partial.started and partial.rewrapped == 2 and not partial.complete
    new = provider.active_master_id
    db.session.expire_all()
    assert _by_key() == {new: 2, old: 5}
    # Images under either key keep decrypting meanwhile.
    assert [load_image(b) for b in db.session.scalars(select(ImageBlob).order_by(ImageBlob.id))] \
        == IMAGES

    result = run("rotate", "--batch-size", "2")  # the rerun
    assert result.exit_code == 0, result.output
    assert "new active master key" not in result.output  # resumed, did not start over
    assert "re-wrapped 5 image keys" in result.output
    assert provider.active_master_id == new
    db.session.expire_all()
    assert _by_key() == {new: 5 + 2}

    assert run("rotate", "--finish").exit_code == 0
    assert provider.master_ids() == [new]
    db.session.expire_all()
    assert [load_image(b) for b in db.session.scalars(select(ImageBlob).order_by(ImageBlob.id))] \
        == IMAGES


def test_finish_re_wraps_stragglers_before_dropping(app, blobs):
    provider = key_provider()
    old = provider.active_master_id
    rotate_master_key()
    # A process that had not yet re-read master.key wrapped one more image with the old key.
    stale = FileKeyProvider(provider.master_key_file, provider.data_key_file,
                            provider.signing_key_file)
    stale._masters = [(old, dict(read_master_keys(provider.master_key_file))[old])]
    stale._master_stamp = stale._stamp()  # pretend its copy is current
    late = store_image(b"late page" * 100, "image/jpeg", keys=stale)
    db.session.commit()
    assert late.master_key_id == old
    result = rotate_master_key(finish=True)
    assert result.rewrapped == 1 and result.dropped == [old]
    db.session.expire_all()
    assert load_image(db.session.get(ImageBlob, late.id)) == b"late page" * 100


def test_unknown_key_blocks_finish(app, blobs, run):
    provider = key_provider()
    db.session.execute(update(ImageBlob).where(ImageBlob.id == blobs[0].id)
                       .values(master_key_id="deadbeef"))
    db.session.commit()
    result = run("rotate")
    assert result.exit_code == 1
    assert f"blob {blobs[0].id}:" in result.output and "1 image keys could not be re-wrapped" \
        in result.output
    old_ids = provider.master_ids()
    result = run("rotate", "--finish")
    assert result.exit_code == 1
    assert provider.master_ids() == old_ids  # nothing dropped while a key is unaccounted for
    assert "failure" in db.session.scalars(
        select(AuditEntry.outcome).where(AuditEntry.action == "keys.rewrapped")).all()


def test_finish_without_a_rotation_does_nothing(app, blobs, run):
    provider = key_provider()
    before = provider.master_ids()
    result = run("rotate", "--finish")
    assert result.exit_code == 0 and "nothing to finish" in result.output
    assert provider.master_ids() == before


def test_other_processes_pick_up_the_new_key_without_restart(app, blobs):
    provider = key_provider()
    settings = app.config["SETTINGS"]
    other = FileKeyProvider.from_settings(settings)  # another worker, loaded before the rotation
    rotate_master_key()
    assert other.active_master_id == provider.active_master_id
    blob = store_image(b"after rotation" * 50, "image/jpeg", keys=other)
    assert blob.master_key_id == provider.active_master_id


def test_rewrap_batch_is_keyset_paged(app, blobs):
    provider = key_provider()
    provider.add_master_key()
    report, last = rewrap_batch(provider, batch_size=3)
    assert report.rewrapped == 3 and last == blobs[2].id
    report, last = rewrap_batch(provider, after_id=last, batch_size=3)
    assert report.rewrapped == 3 and last == blobs[5].id
    report, last = rewrap_batch(provider, after_id=last, batch_size=3)
    assert report.rewrapped == 1
    assert rewrap_batch(provider, after_id=last)[1] is None


def test_status_command(app, blobs, run):
    result = run("status")
    assert result.exit_code == 0
    assert f"{key_provider().active_master_id}  active   7 image keys" in result.output


def test_public_key_command(app, run):
    from gmcrypto.sm2 import PublicKey

    result = run("public-key")
    assert result.exit_code == 0
    assert PublicKey.from_pem(result.output) == key_provider().public_key
