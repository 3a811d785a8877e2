"""One error hierarchy for every scanner driver.

Each error carries a stable machine ``code`` (reported to the portal and used in logs), an
English ``message`` for maintainers and a Simplified-Chinese ``user_message`` for the clerk.

Running out of paper in the feeder *after* at least one page is the normal end of a batch and
is never raised; :class:`FeederEmpty` means "no page at all".
"""

from __future__ import annotations

from typing import Any, ClassVar


class ScannerError(Exception):
    """Base class of every error a driver may raise."""

    code: ClassVar[str] = "scanner_error"
    default_message: ClassVar[str] = "The scanner reported an error."
    default_user_message: ClassVar[str] = "扫描失败，请重试；如多次失败请联系管理员。"
    #: True when retrying the same operation later may succeed without clerk action.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        *,
        user_message: str | None = None,
        pages_received: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.user_message = user_message or self.default_user_message
        #: how many complete pages were delivered before the error (None: unknown)
        self.pages_received = pages_received
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "user_message": self.user_message,
        }
        if self.pages_received is not None:
            data["pages_received"] = self.pages_received
        return data

    def __reduce__(self):  # keep the keyword arguments across pickling
        return (
            _rebuild,
            (type(self), self.message, self.user_message, self.pages_received),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


def _rebuild(cls, message, user_message, pages_received):
    return cls(message, user_message=user_message, pages_received=pages_received)


class FeederEmpty(ScannerError):
    code = "feeder_empty"
    default_message = "The document feeder is empty: no page was scanned."
    default_user_message = "进纸器中没有纸张，请放入材料后重新扫描。"


class PaperJam(ScannerError):
    code = "paper_jam"
    default_message = "Paper jam in the document feeder."
    default_user_message = "扫描仪卡纸，请取出卡住的纸张，并从未成功扫描的页面起重新扫描。"


class CoverOpen(ScannerError):
    code = "cover_open"
    default_message = "The scanner cover is open."
    default_user_message = "扫描仪盖板未合上，请合上盖板后重试。"


class DeviceBusy(ScannerError):
    code = "busy"
    default_message = "The scanner is busy (in use by another program)."
    default_user_message = "扫描仪正被其他程序占用，请关闭其他扫描程序后重试。"
    transient = True


class DeviceOffline(ScannerError):
    code = "offline"
    default_message = "The scanner was not found or is offline."
    default_user_message = "未找到扫描仪或扫描仪未连接，请检查电源和数据线。"
    transient = True


class ScanCancelled(ScannerError):
    code = "cancelled"
    default_message = "The scan was cancelled."
    default_user_message = "扫描已取消。"


class DriverCrashed(ScannerError):
    code = "driver_crashed"
    default_message = "The scanner driver crashed."
    default_user_message = "扫描仪驱动异常退出，已收到的页面已保存，请重新扫描其余页面。"
    transient = True


class DriverTimeout(ScannerError):
    code = "driver_timeout"
    default_message = "The scanner driver stopped responding."
    default_user_message = "扫描仪长时间无响应，请检查设备后重试。"
    transient = True


class ScannerIOError(ScannerError):
    code = "io_error"
    default_message = "Communication error with the scanner."
    default_user_message = "与扫描仪通信出错，请检查设备连接后重试。"
    transient = True


class AccessDenied(ScannerError):
    code = "access_denied"
    default_message = "Access to the scanner was denied."
    default_user_message = "没有访问扫描仪的权限，请联系管理员。"


class UnsupportedSetting(ScannerError):
    code = "unsupported"
    default_message = "The scanner does not support the requested setting."
    default_user_message = "扫描仪不支持所选的扫描设置（来源、颜色或分辨率），请更改设置后重试。"


ERROR_CLASSES: dict[str, type[ScannerError]] = {
    cls.code: cls
    for cls in (
        ScannerError,
        FeederEmpty,
        PaperJam,
        CoverOpen,
        DeviceBusy,
        DeviceOffline,
        ScanCancelled,
        DriverCrashed,
        DriverTimeout,
        ScannerIOError,
        AccessDenied,
        UnsupportedSetting,
    )
}


def error_from_code(code: str, message: str | None = None, *, pages_received: int | None = None) -> ScannerError:
    """Rebuild an error from its stable code (unknown codes give a plain ScannerError)."""
    cls = ERROR_CLASSES.get(code, ScannerError)
    return cls(message, pages_received=pages_received)


__all__ = [
    "ERROR_CLASSES",
    "AccessDenied",
    "CoverOpen",
    "DeviceBusy",
    "DeviceOffline",
    "DriverCrashed",
    "DriverTimeout",
    "FeederEmpty",
    "PaperJam",
    "ScanCancelled",
    "ScannerError",
    "ScannerIOError",
    "UnsupportedSetting",
    "error_from_code",
]
