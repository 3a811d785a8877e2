"""Run a driver in a child process so that its crash or hang cannot take the agent down.

:class:`IsolatedDriver` wraps any registered driver (``get_driver(name, **config)``) and runs
each operation in a fresh child process started with the ``spawn`` method (no inherited
threads, locks or SANE state; works the same on Windows).  Vendor drivers and libsane
backends are C code that may segfault, call ``exit()`` or block forever in a USB read; in the
child that only costs the current scan.

Protocol (child → parent, over a one-way :func:`multiprocessing.Pipe`):

* ``("page", index, mode, width, height, dpi, meta)`` followed by one ``send_bytes`` with
  the raw pixels (``Image.tobytes()``: lossless and cheap; no re-encoding in the child);
* ``("done", count)`` at the normal end, or ``("error", code, message, count)``.

The parent turns these back into :class:`ScannedPage` objects and errors:

* the child dies without ``done``/``error`` → :class:`DriverCrashed` (raised after every page
  that arrived completely has been yielded);
* no message for ``page_timeout`` seconds → the child is killed → :class:`DriverTimeout`.
  The clock restarts whenever the consumer asks for the next page, so slow consumers do not
  count.  For the folder driver, ``page_timeout`` must exceed its idle timeouts;
* ``cancel`` set → the child's own cancel event is set; it gets ``cancel_grace`` seconds to
  stop cleanly, then it is killed; :class:`ScanCancelled` is raised and pages that arrive
  after the cancel are dropped.

The child applies ``env`` to its ``os.environ`` *before* importing the driver, e.g.
``env={"SANE_CONFIG_DIR": ...}`` (SANE reads it at ``sane.init()``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from PIL import Image

from .base import DeviceInfo, ScannedPage, ScannerDriver, ScanOptions
from .errors import (
    DriverCrashed,
    DriverTimeout,
    ScanCancelled,
    ScannerError,
    error_from_code,
)

log = logging.getLogger(__name__)

_MP = multiprocessing.get_context("spawn")


# -- child side ---------------------------------------------------------------------------------


def _child_main(
    conn: Connection,
    cancel_conn: Connection,
    driver_name: str,
    driver_config: dict[str, Any],
    env: dict[str, str],
    op: str,
    args: tuple,
) -> None:
    os.environ.update(env)
    count = 0
    try:
        from . import get_driver

        driver = get_driver(driver_name, **driver_config)
        if op == "scan":
            device_id, options_dict = args
            local_cancel = threading.Event()

            def relay() -> None:
                # a message or EOF (the parent closed its end or died) both mean "stop"
                with contextlib.suppress(EOFError, OSError):
                    cancel_conn.recv()
                local_cancel.set()

            threading.Thread(target=relay, name="cancel-relay", daemon=True).start()
            options = ScanOptions.from_dict(options_dict)
            for page in driver.scan(device_id, options, local_cancel):
                image = page.image
                dpi = image.info.get("dpi")
                conn.send(
                    (
                        "page",
                        page.index,
                        image.mode,
                        image.width,
                        image.height,
                        tuple(dpi) if dpi else None,
                        _plain(page.meta),
                    )
                )
                conn.send_bytes(image.tobytes())
                count += 1
            conn.send(("done", count))
        elif op == "list_devices":
            conn.send(("result", [d.to_dict() for d in driver.list_devices()]))
        elif op == "capabilities":
            conn.send(("result", _plain(driver.capabilities(*args))))
        else:
            raise ValueError(f"unknown operation {op!r}")
    except ScannerError as exc:
        _send_quietly(conn, ("error", exc.code, exc.message, count))
    except BaseException as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        _send_quietly(conn, ("error", DriverCrashed.code, f"driver raised {detail}", count))
    finally:
        conn.close()


def _send_quietly(conn: Connection, message: tuple) -> None:
    # the parent may have stopped listening (cancel, timeout or agent exit)
    with contextlib.suppress(OSError):
        conn.send(message)


def _plain(value: Any) -> Any:
    """Keep only picklable plain data (the meta dict may hold anything)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


# -- parent side --------------------------------------------------------------------------------


class _CancelLine:
    """Parent end of the cancel pipe; ``set()`` never blocks, even if the child is dead."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._sent = False

    def set(self) -> None:
        if self._sent:
            return
        self._sent = True
        with contextlib.suppress(OSError, ValueError):  # the child is already gone
            self._conn.send("cancel")

    def close(self) -> None:
        self._conn.close()


class IsolatedDriver(ScannerDriver):
    """Any driver, run in a child process per operation (see module docstring)."""

    def __init__(
        self,
        driver_name: str,
        driver_config: dict[str, Any] | None = None,
        *,
        env: dict[str, str] | None = None,
        page_timeout: float = 120.0,
        call_timeout: float = 60.0,
        cancel_grace: float = 5.0,
    ) -> None:
        self.driver_name = driver_name
        self.driver_config = dict(driver_config or {})
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.page_timeout = page_timeout
        self.call_timeout = call_timeout
        self.cancel_grace = cancel_grace
        self.name = f"isolated:{driver_name}"  # type: ignore[misc]

    def _start(self, op: str, args: tuple):
        # Two one-way pipes (no multiprocessing.Event: its set() deadlocks when a waiter in
        # the child died, which is exactly the case we must survive).
        receiver, sender = _MP.Pipe(duplex=False)
        cancel_recv, cancel_send = _MP.Pipe(duplex=False)
        proc = _MP.Process(
            target=_child_main,
            args=(sender, cancel_recv, self.driver_name, self.driver_config, self.env, op, args),
            name=f"scanner-driver-{self.driver_name}",
            daemon=True,
        )
        proc.start()
        # the parent keeps only its ends: EOF on `receiver` when the child dies
        sender.close()
        cancel_recv.close()
        return proc, receiver, _CancelLine(cancel_send)

    @staticmethod
    def _stop(proc, receiver: Connection, cancel_line: _CancelLine, grace: float = 0.0) -> None:
        if grace and proc.is_alive():
            proc.join(grace)
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        receiver.close()
        cancel_line.close()
        try:
            proc.close()
        except ValueError:  # pragma: no cover - still running after kill + 5 s
            log.error("driver child %s did not exit after SIGKILL", proc.pid)

    def _call(self, op: str, *args: Any) -> Any:
        proc, receiver, cancel_line = self._start(op, args)
        try:
            ready = wait([receiver], timeout=self.call_timeout)
            if not ready:
                raise DriverTimeout(f"{self.driver_name}.{op} did not answer in {self.call_timeout} s")
            try:
                message = receiver.recv()
            except (EOFError, OSError) as exc:
                proc.join(1)
                raise DriverCrashed(
                    f"{self.driver_name}.{op}: driver process died (exit code {proc.exitcode})"
                ) from exc
            if message[0] == "error":
                _, code, text, _count = message
                raise error_from_code(code, text)
            return message[1]
        finally:
            self._stop(proc, receiver, cancel_line, grace=1.0)

    def list_devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(**d) for d in self._call("list_devices")]

    def capabilities(self, device_id: str) -> dict[str, Any]:
        return self._call("capabilities", device_id)

    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        if cancel.is_set():
            raise ScanCancelled("cancelled before the scan started", pages_received=0)
        proc, receiver, child_cancel = self._start("scan", (device_id, options.to_dict()))
        count = 0
        finished = False
        try:
            deadline = time.monotonic() + self.page_timeout
            while True:
                if cancel.is_set():
                    child_cancel.set()
                    self._drain_until_exit(proc, receiver)
                    raise ScanCancelled(pages_received=count)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    proc.kill()
                    raise DriverTimeout(
                        f"no page from driver {self.driver_name!r} for {self.page_timeout:.0f} s; "
                        "driver process killed",
                        pages_received=count,
                    )
                ready = wait([receiver, proc.sentinel], timeout=min(0.1, remaining))
                if not ready:
                    continue
                if receiver not in ready:
                    # the child exited; data written before exit is still readable
                    if receiver.poll():
                        ready = [receiver]
                    else:
                        proc.join(1)
                        raise DriverCrashed(
                            f"driver process {self.driver_name!r} died "
                            f"(exit code {proc.exitcode}) after {count} page(s)",
                            pages_received=count,
                        )
                message = self._recv(receiver, proc, count)
                kind = message[0]
                if kind == "page":
                    page = self._recv_page(message, receiver, proc, count)
                    if cancel.is_set():
                        continue  # dropped: the clerk cancelled meanwhile
                    yield page
                    count += 1
                    deadline = time.monotonic() + self.page_timeout
                elif kind == "done":
                    finished = True
                    return
                elif kind == "error":
                    _, code, text, _child_count = message
                    finished = True
                    raise error_from_code(code, text, pages_received=count)
                else:
                    raise DriverCrashed(f"unexpected message {kind!r} from driver process")
        finally:
            if not finished:
                child_cancel.set()
            self._stop(proc, receiver, child_cancel, grace=1.0 if finished else 0.2)

    def _recv(self, receiver: Connection, proc, count: int):
        try:
            return receiver.recv()
        except (EOFError, OSError) as exc:
            proc.join(1)
            raise DriverCrashed(
                f"driver process {self.driver_name!r} died (exit code {proc.exitcode}) after {count} page(s)",
                pages_received=count,
            ) from exc

    def _recv_page(self, header, receiver: Connection, proc, count: int) -> ScannedPage:
        _, _index, mode, width, height, dpi, meta = header
        # the pixel bytes follow the header immediately; a crash in between is a crash
        ready = wait([receiver], timeout=self.page_timeout)
        if not ready:
            proc.kill()
            raise DriverTimeout("page data did not follow its header", pages_received=count)
        try:
            raw = receiver.recv_bytes()
        except (EOFError, OSError) as exc:
            proc.join(1)
            raise DriverCrashed(f"driver process died while sending page {count + 1}", pages_received=count) from exc
        image = Image.frombytes(mode, (width, height), raw)
        if dpi:
            image.info["dpi"] = tuple(dpi)
        meta = dict(meta or {})
        meta.setdefault("isolated", True)
        return ScannedPage(index=count, image=image, meta=meta)

    def _drain_until_exit(self, proc, receiver: Connection) -> None:
        """After a cancel: discard whatever the child still sends, up to ``cancel_grace``."""
        deadline = time.monotonic() + self.cancel_grace
        while proc.is_alive() and time.monotonic() < deadline:
            ready = wait([receiver, proc.sentinel], timeout=0.1)
            if receiver in ready:
                try:
                    message = receiver.recv()
                    if message[0] == "page":
                        receiver.recv_bytes()
                except (EOFError, OSError):
                    break
        if proc.is_alive():
            proc.kill()
