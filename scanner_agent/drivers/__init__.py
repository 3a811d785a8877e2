"""Scanner drivers: one interface (:mod:`.base`), one error hierarchy (:mod:`.errors`).

``get_driver(name, **config)`` builds a driver by name: ``"sane"``, ``"twain"``, ``"folder"``,
``"demo"``, or ``"package.module:ClassName"`` for a driver class outside this package.  Driver
modules are imported lazily so that a missing optional library (python-sane, pytwain) only fails
when that driver is actually requested.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import (
    SOURCE_FEEDER,
    SOURCE_FLATBED,
    DeviceInfo,
    ScannedPage,
    ScannerDriver,
    ScanOptions,
)
from .errors import (
    AccessDenied,
    CoverOpen,
    DeviceBusy,
    DeviceOffline,
    DriverCrashed,
    DriverTimeout,
    FeederEmpty,
    PaperJam,
    ScanCancelled,
    ScannerError,
    ScannerIOError,
    UnsupportedSetting,
    error_from_code,
)

_REGISTRY: dict[str, str | Callable[..., ScannerDriver]] = {
    "sane": "scanner_agent.drivers.sane_driver:SaneDriver",
    "twain": "scanner_agent.drivers.twain_driver:TwainDriver",
    "folder": "scanner_agent.drivers.folder_driver:FolderDriver",
    "demo": "scanner_agent.drivers.demo_driver:DemoDriver",
}


def register_driver(name: str, factory: str | Callable[..., ScannerDriver]) -> None:
    """Register a driver factory (a callable or a ``"module:attr"`` path) under ``name``."""
    _REGISTRY[name] = factory


def available_drivers() -> list[str]:
    return sorted(_REGISTRY)


def _resolve(path: str) -> Callable[..., ScannerDriver]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"driver path must look like 'package.module:Class', not {path!r}")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def get_driver(name: str, **config: Any) -> ScannerDriver:
    """Build the driver called ``name`` with its keyword configuration."""
    factory = _REGISTRY.get(name)
    if factory is None:
        if ":" not in name:
            raise ValueError(f"unknown scanner driver {name!r}; known: {available_drivers()}")
        factory = name
    if isinstance(factory, str):
        factory = _resolve(factory)
    return factory(**config)


__all__ = [
    "SOURCE_FEEDER",
    "SOURCE_FLATBED",
    "AccessDenied",
    "CoverOpen",
    "DeviceBusy",
    "DeviceInfo",
    "DeviceOffline",
    "DriverCrashed",
    "DriverTimeout",
    "FeederEmpty",
    "PaperJam",
    "ScanCancelled",
    "ScanOptions",
    "ScannedPage",
    "ScannerDriver",
    "ScannerError",
    "ScannerIOError",
    "UnsupportedSetting",
    "available_drivers",
    "error_from_code",
    "get_driver",
    "register_driver",
]
