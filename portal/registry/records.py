"""The record a registration-system adapter delivers, independent of where it came from.

Also the one place that turns loose source values (JSON, CSV cells, Excel cells) into a
`BusinessRecord`: times, statuses, lengths. Anything that does not fit raises `MalformedRecord`
with an English reason; the adapters report it with the serial (or line number) and go on.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from portal.registry.models import BusinessStatus

# The registration system runs on Beijing time; a time without an offset is read as UTC+8
# (China has no daylight saving time).
SOURCE_TZ = timezone(timedelta(hours=8), "CST")

# Column lengths of `Business` (and of the dictionary codes) that a record must fit.
LIMITS: dict[str, int] = {
    "serial": 40,
    "business_type_code": 50,
    "department_code": 100,
    "plate_number": 20,
    "vehicle_code": 40,
    "owner_name": 100,
    "owner_id_number": 40,
    "phone": 40,
    "clerk_code": 32,
    "clerk_name": 100,
}
TEXT_FIELDS = tuple(LIMITS)
TIME_FIELDS = ("accepted_at", "finished_at", "updated_at")

_STATUS_ALIASES: dict[str, BusinessStatus] = {
    "accepted": BusinessStatus.ACCEPTED, "受理": BusinessStatus.ACCEPTED, "已受理": BusinessStatus.ACCEPTED,
    "在办": BusinessStatus.ACCEPTED, "办理中": BusinessStatus.ACCEPTED, "待办结": BusinessStatus.ACCEPTED,
    "finished": BusinessStatus.FINISHED, "办结": BusinessStatus.FINISHED, "已办结": BusinessStatus.FINISHED,
    "完成": BusinessStatus.FINISHED, "已完成": BusinessStatus.FINISHED,
    "withdrawn": BusinessStatus.WITHDRAWN, "退办": BusinessStatus.WITHDRAWN, "已退办": BusinessStatus.WITHDRAWN,
    "作废": BusinessStatus.WITHDRAWN, "已作废": BusinessStatus.WITHDRAWN, "撤销": BusinessStatus.WITHDRAWN,
    "已撤销": BusinessStatus.WITHDRAWN,
}
_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
    "%Y%m%d%H%M%S", "%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d %H:%M:%S", "%Y.%m.%d",
    "%Y年%m月%d日 %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y年%m月%d日%H:%M", "%Y年%m月%d日",
)


class MalformedRecord(ValueError):
    """A source record that cannot become a `BusinessRecord`."""

    def __init__(self, serial: str, reason: str) -> None:
        super().__init__(f"{serial or '(no serial)'}: {reason}")
        self.serial, self.reason = serial, reason


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


FIELD_NAMES = tuple(f.name for f in fields(BusinessRecord))
SENSITIVE_FIELDS = ("owner_id_number", "phone")


def parse_time(value: Any) -> datetime | None:
    """A source time as an aware datetime; None for empty. Naive values are Beijing time.

    Accepts ISO 8601 (with or without offset), the usual spreadsheet spellings
    (2026-11-02 09:30, 2026/11/2 9:30:00, 20261102093000, 2026年11月2日) and date/datetime objects.
    Raises ValueError for anything else.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        parsed = _parse_text_time(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SOURCE_TZ)
    return parsed.astimezone(UTC)


def _parse_text_time(text: str) -> datetime:
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        pass
    squeezed = re.sub(r"\s+", " ", text)
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(squeezed, fmt)  # naive: source time, made aware by the caller
        except ValueError:
            continue
    raise ValueError(f"not a time: {text!r}")


def parse_status(value: Any, finished_at: datetime | None = None) -> BusinessStatus:
    """A status code or its Chinese wording; empty means finished when a finish time is given."""
    text = str(value or "").strip()
    if not text:
        return BusinessStatus.FINISHED if finished_at else BusinessStatus.ACCEPTED
    status = _STATUS_ALIASES.get(text.lower()) or _STATUS_ALIASES.get(text)
    if status is None:
        raise ValueError(f"unknown value {text!r}")
    return status


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise ValueError("a boolean where text was expected")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet cell holding a serial or phone number
    return str(value).strip()


def build_record(values: dict[str, Any]) -> BusinessRecord:
    """A validated record from loose field values (keys are `BusinessRecord` field names).

    Raises MalformedRecord naming the serial and the first problem found.
    """
    try:
        serial = _text(values.get("serial"))
    except ValueError as exc:
        raise MalformedRecord("", f"serial: {exc}") from None
    if not serial:
        raise MalformedRecord("", "missing serial")
    texts: dict[str, str] = {}
    for name, limit in LIMITS.items():
        try:
            text = _text(values.get(name))
        except ValueError as exc:
            raise MalformedRecord(serial, f"{name}: {exc}") from None
        if len(text) > limit:
            raise MalformedRecord(serial, f"{name} longer than {limit} characters")
        if "\x00" in text:
            raise MalformedRecord(serial, f"{name} contains a NUL character")
        texts[name] = text
    for name in ("business_type_code", "department_code"):
        if not texts[name]:
            raise MalformedRecord(serial, f"missing {name}")
    times: dict[str, datetime | None] = {}
    for name in TIME_FIELDS:
        try:
            times[name] = parse_time(values.get(name))
        except ValueError as exc:
            raise MalformedRecord(serial, f"{name}: {exc}") from None
    accepted_at = times["accepted_at"]
    if accepted_at is None:
        raise MalformedRecord(serial, "missing accepted_at")
    try:
        status = parse_status(values.get("status"), times["finished_at"])
    except ValueError as exc:
        raise MalformedRecord(serial, f"status: {exc}") from None
    return BusinessRecord(
        serial=serial, business_type_code=texts["business_type_code"], department_code=texts["department_code"],
        accepted_at=accepted_at, status=status, plate_number=texts["plate_number"],
        vehicle_code=texts["vehicle_code"], owner_name=texts["owner_name"],
        owner_id_number=texts["owner_id_number"], phone=texts["phone"], clerk_code=texts["clerk_code"],
        clerk_name=texts["clerk_name"], finished_at=times["finished_at"], updated_at=times["updated_at"],
    )


def record_from_json(data: Any) -> BusinessRecord:
    """A record of the HTTP contract (docs/registry-api.md). Raises MalformedRecord."""
    if not isinstance(data, dict):
        raise MalformedRecord("", "a record must be a JSON object")
    serial = data.get("serial")
    serial_text = serial.strip() if isinstance(serial, str) else ""
    for name in (*TEXT_FIELDS, *TIME_FIELDS, "status"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise MalformedRecord(serial_text[:40], f"{name} must be a string")
    return build_record({name: data.get(name) for name in (*FIELD_NAMES,)})


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(SOURCE_TZ).isoformat()


def record_to_json(record: BusinessRecord) -> dict[str, Any]:
    """The record as the HTTP contract spells it (times ISO 8601 with the +08:00 offset)."""
    data = asdict(record)
    data["status"] = record.status.value
    for name in TIME_FIELDS:
        data[name] = _iso(getattr(record, name))
    return data


