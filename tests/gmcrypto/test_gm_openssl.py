"""Interoperability with the OpenSSL 3 command line (keys, signatures, encryption, SM3, SM4)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gmcrypto import sm2, sm4
from gmcrypto.sm3 import sm3_hex

UID = sm2.DEFAULT_UID.decode()

assert shutil.which("openssl"), "the OpenSSL 3 command line is required (scripts/system-packages.sh)"


def openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["openssl", *map(str, args)], input=stdin, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl {args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


@pytest.fixture
def openssl_key(tmp_path: Path) -> tuple[Path, Path]:
    key_pem = tmp_path / "ossl_key.pem"
    pub_pem = tmp_path / "ossl_pub.pem"
    openssl("genpkey", "-algorithm", "SM2", "-out", key_pem)
    openssl("pkey", "-in", key_pem, "-pubout", "-out", pub_pem)
    return key_pem, pub_pem


def test_openssl_keys_load_here(backend: str, openssl_key: tuple[Path, Path]) -> None:
    key_pem, pub_pem = openssl_key
    key = sm2.PrivateKey.from_pem(key_pem.read_bytes())
    public = sm2.PublicKey.from_pem(pub_pem.read_bytes())
    assert key.public_key() == public
    # Our encodings are byte-identical to OpenSSL's.
    assert public.to_pem() == pub_pem.read_bytes()
    assert key.to_pem() == key_pem.read_bytes()


def test_openssl_sec1_and_encrypted_keys_load_here(
    backend: str, openssl_key: tuple[Path, Path], tmp_path: Path
) -> None:
    key_pem, _ = openssl_key
    expected = sm2.PrivateKey.from_pem(key_pem.read_bytes())
    sec1 = openssl("ec", "-in", key_pem)
    assert b"-----BEGIN SM2 PRIVATE KEY-----" in sec1
    assert sm2.PrivateKey.from_pem(sec1) == expected
    ec_label = sec1.replace(b"SM2 PRIVATE KEY", b"EC PRIVATE KEY")
    assert sm2.PrivateKey.from_pem(ec_label) == expected
    for cipher in ("sm4-cbc", "aes-256-cbc"):
        enc = openssl(
            "pkcs8",
            "-topk8",
            "-in",
            key_pem,
            "-v2",
            cipher,
            "-iter",
            "2048",
            "-passout",
            "pass:geheim",
        )
        assert sm2.PrivateKey.from_pem(enc, b"geheim") == expected
        with pytest.raises(sm2.InvalidKey):
            sm2.PrivateKey.from_pem(enc, b"wrong")


def test_our_keys_load_in_openssl(backend: str, tmp_path: Path) -> None:
    key = sm2.PrivateKey.generate()
    key_pem = tmp_path / "key.pem"
    key_pem.write_bytes(key.to_pem())
    text = openssl("pkey", "-in", key_pem, "-text", "-noout").decode()
    assert "ASN1 OID: SM2" in text
    pub_pem = openssl("pkey", "-in", key_pem, "-pubout")
    assert pub_pem == key.public_key().to_pem()
    pub_file = tmp_path / "pub.pem"
    pub_file.write_bytes(key.public_key().to_pem())
    assert openssl("pkey", "-pubin", "-in", pub_file, "-pubout") == key.public_key().to_pem()


def test_our_encrypted_key_loads_in_openssl_3_0(backend: str, tmp_path: Path) -> None:
    key = sm2.PrivateKey.generate()
    enc = tmp_path / "enc.pem"
    enc.write_bytes(key.to_pem(b"pw", prf="hmacWithSHA256", iterations=2048))
    plain = openssl("pkey", "-in", enc, "-passin", "pass:pw")
    assert sm2.PrivateKey.from_pem(plain) == key


def test_our_signature_verifies_in_openssl(backend: str, tmp_path: Path) -> None:
    key = sm2.PrivateKey.generate()
    message = "影像 page 1".encode() * 100
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "pub.pem").write_bytes(key.public_key().to_pem())
    (tmp_path / "sig.der").write_bytes(key.sign(message))
    out = openssl(
        "dgst",
        "-sm3",
        "-verify",
        tmp_path / "pub.pem",
        "-sigopt",
        f"distid:{UID}",
        "-signature",
        tmp_path / "sig.der",
        tmp_path / "msg",
    )
    assert out.strip() == b"Verified OK"
    (tmp_path / "bad").write_bytes(message + b"!")
    result = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sm3",
            "-verify",
            tmp_path / "pub.pem",
            "-sigopt",
            f"distid:{UID}",
            "-signature",
            tmp_path / "sig.der",
            tmp_path / "bad",
        ],
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0 and b"Verification failure" in result.stdout


def test_openssl_signature_verifies_here(backend: str, openssl_key: tuple[Path, Path]) -> None:
    key_pem, pub_pem = openssl_key
    message = b"signed by openssl"
    msg = key_pem.parent / "msg"
    msg.write_bytes(message)
    sig = openssl("dgst", "-sm3", "-sign", key_pem, "-sigopt", f"distid:{UID}", msg)
    public = sm2.PublicKey.from_pem(pub_pem.read_bytes())
    assert public.verify(message, sig)
    assert not public.verify(message + b"!", sig)
    assert not public.verify(message, sig, uid=b"")  # OpenSSL's default would be the empty ID
    plain = openssl("dgst", "-sm3", "-sign", key_pem, msg)
    assert public.verify(message, plain, uid=b"")


def test_openssl_ciphertext_decrypts_here(backend: str, openssl_key: tuple[Path, Path]) -> None:
    key_pem, pub_pem = openssl_key
    secret = b"0123456789abcdef"
    der = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pub_pem, stdin=secret)
    key = sm2.PrivateKey.from_pem(key_pem.read_bytes())
    assert key.decrypt(sm2.ciphertext_der_to_raw(der)) == secret


def test_our_ciphertext_decrypts_in_openssl(backend: str, tmp_path: Path) -> None:
    key = sm2.PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    for secret in (b"k" * 16, bytes(range(256)) * 2):
        ct = tmp_path / "ct.der"
        ct.write_bytes(sm2.ciphertext_raw_to_der(key.public_key().encrypt(secret)))
        assert openssl("pkeyutl", "-decrypt", "-inkey", tmp_path / "key.pem", "-in", ct) == secret


def test_sm3_matches_openssl(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    (tmp_path / "data").write_bytes(data)
    out = openssl("dgst", "-sm3", "-r", tmp_path / "data").decode()
    assert out.split()[0] == sm3_hex(data)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_sm4_cbc_matches_openssl(tmp_path: Path, size: int) -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    iv = bytes(range(16))
    data = bytes((7 * i) & 0xFF for i in range(size))
    (tmp_path / "pt").write_bytes(data)
    ours = sm4.cbc_encrypt(key, iv, data)
    theirs = openssl("enc", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), "-in", tmp_path / "pt")
    assert ours == theirs
    (tmp_path / "ct").write_bytes(ours)
    back = openssl(
        "enc", "-d", "-sm4-cbc", "-K", key.hex(), "-iv", iv.hex(), "-in", tmp_path / "ct"
    )
    assert back == data == sm4.cbc_decrypt(key, iv, theirs)
