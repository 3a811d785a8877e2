"""A deliberately misbehaving driver, run inside IsolatedDriver's child process by the tests.

``behaviour``:
  ok        -- ``pages`` pages, then the normal end
  exit      -- os._exit(7) before page ``after`` (like a driver calling exit())
  segfault  -- a real SIGSEGV before page ``after``
  hang      -- blocks forever before page ``after`` and ignores cancel (a stuck USB read)
  raise     -- a Python exception (a bug in the driver) before page ``after``
  jam       -- PaperJam before page ``after``
  slow      -- pages every ``interval`` seconds, honouring cancel
Each page is a gray image whose level encodes its index (10 * index + 5) and whose meta
carries the child's pid, so tests can check both the pixels and that the child is gone.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

from PIL import Image

from scanner_agent.drivers.base import DeviceInfo, ScannedPage, ScannerDriver, ScanOptions
from scanner_agent.drivers.errors import PaperJam, ScanCancelled


def page_level(index: int) -> int:
    return 10 * index + 5


class CrashyDriver(ScannerDriver):
    name = "crashy"

    def __init__(
        self,
        behaviour: str = "ok",
        pages: int = 3,
        after: int = 1,
        interval: float = 0.2,
        size: tuple[int, int] = (120, 170),
    ) -> None:
        self.behaviour = behaviour
        self.pages = pages
        self.after = after
        self.interval = interval
        self.size = tuple(size)

    def list_devices(self) -> list[DeviceInfo]:
        if self.behaviour == "exit":
            os._exit(9)
        return [DeviceInfo("crashy:0", "Test", "Crashy", "virtual", ["feeder"])]

    def capabilities(self, device_id: str) -> dict:
        return {"sources": ["feeder"], "pid": os.getpid()}

    def _misbehave(self, cancel: threading.Event) -> None:
        if self.behaviour == "exit":
            os._exit(7)
        if self.behaviour == "segfault":
            ctypes.string_at(0)
        if self.behaviour == "hang":
            while True:  # ignores cancel on purpose
                time.sleep(3600)
        if self.behaviour == "raise":
            raise RuntimeError("boom in driver")
        if self.behaviour == "jam":
            raise PaperJam("crashy: injected jam")

    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event):
        for index in range(self.pages):
            if index == self.after:
                self._misbehave(cancel)
            if self.behaviour == "slow" and index and cancel.wait(self.interval):
                raise ScanCancelled(pages_received=index)
            image = Image.new("L", self.size, page_level(index))
            image.info["dpi"] = (options.dpi, options.dpi)
            yield ScannedPage(index, image, {"pid": os.getpid(), "n": index})
