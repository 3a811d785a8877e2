"""The agent's SM2 private key on disk: owner-only permissions; DPAPI-protected on Windows.

The private key never leaves the counter PC. On Windows the PEM is additionally wrapped with
DPAPI (CryptProtectData, bound to the Windows user) when available.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gmcrypto.sm2 import PrivateKey

DPAPI_MAGIC = b"DPAPI1\n"


def _write_owner_only(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if sys.platform != "win32":
        os.chmod(path, 0o600)


def save_key(path: Path, key: PrivateKey) -> None:
    data = key.to_pem()
    if sys.platform == "win32":
        protected = _dpapi(data, protect=True)
        if protected is not None:
            data = DPAPI_MAGIC + protected
    _write_owner_only(path, data)


def load_key(path: Path) -> PrivateKey:
    data = path.read_bytes()
    if data.startswith(DPAPI_MAGIC):
        clear = _dpapi(data[len(DPAPI_MAGIC):], protect=False)
        if clear is None:
            raise OSError(f"{path}: DPAPI is not available to unprotect the key")
        data = clear
    elif sys.platform != "win32" and path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} is readable by other users; run: chmod 600 {path}")
    return PrivateKey.from_pem(data)


def _dpapi(data: bytes, protect: bool) -> bytes | None:  # pragma: no cover - Windows only
    try:
        import ctypes
        from ctypes import wintypes
    except ImportError:
        return None

    class Blob(ctypes.Structure):
        _fields_ = [("cbData", wintypes.DWORD), ("pbData", ctypes.POINTER(ctypes.c_char))]

    crypt32 = ctypes.windll.crypt32  # type: ignore[attr-defined]
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    buffer = ctypes.create_string_buffer(data, len(data))
    blob_in = Blob(len(data), ctypes.cast(buffer, ctypes.POINTER(ctypes.c_char)))
    blob_out = Blob()
    func = crypt32.CryptProtectData if protect else crypt32.CryptUnprotectData
    if not func(ctypes.byref(blob_in), None, None, None, None, 0, ctypes.byref(blob_out)):
        return None
    try:
        return ctypes.string_at(blob_out.pbData, blob_out.cbData)
    finally:
        kernel32.LocalFree(blob_out.pbData)
