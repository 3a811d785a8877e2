"""The record a registration-system adapter delivers, independent of where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from portal.registry.models import BusinessStatus


@dataclass(frozen=True)
class BusinessRecord:
    serial: str
    business_type_code: str
    department_code: str
    accepted_at: datetime
    status: BusinessStatus = BusinessStatus.ACCEPTED
    plate_number: str = ""
    vehicle_code: str = ""
    owner_name: str = ""
    owner_id_number: str = ""
    phone: str = ""
    clerk_code: str = ""
    clerk_name: str = ""
    finished_at: datetime | None = None
    updated_at: datetime | None = None
