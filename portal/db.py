"""Declarative base, naming convention and column types shared by every feature's models."""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import UTC, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Enum, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, registry

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, always returns aware UTC: SQLite drops tzinfo, PostgreSQL keeps it."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def enum_column(cls: type[enum.Enum], length: int = 20) -> Enum:
    """A Python enum stored by its value as a short string (no native enum: portable, easy to migrate)."""
    return Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


def expire_loaded(model: type, ids: Collection[int] | None = None, key: str = "id") -> None:
    """After a bulk UPDATE (which bypasses the identity map): the session's loaded objects of
    `model` whose `key` is in `ids` (all of them when None) reload on their next access."""
    for obj in list(db.session.identity_map.values()):
        if isinstance(obj, model) and (ids is None or getattr(obj, key) in ids):
            db.session.expire(obj)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


db = SQLAlchemy(model_class=Base)
