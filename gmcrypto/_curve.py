"""Parameters of the SM2 recommended curve (GB/T 32918.5) and point validation."""

from __future__ import annotations

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

COORD_SIZE = 32
G_BYTES = GX.to_bytes(32, "big") + GY.to_bytes(32, "big")
CURVE_BYTES = A.to_bytes(32, "big") + B.to_bytes(32, "big") + G_BYTES  # a||b||xG||yG, for Z


def is_on_curve(x: int, y: int) -> bool:
    """True if (x, y) is an affine point of the curve (never the point at infinity).

    The cofactor is 1, so every such point is in the prime-order group: no further check
    is needed before multiplying it by a secret scalar.
    """
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


def point_from_bytes(raw: bytes) -> tuple[int, int]:
    """Decode 04||x||y, x||y, or compressed 02/03||x; raise ValueError unless on the curve."""
    if len(raw) == 65 and raw[0] == 4:
        raw = raw[1:]
    if len(raw) == 64:
        x = int.from_bytes(raw[:32], "big")
        y = int.from_bytes(raw[32:], "big")
    elif len(raw) == 33 and raw[0] in (2, 3):
        x = int.from_bytes(raw[1:], "big")
        if x >= P:
            raise ValueError("x coordinate out of range")
        y = pow((x * x * x + A * x + B) % P, (P + 1) // 4, P)  # P = 3 (mod 4)
        if (y & 1) != (raw[0] & 1):
            y = P - y
    else:
        raise ValueError("public key must be 65 bytes 04||x||y (or 64 bytes x||y)")
    if not is_on_curve(x, y):
        raise ValueError("point is not on the SM2 curve")
    return x, y


def point_to_bytes(x: int, y: int) -> bytes:
    """Encode x||y, 64 bytes (without the 04 prefix)."""
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")
