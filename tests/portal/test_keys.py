"""The file key provider: key files, master-key wrap/unwrap and rotation primitives."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from gmcrypto.errors import DecryptionError
from portal.keys import FileKeyProvider, KeyError_, read_master_keys, write_master_keys


@pytest.fixture
def provider(tmp_path) -> FileKeyProvider:  # type: ignore[no-untyped-def]
    keys = tmp_path / "keys"
    p = FileKeyProvider(keys / "master.key", keys / "data.key", keys / "portal-sm2.pem")
    p.load(create_missing=True)
    return p


def test_creates_private_key_files(provider):
    for path in (provider.master_key_file, provider.data_key_file, provider.signing_key_file):
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(provider.master_key_file.parent.stat().st_mode) == 0o700
    assert len(provider.master_ids()) == 1
    assert not list(provider.master_key_file.parent.glob("*.tmp"))
    assert not list(provider.master_key_file.parent.glob("*.new"))


def test_missing_files_are_an_error_unless_asked_to_create(tmp_path):
    p = FileKeyProvider(tmp_path / "m", tmp_path / "d", tmp_path / "s")
    with pytest.raises(KeyError_, match="missing master key file"):
        p.load()


def test_reload_keeps_the_same_keys(provider):
    again = FileKeyProvider(provider.master_key_file, provider.data_key_file,
                            provider.signing_key_file)
    again.load(create_missing=True)
    assert again.master_ids() == provider.master_ids()
    assert again.public_key == provider.public_key
    assert again.blind_index("phone", "13800000000") == provider.blind_index("phone", "13800000000")


def test_concurrent_first_start_agrees_on_one_key(tmp_path):
    """Several workers starting on a fresh instance must not each invent their own keys."""
    keys = tmp_path / "keys"
    loaded: list[FileKeyProvider] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        p = FileKeyProvider(keys / "master.key", keys / "data.key", keys / "portal-sm2.pem")
        barrier.wait()
        p.load(create_missing=True)
        loaded.append(p)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({tuple(p.master_ids()) for p in loaded}) == 1
    assert len({p.public_key.key_id() for p in loaded}) == 1
    assert len({p.blind_index("phone", "1") for p in loaded}) == 1


def test_wrap_binds_the_aad(provider):
    kid, wrapped = provider.wrap(b"k" * 16, b"abc")
    assert kid == provider.active_master_id
    assert provider.unwrap(kid, wrapped, b"abc") == b"k" * 16
    with pytest.raises(DecryptionError):
        provider.unwrap(kid, wrapped, b"abd")
    with pytest.raises(DecryptionError, match="not in"):
        provider.unwrap("00000000", wrapped, b"abc")


def test_add_rewrap_and_drop(provider):
    old = provider.active_master_id
    _, wrapped = provider.wrap(b"k" * 16, b"x")
    new = provider.add_master_key()
    assert provider.master_ids() == [new, old]
    assert provider.unwrap(old, wrapped, b"x") == b"k" * 16  # old key still there
    kid, rewrapped = provider.rewrap(old, wrapped, b"x")
    assert kid == new and provider.unwrap(new, rewrapped, b"x") == b"k" * 16
    with pytest.raises(KeyError_, match="active master key cannot be dropped"):
        provider.drop_master_keys([new])
    assert provider.drop_master_keys([old, "unknown"]) == [old]
    assert provider.master_ids() == [new]
    with pytest.raises(DecryptionError):
        provider.unwrap(old, wrapped, b"x")


def test_changes_to_master_key_are_picked_up(provider):
    other = FileKeyProvider(provider.master_key_file, provider.data_key_file,
                            provider.signing_key_file)
    other.load()
    new = provider.add_master_key()
    assert other.active_master_id == new
    assert other.wrap(b"k" * 16, b"y")[0] == new


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no master key"),
        ("# only a comment\n", "no master key"),
        ("k1\n", "expected '<key id> <32 hex digits>'"),
        ("k1 zz\n", "expected '<key id> <32 hex digits>'"),
        ("k1 00112233\n", "16 bytes"),
    ],
)
def test_malformed_master_key_files(tmp_path, content, message):
    path = tmp_path / "master.key"
    path.write_text(content)
    with pytest.raises(KeyError_, match=message):
        read_master_keys(path)


def test_write_master_keys_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "master.key"
    write_master_keys(path, [("a1", b"\x01" * 16)])

    def crash(src, dst):  # type: ignore[no-untyped-def]
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_master_keys(path, [("b2", b"\x02" * 16), ("a1", b"\x01" * 16)])
    assert read_master_keys(path) == [("a1", b"\x01" * 16)]
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
