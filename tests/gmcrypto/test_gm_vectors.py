"""Published known-answer vectors: GB/T 32905 (SM3), GB/T 32907 (SM4), RFC 8998 (SM4-GCM),
GB/T 32918.5 / GM/T 0003.5 Annex (SM2 on the recommended curve)."""

from __future__ import annotations

import pytest

from gmcrypto import sm2, sm4
from gmcrypto.sm3 import SM3Stream, hmac_sm3, hmac_sm3_verify, pbkdf2_sm3, sm3, sm3_hex

# --------------------------------------------------------------------------- SM3


def test_sm3_abc() -> None:
    assert sm3_hex(b"abc") == ("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")


def test_sm3_512_bit_example() -> None:
    assert sm3(b"abcd" * 16).hex() == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_sm3_stream_matches_one_shot() -> None:
    data = b"abcd" * 16
    stream = SM3Stream()
    for chunk in (data[:2], b"", data[2:63], data[63:]):
        stream.update(chunk)
    assert stream.digest() == sm3(b"abcd" * 16)
    forked = stream.copy()
    forked.update(b"x")
    assert stream.hexdigest() == sm3_hex(b"abcd" * 16)  # digest() does not finalise
    assert forked.digest() == sm3(b"abcd" * 16 + b"x")


def test_hmac_sm3_and_pbkdf2_are_deterministic_and_keyed() -> None:
    mac = hmac_sm3(b"key", b"data")
    assert len(mac) == 32
    assert mac == hmac_sm3(b"key", b"data") != hmac_sm3(b"kez", b"data")
    assert hmac_sm3_verify(b"key", b"data", mac)
    assert not hmac_sm3_verify(b"key", b"data", mac[:-1] + bytes([mac[-1] ^ 1]))
    derived = pbkdf2_sm3(b"password", b"salt", 1000)
    assert len(derived) == 32
    assert derived != pbkdf2_sm3(b"password", b"salu", 1000)
    assert len(pbkdf2_sm3(b"password", b"salt", 10, length=48)) == 48
    # PBKDF2 with one block is HMAC(P, S || INT(1)) for c = 1 (RFC 8018 5.2)
    assert pbkdf2_sm3(b"p", b"s", 1) == hmac_sm3(b"p", b"s\x00\x00\x00\x01")
    with pytest.raises(ValueError):
        pbkdf2_sm3(b"p", b"s", 0)


# --------------------------------------------------------------------------- SM4

SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")


def test_sm4_single_block() -> None:
    ct = sm4.ecb_encrypt_block(SM4_KEY, SM4_KEY)
    assert ct.hex() == "681edf34d206965e86b3e94f536e4246"
    assert sm4.ecb_decrypt_block(SM4_KEY, ct) == SM4_KEY


def test_sm4_one_million_iterations() -> None:
    encrypt = sm4.ecb_encryptor(SM4_KEY)
    block = SM4_KEY
    for _ in range(1_000_000):
        block = encrypt(block)
    assert block.hex() == "595298c7c6fd271f0402f804c33d3f66"


def test_sm4_gcm_rfc8998_a1() -> None:
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    ct = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
    )
    tag = bytes.fromhex("83DE3541E4C2B58177E065A9BF7B62EC")
    blob = sm4.gcm_encrypt(SM4_KEY, pt, aad=aad, nonce=iv)
    assert blob == iv + ct + tag
    assert sm4.gcm_decrypt(SM4_KEY, blob, aad=aad) == pt


def test_sm4_gcm_gbt36624_empty() -> None:
    blob = sm4.gcm_encrypt(bytes(16), b"", nonce=bytes(12))
    assert blob[12:].hex() == "232f0cfe308b49ea6fc88229b5dc858d"


# --------------------------------------------------------------------------- SM2
# GB/T 32918.5-2017 / GM/T 0003.5-2012 worked examples on the recommended curve.

D = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
PUB = bytes.fromhex(
    "04"
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
ZA = bytes.fromhex("B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3")
E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
SIG_RAW = R.to_bytes(32, "big") + S.to_bytes(32, "big")
CIPHERTEXT_DER = bytes.fromhex(
    "307C"
    "022004EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
    "022100E858F9D81E5430A57B36DAAB8F950A3C64E6EE6A63094D99283AFF767E124DF0"
    "042059983C18F809E262923C53AEC295D30383B54E39D609D160AFCB1908D0BD8766"
    "041321886CA989CA9C7D58087307CA93092D651EFA"
)


def test_sm2_public_key_from_private(backend: str) -> None:
    assert sm2.PrivateKey.from_bytes(D).public_key().to_bytes() == PUB


def test_sm2_z_value_and_digest(backend: str) -> None:
    point = PUB[1:]
    from gmcrypto._curve import CURVE_BYTES

    entl_id = (16 * 8).to_bytes(2, "big") + sm2.DEFAULT_UID
    assert sm3(entl_id + CURVE_BYTES + point) == ZA
    assert sm2._digest(point, b"message digest", sm2.DEFAULT_UID) == E


def test_sm2_signature_example_fixed_k(backend: str) -> None:
    key = sm2.PrivateKey.from_bytes(D)
    # The nonce can be injected only into the pure engine (a private test hook).
    assert sm2._sign_with_k(key, b"message digest", K) == (R, S)
    public = sm2.PublicKey.from_bytes(PUB)
    assert public.verify_raw(b"message digest", SIG_RAW)
    assert public.verify(b"message digest", sm2.signature_raw_to_der(SIG_RAW))
    assert not public.verify_raw(b"message digesT", SIG_RAW)


def test_sm2_encryption_example_fixed_k(backend: str) -> None:
    key = sm2.PrivateKey.from_bytes(D)
    raw = sm2._encrypt_with_k(key.public_key(), b"encryption standard", K)
    assert sm2.ciphertext_raw_to_der(raw) == CIPHERTEXT_DER
    assert key.decrypt(sm2.ciphertext_der_to_raw(CIPHERTEXT_DER)) == b"encryption standard"
