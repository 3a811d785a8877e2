"""Folder-watch driver for scan-to-folder multifunction printers.

The printer writes files (JPEG, PNG, TIFF incl. multi-page, BMP, PDF from a scanner) into an
inbox folder, usually over SMB.  A file is taken only once it is completely written: its size
and mtime are unchanged over ``stable_polls`` consecutive polls *and* it opens and decodes.
Ready files are taken in mtime order (``order="mtime"``, natural name order breaks ties) or
natural name order (``order="name"``).

* Consumed files are **moved** to ``done/`` (never deleted), after the consumer has taken all
  pages of the file (i.e. asked for the next page): if the agent dies mid-file the file is
  still in the inbox and is scanned again (at least once, never lost).
* Files that cannot be used go to ``rejected/`` and a line ``time<TAB>file<TAB>reason`` is
  appended to ``rejected/rejected.log``.
* ``max_pages`` is checked between files: a multi-page file is always delivered whole.
* The batch ends when no file has appeared, changed or waited to be taken for
  ``idle_timeout`` seconds after the last page (``first_page_timeout`` before the first
  page; no page at all → FeederEmpty).

PDFs: the raster image(s) of each page are extracted with pypdf (what scanners produce);
a PDF page without a raster image is rejected (no PDF renderer here).
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence

from ..imaging import ImageLimitError, check_pixels
from .base import DeviceInfo, ScannedPage, ScannerDriver, ScanOptions, convert_mode
from .errors import DeviceOffline, FeederEmpty, ScanCancelled

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".pdf"})
# names that scanners/SMB clients use while a file is still being written
_TEMP_PATTERNS = re.compile(r"(^\.|^~|\.(tmp|part|partial|crdownload|filepart)$)", re.I)
DONE_DIR = "done"
REJECTED_DIR = "rejected"


class _Rejected(Exception):
    pass


class _NotReady(Exception):
    pass


@dataclass
class _Seen:
    signature: tuple[int, int]
    stable: int = 0
    open_failures: int = 0


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FolderDriver(ScannerDriver):
    """Scan-to-folder inbox.

    :param inbox: folder the printer writes into (created if missing); ``folder`` is an alias.
    :param idle_timeout: seconds without any new/changing file that end a batch.
    :param first_page_timeout: seconds to wait for the first page (default: ``idle_timeout``).
    :param poll_interval: seconds between directory polls.
    :param stable_polls: consecutive unchanged polls before a file counts as written.
    :param open_retries: polls a stable file may fail to open before it is rejected.
    """

    name = "folder"

    def __init__(
        self,
        inbox: str | os.PathLike[str] | None = None,
        idle_timeout: float = 20.0,
        first_page_timeout: float | None = None,
        poll_interval: float = 0.5,
        stable_polls: int = 2,
        open_retries: int = 3,
        order: str = "mtime",
        max_pixels: int | None = None,
        folder: str | os.PathLike[str] | None = None,
    ) -> None:
        inbox = inbox if inbox is not None else folder  # `folder` is accepted as an alias
        if inbox is None:
            raise ValueError("the folder driver needs inbox='path of the scan-to-folder inbox'")
        if order not in ("mtime", "name"):
            raise ValueError("order must be 'mtime' or 'name'")
        self.inbox = Path(inbox)
        self.idle_timeout = idle_timeout
        self.first_page_timeout = idle_timeout if first_page_timeout is None else first_page_timeout
        self.poll_interval = poll_interval
        self.stable_polls = max(1, stable_polls)
        self.open_retries = max(1, open_retries)
        self.order = order
        self.max_pixels = max_pixels
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.done_dir = self.inbox / DONE_DIR
        self.rejected_dir = self.inbox / REJECTED_DIR

    @property
    def device_id(self) -> str:
        return f"folder:{self.inbox}"

    def list_devices(self) -> list[DeviceInfo]:
        return [
            DeviceInfo(
                id=self.device_id,
                vendor="Folder",
                model=str(self.inbox),
                kind="scan-to-folder inbox",
                sources=["folder"],
            )
        ]

    def capabilities(self, device_id: str) -> dict[str, Any]:
        self._check(device_id)
        return {
            "sources": ["folder"],
            "raw_sources": ["folder"],
            "color_modes": ["color", "gray", "bw"],
            "dpi": None,  # decided on the printer's panel
            "duplex": False,
            "formats": sorted(IMAGE_EXTENSIONS),
        }

    def _check(self, device_id: str) -> None:
        if device_id not in (self.device_id, str(self.inbox), "folder"):
            raise DeviceOffline(f"folder driver watches {self.inbox}, not {device_id!r}")
        if not self.inbox.is_dir():
            raise DeviceOffline(f"inbox folder {self.inbox} is not available")

    # -- scanning -----------------------------------------------------------------------------
    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        self._check(device_id)
        seen: dict[str, _Seen] = {}
        count = 0
        last_activity = time.monotonic()
        while True:
            if cancel.is_set():
                raise ScanCancelled(pages_received=count)
            changed, ready = self._poll(seen)
            if changed:
                last_activity = time.monotonic()
            for path in ready:
                if options.max_pages is not None and count >= options.max_pages:
                    return
                try:
                    frames = self._load(path, seen)
                except _NotReady:
                    continue
                except _Rejected as exc:
                    self._reject(path, str(exc))
                    seen.pop(path.name, None)
                    last_activity = time.monotonic()
                    continue
                for frame_no, frame in enumerate(frames):
                    if cancel.is_set():
                        raise ScanCancelled(pages_received=count)
                    image = convert_mode(frame, options.color_mode)
                    dpi = frame.info.get("dpi")
                    if dpi:
                        image.info["dpi"] = dpi
                    meta = {
                        "driver": self.name,
                        "source_file": path.name,
                        "frame": frame_no,
                        "frames": len(frames),
                    }
                    yield ScannedPage(index=count, image=image, meta=meta)
                    count += 1
                # the consumer has taken every page of this file (it asked for the next one)
                self._move_done(path)
                seen.pop(path.name, None)
                last_activity = time.monotonic()
            if options.max_pages is not None and count >= options.max_pages:
                return
            if any(info.signature[0] > 0 for info in seen.values()):
                # a non-empty file is still being written or retried: the batch goes on
                # (a file that never opens is rejected after `open_retries` polls)
                last_activity = time.monotonic()
            timeout = self.idle_timeout if count else self.first_page_timeout
            if time.monotonic() - last_activity >= timeout:
                if count == 0:
                    raise FeederEmpty(
                        f"no file arrived in {self.inbox} within {timeout:.0f} s",
                        pages_received=0,
                    )
                return
            if cancel.wait(self.poll_interval):
                raise ScanCancelled(pages_received=count)

    def _candidates(self) -> list[os.DirEntry]:
        try:
            entries = list(os.scandir(self.inbox))
        except OSError as exc:
            raise DeviceOffline(f"cannot read inbox {self.inbox}: {exc}") from exc
        return [e for e in entries if e.is_file(follow_symlinks=False)]

    def _poll(self, seen: dict[str, _Seen]) -> tuple[bool, list[Path]]:
        """Update the stability bookkeeping; return (anything changed?, ready files in order)."""
        changed = False
        present = set()
        ready: list[tuple[Any, Path]] = []
        for entry in self._candidates():
            name = entry.name
            if _TEMP_PATTERNS.search(name):
                continue
            present.add(name)
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            signature = (st.st_size, st.st_mtime_ns)
            info = seen.get(name)
            if info is None or info.signature != signature:
                seen[name] = _Seen(signature)
                changed = True
                continue
            info.stable += 1
            if st.st_size > 0 and info.stable >= self.stable_polls:
                key = (st.st_mtime_ns, _natural_key(name)) if self.order == "mtime" else (_natural_key(name),)
                ready.append((key, self.inbox / name))
        for name in list(seen):
            if name not in present:
                del seen[name]
        ready.sort(key=lambda item: item[0])
        return changed, [path for _, path in ready]

    def _load(self, path: Path, seen: dict[str, _Seen]) -> list[Image.Image]:
        ext = path.suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            raise _Rejected(f"unsupported file type {ext or '(none)'}")
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise _NotReady() from exc
        except OSError as exc:  # locked by the writer (Windows) or similar
            return _retry_or_reject(seen, path, f"cannot read: {exc}", self.open_retries)
        try:
            frames = _load_pdf(data, self.max_pixels) if ext == ".pdf" else self._load_image(data)
        except ImageLimitError as exc:
            raise _Rejected(exc.message) from exc
        except _Rejected:
            raise
        except Exception as exc:
            return _retry_or_reject(seen, path, f"cannot decode: {exc}", self.open_retries)
        if not frames:
            raise _Rejected("file holds no image")
        return frames

    def _load_image(self, data: bytes) -> list[Image.Image]:
        image = Image.open(io.BytesIO(data))
        frames = []
        for frame in ImageSequence.Iterator(image):
            check_pixels(frame.size, self.max_pixels)
            copy = frame.copy()
            copy.load()
            if "dpi" in frame.info:
                copy.info["dpi"] = tuple(round(float(v)) for v in frame.info["dpi"])
            frames.append(copy)
        return frames

    # -- moving files ---------------------------------------------------------------------------
    def _move_done(self, path: Path) -> None:
        _move_unique(path, self.done_dir)

    def _reject(self, path: Path, reason: str) -> None:
        log.warning("folder driver: rejected %s: %s", path.name, reason)
        target = _move_unique(path, self.rejected_dir)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = f"{stamp}\t{target.name if target else path.name}\t{reason}\n"
        with open(self.rejected_dir / "rejected.log", "a", encoding="utf-8") as fh:
            fh.write(line)


def _retry_or_reject(seen: dict[str, _Seen], path: Path, reason: str, retries: int) -> list[Image.Image]:
    """A stable file that does not open yet: wait a few polls, then reject it."""
    info = seen.get(path.name)
    if info is None:
        raise _NotReady()
    info.open_failures += 1
    if info.open_failures >= retries:
        raise _Rejected(reason)
    raise _NotReady()


def _move_unique(path: Path, folder: Path) -> Path | None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.stem}.{n}{path.suffix}"
        n += 1
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    except OSError:
        shutil.move(str(path), str(target))  # across file systems
    return target


def _load_pdf(data: bytes, max_pixels: int | None) -> list[Image.Image]:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    frames = []
    for number, page in enumerate(reader.pages, start=1):
        images = list(page.images)
        if not images:
            raise _Rejected(f"PDF page {number} holds no raster image (not a scan)")
        best = max(images, key=lambda im: im.image.width * im.image.height)
        image = best.image
        check_pixels(image.size, max_pixels)
        image.load()
        frames.append(image)
    return frames
