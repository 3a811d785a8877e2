"""Applying registration-system records to businesses (idempotent upserts), the quarantine of
records that name an unknown business type or department, the on-demand fetch of one business,
and the figures of the sysadmin's status page.

Services flush, never commit: request code commits in `app.after_request`; the sync, the file
import and the scheduler commit per unit of work.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from portal.audit.services import Actor, record
from portal.capture.completeness import refresh_completeness
from portal.db import db, expire_loaded, utcnow
from portal.dictionary.models import BusinessType, ChecklistItem, Requirement
from portal.keys import key_provider
from portal.org.models import Department
from portal.protect import ID_NUMBER, PHONE, blind_index, normalize, protect
from portal.registry.changes import businesses_changed
from portal.registry.models import Business, CaptureState, QuarantinedRecord, SyncRun, SyncState
from portal.registry.records import (
    SENSITIVE_FIELDS,
    BusinessRecord,
    MalformedRecord,
    build_record,
    parse_time,
    record_to_json,
)

log = logging.getLogger(__name__)

IN_CHUNK = 500  # bound parameters per IN (...) list
QUARANTINE_RESOLVED = "registry.quarantine_resolved"


class RecordRejected(Exception):
    """The record names a business type or department this portal does not know (quarantine)."""

    def __init__(self, message: str, *, kind: str = "", value: str = "") -> None:
        super().__init__(message)
        self.kind, self.value = kind, value

    @property
    def label(self) -> str:
        """The reason in Chinese, for the quarantine list."""
        if self.kind == "type":
            return f"未知业务类型：{self.value}"
        if self.kind == "department":
            return f"未知办理部门：{self.value}"
        return str(self)


class RegistrySourceError(Exception):
    """The on-demand fetch could not use the registration system; the message is for the user."""


class BusinessQuarantined(RegistrySourceError):
    """The fetched record was quarantined. The quarantine row is flushed: let the request commit."""


class QuarantineError(Exception):
    """A quarantine action the user cannot do (message in Chinese)."""


@dataclass
class Lookups:
    """Code (or exact name) → id maps, loaded once per batch."""

    types: dict[str, int]
    departments: dict[str, int]
    type_names: dict[str, int] = field(default_factory=dict)
    department_names: dict[str, int] = field(default_factory=dict)
    required_counts: dict[int, int] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Lookups:
        department_names: dict[str, int] = {}
        ambiguous: set[str] = set()
        for name, dept_id in db.session.execute(select(Department.name, Department.id)).all():
            if name in department_names:
                ambiguous.add(name)
            department_names[name] = dept_id
        for name in ambiguous:  # a name two departments share identifies neither
            del department_names[name]
        required = db.session.execute(
            select(ChecklistItem.business_type_id, func.count())
            .where(ChecklistItem.requirement == Requirement.REQUIRED)
            .group_by(ChecklistItem.business_type_id)
        ).all()
        return cls(
            dict(db.session.execute(select(BusinessType.code, BusinessType.id)).all()),
            dict(db.session.execute(select(Department.code, Department.id)).all()),
            dict(db.session.execute(select(BusinessType.name, BusinessType.id)).all()),
            department_names,
            {type_id: count for type_id, count in required},
        )

    def resolve(self, record: BusinessRecord) -> tuple[int, int]:
        """(business type id, department id) of the record, by code or else by exact name."""
        type_code = record.business_type_code
        type_id = self.types.get(type_code) or self.type_names.get(type_code)
        if type_id is None:
            raise RecordRejected(f"unknown business type {type_code!r}", kind="type", value=type_code)
        dept_code = record.department_code
        department_id = self.departments.get(dept_code) or self.department_names.get(dept_code)
        if department_id is None:
            raise RecordRejected(f"unknown department {dept_code!r}", kind="department", value=dept_code)
        return type_id, department_id


# Applying records -------------------------------------------------------------------------------

_PLAIN_COLUMNS = (
    "business_type_id", "department_id", "plate_number", "vehicle_code", "owner_name", "clerk_code",
    "clerk_name", "status", "accepted_at", "finished_at", "source_updated_at",
)
_PROTECTED = ((ID_NUMBER, "owner_id_number", "owner_id"), (PHONE, "phone", "phone"))


def _plain_values(
    record: BusinessRecord, type_id: int, department_id: int, previous_updated_at: datetime | None
) -> dict[str, Any]:
    return {
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
        # A record without a source time (a file import) keeps the time of the last synced version.
        "source_updated_at": record.updated_at if record.updated_at is not None else previous_updated_at,
    }


def _is_stale(record: BusinessRecord, source_updated_at: datetime | None) -> bool:
    """The business already holds this version of the record or a newer one."""
    return (
        record.updated_at is not None
        and source_updated_at is not None
        and record.updated_at <= source_updated_at
    )


def _protected_values(record: BusinessRecord, current: Any | None) -> dict[str, Any]:
    """Cipher, blind index and mask of the ID number and phone; the current ones when unchanged
    (so an unchanged value is never re-encrypted)."""
    values: dict[str, Any] = {}
    for kind, attr, prefix in _PROTECTED:
        clear = getattr(record, attr)
        if current is not None:
            index = blind_index(kind, clear) if normalize(kind, clear) else None
            if index == getattr(current, f"{prefix}_index"):
                for suffix in ("cipher", "index", "masked"):
                    values[f"{prefix}_{suffix}"] = getattr(current, f"{prefix}_{suffix}")
                continue
        protected = protect(kind, record.serial, clear)
        values[f"{prefix}_cipher"] = protected.cipher
        values[f"{prefix}_index"] = protected.index
        values[f"{prefix}_masked"] = protected.masked
    return values


def _differs(current: Any, values: dict[str, Any]) -> bool:
    return any(getattr(current, key) != value for key, value in values.items())


def apply_record(record: BusinessRecord, lookups: Lookups | None = None) -> tuple[str, Business]:
    """Create or update the business of `record`; return ("created"|"updated"|"unchanged", it).

    A record older than (or as old as) the version already stored is skipped, and so is one that
    changes nothing: re-reading a record is harmless.
    """
    lookups = lookups or Lookups.load()
    type_id, department_id = lookups.resolve(record)
    business = db.session.scalar(select(Business).where(Business.serial == record.serial))
    if business is not None and _is_stale(record, business.source_updated_at):
        return "unchanged", business
    outcome = "created" if business is None else "updated"
    values = _plain_values(
        record, type_id, department_id, business.source_updated_at if business is not None else None
    )
    values.update(_protected_values(record, business))
    if business is None:
        business = Business(serial=record.serial)
        db.session.add(business)
        type_changed = True
    elif not _differs(business, values):
        return "unchanged", business
    else:
        type_changed = business.business_type_id != type_id
    for key, value in values.items():
        setattr(business, key, value)
    business.synced_at = utcnow()
    db.session.flush()
    if type_changed:
        refresh_completeness(business)
    _auto_resolve([record.serial])
    businesses_changed([business.id])
    return outcome, business


@dataclass
class BatchResult:
    """What `apply_records` did with a batch."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0  # earlier occurrences of a serial in the same batch (the last one wins)
    rejected: list[tuple[BusinessRecord, RecordRejected]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (serial, reason)
    applied_serials: list[str] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        self.failed.extend(other.failed)
        self.applied_serials.extend(other.applied_serials)


def _last_wins(records: Iterable[BusinessRecord]) -> tuple[list[BusinessRecord], int]:
    latest: dict[str, BusinessRecord] = {}
    total = 0
    for rec in records:
        total += 1
        latest.pop(rec.serial, None)  # keep batch order by the position of the last occurrence
        latest[rec.serial] = rec
    return list(latest.values()), total - len(latest)


_CURRENT_COLUMNS = (
    Business.id, Business.serial, *(getattr(Business, c) for c in _PLAIN_COLUMNS),
    Business.owner_id_cipher, Business.owner_id_index, Business.owner_id_masked,
    Business.phone_cipher, Business.phone_index, Business.phone_masked,
)


def _current_rows(serials: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for start in range(0, len(serials), IN_CHUNK):
        chunk = serials[start:start + IN_CHUNK]
        for row in db.session.execute(select(*_CURRENT_COLUMNS).where(Business.serial.in_(chunk))):
            rows[row.serial] = row
    return rows


def apply_records(records: Iterable[BusinessRecord], lookups: Lookups | None = None) -> BatchResult:
    """Apply a batch with one SELECT for the rows it touches and bulk INSERT/UPDATE statements.

    Same outcome as `apply_record` on each record in turn. Unknown type/department → `rejected`
    (the caller quarantines them). If the bulk statements fail (say another process inserted one
    of the serials meanwhile), the batch is re-applied record by record, each in a savepoint, and
    a record that still fails lands in `failed` while the others go on.
    """
    lookups = lookups or Lookups.load()
    unique, duplicates = _last_wins(records)
    try:
        with db.session.begin_nested():
            result = _apply_bulk(unique, lookups)
    except SQLAlchemyError as exc:
        log.warning("bulk apply of %d records failed (%s); applying them one by one", len(unique),
                    exc.__class__.__name__)
        result = _apply_one_by_one(unique, lookups)
    result.duplicates = duplicates
    _auto_resolve(result.applied_serials)
    businesses_changed(_ids_of(result.applied_serials))
    return result


def _ids_of(serials: Sequence[str]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(serials), IN_CHUNK):
        ids.extend(db.session.scalars(select(Business.id).where(Business.serial.in_(serials[start:start + IN_CHUNK]))))
    return ids


def _apply_bulk(records: list[BusinessRecord], lookups: Lookups) -> BatchResult:
    result = BatchResult()
    resolved: list[tuple[BusinessRecord, int, int]] = []
    for rec in records:
        try:
            type_id, department_id = lookups.resolve(rec)
        except RecordRejected as exc:
            result.rejected.append((rec, exc))
            continue
        resolved.append((rec, type_id, department_id))
    current = _current_rows([rec.serial for rec, _, _ in resolved])
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    retyped: list[int] = []
    for rec, type_id, department_id in resolved:
        row = current.get(rec.serial)
        if row is not None and _is_stale(rec, row.source_updated_at):
            result.unchanged += 1
            continue
        values = _plain_values(rec, type_id, department_id, row.source_updated_at if row is not None else None)
        values.update(_protected_values(rec, row))
        if row is None:
            values.update(
                serial=rec.serial, synced_at=now, capture_state=CaptureState.NONE,
                required_count=lookups.required_counts.get(type_id, 0), required_captured=0, page_count=0,
                version=1,
            )
            inserts.append(values)
            result.created += 1
        elif not _differs(row, values):
            result.unchanged += 1
            continue
        else:
            if row.business_type_id != type_id:
                retyped.append(row.id)
            values.update(b_id=row.id, synced_at=now)
            updates.append(values)
            result.updated += 1
        result.applied_serials.append(rec.serial)
    if inserts:
        # Core executemany: the ORM's bulk path costs several times more per row here.
        db.session.connection().execute(insert(Business.__table__), inserts)
    if updates:
        columns = [key for key in updates[0] if key != "b_id"]
        stmt = (
            update(Business)
            .where(Business.id == bindparam("b_id"))
            .values({key: bindparam(key) for key in columns} | {"version": Business.version + 1})
        )
        db.session.connection().execute(stmt, updates)
        expire_loaded(Business, {values["b_id"] for values in updates})
    for business_id in retyped:
        business = db.session.get(Business, business_id)
        if business is not None:
            refresh_completeness(business)
    return result


def _apply_one_by_one(records: list[BusinessRecord], lookups: Lookups) -> BatchResult:
    result = BatchResult()
    for rec in records:
        try:
            with db.session.begin_nested():
                outcome, _ = apply_record(rec, lookups)
        except RecordRejected as exc:
            result.rejected.append((rec, exc))
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            log.warning("registry record %s failed: %s", rec.serial, reason)
            result.failed.append((rec.serial, reason))
        else:
            if outcome == "created":
                result.created += 1
            elif outcome == "updated":
                result.updated += 1
            else:
                result.unchanged += 1
                continue
            result.applied_serials.append(rec.serial)
    return result


# Quarantine -------------------------------------------------------------------------------------


def _quarantine_aad(serial: str) -> bytes:
    return f"quarantine|{serial}".encode()


def seal_payload(rec: BusinessRecord) -> str:
    """The record as JSON; the ID number and phone only as SM4-GCM ciphertext bound to the serial."""
    data = record_to_json(rec)
    secret = {name: data.pop(name) for name in SENSITIVE_FIELDS}
    sealed = key_provider().encrypt_field(json.dumps(secret, ensure_ascii=False), _quarantine_aad(rec.serial))
    return json.dumps(
        {"record": data, "sealed": base64.b64encode(sealed).decode("ascii")}, ensure_ascii=False, sort_keys=True
    )


def payload_fields(row: QuarantinedRecord) -> dict[str, Any]:
    """The non-sensitive fields of a quarantined record (for display)."""
    try:
        data = json.loads(row.payload).get("record", {})
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def unseal_payload(row: QuarantinedRecord) -> BusinessRecord:
    """The full record again. Raises MalformedRecord when the payload cannot be read back."""
    try:
        envelope = json.loads(row.payload)
        data = dict(envelope["record"])
        secret = json.loads(
            key_provider().decrypt_field(base64.b64decode(envelope["sealed"]), _quarantine_aad(row.serial))
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise MalformedRecord(row.serial, f"unreadable quarantine payload ({exc.__class__.__name__})") from None
    data.update({name: secret.get(name, "") for name in SENSITIVE_FIELDS})
    return build_record(data)


def quarantine(rec: BusinessRecord, reason: str, sync_run_id: int | None = None) -> QuarantinedRecord:
    """Hold `rec` for a sysadmin. One open row per serial: a newer version replaces the payload."""
    row = db.session.scalar(
        select(QuarantinedRecord)
        .where(QuarantinedRecord.serial == rec.serial, QuarantinedRecord.resolved_at.is_(None))
        .order_by(QuarantinedRecord.id.desc())
        .limit(1)
    )
    if row is None:
        row = QuarantinedRecord(serial=rec.serial)
        db.session.add(row)
    else:
        try:
            held = parse_time(payload_fields(row).get("updated_at"))
        except ValueError:
            held = None
        if held is not None and rec.updated_at is not None and held > rec.updated_at:
            return row  # what we hold is newer than this re-read
    row.reason = reason[:200]
    row.payload = seal_payload(rec)
    row.sync_run_id = sync_run_id
    db.session.flush()
    log.info("registry record %s quarantined: %s", rec.serial, reason)
    return row


def _auto_resolve(serials: Sequence[str]) -> None:
    """A serial that was quarantined and has now been applied (e.g. the source fixed the code)."""
    if not serials:
        return
    now = utcnow()
    for start in range(0, len(serials), IN_CHUNK):
        db.session.execute(
            update(QuarantinedRecord)
            .where(QuarantinedRecord.serial.in_(serials[start:start + IN_CHUNK]),
                   QuarantinedRecord.resolved_at.is_(None))
            .values(resolved_at=now)
            .execution_options(synchronize_session=False)
        )


def _open_quarantined(row_id: int) -> QuarantinedRecord:
    row = db.session.get(QuarantinedRecord, row_id)
    if row is None:
        raise QuarantineError("未找到该隔离记录。")
    if row.resolved_at is not None:
        raise QuarantineError("该记录已被处理。")
    return row


def retry_quarantined(row_id: int, actor: Actor) -> tuple[QuarantinedRecord, str]:
    """Apply a quarantined record again (after the dictionary or department was added).

    Returns (row, outcome). Raises QuarantineError with the reason when it still cannot be applied.
    """
    row = _open_quarantined(row_id)
    try:
        rec = unseal_payload(row)
        outcome, business = apply_record(rec, Lookups.load())
    except MalformedRecord as exc:
        raise QuarantineError(f"记录内容无法读取（{exc.reason}），只能忽略。") from None
    except RecordRejected as exc:
        row.reason = exc.label[:200]
        db.session.flush()
        raise QuarantineError(f"仍无法导入：{exc.label}。请先在数据字典或部门管理中添加后再重试。") from None
    row.resolved_at = utcnow()
    row.resolved_by_id = actor.user_id
    record(
        QUARANTINE_RESOLVED, actor=actor, object_type="quarantined_record", object_id=str(row.id),
        detail={"serial": row.serial, "resolution": "retried", "outcome": outcome, "business_id": business.id},
    )
    db.session.flush()
    return row, outcome


def dismiss_quarantined(row_id: int, actor: Actor, reason: str = "") -> QuarantinedRecord:
    """Drop a quarantined record without applying it (audited)."""
    row = _open_quarantined(row_id)
    row.resolved_at = utcnow()
    row.resolved_by_id = actor.user_id
    record(
        QUARANTINE_RESOLVED, actor=actor, object_type="quarantined_record", object_id=str(row.id),
        reason=reason.strip(), detail={"serial": row.serial, "resolution": "dismissed", "why": row.reason},
    )
    db.session.flush()
    return row


# On-demand fetch --------------------------------------------------------------------------------


def find_business(serial: str) -> Business | None:
    return db.session.scalar(select(Business).where(Business.serial == serial))


def fetch_business(serial: str, adapter: Any | None = None, *, refresh: bool = False) -> Business | None:
    """The business with this serial; fetched from the registration system when not synced yet.

    None: unknown here and at the source (or no source configured). Raises RegistrySourceError
    (Chinese message) when the source is down or answers nonsense, BusinessQuarantined when the
    record names an unknown type/department (the quarantine row is flushed: commit it).
    """
    from portal.registry.adapters import RegistryError, RegistryUnavailable, adapter_from_app

    serial = (serial or "").strip()
    if not serial or len(serial) > 40:
        return None
    business = find_business(serial)
    if business is not None and not refresh:
        return business
    adapter = adapter or adapter_from_app(interactive=True)
    if adapter is None:
        return business
    try:
        rec = adapter.fetch(serial)
    except RegistryUnavailable as exc:
        log.warning("on-demand fetch of %s failed: %s", serial, exc)
        raise RegistrySourceError("登记系统暂时无法访问，请稍后重试；如持续失败请联系系统管理员。") from exc
    except (RegistryError, MalformedRecord) as exc:
        log.warning("on-demand fetch of %s: unusable answer: %s", serial, exc)
        raise RegistrySourceError("登记系统返回的业务数据无法识别，请联系系统管理员。") from exc
    if rec is None or rec.serial != serial:
        return business
    started = utcnow()
    run = SyncRun(source="on_demand", started_at=started, records_in=1)
    db.session.add(run)
    db.session.flush()
    try:
        outcome, business = apply_record(rec)
    except RecordRejected as exc:
        quarantine(rec, exc.label, run.id)
        run.records_failed, run.finished_at, run.error = 1, utcnow(), str(exc)
        db.session.flush()
        raise BusinessQuarantined(
            f"业务 {serial} 的{exc.label}，已转交系统管理员处理，暂时无法采集。"
        ) from exc
    run.records_created = int(outcome == "created")
    run.records_updated = int(outcome == "updated")
    run.finished_at = utcnow()
    db.session.flush()
    return business


# The status page --------------------------------------------------------------------------------


@dataclass
class RunRow:
    run: SyncRun
    quarantined: int

    @property
    def duration(self) -> timedelta | None:
        return None if self.run.finished_at is None else self.run.finished_at - self.run.started_at


@dataclass
class QuarantineItem:
    """A quarantined record as the status page shows it (no clear personal data)."""

    row: QuarantinedRecord
    type_label: str
    department_label: str
    plate_number: str
    accepted_at: datetime | None
    owner_masked: str


def _mask_name(name: str) -> str:
    name = (name or "").strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


def quarantine_items(rows: Sequence[QuarantinedRecord]) -> list[QuarantineItem]:
    type_names = dict(db.session.execute(select(BusinessType.code, BusinessType.name)).all())  # type: ignore[arg-type]
    department_names = dict(db.session.execute(select(Department.code, Department.name)).all())  # type: ignore[arg-type]
    items = []
    for row in rows:
        fields_ = payload_fields(row)
        type_code = str(fields_.get("business_type_code") or "")
        dept_code = str(fields_.get("department_code") or "")
        try:
            accepted = parse_time(fields_.get("accepted_at"))
        except ValueError:
            accepted = None
        items.append(QuarantineItem(
            row=row,
            type_label=f"{type_names[type_code]}（{type_code}）" if type_code in type_names else type_code,
            department_label=f"{department_names[dept_code]}（{dept_code}）" if dept_code in department_names
            else dept_code,
            plate_number=str(fields_.get("plate_number") or ""),
            accepted_at=accepted,
            owner_masked=_mask_name(str(fields_.get("owner_name") or "")),
        ))
    return items


@dataclass
class StatusOverview:
    source: str
    configured: bool
    source_label: str
    state: SyncState | None
    last_run: RunRow | None
    lag: timedelta | None
    runs: list[RunRow]
    quarantined: list[QuarantineItem]
    quarantined_total: int


def _run_rows(runs: Sequence[SyncRun]) -> list[RunRow]:
    ids = [r.id for r in runs]
    counts: dict[int, int] = {}
    if ids:
        counts = dict(
            db.session.execute(  # type: ignore[arg-type]
                select(QuarantinedRecord.sync_run_id, func.count())
                .where(QuarantinedRecord.sync_run_id.in_(ids))
                .group_by(QuarantinedRecord.sync_run_id)
            ).all()
        )
    return [RunRow(r, counts.get(r.id, 0)) for r in runs]


def status_overview(
    source: str = "http", source_label: str = "", *, configured: bool = True, now: datetime | None = None,
    runs_limit: int = 20, quarantine_limit: int = 100,
) -> StatusOverview:
    now = now or utcnow()
    state = db.session.get(SyncState, source)
    runs = db.session.scalars(select(SyncRun).order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
                              .limit(runs_limit)).all()
    last = db.session.scalar(
        select(SyncRun).where(SyncRun.source == source).order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(1)
    )
    open_rows = select(QuarantinedRecord).where(QuarantinedRecord.resolved_at.is_(None))
    quarantined = db.session.scalars(
        open_rows.order_by(QuarantinedRecord.created_at.desc(), QuarantinedRecord.id.desc()).limit(quarantine_limit)
    ).all()
    total = db.session.scalar(select(func.count()).select_from(open_rows.subquery())) or 0
    lag = None if state is None or state.watermark is None else max(now - state.watermark, timedelta(0))
    return StatusOverview(
        source=source, configured=configured, source_label=source_label, state=state,
        last_run=_run_rows([last])[0] if last is not None else None, lag=lag, runs=_run_rows(runs),
        quarantined=quarantine_items(quarantined), quarantined_total=total,
    )
