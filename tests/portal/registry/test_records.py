"""Turning loose source values into records: times, statuses, lengths, the JSON contract."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from portal.registry.models import BusinessStatus
from portal.registry.records import (
    BusinessRecord,
    MalformedRecord,
    build_record,
    parse_status,
    parse_time,
    record_from_json,
    record_to_json,
)

BASE = {"serial": "E1", "business_type_code": "REGISTER", "department_code": "OA",
        "accepted_at": "2026-11-02T09:30:00+08:00"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T09:30:00+08:00", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("2026-11-02T01:30:00Z", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("2026-11-02 09:30", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("2026/11/2 9:30:00", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("20261102093000", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("2026年11月02日 09:30", datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("2026-11-02", datetime(2026, 11, 1, 16, 0, tzinfo=UTC)),
        (date(2026, 11, 2), datetime(2026, 11, 1, 16, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 9, 30), datetime(2026, 11, 2, 1, 30, tzinfo=UTC)),
        ("", None),
        (None, None),
    ],
)
def test_times_are_read_as_beijing_time_unless_they_say_otherwise(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "11/02/2026", "46000.5"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_time(text)


def test_statuses_in_codes_and_chinese() -> None:
    assert parse_status("已办结") == BusinessStatus.FINISHED
    assert parse_status("WITHDRAWN") == BusinessStatus.WITHDRAWN
    assert parse_status("作废") == BusinessStatus.WITHDRAWN
    assert parse_status("", finished_at=datetime(2026, 1, 1, tzinfo=UTC)) == BusinessStatus.FINISHED
    assert parse_status(None) == BusinessStatus.ACCEPTED
    with pytest.raises(ValueError, match="unknown value"):
        parse_status("pending")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"serial": " "}, "missing serial"),
        ({"serial": "E" * 41}, "serial longer than 40"),
        ({"department_code": ""}, "missing department_code"),
        ({"accepted_at": None}, "missing accepted_at"),
        ({"plate_number": "沪" * 21}, "plate_number longer than 20"),
        ({"owner_name": "a\x00b"}, "NUL"),
        ({"status": "lost"}, "status: unknown value"),
        ({"finished_at": "soon"}, "finished_at: not a time"),
    ],
)
def test_malformed_values_name_the_field(change: dict[str, object], reason: str) -> None:
    with pytest.raises(MalformedRecord, match=reason):
        build_record(BASE | change)


def test_json_round_trip_and_strict_types() -> None:
    record = BusinessRecord(
        serial="E1", business_type_code="REGISTER", department_code="OA",
        accepted_at=datetime(2026, 11, 2, 1, 30, tzinfo=UTC), status=BusinessStatus.FINISHED,
        owner_name="<b>张三</b>", owner_id_number="31011519900101123X", phone="13800000001",
        finished_at=datetime(2026, 11, 2, 2, 0, tzinfo=UTC), updated_at=datetime(2026, 11, 2, 2, 0, tzinfo=UTC),
    )
    data = record_to_json(record)
    assert data["accepted_at"] == "2026-11-02T09:30:00+08:00" and data["status"] == "finished"
    assert record_from_json(data) == record
    with pytest.raises(MalformedRecord, match="phone must be a string"):
        record_from_json(data | {"phone": 13800000001})
    with pytest.raises(MalformedRecord, match="JSON object"):
        record_from_json(["E1"])
