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
    cached = db.session.scalar(
        select(Rendition).where(Rendition.source_blob_id == source.id, Rendition.kind == kind)
    )
    if cached is not None:
        blob = db.session.get(ImageBlob, cached.blob_id)
        assert blob is not None
        return load_image(blob)
    data, width, height = render(load_image(source), kind)
    blob = store_image(data, "image/jpeg")
    try:
        with db.session.begin_nested():
            db.session.add(Rendition(source_blob_id=source.id, kind=kind, blob_id=blob.id,
                                     width=width, height=height))
    except IntegrityError:
        pass  # another request cached it first; ours is identical
    return data


def rotate(data: bytes, degrees: int) -> bytes:
    """Apply a page's display rotation (clockwise) to JPEG bytes."""
    if degrees % 360 == 0:
        return data
    with Image.open(io.BytesIO(data)) as image:
        turned = image.rotate(-degrees, expand=True)
        out = io.BytesIO()
        turned.save(out, "JPEG", quality=85)
        return out.getvalue()
