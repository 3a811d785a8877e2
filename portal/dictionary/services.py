"""Maintaining the data dictionary: business types, materials, the checklist matrix, thresholds.

Everything here is data: an administrator changes which materials a business type needs, or
when its capture warning fires, without a code change. Validation happens before any change,
so a refused edit leaves nothing flushed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select

from portal.audit.services import Actor, record
from portal.db import db
from portal.dictionary.models import (
    BusinessType,
    ChecklistItem,
    ColorMode,
    Material,
    Requirement,
    WarningTrigger,
)

CODE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
NAME_MAX = 50
DPI_MIN, DPI_MAX = 100, 600
MINUTES_MAX = 60 * 24 * 365


TRIGGER_LABELS = {WarningTrigger.ACCEPTED.value: "受理时间", WarningTrigger.FINISHED.value: "办结时间"}


class DictionaryError(Exception):
    """A dictionary change that is not allowed, with a Chinese message."""


def _check_code(code: str) -> str:
    code = code.strip()
    if not CODE_RE.match(code):
        raise DictionaryError("编码只能包含字母、数字、下划线和连字符，长度 1–32。")
    return code


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise DictionaryError("名称不能为空。")
    if len(name) > NAME_MAX:
        raise DictionaryError(f"名称不能超过 {NAME_MAX} 个字符。")
    return name


# -- business types ---------------------------------------------------------------------------


def business_types() -> list[BusinessType]:
    return list(db.session.scalars(select(BusinessType).order_by(BusinessType.sort_order, BusinessType.id)))


def create_business_type(*, code: str, name: str, by: Actor) -> BusinessType:
    code, name = _check_code(code), _check_name(name)
    if db.session.scalar(select(BusinessType).where(func.lower(BusinessType.code) == code.lower())):
        raise DictionaryError(f"业务类型编码“{code}”已存在。")
    order = db.session.scalar(select(func.coalesce(func.max(BusinessType.sort_order), -1))) or 0
    business_type = BusinessType(code=code, name=name, sort_order=order + 1)
    db.session.add(business_type)
    db.session.flush()
    record("admin.business_type_created", actor=by, object_type="business_type",
           object_id=str(business_type.id), detail={"code": code, "name": name})
    return business_type


@dataclass(frozen=True)
class Thresholds:
    reminder: int
    warning: int
    escalation: int


def check_thresholds(reminder: int | None, warning: int | None, escalation: int | None) -> Thresholds:
    if reminder is None or warning is None or escalation is None:
        raise DictionaryError("提醒、预警、升级时限都须填写为整数分钟。")
    if reminder < 1:
        raise DictionaryError("提醒时限至少 1 分钟。")
    if escalation > MINUTES_MAX:
        raise DictionaryError(f"升级时限不能超过 {MINUTES_MAX} 分钟（一年）。")
    if not reminder < warning < escalation:
        raise DictionaryError("时限须满足：提醒 < 预警 < 升级。")
    return Thresholds(reminder, warning, escalation)


def update_business_type(
    business_type: BusinessType,
    *,
    name: str,
    active: bool,
    warning_trigger: str,
    reminder: int | None,
    warning: int | None,
    escalation: int | None,
    by: Actor,
) -> None:
    name = _check_name(name)
    try:
        trigger = WarningTrigger(warning_trigger)
    except ValueError:
        raise DictionaryError("预警起算时间无效。") from None
    limits = check_thresholds(reminder, warning, escalation)
    before = _type_snapshot(business_type)
    business_type.name = name
    business_type.active = active
    business_type.warning_trigger = trigger
    business_type.reminder_after_minutes = limits.reminder
    business_type.warning_after_minutes = limits.warning
    business_type.escalation_after_minutes = limits.escalation
    after = _type_snapshot(business_type)
    if after == before:
        return
    db.session.flush()
    record("admin.business_type_updated", actor=by, object_type="business_type",
           object_id=str(business_type.id),
           detail={"code": business_type.code, **_changes(before, after)})


def _type_snapshot(bt: BusinessType) -> dict[str, object]:
    return {
        "name": bt.name, "active": bt.active, "warning_trigger": WarningTrigger(bt.warning_trigger).value,
        "reminder": bt.reminder_after_minutes, "warning": bt.warning_after_minutes,
        "escalation": bt.escalation_after_minutes,
    }


def _changes(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    return {
        "before": {k: v for k, v in before.items() if after[k] != v},
        "after": {k: v for k, v in after.items() if before[k] != v},
    }


# -- materials --------------------------------------------------------------------------------


def materials() -> list[Material]:
    return list(db.session.scalars(select(Material).order_by(Material.sort_order, Material.id)))


def create_material(*, code: str, name: str, by: Actor) -> Material:
    code, name = _check_code(code), _check_name(name)
    if db.session.scalar(select(Material).where(func.lower(Material.code) == code.lower())):
        raise DictionaryError(f"材料编码“{code}”已存在。")
    order = db.session.scalar(select(func.coalesce(func.max(Material.sort_order), -1))) or 0
    material = Material(code=code, name=name, sort_order=order + 1)
    db.session.add(material)
    db.session.flush()
    record("admin.material_created", actor=by, object_type="material", object_id=str(material.id),
           detail={"code": code, "name": name})
    return material


def update_material(
    material: Material, *, name: str, color_mode: str, dpi: int | None, active: bool, by: Actor
) -> None:
    name = _check_name(name)
    try:
        mode = ColorMode(color_mode)
    except ValueError:
        raise DictionaryError("色彩模式无效。") from None
    if dpi is None or not DPI_MIN <= dpi <= DPI_MAX:
        raise DictionaryError(f"分辨率须为 {DPI_MIN}–{DPI_MAX} dpi 之间的整数。")
    before = _material_snapshot(material)
    material.name = name
    material.color_mode = mode
    material.dpi = dpi
    material.active = active
    after = _material_snapshot(material)
    if after == before:
        return
    db.session.flush()
    record("admin.material_updated", actor=by, object_type="material", object_id=str(material.id),
           detail={"code": material.code, **_changes(before, after)})


def _material_snapshot(m: Material) -> dict[str, object]:
    return {"name": m.name, "color_mode": ColorMode(m.color_mode).value, "dpi": m.dpi, "active": m.active}


# -- the checklist matrix ---------------------------------------------------------------------


@dataclass
class Matrix:
    types: list[BusinessType]
    materials: list[Material]
    cells: dict[tuple[int, int], ChecklistItem]

    def cell(self, business_type_id: int, material_id: int) -> ChecklistItem | None:
        return self.cells.get((business_type_id, material_id))


def checklist_matrix() -> Matrix:
    items = db.session.scalars(select(ChecklistItem))
    return Matrix(
        types=business_types(), materials=materials(),
        cells={(i.business_type_id, i.material_id): i for i in items},
    )


@dataclass(frozen=True)
class Usage:
    """How many checklist cells use a business type or a material: (required, all)."""

    by_type: dict[int, tuple[int, int]]
    by_material: dict[int, tuple[int, int]]


def checklist_usage() -> Usage:
    by_type: dict[int, tuple[int, int]] = {}
    by_material: dict[int, tuple[int, int]] = {}
    rows = db.session.execute(select(ChecklistItem.business_type_id, ChecklistItem.material_id,
                                     ChecklistItem.requirement))
    for type_id, material_id, requirement in rows:
        required = int(Requirement(requirement) == Requirement.REQUIRED)
        r, a = by_type.get(type_id, (0, 0))
        by_type[type_id] = (r + required, a + 1)
        r, a = by_material.get(material_id, (0, 0))
        by_material[material_id] = (r + required, a + 1)
    return Usage(by_type, by_material)


def checklist_cell(business_type: BusinessType, material: Material) -> ChecklistItem | None:
    return db.session.scalar(
        select(ChecklistItem).where(
            ChecklistItem.business_type_id == business_type.id, ChecklistItem.material_id == material.id
        )
    )


def set_checklist_cell(
    business_type: BusinessType, material: Material, requirement: str, by: Actor
) -> tuple[ChecklistItem | None, int]:
    """Set one cell of the matrix; an empty `requirement` removes the material from the checklist.
    Returns the cell and how many incomplete businesses changed (a change of the checklist applies
    to the type's businesses that are not yet complete, `capture.completeness.apply_checklist`)."""
    wanted: Requirement | None = None
    if requirement:
        try:
            wanted = Requirement(requirement)
        except ValueError:
            raise DictionaryError("材料要求无效。") from None
    # One change of a type's checklist at a time (two administrators, two cells of one row).
    db.session.execute(select(BusinessType.id).where(BusinessType.id == business_type.id).with_for_update())
    item = checklist_cell(business_type, material)
    before = Requirement(item.requirement).value if item is not None else None
    if before == (wanted.value if wanted else None):
        return item, 0
    if wanted is None:
        assert item is not None
        business_type.checklist.remove(item)  # delete-orphan
        item = None
    elif item is None:
        order = db.session.scalar(
            select(func.coalesce(func.max(ChecklistItem.sort_order), -1))
            .where(ChecklistItem.business_type_id == business_type.id)
        ) or 0
        item = ChecklistItem(material=material, requirement=wanted, sort_order=order + 1)
        business_type.checklist.append(item)
    else:
        item.requirement = wanted
    db.session.flush()
    detail: dict[str, object] = {"business_type": business_type.code, "material": material.code,
                                 "before": before, "after": wanted.value if wanted else None}
    recomputed = 0
    # Only optional ↔ conditional leaves what is required, and which pages count, as it was.
    if {before, detail["after"]} - {Requirement.OPTIONAL.value, Requirement.CONDITIONAL.value}:
        recomputed = detail["businesses_recomputed"] = len(_apply_checklist(business_type))
    record("admin.checklist_changed", actor=by, object_type="business_type",
           object_id=str(business_type.id), detail=detail)
    return item, recomputed


def _apply_checklist(business_type: BusinessType) -> list[int]:
    """The checklist changed: the type's incomplete businesses are recomputed, and their
    warnings and statistics follow at once."""
    # Imported here: capture and the registry build on the dictionary, not the other way round.
    from portal.capture.completeness import apply_checklist
    from portal.registry.changes import businesses_changed

    ids = apply_checklist(business_type.id)
    businesses_changed(ids)
    return ids
