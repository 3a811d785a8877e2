"""A tiny, strict DER encoder/decoder: just enough for SM2 keys, signatures and ciphertexts.

Only single-byte tags and definite lengths are supported. The decoder rejects anything that is
not canonical DER (non-minimal lengths or integers, negative integers, trailing bytes), which
keeps signatures non-malleable and makes every parse failure a clean :class:`DERError`.
"""

from __future__ import annotations

INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30


class DERError(ValueError):
    """The input is not the expected canonical DER."""


# --------------------------------------------------------------------------- encoding


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one tag-length-value element."""
    return bytes([tag]) + _length(len(value)) + value


def integer(value: int) -> bytes:
    """Encode a non-negative INTEGER (minimal, with a leading zero when the top bit is set)."""
    if value < 0:
        raise ValueError("negative integers are not supported")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # always room for a sign bit
    if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return tlv(INTEGER, body)


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def bit_string(value: bytes) -> bytes:
    """Encode a BIT STRING whose length is a whole number of bytes."""
    return tlv(BIT_STRING, b"\x00" + value)


def null() -> bytes:
    return tlv(NULL, b"")


def oid(dotted: str) -> bytes:
    """Encode an OBJECT IDENTIFIER given in dotted form."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"invalid OID {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(OID, bytes(out))


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def explicit(number: int, inner: bytes) -> bytes:
    """Encode a context-specific constructed (EXPLICIT) tag ``[number]`` around ``inner``."""
    if not 0 <= number < 31:
        raise ValueError("only low tag numbers are supported")
    return tlv(0xA0 | number, inner)


# --------------------------------------------------------------------------- decoding


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """Read one element at ``pos``; return ``(tag, value, end)``."""
    if pos + 2 > len(data):
        raise DERError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not supported")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DERError("indefinite length is not DER")
        if count > 4:
            raise DERError("length too large")
        if pos + count > len(data):
            raise DERError("truncated length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise DERError("non-minimal length")
        pos += count
    end = pos + length
    if end > len(data):
        raise DERError("truncated value")
    return tag, bytes(data[pos:end]), end


def parse_elements(data: bytes) -> list[tuple[int, bytes]]:
    """Split the whole of ``data`` into consecutive elements."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        tag, value, pos = read_tlv(data, pos)
        out.append((tag, value))
    return out


def parse_single(data: bytes, tag: int) -> bytes:
    """Parse exactly one element of ``tag`` that spans all of ``data``; return its value."""
    got, value, end = read_tlv(data)
    if got != tag:
        raise DERError(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    if end != len(data):
        raise DERError("trailing data")
    return value


def parse_sequence(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a SEQUENCE spanning all of ``data``; return its elements."""
    return parse_elements(parse_single(data, SEQUENCE))


def expect(element: tuple[int, bytes], tag: int) -> bytes:
    """Return the value of ``element`` after checking its tag."""
    if element[0] != tag:
        raise DERError(f"expected tag 0x{tag:02x}, got 0x{element[0]:02x}")
    return element[1]


def decode_integer(value: bytes) -> int:
    """Decode the value of a non-negative, minimally encoded INTEGER."""
    if not value:
        raise DERError("empty integer")
    if value[0] & 0x80:
        raise DERError("negative integer")
    if len(value) > 1 and value[0] == 0 and value[1] < 0x80:
        raise DERError("non-minimal integer")
    return int.from_bytes(value, "big")


def decode_bit_string(value: bytes) -> bytes:
    """Decode the value of a BIT STRING that holds whole bytes."""
    if not value or value[0] != 0:
        raise DERError("bit string with unused bits")
    return value[1:]


def decode_oid(value: bytes) -> str:
    """Decode the value of an OBJECT IDENTIFIER to dotted form."""
    if not value or value[-1] & 0x80:
        raise DERError("truncated OID")
    arcs: list[int] = []
    acc = 0
    fresh = True
    for byte in value:
        if fresh and byte == 0x80:
            raise DERError("non-minimal OID arc")
        acc = (acc << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])
