"""Durable outbox: write protocol, states, backoff, recovery, and SIGKILL at any point."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scanner_agent.outbox import (
    FAILED,
    PENDING,
    UPLOADING,
    Outbox,
    OutboxError,
    OutboxFileError,
    OutboxLocked,
    sm3_hex,
)

CHILD = Path(__file__).with_name("outbox_child.py")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(tmp_path, clock):
    with Outbox(tmp_path / "outbox", clock=clock, rng=random.Random(1)) as ob:
        yield ob


def _add(box: Outbox, n: int = 0, data: bytes | None = None):
    return box.add("job-7", "ZC20240601-0001", "id_copy", n, data or os.urandom(3000), {"k": n})


def _files(box: Outbox) -> list[str]:
    return sorted(os.listdir(box.pages_dir))


def test_add_writes_file_and_row_before_anything_else(box):
    data = b"\xff\xd8" + os.urandom(5000)
    page = _add(box, 1, data)
    assert page.sequence == 1 and page.state == PENDING
    assert page.path.read_bytes() == data
    assert page.sm3 == sm3_hex(data) and page.size == len(data)
    assert page.meta == {"k": 1}
    assert (page.job_id, page.business_serial, page.material_code, page.page_number) == (
        "job-7",
        "ZC20240601-0001",
        "id_copy",
        1,
    )
    assert box.read_bytes(page) == data
    assert _files(box) == [page.page_uuid + ".jpg"]
    with pytest.raises(ValueError):
        box.add("job-7", None, None, 2, b"", {})


def test_sm3_is_the_standard_digest():
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sequence_is_monotonic_and_never_reused(tmp_path, clock):
    with Outbox(tmp_path / "ob", clock=clock) as box:
        pages = [_add(box, i) for i in range(3)]
        assert [p.sequence for p in pages] == [1, 2, 3]
        assert len({p.page_uuid for p in pages}) == 3
        for p in pages:
            box.ack(p.sequence)
    with Outbox(tmp_path / "ob", clock=clock) as box:
        assert _add(box).sequence == 4  # even after every row was deleted and a restart
        assert box.stats()["last_sequence"] == 4


def test_next_due_claims_in_sequence_order_and_ack_removes(box, clock):
    a, b = _add(box, 1), _add(box, 2)
    first = box.next_due()
    assert first.sequence == a.sequence and first.state == UPLOADING and first.attempts == 1
    assert box.next_due().sequence == b.sequence
    assert box.next_due() is None  # both claimed
    box.ack(a.sequence)
    assert not a.path.exists()
    with pytest.raises(KeyError):
        box.get(a.sequence)
    assert [p.sequence for p in box.pending()] == [b.sequence]


def test_backoff_is_exponential_with_jitter_and_capped(box, clock):
    page = _add(box)
    delays = []
    for _ in range(12):
        claimed = box.next_due()
        assert claimed is not None and claimed.sequence == page.sequence
        retried = box.mark_retry(page.sequence, "portal unreachable")
        delay = retried.next_attempt_at - clock.now
        delays.append(delay)
        assert retried.state == PENDING and retried.last_error == "portal unreachable"
        assert box.next_due() is None  # not due yet
        clock.now += delay
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(300.0, 2.0 * 2 ** (attempt - 1))
        assert nominal / 2 <= delay <= nominal
    assert max(delays) <= 300.0 and delays[-1] >= 150.0
    assert len({round(d, 6) for d in delays[:5]}) == 5  # jittered, not a fixed ladder


def test_backoff_of_one_page_does_not_block_the_next(box, clock):
    a, b = _add(box, 1), _add(box, 2)
    box.next_due()
    box.mark_retry(a.sequence, "timeout")
    assert box.next_due().sequence == b.sequence


def test_reject_keeps_the_page_for_the_clerk(box):
    page = _add(box)
    box.next_due()
    failed = box.reject(page.sequence, "business_closed", "业务已办结，不能再补充影像")
    assert failed.state == FAILED
    assert [p.error_code for p in box.failed()] == ["business_closed"]
    assert box.pending() == [] and box.next_due() is None
    assert page.path.exists()
    with pytest.raises(OutboxError):
        box.mark_retry(page.sequence, "x")
    again = box.requeue(page.sequence)
    assert again.state == PENDING and again.error_code is None and again.attempts == 0
    box.reject(page.sequence, "bad", "bad")
    box.discard(page.sequence)
    assert box.stats()["total"] == 0 and _files(box) == []


def test_stats(box):
    pages = [_add(box, i, b"x" * 100) for i in range(3)]
    box.next_due()
    box.reject(pages[2].sequence, "e", "m")
    stats = box.stats()
    assert (stats[PENDING], stats[UPLOADING], stats[FAILED], stats["total"]) == (1, 1, 1, 3)
    assert stats["bytes"] == 300


def test_recover_after_a_crash(tmp_path, clock):
    root = tmp_path / "ob"
    box = Outbox(root, clock=clock)
    claimed, missing, _ = _add(box, 1), _add(box, 2), _add(box, 3)
    box.next_due()  # claimed -> uploading, then the agent "dies"
    box.close()
    missing.path.unlink()
    (root / "pages" / "half-written.tmp").write_bytes(b"partial")
    (root / "pages" / "orphan.jpg").write_bytes(b"never committed")
    box = Outbox(root, clock=clock)  # recover() runs at open
    try:
        assert box.last_recovery == {
            "requeued": 1,
            "tmp_removed": 1,
            "orphans_removed": 1,
            "file_missing": 1,
        }
        assert box.get(claimed.sequence).state == PENDING
        gone = box.get(missing.sequence)
        assert (gone.state, gone.error_code) == (FAILED, "file_missing")
        assert "half-written.tmp" not in _files(box) and "orphan.jpg" not in _files(box)
        assert box.recover() == {
            "requeued": 0,
            "tmp_removed": 0,
            "orphans_removed": 0,
            "file_missing": 0,
        }
    finally:
        box.close()


def test_read_bytes_detects_corruption(box):
    page = _add(box)
    page.path.write_bytes(b"bit rot")
    with pytest.raises(OutboxFileError) as info:
        box.read_bytes(page)
    assert info.value.code == "file_corrupt"
    assert box.get(page.sequence).state == FAILED


def test_one_owner_per_outbox_and_shared_readers(tmp_path):
    with Outbox(tmp_path / "ob") as agent:
        assert agent.is_owner
        with pytest.raises(OutboxLocked):
            Outbox(tmp_path / "ob")
        page = _add(agent)
        # a second process-like reader (e.g. `scanner-agent outbox`) shares the database
        with Outbox(tmp_path / "ob", recover=False) as viewer:
            assert not viewer.is_owner
            assert [p.sequence for p in viewer.pending()] == [page.sequence]
            with pytest.raises(OutboxLocked):
                viewer.recover()  # only the owner may delete uncommitted files
    Outbox(tmp_path / "ob").close()  # released on close


def test_threads_add_and_upload_concurrently(box):
    def producer(k):
        for i in range(10):
            _add(box, k * 100 + i, b"p" * 50)

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    acked = 0
    deadline = time.monotonic() + 20
    while acked < 30 and time.monotonic() < deadline:
        page = box.next_due()
        if page is None:
            time.sleep(0.005)
            continue
        assert box.read_bytes(page) == b"p" * 50
        box.ack(page.sequence)
        acked += 1
    for t in threads:
        t.join()
    assert acked == 30 and box.stats()["total"] == 0 and _files(box) == []


# -- SIGKILL ------------------------------------------------------------------------------------


class _Child:
    """The outbox child process; its stdout is read by a thread so that no read can hang."""

    def __init__(self, root: Path, mode: str, size: int = 20_000) -> None:
        self.stderr = root.parent / f"child-{mode.replace(':', '-')}.err"
        self.lines: queue.Queue[str | None] = queue.Queue()
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), str(root), mode, str(size)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.next_line() == "READY"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self, timeout: float = 30) -> str | None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            pytest.fail("outbox child silent for 30 s")
        if line is None:
            pytest.fail(f"outbox child ended early: {self.stderr.read_text(errors='replace')}")
        return line

    def kill(self) -> list[str]:
        """SIGKILL; returns the lines printed before death."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)
        rest = []
        while not self.lines.empty():
            line = self.lines.get()
            if line is not None:
                rest.append(line)
        return rest


def _added(lines) -> dict[int, tuple[str, str]]:
    added = {}
    for line in lines:
        if line.startswith("ADDED"):
            _, seq, page_uuid, digest = line.split()
            added[int(seq)] = (page_uuid, digest)
    return added


def _freeze_and_kill(root: Path, phase: str) -> dict[int, tuple[str, str]]:
    child = _Child(root, f"phase:{phase}")
    try:
        lines = [child.next_line(), child.next_line()]
        assert child.next_line() == f"FROZEN {phase}"
    finally:
        child.kill()
    return _added(lines)


def _check_consistent(root: Path, added: dict[int, tuple[str, str]], known: frozenset[int] = frozenset()) -> list[int]:
    """Reopen after the kill: every acknowledged add is intact, nothing half-written shows.
    ``known``: sequences already checked after an earlier kill."""
    with Outbox(root) as box:
        rows = box.pending() + box.failed()
        sequences = [p.sequence for p in rows]
        assert sequences == sorted(set(sequences))  # unique and ordered
        by_seq = {p.sequence: p for p in rows}
        for seq, (page_uuid, digest) in added.items():
            assert seq in by_seq, f"page {seq} acknowledged by add() but lost"
            assert by_seq[seq].page_uuid == page_uuid
            assert by_seq[seq].sm3 == digest
        extra = set(by_seq) - set(added) - known
        assert len(extra) <= 1  # at most the add() in flight, and then it is complete
        for page in rows:
            assert page.state == PENDING
            assert box.read_bytes(page) is not None  # size and SM3 match
        files = sorted(os.listdir(box.pages_dir))
        assert files == sorted(p.page_uuid + ".jpg" for p in rows)  # no tmp, no orphan
        return sequences


@pytest.mark.parametrize(
    ("phase", "third_page_visible"),
    [
        ("tmp_written", False),
        ("tmp_synced", False),
        ("renamed", False),
        ("inserted", False),  # inside the transaction, before COMMIT
        ("committed", True),  # after COMMIT, before add() returned
    ],
)
def test_sigkill_at_each_step_of_add(tmp_path, phase, third_page_visible):
    root = tmp_path / "ob"
    added = _freeze_and_kill(root, phase)
    assert sorted(added) == [1, 2]
    sequences = _check_consistent(root, added)
    assert sequences == ([1, 2, 3] if third_page_visible else [1, 2])
    with Outbox(root) as box:  # the next page follows the last committed one
        assert _add(box).sequence == (4 if third_page_visible else 3)


@pytest.mark.parametrize(
    ("phase", "left"),
    [
        # DELETE not committed: the page stays, complete, and is uploaded again (the upload is
        # idempotent by page_uuid)
        ("ack_deleted_row", [1, 2]),
        # DELETE committed, file not yet unlinked: recover() removes the orphan file
        ("ack_committed", [2]),
    ],
)
def test_sigkill_inside_ack(tmp_path, phase, left):
    root = tmp_path / "ob"
    added = _freeze_and_kill(root, phase)
    if 1 not in left:
        added.pop(1)
    assert _check_consistent(root, added) == left


def test_sigkill_at_random_moments_never_loses_or_duplicates(tmp_path):
    root = tmp_path / "ob"
    rng = random.Random(42)
    added: dict[int, tuple[str, str]] = {}
    seen: set[int] = set()
    for _round in range(4):
        child = _Child(root, "loop", size=rng.choice([20_000, 200_000]))
        time.sleep(rng.uniform(0.15, 0.4))
        added.update(_added(child.kill()))
        assert added, "the child added nothing before the kill"
        sequences = _check_consistent(root, added, frozenset(seen))
        new = set(sequences) - seen
        assert new and min(new) > max(seen, default=0)  # never a reused sequence
        seen.update(sequences)
    assert len(added) >= 4
