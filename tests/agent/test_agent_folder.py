"""Folder-watch driver: complete files only, in order, moved to done/ or rejected/."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from scanner_agent.drivers import FeederEmpty, ScanCancelled, ScanOptions
from scanner_agent.drivers.folder_driver import FolderDriver

OPTIONS = ScanOptions(source="feeder", color_mode="gray", dpi=100)


def _driver(inbox: Path, **kw) -> FolderDriver:
    kw.setdefault("idle_timeout", 0.3)
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("stable_polls", 2)
    return FolderDriver(inbox, **kw)


def _image_bytes(level: int, fmt: str = "JPEG", size=(80, 110), **save) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, level).save(out, fmt, **save)
    return out.getvalue()


def _write(path: Path, data: bytes, mtime: float | None = None) -> Path:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def _scan(driver: FolderDriver, cancel=None):
    return list(driver.scan(driver.device_id, OPTIONS, cancel or threading.Event()))


def _level(page) -> int:
    return round(sum(page.image.getextrema()) / 2)


def test_files_are_taken_in_mtime_order_and_moved_to_done(inbox):
    now = time.time() - 100
    _write(inbox / "scan_b.jpg", _image_bytes(200), mtime=now + 1)
    _write(inbox / "scan_a.png", _image_bytes(100, "PNG"), mtime=now + 2)
    _write(inbox / "scan_c.jpg", _image_bytes(50), mtime=now)
    pages = _scan(_driver(inbox))
    assert [p.meta["source_file"] for p in pages] == ["scan_c.jpg", "scan_b.jpg", "scan_a.png"]
    assert [abs(_level(p) - lvl) <= 2 for p, lvl in zip(pages, (50, 200, 100), strict=True)] == [True] * 3
    assert sorted(os.listdir(inbox / "done")) == ["scan_a.png", "scan_b.jpg", "scan_c.jpg"]
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == []


def test_name_order_is_natural(inbox):
    t = time.time() - 50
    for i, name in enumerate(["p10.png", "p9.png", "p1.png"]):
        _write(inbox / name, _image_bytes(10 * i, "PNG"), mtime=t)
    pages = _scan(_driver(inbox, order="name"))
    assert [p.meta["source_file"] for p in pages] == ["p1.png", "p9.png", "p10.png"]


def test_multipage_tiff_gives_one_page_per_frame(inbox):
    frames = [Image.new("L", (60, 90), v) for v in (20, 120, 220)]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:], dpi=(300, 300))
    _write(inbox / "batch.tif", out.getvalue())
    pages = _scan(_driver(inbox))
    assert [_level(p) for p in pages] == [20, 120, 220]
    assert [p.meta["frame"] for p in pages] == [0, 1, 2]
    assert pages[0].image.info["dpi"] == (300, 300)
    assert (inbox / "done" / "batch.tif").exists()


def test_scanned_pdf_pages_are_extracted(inbox):
    images = [Image.new("RGB", (100, 140), (v, v, v)) for v in (30, 230)]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=100)
    _write(inbox / "scan.pdf", out.getvalue())
    pages = _scan(_driver(inbox))
    assert len(pages) == 2
    assert abs(_level(pages[0]) - 30) <= 3 and abs(_level(pages[1]) - 230) <= 3


def test_file_still_being_written_is_taken_only_when_complete(inbox):
    data = _image_bytes(90, "PNG", size=(300, 400))
    target = inbox / "slow.png"

    def writer():
        with open(target, "wb") as fh:
            fh.write(data[: len(data) // 3])
            fh.flush()
            time.sleep(0.35)  # several stability windows: the partial file is tried and refused
            fh.write(data[len(data) // 3 :])

    thread = threading.Thread(target=writer)
    thread.start()
    pages = _scan(_driver(inbox, open_retries=50))
    thread.join()
    assert len(pages) == 1
    assert pages[0].image.size == (300, 400)
    assert _level(pages[0]) == 90
    assert not (inbox / "rejected").exists()


def test_bad_files_are_rejected_with_a_reason(inbox):
    _write(inbox / "broken.jpg", b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    _write(inbox / "notes.txt", b"hello")
    _write(inbox / "good.jpg", _image_bytes(40))
    pages = _scan(_driver(inbox, open_retries=2))
    assert [p.meta["source_file"] for p in pages] == ["good.jpg"]
    rejected = inbox / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == ["broken.jpg", "notes.txt", "rejected.log"]
    log = (rejected / "rejected.log").read_text(encoding="utf-8").splitlines()
    reasons = {line.split("\t")[1]: line.split("\t")[2] for line in log}
    assert "cannot decode" in reasons["broken.jpg"]
    assert "unsupported file type .txt" in reasons["notes.txt"]


def test_temporary_names_are_ignored(inbox):
    _write(inbox / "upload.jpg.part", _image_bytes(10))
    _write(inbox / ".hidden.jpg", _image_bytes(10))
    _write(inbox / "real.jpg", _image_bytes(10))
    pages = _scan(_driver(inbox))
    assert [p.meta["source_file"] for p in pages] == ["real.jpg"]
    assert (inbox / "upload.jpg.part").exists() and (inbox / ".hidden.jpg").exists()


def test_done_never_overwrites(inbox):
    (inbox / "done").mkdir()
    _write(inbox / "done" / "scan.jpg", b"earlier file")
    _write(inbox / "scan.jpg", _image_bytes(10))
    _scan(_driver(inbox))
    assert (inbox / "done" / "scan.jpg").read_bytes() == b"earlier file"
    assert (inbox / "done" / "scan.1.jpg").exists()


def test_idle_timeout_ends_the_batch_and_late_files_join_it(inbox):
    driver = _driver(inbox, idle_timeout=0.5)
    _write(inbox / "1.jpg", _image_bytes(10))
    timer = threading.Timer(0.3, lambda: _write(inbox / "2.jpg", _image_bytes(10)))
    timer.start()
    started = time.monotonic()
    pages = _scan(driver)
    elapsed = time.monotonic() - started
    timer.join()
    assert [p.meta["source_file"] for p in pages] == ["1.jpg", "2.jpg"]
    assert 0.5 <= elapsed < 5


def test_no_file_at_all_is_feeder_empty(inbox):
    with pytest.raises(FeederEmpty) as info:
        _scan(_driver(inbox, first_page_timeout=0.3))
    assert info.value.pages_received == 0


def test_cancel(inbox):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(ScanCancelled):
        _scan(_driver(inbox, first_page_timeout=30), cancel)


def test_file_is_moved_only_after_its_pages_were_taken(inbox):
    _write(inbox / "a.jpg", _image_bytes(10), mtime=time.time() - 10)
    _write(inbox / "b.jpg", _image_bytes(10), mtime=time.time() - 5)
    driver = _driver(inbox)
    gen = driver.scan(driver.device_id, OPTIONS, threading.Event())
    first = next(gen)
    assert first.meta["source_file"] == "a.jpg"
    assert (inbox / "a.jpg").exists()  # the consumer has not asked for more yet
    gen.close()  # the agent stops (or dies) here: the file stays for the next scan
    assert (inbox / "a.jpg").exists()
    again = _scan(driver)
    assert [p.meta["source_file"] for p in again] == ["a.jpg", "b.jpg"]


def test_max_pages_and_device_listing(inbox):
    for i in range(3):
        _write(inbox / f"{i}.jpg", _image_bytes(10), mtime=time.time() - 10 + i)
    driver = _driver(inbox)
    pages = list(driver.scan(driver.device_id, ScanOptions(source="feeder", max_pages=2), threading.Event()))
    assert len(pages) == 2
    assert [d.id for d in driver.list_devices()] == [driver.device_id]
    assert driver.capabilities(driver.device_id)["sources"] == ["folder"]
    assert FolderDriver(folder=inbox).inbox == inbox  # the alias used in agent.toml examples
    with pytest.raises(ValueError):
        FolderDriver()
