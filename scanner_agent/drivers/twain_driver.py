"""TWAIN driver (Windows) on top of pytwain (``import twain``; GPL-2.0, optional extra).

Rules this module follows (TWAIN data sources are fragile, and many only work from 32-bit
Python):

* **One thread owns TWAIN.**  Every call into ``twain`` — source manager, data source,
  capabilities, the message loop, transfers — runs on one dedicated worker thread created by
  the driver, which also owns the hidden parent window and its message loop.  Other threads
  only enqueue work and read results from queues.
* **No vendor UI**: ``request_acquire(show_ui=False, modal_ui=False)``.
* **Feeder check first**: for a feeder scan ``CAP_FEEDERLOADED`` is read before acquiring; an
  empty feeder raises :class:`FeederEmpty` without starting the device.
* **Multi-page loop**: after ``MSG_XFERREADY`` pages are transferred with
  ``xfer_image_natively()`` while it reports pending transfers (the TWAIN state-6 loop); each
  DIB is converted to BMP bytes and opened with Pillow; the global handle is always freed.
* **Cancel** is checked between transfers; cancelling closes the data source, which resets
  the pending transfers (DAT_PENDINGXFERS/MSG_RESET) so the feeder stops.
* Condition codes / pytwain exceptions map to our errors (:func:`map_twain_error`).

``twain`` is imported lazily, on the worker thread, so this module imports fine on Linux; the
unit tests inject a fake ``twain`` module at that boundary (``sys.modules["twain"]``).
"""

from __future__ import annotations

import io
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from PIL import Image

from .base import SOURCE_FEEDER, SOURCE_FLATBED, DeviceInfo, ScannedPage, ScannerDriver, ScanOptions, convert_mode
from .errors import (
    AccessDenied,
    CoverOpen,
    DeviceBusy,
    DeviceOffline,
    DriverTimeout,
    FeederEmpty,
    PaperJam,
    ScanCancelled,
    ScannerError,
    ScannerIOError,
    UnsupportedSetting,
)

log = logging.getLogger(__name__)

# Standard TWAIN values, used when the twain module does not export a name.
_FALLBACK_CONSTANTS = {
    "CAP_XFERCOUNT": 1,
    "CAP_FEEDERENABLED": 4098,
    "CAP_FEEDERLOADED": 4099,
    "CAP_AUTOFEED": 4103,
    "CAP_INDICATORS": 4107,
    "CAP_DUPLEXENABLED": 4115,
    "ICAP_PIXELTYPE": 257,
    "ICAP_UNITS": 258,
    "ICAP_XFERMECH": 259,
    "ICAP_XRESOLUTION": 4376,
    "ICAP_YRESOLUTION": 4377,
    "ICAP_BITDEPTH": 4395,
    "TWTY_INT16": 1,
    "TWTY_UINT16": 4,
    "TWTY_BOOL": 6,
    "TWTY_FIX32": 7,
    "TWPT_BW": 0,
    "TWPT_GRAY": 1,
    "TWPT_RGB": 2,
    "TWUN_INCHES": 0,
    "TWSX_NATIVE": 0,
    "MSG_XFERREADY": 257,
    "MSG_CLOSEDSREQ": 258,
}

# TWAIN condition codes (TWCC_*) for errors pytwain may only report as UnknownError.
_CONDITION_CODES: dict[int, type[ScannerError]] = {
    2: ScannerIOError,  # LOWMEMORY
    3: DeviceOffline,  # NODS
    4: DeviceBusy,  # MAXCONNECTIONS
    5: ScannerIOError,  # OPERATIONERROR
    16: AccessDenied,  # DENIED
    20: PaperJam,  # PAPERJAM
    21: PaperJam,  # PAPERDOUBLEFEED
    23: DeviceOffline,  # CHECKDEVICEONLINE
    24: CoverOpen,  # INTERLOCK (cover/door open)
    29: FeederEmpty,  # NOMEDIA
}

# pytwain exception class names (current names and the old exc* aliases resolve to these).
_EXCEPTION_NAMES: dict[str, type[ScannerError]] = {
    "PaperJam": PaperJam,
    "PaperDoubleFeedError": PaperJam,
    "CheckDeviceOnlineError": DeviceOffline,
    "NoDataSourceError": DeviceOffline,
    "SMLoadFileFailed": DeviceOffline,
    "SMOpenFailed": DeviceOffline,
    "SMGetProcAddressFailed": DeviceOffline,
    "BadDestination": DeviceOffline,
    "MaxConnectionsError": DeviceBusy,
    "DeniedError": AccessDenied,
    "DSTransferCancelled": ScanCancelled,
    "CapUnsupported": UnsupportedSetting,
    "BadCapability": UnsupportedSetting,
    "CapBadOperation": UnsupportedSetting,
    "CapSeqError": UnsupportedSetting,
    "CapabilityFormatNotSupported": UnsupportedSetting,
    "ImageFormatNotSupported": UnsupportedSetting,
    "GeneralFailure": ScannerIOError,
    "OperationError": ScannerIOError,
    "SequenceError": ScannerIOError,
    "BadProtocol": ScannerIOError,
    "FileWriteError": ScannerIOError,
}


def map_twain_error(exc: BaseException) -> ScannerError:
    """Translate a pytwain exception (or condition code in its message) into our hierarchy."""
    if isinstance(exc, ScannerError):
        return exc
    text = str(exc) or type(exc).__name__
    for klass in type(exc).__mro__:
        mapped = _EXCEPTION_NAMES.get(klass.__name__)
        if mapped is not None:
            return mapped(f"TWAIN: {type(exc).__name__}: {text}")
    match = re.search(r"ConditionCode\s*=\s*(\d+)", text)
    if match:
        mapped = _CONDITION_CODES.get(int(match.group(1)), ScannerIOError)
        return mapped(f"TWAIN: condition code {match.group(1)}: {text}")
    if isinstance(exc, MemoryError):
        return ScannerIOError("TWAIN: low memory in the data source")
    if isinstance(exc, ValueError):
        return UnsupportedSetting(f"TWAIN: bad value: {text}")
    return ScannerIOError(f"TWAIN: {type(exc).__name__}: {text}")


def _default_parent_window():
    """A hidden Tk root owned by the TWAIN thread (TWAIN 1.x needs a window handle)."""
    try:
        import tkinter
    except ImportError:  # pragma: no cover - Windows Python ships tkinter
        return None
    root = tkinter.Tk()
    root.withdraw()
    return root


_STOP = object()


class TwainDriver(ScannerDriver):
    """TWAIN through pytwain; see the module docstring.

    :param product_name: our application name announced to the data source manager.
    :param dsm_name: explicit DSM DLL (default: pytwain's choice, twain_32.dll / twaindsm.dll).
    :param parent_window_factory: builds the parent window *on the TWAIN thread*
        (default: hidden Tk root; tests pass ``lambda: None``).
    :param call_timeout: seconds to wait for a non-scan call on the TWAIN thread.
    :param page_timeout: seconds without a page before the scan gives up (DriverTimeout);
        a TWAIN source that hangs keeps the worker thread: run the driver isolated.
    """

    name = "twain"

    def __init__(
        self,
        product_name: str = "EBike Archive Scanner Agent",
        dsm_name: str | None = None,
        parent_window_factory: Callable[[], Any] | None = _default_parent_window,
        call_timeout: float = 60.0,
        page_timeout: float = 180.0,
        check_feeder_loaded: bool = True,
    ) -> None:
        self.product_name = product_name
        self.dsm_name = dsm_name
        self.parent_window_factory = parent_window_factory
        self.call_timeout = call_timeout
        self.page_timeout = page_timeout
        self.check_feeder_loaded = check_feeder_loaded
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        # state below is touched only on the TWAIN thread
        self._tw: Any = None
        self._sm: Any = None
        self._parent: Any = None
        self._events: list[int] = []

    # -- the TWAIN thread --------------------------------------------------------------------
    @property
    def thread_ident(self) -> int | None:
        return self._thread.ident if self._thread else None

    def _ensure_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="twain", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                self._shutdown_on_thread()
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        self._ensure_thread()
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        future = self._submit(fn, *args)
        try:
            return future.result(timeout=self.call_timeout)
        except TimeoutError as exc:
            raise DriverTimeout(f"TWAIN call {fn.__name__} did not return") from exc

    def close(self) -> None:
        with self._thread_lock:
            thread = self._thread
            self._thread = None
        if thread is not None and thread.is_alive():
            self._jobs.put(_STOP)
            thread.join(self.call_timeout)

    # -- on-thread helpers ---------------------------------------------------------------------
    def _module(self):
        if self._tw is None:
            try:
                import twain
            except ImportError as exc:
                raise DeviceOffline("pytwain is not installed or TWAIN is unavailable (Windows only)") from exc
            self._tw = twain
        return self._tw

    def _c(self, name: str) -> Any:
        tw = self._module()
        if hasattr(tw, name):
            return getattr(tw, name)
        constants = getattr(getattr(tw, "lowlevel", None), "constants", None)
        if constants is not None and hasattr(constants, name):
            return getattr(constants, name)
        return _FALLBACK_CONSTANTS[name]

    def _source_manager(self):
        if self._sm is None:
            tw = self._module()
            if self._parent is None and self.parent_window_factory is not None:
                self._parent = self.parent_window_factory()
            kwargs: dict[str, Any] = {"ProductName": self.product_name}
            if self.dsm_name:
                kwargs["dsm_name"] = self.dsm_name
            try:
                self._sm = tw.SourceManager(self._parent, **kwargs)
            except Exception as exc:
                raise map_twain_error(exc) from exc
            if hasattr(self._sm, "set_callback"):
                self._sm.set_callback(self._events.append)
        return self._sm

    def _shutdown_on_thread(self) -> None:
        if self._sm is not None:
            try:
                self._sm.close()
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                log.warning("closing the TWAIN source manager failed: %s", exc)
            self._sm = None
        if self._parent is not None and hasattr(self._parent, "destroy"):
            try:
                self._parent.destroy()
            except Exception:  # pragma: no cover
                log.debug("destroying the TWAIN parent window failed", exc_info=True)
        self._parent = None

    def _open(self, device_id: str):
        sm = self._source_manager()
        try:
            source = sm.open_source(device_id)
        except Exception as exc:
            raise map_twain_error(exc) from exc
        if source is None:  # only happens with the selection dialog; we never show it
            raise DeviceOffline(f"TWAIN source {device_id!r} not opened")
        return source

    def _get_current(self, source, cap_name: str) -> Any:
        """Current value of a capability, or None when the source does not support it."""
        try:
            result = source.get_capability_current(self._c(cap_name))
        except Exception as exc:
            log.debug("TWAIN %s unsupported: %s", cap_name, exc)
            return None
        if isinstance(result, tuple) and len(result) == 2:
            return result[1]
        return result

    def _set_cap(self, source, cap_name: str, type_name: str, value: Any, *, required: bool) -> bool:
        tw = self._module()
        check_status = getattr(getattr(tw, "exceptions", None), "CheckStatus", None) or getattr(tw, "CheckStatus", None)
        try:
            source.set_capability(self._c(cap_name), self._c(type_name), value)
        except Exception as exc:
            if check_status is not None and isinstance(exc, check_status):
                return True  # accepted, rounded to a supported value
            err = map_twain_error(exc)
            if required or not isinstance(err, UnsupportedSetting):
                raise err from exc
            log.info("TWAIN source ignores %s=%r: %s", cap_name, value, exc)
            return False
        return True

    def _list_on_thread(self) -> list[DeviceInfo]:
        sm = self._source_manager()
        try:
            names = list(sm.source_list)
        except Exception as exc:
            raise map_twain_error(exc) from exc
        return [DeviceInfo(id=name, vendor="", model=name, kind="twain", sources=[]) for name in names]

    def _caps_on_thread(self, device_id: str) -> dict[str, Any]:
        source = self._open(device_id)
        try:
            feeder = self._get_current(source, "CAP_FEEDERENABLED") is not None
            duplex = self._get_current(source, "CAP_DUPLEXENABLED") is not None
            return {
                "sources": [SOURCE_FLATBED, SOURCE_FEEDER] if feeder else [SOURCE_FLATBED],
                "raw_sources": [],
                "color_modes": ["color", "gray", "bw"],
                "dpi": self._get_current(source, "ICAP_XRESOLUTION"),
                "duplex": duplex,
                "feeder_loaded": self._get_current(source, "CAP_FEEDERLOADED"),
            }
        finally:
            source.close()

    def _configure(self, source, options: ScanOptions) -> None:
        pixel_type = {"color": "TWPT_RGB", "gray": "TWPT_GRAY", "bw": "TWPT_BW"}[options.color_mode]
        self._set_cap(source, "ICAP_PIXELTYPE", "TWTY_UINT16", self._c(pixel_type), required=True)
        if options.color_mode != "bw":
            self._set_cap(
                source, "ICAP_BITDEPTH", "TWTY_UINT16", 24 if options.color_mode == "color" else 8, required=False
            )
        self._set_cap(source, "ICAP_UNITS", "TWTY_UINT16", self._c("TWUN_INCHES"), required=False)
        self._set_cap(source, "ICAP_XRESOLUTION", "TWTY_FIX32", float(options.dpi), required=True)
        self._set_cap(source, "ICAP_YRESOLUTION", "TWTY_FIX32", float(options.dpi), required=True)
        self._set_cap(source, "ICAP_XFERMECH", "TWTY_UINT16", self._c("TWSX_NATIVE"), required=False)
        self._set_cap(source, "CAP_INDICATORS", "TWTY_BOOL", False, required=False)
        feeder = options.uses_feeder
        if feeder or self._get_current(source, "CAP_FEEDERENABLED") is not None:
            self._set_cap(source, "CAP_FEEDERENABLED", "TWTY_BOOL", feeder, required=feeder)
        if feeder:
            self._set_cap(source, "CAP_AUTOFEED", "TWTY_BOOL", True, required=False)
            self._set_cap(source, "CAP_DUPLEXENABLED", "TWTY_BOOL", bool(options.duplex), required=bool(options.duplex))
        count = -1 if feeder else 1
        if options.max_pages is not None:
            count = options.max_pages if feeder else 1
        self._set_cap(source, "CAP_XFERCOUNT", "TWTY_INT16", count, required=False)

    def _scan_on_thread(
        self,
        device_id: str,
        options: ScanOptions,
        cancel: threading.Event,
        stop: threading.Event,
        out: queue.Queue,
    ) -> None:
        """The page loop; runs on the TWAIN thread, reports through ``out``."""
        tw = self._module()
        count = 0
        source = None
        try:
            source = self._open(device_id)
            self._configure(source, options)
            feeder = options.uses_feeder
            if feeder and self.check_feeder_loaded:
                loaded = self._get_current(source, "CAP_FEEDERLOADED")
                if loaded is not None and not loaded:
                    raise FeederEmpty("TWAIN: CAP_FEEDERLOADED is false", pages_received=0)
            if cancel.is_set() or stop.is_set():
                raise ScanCancelled(pages_received=0)
            del self._events[:]
            try:
                source.request_acquire(show_ui=False, modal_ui=False)
                source.modal_loop()  # returns on MSG_XFERREADY or MSG_CLOSEDSREQ
            except Exception as exc:
                raise map_twain_error(exc) from exc
            if self._c("MSG_XFERREADY") not in self._events:
                if feeder:
                    raise FeederEmpty("TWAIN: the source closed without a page", pages_received=0)
                raise ScanCancelled("TWAIN: the source closed without a page", pages_received=0)
            more = 1
            while more:
                if cancel.is_set() or stop.is_set():
                    raise ScanCancelled(pages_received=count)
                if options.max_pages is not None and count >= options.max_pages:
                    break
                try:
                    handle, more = source.xfer_image_natively()
                except Exception as exc:
                    err = map_twain_error(exc)
                    if isinstance(err, FeederEmpty) and count:
                        break  # NOMEDIA after pages: the normal end of the batch
                    raise err from exc
                try:
                    bmp = tw.dib_to_bm_file(handle)
                finally:
                    tw.global_handle_free(handle)
                image = Image.open(io.BytesIO(bmp))
                image.load()
                image = convert_mode(image, options.color_mode)
                image.info["dpi"] = (options.dpi, options.dpi)
                out.put(("page", ScannedPage(count, image, {"driver": self.name, "device": device_id})))
                count += 1
                if not feeder:
                    break
            if count == 0:
                raise (FeederEmpty if feeder else ScanCancelled)("TWAIN: no image transferred", pages_received=0)
            out.put(("done", count))
        except BaseException as exc:
            err = map_twain_error(exc)
            if err.pages_received is None:
                err.pages_received = count
            out.put(("error", err))
        finally:
            if source is not None:
                try:
                    source.close()  # resets pending transfers, disables and closes the source
                except Exception as exc:
                    log.warning("closing TWAIN source failed: %s", exc)

    # -- interface -----------------------------------------------------------------------------
    def list_devices(self) -> list[DeviceInfo]:
        return self._run(self._list_on_thread)

    def capabilities(self, device_id: str) -> dict[str, Any]:
        return self._run(self._caps_on_thread, device_id)

    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        out: queue.Queue = queue.Queue()
        stop = threading.Event()
        future = self._submit(self._scan_on_thread, device_id, options, cancel, stop, out)
        count = 0
        try:
            while True:
                try:
                    kind, payload = out.get(timeout=self.page_timeout)
                except queue.Empty as exc:
                    stop.set()
                    raise DriverTimeout(
                        f"no page from the TWAIN source for {self.page_timeout:.0f} s",
                        pages_received=count,
                    ) from exc
                if kind == "page":
                    if cancel.is_set():
                        continue  # arrived after the cancel: dropped
                    yield payload
                    count += 1
                elif kind == "done":
                    return
                else:
                    if isinstance(payload, ScannerError):
                        payload.pages_received = count
                    raise payload
        finally:
            stop.set()
            if not future.done():
                future.cancel()
