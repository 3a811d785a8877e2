"""The one interface every scanner driver implements.

A driver lists devices, describes a device's capabilities and scans: ``scan()`` is a generator
that yields :class:`ScannedPage` objects one by one as the device delivers them, and raises a
:class:`~scanner_agent.drivers.errors.ScannerError` subclass on failure.  Pages already yielded
before an error are valid and belong to the caller (the agent stores them in its outbox).

Contract of ``scan(device_id, options, cancel)``:

* ``cancel`` is a :class:`threading.Event` that another thread may set at any time; the driver
  stops as soon as it can, never yields a partial page, and raises
  :class:`~scanner_agent.drivers.errors.ScanCancelled`.
* ``options.source == "flatbed"`` scans exactly one page; any feeder source scans until the
  feeder runs out (normal end, no error) or ``options.max_pages`` is reached.  A feeder that is
  empty before the first page raises :class:`~scanner_agent.drivers.errors.FeederEmpty`.
* Images are PIL images in mode ``RGB`` (color), ``L`` (gray) or ``1``/``L`` (bw); drivers set
  ``image.info["dpi"]`` when the resolution is known.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

SOURCE_FLATBED = "flatbed"
SOURCE_FEEDER = "feeder"
COLOR_MODES = ("color", "gray", "bw")

_FEEDER_WORDS = ("feeder", "adf", "duplex", "进纸", "双面")


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    vendor: str
    model: str
    kind: str
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vendor": self.vendor,
            "model": self.model,
            "kind": self.kind,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class ScanOptions:
    """What the clerk asked for.

    ``source`` is ``"flatbed"`` or ``"feeder"`` (generic names every driver understands) or a
    device-specific source name as listed in ``capabilities()["raw_sources"]``.
    ``page_size_mm`` is the scan area (width, height), clipped to what the device supports;
    ``None`` scans the device's whole area.
    """

    source: str = SOURCE_FLATBED
    color_mode: str = "color"
    dpi: int = 200
    duplex: bool = False
    max_pages: int | None = None
    page_size_mm: tuple[float, float] | None = (210.0, 297.0)

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, not {self.color_mode!r}")
        if not isinstance(self.dpi, int) or not 25 <= self.dpi <= 1200:
            raise ValueError(f"dpi must be an int in 25..1200, not {self.dpi!r}")
        if self.max_pages is not None and self.max_pages < 1:
            raise ValueError("max_pages must be >= 1 or None")
        if not self.source:
            raise ValueError("source must not be empty")

    @property
    def uses_feeder(self) -> bool:
        """True when the source feeds several sheets (a batch), False for a flatbed."""
        if self.duplex:
            return True
        src = self.source.lower()
        return any(word in src for word in _FEEDER_WORDS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "color_mode": self.color_mode,
            "dpi": self.dpi,
            "duplex": self.duplex,
            "max_pages": self.max_pages,
            "page_size_mm": list(self.page_size_mm) if self.page_size_mm else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanOptions:
        data = dict(data)
        if data.get("page_size_mm") is not None:
            data["page_size_mm"] = tuple(data["page_size_mm"])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ScannedPage:
    """One page as delivered by a driver; ``index`` counts from 0 within one scan."""

    index: int
    image: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)


class ScannerDriver(abc.ABC):
    """Base class of all drivers; see the module docstring for the scan contract."""

    name: ClassVar[str] = "abstract"

    @abc.abstractmethod
    def list_devices(self) -> list[DeviceInfo]:
        """Devices this driver can scan from now."""

    @abc.abstractmethod
    def capabilities(self, device_id: str) -> dict[str, Any]:
        """At least ``sources`` (generic names), ``color_modes``, ``dpi`` (list or range dict),
        ``duplex`` (bool)."""

    @abc.abstractmethod
    def scan(self, device_id: str, options: ScanOptions, cancel: threading.Event) -> Iterator[ScannedPage]:
        """Yield pages one by one (see module docstring)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the driver (threads, handles)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def convert_mode(image: Image.Image, color_mode: str) -> Image.Image:
    """Bring a device image to the requested color mode (bw: 1-bit, threshold at mid-gray)."""
    if color_mode == "color":
        return image if image.mode == "RGB" else image.convert("RGB")
    if color_mode == "gray":
        return image if image.mode == "L" else image.convert("L")
    if image.mode == "1":
        return image
    gray = image if image.mode == "L" else image.convert("L")
    return gray.point(lambda v: 255 if v >= 128 else 0, mode="1")
