"""A small stand-in for pytwain's ``twain`` module, injected at the import boundary.

It reproduces the parts of pytwain 2.x the TWAIN driver uses (SourceManager, Source,
capabilities, request_acquire/modal_loop with the source-manager callback, the state-6
transfer loop of ``xfer_image_natively`` returning ``(handle, pending)``, ``dib_to_bm_file``,
``global_handle_free``, the ``exceptions`` module and the constants) and records every call
with the thread it ran on.  It checks *our* side of the contract; it is not TWAIN.
"""

from __future__ import annotations

import io
import itertools
import threading
import types
from dataclasses import dataclass, field

from PIL import Image

# -- constants (pytwain names, TWAIN values) -----------------------------------------------------
CONSTANTS = {
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


def _exceptions_module() -> types.ModuleType:
    mod = types.ModuleType("twain.exceptions")

    class TwainError(Exception):
        pass

    mod.TwainError = TwainError
    for name in (
        "PaperJam",
        "PaperDoubleFeedError",
        "CheckDeviceOnlineError",
        "MaxConnectionsError",
        "DSTransferCancelled",
        "CapUnsupported",
        "GeneralFailure",
        "OperationError",
        "NoDataSourceError",
        "DeniedError",
        "UnknownError",
    ):
        setattr(mod, name, type(name, (TwainError,), {}))

    class CheckStatus(Exception):
        pass

    mod.CheckStatus = CheckStatus
    return mod


@dataclass
class Scenario:
    pages: int = 3
    feeder_loaded: bool = True
    supports_feeder: bool = True
    open_error: str | None = None  # exception class name raised by open_source
    error_on_page: int | None = None  # raise `page_error` when transferring this page
    page_error: str = "PaperJam"
    page_error_message: str = ""
    round_resolution: bool = True  # set_capability(resolution) raises CheckStatus
    transfer_delay: float = 0.0
    transfer_gate: threading.Event | None = None  # transfers after the first wait for it
    calls: list[tuple[str, int]] = field(default_factory=list)
    caps_set: dict[int, object] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)
    handles: dict[int, bytes] = field(default_factory=dict)
    closed_with_pending: list[int] = field(default_factory=list)
    acquire_args: dict = field(default_factory=dict)


def build(scenario: Scenario) -> types.ModuleType:
    tw = types.ModuleType("twain")
    exc = _exceptions_module()
    tw.exceptions = exc
    for key, value in CONSTANTS.items():
        setattr(tw, key, value)
    handle_ids = itertools.count(1000)

    def record(name: str) -> None:
        scenario.calls.append((name, threading.get_ident()))

    class Source:
        def __init__(self, sm, name):
            self._sm = sm
            self.name = name
            self._pending = 0
            self._sent = 0
            self._closed = False

        def get_capability_current(self, cap):
            record("get_capability_current")
            if cap == tw.CAP_FEEDERLOADED:
                if not scenario.supports_feeder:
                    raise exc.CapUnsupported()
                return (tw.TWTY_BOOL, scenario.feeder_loaded)
            if cap in (tw.CAP_FEEDERENABLED, tw.CAP_DUPLEXENABLED):
                if not scenario.supports_feeder or cap == tw.CAP_DUPLEXENABLED:
                    raise exc.CapUnsupported()
                return (tw.TWTY_BOOL, bool(scenario.caps_set.get(cap, False)))
            if cap == tw.ICAP_XRESOLUTION:
                return (tw.TWTY_FIX32, 200.0)
            raise exc.CapUnsupported()

        def set_capability(self, cap, type_id, value):
            record("set_capability")
            if cap == tw.CAP_DUPLEXENABLED and value:
                raise exc.CapUnsupported()
            if cap in (tw.CAP_FEEDERENABLED, tw.CAP_AUTOFEED) and not scenario.supports_feeder:
                raise exc.CapUnsupported()
            scenario.caps_set[cap] = value
            if cap in (tw.ICAP_XRESOLUTION, tw.ICAP_YRESOLUTION) and scenario.round_resolution:
                raise exc.CheckStatus()

        def request_acquire(self, show_ui, modal_ui):
            record("request_acquire")
            scenario.acquire_args.update(show_ui=show_ui, modal_ui=modal_ui)
            feeding = scenario.caps_set.get(tw.CAP_FEEDERENABLED, False)
            available = scenario.pages if feeding else min(1, scenario.pages)
            if feeding and not scenario.feeder_loaded:
                available = 0
            self._pending = available

        def modal_loop(self):
            record("modal_loop")
            event = tw.MSG_XFERREADY if self._pending else tw.MSG_CLOSEDSREQ
            if self._sm._cb:
                self._sm._cb(event)

        def xfer_image_natively(self):
            record("xfer_image_natively")
            if self._sent and scenario.transfer_gate is not None:
                scenario.transfer_gate.wait(5)
            if scenario.transfer_delay:
                threading.Event().wait(scenario.transfer_delay)
            if scenario.error_on_page is not None and self._sent == scenario.error_on_page:
                self._pending = 0
                raise getattr(exc, scenario.page_error)(scenario.page_error_message)
            if self._pending <= 0:
                raise exc.OperationError("no transfer pending (sequence error)")
            level = 20 + 40 * self._sent
            out = io.BytesIO()
            Image.new("RGB", (64, 90), (level, level, level)).save(out, "BMP")
            handle = next(handle_ids)
            scenario.handles[handle] = out.getvalue()
            self._sent += 1
            self._pending -= 1
            return handle, self._pending

        def close(self):
            record("source.close")
            if self._pending:
                scenario.closed_with_pending.append(self._pending)
            self._pending = 0
            self._closed = True

    class SourceManager:
        def __init__(self, parent_window=None, **kwargs):
            record("SourceManager")
            self._cb = None
            self.kwargs = kwargs

        @property
        def source_list(self):
            record("source_list")
            return ["Fake Scanner TW-1", "Fake Flatbed"]

        def open_source(self, product_name=None):
            record("open_source")
            if scenario.open_error:
                raise getattr(exc, scenario.open_error)()
            if product_name not in ("Fake Scanner TW-1", "Fake Flatbed"):
                raise exc.NoDataSourceError()
            return Source(self, product_name)

        def set_callback(self, cb):
            self._cb = cb

        def close(self):
            record("sm.close")

    def dib_to_bm_file(handle, path=None):
        record("dib_to_bm_file")
        return scenario.handles[handle]

    def global_handle_free(handle):
        record("global_handle_free")
        scenario.freed.append(handle)
        scenario.handles.pop(handle)

    tw.SourceManager = SourceManager
    tw.dib_to_bm_file = dib_to_bm_file
    tw.global_handle_free = global_handle_free
    return tw
