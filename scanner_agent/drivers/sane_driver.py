"""SANE driver (Linux, including Kylin/UOS desktops) on top of python-sane.

python-sane traps this module works around (all observed with python-sane 2.9.2):

* An exception raised inside the ``progress`` callback of ``snap()`` crashes the interpreter:
  we never pass a progress callback.
* A 16-bit ``scan()`` returns a corrupt image (twice the height, garbage): we force
  ``depth = 8`` whenever the device offers it.
* ``cancel()`` from another thread makes the running ``snap()`` return a *truncated* image
  without any error: we keep our own cancel flag, call ``sane_cancel`` from a watcher thread
  (the SANE standard allows it asynchronously), and when our flag is set after ``snap()``
  returns, the page is dropped and :class:`ScanCancelled` is raised.
* ``sane.init()`` reads ``SANE_CONFIG_DIR`` once; a different ``config_dir`` needs
  ``sane.exit()`` + ``sane.init()`` (done here).  SANE is not thread-safe: every call into one
  process's SANE goes through one lock.

Errors arrive as ``_sane.error`` carrying ``sane_strstatus()`` text (e.g. "Document feeder
jammed"); :func:`map_sane_error` turns them into our hierarchy.  "Document feeder out of
documents" after at least one page is the normal end of a batch.

A hanging or crashing backend cannot be handled in-process: run this driver through
:class:`scanner_agent.drivers.isolation.IsolatedDriver`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

from .base import (
    SOURCE_FEEDER,
    SOURCE_FLATBED,
    DeviceInfo,
    ScannedPage,
    ScannerDriver,
    ScanOptions,
    convert_mode,
)
from .errors import (
    AccessDenied,
    CoverOpen,
    DeviceBusy,
    DeviceOffline,
    FeederEmpty,
    PaperJam,
    ScanCancelled,
    ScannerError,
    ScannerIOError,
    UnsupportedSetting,
)

log = logging.getLogger(__name__)

# sane_strstatus() texts (SANE 1.x, English: libsane does not translate them).
_STATUS_TEXT: list[tuple[str, type[ScannerError]]] = [
    ("document feeder out of documents", FeederEmpty),
    ("document feeder jammed", PaperJam),
    ("scanner cover is open", CoverOpen),
    ("device busy", DeviceBusy),
    ("operation was cancel", ScanCancelled),  # "canceled" (SANE spelling) and "cancelled"
    ("error during device i/o", ScannerIOError),
    ("out of memory", ScannerIOError),
    ("access to resource has been denied", AccessDenied),
    ("operation not supported", UnsupportedSetting),
    ("invalid argument", UnsupportedSetting),
    ("scanner returned no data", ScannerIOError),
]
# SANE_STATUS_* names, in case a message carries the symbolic name instead of the text.
_STATUS_NAMES: dict[str, type[ScannerError]] = {
    "NO_DOCS": FeederEmpty,
    "JAMMED": PaperJam,
    "COVER_OPEN": CoverOpen,
    "DEVICE_BUSY": DeviceBusy,
    "CANCELLED": ScanCancelled,
    "IO_ERROR": ScannerIOError,
    "NO_MEM": ScannerIOError,
    "ACCESS_DENIED": AccessDenied,
    "UNSUPPORTED": UnsupportedSetting,
    "INVAL": UnsupportedSetting,
}

_FLATBED_RE = re.compile(r"flatbed|platen|平板", re.I)
_FEEDER_RE = re.compile(r"adf|feeder|automatic document|进纸", re.I)
_DUPLEX_RE = re.compile(r"duplex|双面", re.I)

_MODE_CANDIDATES = {
    "color": ("color", "colour", "rgb", "24bit color"),
    "gray": ("gray", "grey", "grayscale", "greyscale", "8bit gray"),
    "bw": ("lineart", "binary", "black & white", "blackwhite", "monochrome"),
}

_init_lock = threading.RLock()
_initialized_with: str | bool | None = False  # False: not initialised; else the config dir


def map_sane_error(exc: BaseException, *, during: str = "scan") -> ScannerError:
    """Translate a python-sane exception into our hierarchy (unknown → ScannerIOError)."""
    if isinstance(exc, ScannerError):
        return exc
    text = str(exc)
    low = text.lower()
    for needle, cls in _STATUS_TEXT:
        if needle in low:
            return cls(f"SANE: {text} (during {during})")
    for name, cls in _STATUS_NAMES.items():
        if f"SANE_STATUS_{name}" in text:
            return cls(f"SANE: {text} (during {during})")
    return ScannerIOError(f"SANE: {text or type(exc).__name__} (during {during})")


def _import_sane():
    try:
        import sane
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise DeviceOffline("python-sane is not installed (pip install python-sane; needs libsane)") from exc
    return sane


class SaneDriver(ScannerDriver):
    """Scan through SANE.

    :param config_dir: value for ``SANE_CONFIG_DIR`` (set before ``sane.init()`` in this process);
        ``None`` keeps the environment's value.
    :param extra_options: backend-specific options applied after ours, by SANE option name
        (``-`` or ``_``), e.g. ``{"read-return-value": "SANE_STATUS_JAMMED"}`` for the test backend.
    :param probe_sources: ``list_devices()`` opens each device to read its sources.
    """

    name = "sane"

    def __init__(
        self,
        config_dir: str | os.PathLike[str] | None = None,
        extra_options: dict[str, Any] | None = None,
        probe_sources: bool = True,
        local_only: bool = False,
    ) -> None:
        self.config_dir = os.fspath(config_dir) if config_dir is not None else None
        self.extra_options = dict(extra_options or {})
        self.probe_sources = probe_sources
        self.local_only = local_only
        self._sane = _import_sane()

    # -- process-wide SANE state ------------------------------------------------------------
    def _ensure_init(self) -> None:
        global _initialized_with
        with _init_lock:
            wanted = self.config_dir if self.config_dir is not None else os.environ.get("SANE_CONFIG_DIR")
            if _initialized_with is not False and _initialized_with != wanted:
                try:
                    self._sane.exit()
                finally:
                    _initialized_with = False
            if self.config_dir is not None:
                os.environ["SANE_CONFIG_DIR"] = self.config_dir
            if _initialized_with is False:
                try:
                    self._sane.init()
                except Exception as exc:
                    raise map_sane_error(exc, during="init") from exc
                _initialized_with = wanted

    def _open(self, device_id: str):
        try:
            return self._sane.open(device_id)
        except Exception as exc:
            err = map_sane_error(exc, during=f"open {device_id}")
            if isinstance(err, DeviceBusy | AccessDenied):
                raise err from exc
            raise DeviceOffline(f"cannot open SANE device {device_id!r}: {exc}") from exc

    # -- interface ------------------------------------------------------------------------
    def list_devices(self) -> list[DeviceInfo]:
        with _init_lock:
            self._ensure_init()
            try:
                raw = self._sane.get_devices(self.local_only)
            except Exception as exc:
                raise map_sane_error(exc, during="get_devices") from exc
            devices = []
            for dev_id, vendor, model, kind in raw:
                sources: list[str] = []
                if self.probe_sources:
                    try:
                        dev = self._sane.open(dev_id)
                    except Exception as exc:
                        log.info("cannot probe SANE device %s: %s", dev_id, exc)
                    else:
                        try:
                            sources = _generic_sources(_raw_sources(dev))
                        finally:
                            dev.close()
                devices.append(DeviceInfo(id=dev_id, vendor=vendor, model=model, kind=kind, sources=sources))
            return devices

    def capabilities(self, device_id: str) -> dict[str, Any]:
        with _init_lock:
            self._ensure_init()
            dev = self._open(device_id)
            try:
                raw_sources = _raw_sources(dev)
                modes = _constraint(dev, "mode") or []
                dpi = _constraint(dev, "resolution") or _constraint(dev, "x_resolution")
                if isinstance(dpi, tuple):
                    dpi = {"min": dpi[0], "max": dpi[1], "step": dpi[2]}
                color_modes = [
                    ours
                    for ours in ("color", "gray", "bw")
                    if _pick_mode(modes, ours) is not None or (ours == "bw" and modes)
                ]
                return {
                    "sources": _generic_sources(raw_sources) or [SOURCE_FLATBED],
                    "raw_sources": raw_sources,
                    "color_modes": color_modes,
                    "raw_modes": list(modes),
                    "dpi": dpi,
                    "duplex": any(_DUPLEX_RE.search(s) for s in raw_sources),
                    "max_area_mm": _max_area(dev),
                }
            finally:
                dev.close()

    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        with _init_lock:
            self._ensure_init()
            if cancel.is_set():
                raise ScanCancelled("cancelled before the scan started", pages_received=0)
            dev = self._open(device_id)
            count = 0
            try:
                feeder, dpi = self._configure(dev, options)
                while True:
                    if options.max_pages is not None and count >= options.max_pages:
                        break
                    if cancel.is_set():
                        raise ScanCancelled(pages_received=count)
                    try:
                        dev.start()
                    except Exception as exc:
                        err = map_sane_error(exc, during="start")
                        if isinstance(err, FeederEmpty):
                            if count:
                                break  # normal end of the batch
                            err.pages_received = 0
                        raise _with_count(err, count) from exc
                    image = self._read_page(dev, cancel, feeder, count)
                    image = convert_mode(image, options.color_mode)
                    image.info["dpi"] = (dpi, dpi)
                    meta = {"driver": self.name, "device": device_id}
                    # The consumer may take its time here; SANE stays locked for us meanwhile.
                    yield ScannedPage(index=count, image=image, meta=meta)
                    count += 1
                    if not feeder:
                        break
            finally:
                with contextlib.suppress(Exception):  # best effort, the device is closed next
                    dev.cancel()
                dev.close()

    # -- helpers ------------------------------------------------------------------------------
    def _read_page(self, dev, cancel: threading.Event, feeder: bool, count: int):
        finished = threading.Event()

        def watch() -> None:
            # Runs beside snap(): sane_cancel() may be called asynchronously (SANE standard).
            while not finished.is_set():
                if cancel.wait(0.05):
                    if not finished.is_set():
                        with contextlib.suppress(Exception):  # snap() reports the outcome
                            dev.cancel()
                    return

        watcher = threading.Thread(target=watch, name="sane-cancel-watch", daemon=True)
        watcher.start()
        try:
            # No progress callback: an exception raised there kills the interpreter.
            image = dev.snap(no_cancel=feeder)
        except Exception as exc:
            if cancel.is_set():
                raise ScanCancelled(pages_received=count) from exc
            err = map_sane_error(exc, during="read")
            if isinstance(err, FeederEmpty) and count == 0:
                err.pages_received = 0
            raise _with_count(err, count) from exc
        finally:
            finished.set()
            watcher.join()
        if cancel.is_set():
            # python-sane returns a truncated image without error when cancelled: drop it.
            raise ScanCancelled(pages_received=count)
        return image

    def _configure(self, dev, options: ScanOptions) -> tuple[bool, int]:
        """Apply options; returns (is the chosen source a feeder?, the resolution really set)."""
        raw_sources = _raw_sources(dev)
        feeder = options.uses_feeder
        if raw_sources:
            source = _pick_source(raw_sources, options)
            if source is None:
                raise UnsupportedSetting(
                    f"source {options.source!r} (duplex={options.duplex}) not offered by the "
                    f"device; it has {raw_sources}"
                )
            _set(dev, "source", source)
            feeder = bool(_FEEDER_RE.search(source) or _DUPLEX_RE.search(source))
        elif feeder and options.source != SOURCE_FEEDER:
            raise UnsupportedSetting(f"device has no source option; cannot use {options.source!r}")

        modes = _constraint(dev, "mode") or []
        mode = _pick_mode(modes, options.color_mode)
        if mode is None and options.color_mode == "bw":
            mode = _pick_mode(modes, "gray")  # threshold in software (convert_mode)
        if mode is None and modes:
            raise UnsupportedSetting(f"color mode {options.color_mode!r} not offered; device modes: {modes}")
        if mode is not None:
            _set(dev, "mode", mode)
        depth = _constraint(dev, "depth")
        if isinstance(depth, list) and 8 in depth:
            _set(dev, "depth", 8)  # never 16: python-sane returns a corrupt 16-bit image

        for key in ("resolution", "x_resolution", "y_resolution"):
            constraint = _constraint(dev, key)
            if constraint is not None or _has(dev, key):
                _set(dev, key, _nearest(constraint, options.dpi), numeric=True)

        self._set_area(dev, options)
        for key, value in self.extra_options.items():
            _set(dev, key, value, required=True)
        return feeder, _actual_dpi(dev, options.dpi)

    def _set_area(self, dev, options: ScanOptions) -> None:
        area = _max_area(dev)
        if area is None:
            return
        (x0, y0), (x1, y1) = area
        if options.page_size_mm is None:
            width, height = x1 - x0, y1 - y0
        else:
            width = min(options.page_size_mm[0], x1 - x0)
            height = min(options.page_size_mm[1], y1 - y0)
        _set(dev, "tl_x", float(x0), numeric=True)
        _set(dev, "tl_y", float(y0), numeric=True)
        _set(dev, "br_x", float(x0 + width), numeric=True)
        _set(dev, "br_y", float(y0 + height), numeric=True)


def _actual_dpi(dev, requested: int) -> int:
    for key in ("resolution", "y_resolution", "x_resolution"):
        if _has(dev, key):
            try:
                value = getattr(dev, key)
            except Exception:  # noqa: S112 - try the next option name
                continue
            if isinstance(value, int | float) and value >= 1:
                return round(value)
    return requested


def _with_count(err: ScannerError, count: int) -> ScannerError:
    if err.pages_received is None:
        err.pages_received = count
    return err


def _key(name: str) -> str:
    return name.replace("-", "_")


def _has(dev, name: str) -> bool:
    key = _key(name)
    opt = dev.opt.get(key)
    return opt is not None and opt.is_active()


def _constraint(dev, name: str):
    key = _key(name)
    opt = dev.opt.get(key)
    if opt is None or not opt.is_active():
        return None
    return opt.constraint


def _set(dev, name: str, value: Any, *, numeric: bool = False, required: bool = False) -> bool:
    key = _key(name)
    opt = dev.opt.get(key)
    if opt is None or not opt.is_active() or not opt.is_settable():
        if required:
            raise UnsupportedSetting(f"SANE option {name!r} is not available on this device")
        return False
    try:
        setattr(dev, key, value)
    except Exception as exc:
        err = map_sane_error(exc, during=f"set {name}={value!r}")
        if isinstance(err, UnsupportedSetting) and not required and numeric:
            log.warning("SANE option %s=%r rejected: %s", name, value, exc)
            return False
        raise err from exc
    return True


def _raw_sources(dev) -> list[str]:
    constraint = _constraint(dev, "source")
    return [s for s in constraint if isinstance(s, str)] if isinstance(constraint, list) else []


def _generic_sources(raw_sources: list[str]) -> list[str]:
    generic = []
    if any(_FLATBED_RE.search(s) for s in raw_sources):
        generic.append(SOURCE_FLATBED)
    if any(_FEEDER_RE.search(s) or _DUPLEX_RE.search(s) for s in raw_sources):
        generic.append(SOURCE_FEEDER)
    return generic


def _pick_source(raw_sources: list[str], options: ScanOptions) -> str | None:
    if options.source in raw_sources:
        return options.source
    if options.source == SOURCE_FLATBED:
        matches = [s for s in raw_sources if _FLATBED_RE.search(s)]
        if not matches and len(raw_sources) == 1 and not _FEEDER_RE.search(raw_sources[0]):
            matches = raw_sources
        return matches[0] if matches else None
    if options.source == SOURCE_FEEDER:
        feeders = [s for s in raw_sources if _FEEDER_RE.search(s) or _DUPLEX_RE.search(s)]
        if options.duplex:
            duplex = [s for s in feeders if _DUPLEX_RE.search(s)]
            return duplex[0] if duplex else None
        simplex = [s for s in feeders if not _DUPLEX_RE.search(s)]
        return (simplex or feeders or [None])[0]
    return None


def _pick_mode(modes: list[str], color_mode: str) -> str | None:
    lowered = {m.lower(): m for m in modes if isinstance(m, str)}
    for candidate in _MODE_CANDIDATES[color_mode]:
        if candidate in lowered:
            return lowered[candidate]
    return None


def _nearest(constraint, dpi: int):
    if isinstance(constraint, tuple) and len(constraint) == 3:
        low, high, step = constraint
        value = min(max(dpi, low), high)
        if step:
            value = low + round((value - low) / step) * step
        return value
    if isinstance(constraint, list) and constraint:
        return min(constraint, key=lambda v: abs(v - dpi))
    return dpi


def _max_area(dev):
    ranges = [_constraint(dev, k) for k in ("tl_x", "tl_y", "br_x", "br_y")]
    if not all(isinstance(r, tuple) and len(r) == 3 for r in ranges):
        return None
    tl_x, tl_y, br_x, br_y = ranges
    return (tl_x[0], tl_y[0]), (br_x[1], br_y[1])
