"""Safe decoding of uploaded images: format allow-list, pixel limit, truncation, format lies."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

ALLOWED = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff"}
DECLARED = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "tiff": "TIFF", "tif": "TIFF"}


class ImageRejected(Exception):
    def __init__(self, code: str, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.code, self.message, self.message_zh = code, message, message_zh


@dataclass(frozen=True)
class ImageInfo:
    format: str
    media_type: str
    width: int
    height: int
    dpi: int | None


def inspect_image(data: bytes, declared: str | None, max_pixels: int) -> ImageInfo:
    """Decode fully (so truncation is caught) after checking the header's size against the limit."""
    want = DECLARED.get((declared or "").lower()) if declared else None
    if declared and want is None:
        raise ImageRejected("format_not_allowed", f"format {declared!r} is not allowed",
                            "不支持的图像格式，仅接受 JPEG、PNG、TIFF。")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                dpi_info = probe.info.get("dpi")
                if fmt not in ALLOWED:
                    raise ImageRejected("format_not_allowed", f"format {fmt or 'unknown'} is not allowed",
                                        "不支持的图像格式，仅接受 JPEG、PNG、TIFF。")
                if want and fmt != want:
                    raise ImageRejected("format_mismatch", f"declared {declared} but the bytes are {fmt}",
                                        "图像的实际格式与声明不符。")
                if width * height > max_pixels or width <= 0 or height <= 0:
                    raise ImageRejected("image_too_many_pixels",
                                        f"{width}x{height} exceeds the limit of {max_pixels} pixels",
                                        "图像像素过大（可能是解压炸弹），已拒绝。")
                probe.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("image_too_many_pixels", str(exc), "图像像素过大（可能是解压炸弹），已拒绝。") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("image_invalid", f"cannot decode the image: {exc}",
                            "图像文件损坏或不完整，无法解码。") from None
    dpi = None
    if isinstance(dpi_info, tuple) and dpi_info:
        try:
            dpi = round(float(dpi_info[0])) or None
        except (TypeError, ValueError):
            dpi = None
    return ImageInfo(fmt, ALLOWED[fmt], width, height, dpi)
