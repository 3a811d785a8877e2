"""Encrypted, content-addressed image blobs and their cached renditions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow


class ImageBlob(Base):
    """One stored image file. `content_sm3` is the SM3 of the clear bytes (the file's address);
    the file holds SM4-GCM ciphertext under a per-image key, kept here wrapped by the master key
    (`master_key_id` names which one, so `portal keys rotate` can re-wrap and resume)."""

    __tablename__ = "image_blob"

    id: Mapped[int] = mapped_column(primary_key=True)
    content_sm3: Mapped[str] = mapped_column(String(64), unique=True)
    byte_size: Mapped[int]
    media_type: Mapped[str] = mapped_column(String(40))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rendition(Base):
    """A derived image (thumbnail, display size) of a blob, itself stored as a blob."""

    __tablename__ = "rendition"
    __table_args__ = (UniqueConstraint("source_blob_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_blob_id: Mapped[int] = mapped_column(ForeignKey("image_blob.id"))
    kind: Mapped[str] = mapped_column(String(20))  # thumb, display
    blob_id: Mapped[int] = mapped_column(ForeignKey("image_blob.id"))
    width: Mapped[int]
    height: Mapped[int]
