"""Applying registration-system records to businesses (idempotent upserts)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from portal.capture.completeness import refresh_completeness
from portal.db import db, utcnow
from portal.dictionary.models import BusinessType
from portal.org.models import Department
from portal.protect import ID_NUMBER, PHONE, protect
from portal.registry.models import Business
from portal.registry.records import BusinessRecord


class RecordRejected(Exception):
    """The record names a business type or department this portal does not know (quarantine)."""


@dataclass
class Lookups:
    """Code → id maps, loaded once per batch."""

    types: dict[str, int]
    departments: dict[str, int]

    @classmethod
    def load(cls) -> Lookups:
        return cls(
            dict(db.session.execute(select(BusinessType.code, BusinessType.id)).all()),
            dict(db.session.execute(select(Department.code, Department.id)).all()),
        )


def apply_record(record: BusinessRecord, lookups: Lookups | None = None) -> tuple[str, Business]:
    """Create or update the business of `record`; return ("created"|"updated"|"unchanged", it)."""
    lookups = lookups or Lookups.load()
    type_id = lookups.types.get(record.business_type_code)
    if type_id is None:
        raise RecordRejected(f"unknown business type {record.business_type_code!r}")
    department_id = lookups.departments.get(record.department_code)
    if department_id is None:
        raise RecordRejected(f"unknown department {record.department_code!r}")
    business = db.session.scalar(select(Business).where(Business.serial == record.serial))
    outcome = "updated"
    if business is None:
        business = Business(serial=record.serial)
        db.session.add(business)
        outcome = "created"
    elif (
        record.updated_at is not None
        and business.source_updated_at is not None
        and record.updated_at <= business.source_updated_at
    ):
        return "unchanged", business
    type_changed = business.business_type_id != type_id
    values = {
        "business_type_id": type_id,
        "department_id": department_id,
        "plate_number": record.plate_number.strip(),
        "vehicle_code": record.vehicle_code.strip(),
        "owner_name": record.owner_name.strip(),
        "clerk_code": record.clerk_code.strip(),
        "clerk_name": record.clerk_name.strip(),
        "status": record.status,
        "accepted_at": record.accepted_at,
        "finished_at": record.finished_at,
        "source_updated_at": record.updated_at,
    }
    for key, value in values.items():
        setattr(business, key, value)
    owner_id = protect(ID_NUMBER, record.serial, record.owner_id_number)
    business.owner_id_cipher, business.owner_id_index, business.owner_id_masked = (
        owner_id.cipher, owner_id.index, owner_id.masked,
    )
    phone = protect(PHONE, record.serial, record.phone)
    business.phone_cipher, business.phone_index, business.phone_masked = (
        phone.cipher, phone.index, phone.masked,
    )
    business.synced_at = utcnow()
    db.session.flush()
    if outcome == "created" or type_changed:
        refresh_completeness(business)
    return outcome, business
