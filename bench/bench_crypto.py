"""Throughput of gmcrypto: SM3, SM4-GCM, SM2 per back end, hybrid sealing.

Run from the repository root:  python bench/bench_crypto.py
Prints a Markdown table (and the machine it ran on) to stdout.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmcrypto import hybrid, sm2, sm4
from gmcrypto.sm3 import sm3

MB = 1024 * 1024
Row = tuple[str, str, str]


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of one call of ``fn`` over ``repeat`` runs (after one warm-up)."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def throughput(label: str, fn: Callable[[], object], size: int, repeat: int = 7) -> Row:
    seconds = timed(fn, repeat)
    return (
        label,
        f"{size / MB / seconds:,.0f} MB/s",
        f"{seconds * 1000:.1f} ms per {size // MB} MB",
    )


def per_op(label: str, fn: Callable[[], object], count: int) -> Row:
    fn()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    seconds = (time.perf_counter() - start) / count
    return (label, f"{1 / seconds:,.0f} ops/s", f"{seconds * 1000:.2f} ms/op")


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"CPU: {model}; nproc: {os.cpu_count()}; Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()})"
    )


def main() -> None:
    rows: list[Row] = []
    data = os.urandom(5 * MB)
    key = os.urandom(16)
    rows.append(throughput("SM3 (cryptography), 5 MB", lambda: sm3(data), len(data)))
    blob = sm4.gcm_encrypt(key, data)
    rows.append(throughput("SM4-GCM encrypt, 5 MB", lambda: sm4.gcm_encrypt(key, data), len(data)))
    rows.append(throughput("SM4-GCM decrypt, 5 MB", lambda: sm4.gcm_decrypt(key, blob), len(data)))

    image = os.urandom(2 * MB)
    message = os.urandom(1024)  # a manifest-sized message
    original = sm2.backend_name()
    for name, count in (("gmssl-pyx", 300), ("gmssl", 40)):
        try:
            sm2.set_backend(name)
        except RuntimeError:
            rows.append((f"SM2 [{name}]", "unavailable", ""))
            continue
        private = sm2.PrivateKey.generate()
        public = private.public_key()
        sig = private.sign(message)
        wrapped = public.encrypt(key)
        sealed = hybrid.seal(image, public)
        rows += [
            per_op(f"SM2 sign 1 KB [{name}]", lambda p=private: p.sign(message), count),
            per_op(
                f"SM2 verify 1 KB [{name}]", lambda q=public, s=sig: q.verify(message, s), count
            ),
            per_op(f"SM2 encrypt 16 B key [{name}]", lambda q=public: q.encrypt(key), count),
            per_op(
                f"SM2 decrypt 16 B key [{name}]", lambda p=private, w=wrapped: p.decrypt(w), count
            ),
            per_op(f"SM2 key generation [{name}]", sm2.PrivateKey.generate, max(count // 10, 5)),
            per_op(f"hybrid seal 2 MB image [{name}]", lambda q=public: hybrid.seal(image, q), 20),
            per_op(
                f"hybrid unseal 2 MB image [{name}]",
                lambda p=private, b=sealed: hybrid.unseal(b, p),
                20,
            ),
        ]
    sm2.set_backend(original)

    print(f"_{machine()}_\n")
    print("| operation | rate | time |")
    print("|---|---:|---:|")
    for label, rate, time_text in rows:
        print(f"| {label} | {rate} | {time_text} |")


if __name__ == "__main__":
    main()
