"""Thumbnails and display-size renditions of page images, cached encrypted like the originals.

JPEG originals are decoded with Pillow's draft mode (the decoder scales by 1/2, 1/4 or 1/8 while
decoding), so a 5 MB 300-dpi scan becomes a thumbnail in a few milliseconds.
"""

from __future__ import annotations

import io
from typing import Literal

from PIL import Image, ImageOps
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.db import db
from portal.storage.models import ImageBlob, Rendition
from portal.storage.services import load_image, store_image

Kind = Literal["thumb", "display"]
SIZES: dict[str, tuple[int, int]] = {"thumb": (240, 340), "display": (1600, 2200)}
QUALITY = {"thumb": 70, "display": 82}


def render(data: bytes, kind: Kind) -> tuple[bytes, int, int]:
    """Scale image bytes down to `kind`; returns (jpeg bytes, width, height)."""
    box = SIZES[kind]
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft(image.mode if image.mode in ("L", "RGB") else "RGB", box)
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.thumbnail(box, Image.Resampling.LANCZOS if kind == "thumb" else Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=QUALITY[kind], optimize=kind == "thumb")
        return out.getvalue(), image.width, image.height


def rendition(source: ImageBlob, kind: Kind) -> bytes:
    """The cached rendition of `source` (created on first use)."""
    data = cached_rendition(source, kind)
    if data is not None:
        return data
    data, width, height = render(load_image(source), kind)
    remember_rendition(source, kind, data, width, height)
    return data


def cached_rendition(source: ImageBlob, kind: Kind) -> bytes | None:
    """The rendition of `source` when it is cached, else None (`BlobIntegrityError` when its
    stored bytes fail their check)."""
    cached = db.session.scalar(
        select(Rendition).where(Rendition.source_blob_id == source.id, Rendition.kind == kind)
    )
    if cached is None:
        return None
    blob = db.session.get(ImageBlob, cached.blob_id)
    assert blob is not None
    return load_image(blob)


def remember_rendition(source: ImageBlob, kind: Kind, data: bytes, width: int, height: int) -> None:
    """Cache a rendition made by `render` (callers that render many pages in parallel store them
    here afterwards, from the thread that owns the database session)."""
    blob = store_image(data, "image/jpeg")
    try:
        with db.session.begin_nested():
            db.session.add(Rendition(source_blob_id=source.id, kind=kind, blob_id=blob.id,
                                     width=width, height=height))
    except IntegrityError:
        pass  # another request cached it first; ours is identical


def rotate(data: bytes, degrees: int) -> bytes:
    """Apply a page's display rotation (clockwise) to JPEG bytes."""
    if degrees % 360 == 0:
        return data
    with Image.open(io.BytesIO(data)) as image:
        turned = image.rotate(-degrees, expand=True)
        out = io.BytesIO()
        turned.save(out, "JPEG", quality=85)
        return out.getvalue()


INTEGRITY_FAILED_TEXT = "影像完整性校验失败"


def integrity_placeholder(kind: Kind, detail: str = "") -> bytes:
    """What is shown instead of an image whose stored bytes failed their check (JPEG, `kind` size).

    Never the image itself: a red-bordered grey page with 影像完整性校验失败 and a short note.
    """
    from PIL import ImageDraw

    from portal.storage.watermark import cjk_font

    width, height = SIZES[kind] if kind == "thumb" else (1200, 1650)
    image = Image.new("RGB", (width, height), (236, 238, 241))
    draw = ImageDraw.Draw(image)
    border = max(4, width // 60)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(197, 34, 31), width=border)
    big = cjk_font(max(18, width // 12))
    small = cjk_font(max(11, width // 40))
    lines = [(INTEGRITY_FAILED_TEXT, big, (197, 34, 31))]
    note = detail or ("已拒绝显示" if kind == "thumb" else "存储的影像与其 SM3 摘要不符，已拒绝显示并记入审计日志。")
    lines.append((note, small, (60, 64, 67)))
    y = height // 2 - big.size
    for text, font, colour in lines:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text(((width - (right - left)) // 2, y), text, font=font, fill=colour)
        y += (bottom - top) + big.size // 2
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()
