"""The default data dictionary: the eight business types of the glossary and their checklists.

Seeding only inserts what is missing, so an administrator's later edits are never overwritten.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.dictionary.models import BusinessType, ChecklistItem, ColorMode, Material, Requirement

C, G = ColorMode.COLOR, ColorMode.GRAY
MATERIALS: list[tuple[str, str, ColorMode]] = [
    ("ID_PROOF", "所有人身份证明", C),
    ("APPLICATION", "非机动车登记申请表", G),
    ("PURCHASE_INVOICE", "购车发票", G),
    ("CONFORMITY_CERT", "产品合格证", G),
    ("CCC_CERT", "CCC 认证证书", G),
    ("VEHICLE_PHOTO", "车辆照片", C),
    ("TRANSFER_PROOF", "车辆转移证明", G),
    ("PROXY_LETTER", "代理人授权委托书", G),
    ("AGENT_ID", "代理人身份证明", C),
    ("THEFT_RECEIPT", "失窃报案回执", G),
    ("PLATE_RETURN", "号牌行驶证交回证明", G),
    ("DEREG_PROOF", "注销证明材料", G),
    ("CORRECTION_BASIS", "更正依据材料", G),
    ("LOCK_REQUEST", "锁定/解锁申请书", G),
]

R, OPT, K = Requirement.REQUIRED, Requirement.OPTIONAL, Requirement.CONDITIONAL
PROXY = [("PROXY_LETTER", K, "委托代理人办理时"), ("AGENT_ID", K, "委托代理人办理时")]
BUSINESS_TYPES: list[tuple[str, str, list[tuple[str, Requirement, str]]]] = [
    ("REGISTER", "注册登记", [
        ("ID_PROOF", R, ""), ("APPLICATION", R, ""), ("PURCHASE_INVOICE", R, ""),
        ("CONFORMITY_CERT", R, ""), ("CCC_CERT", OPT, ""), ("VEHICLE_PHOTO", OPT, ""), *PROXY]),
    ("TRANSFER", "转移登记", [
        ("ID_PROOF", R, ""), ("APPLICATION", R, ""), ("TRANSFER_PROOF", R, ""), *PROXY]),
    ("CHANGE", "变更登记", [
        ("ID_PROOF", R, ""), ("APPLICATION", R, ""), ("VEHICLE_PHOTO", K, "变更车身颜色时"), *PROXY]),
    ("DEREGISTER", "注销登记", [
        ("ID_PROOF", R, ""), ("APPLICATION", R, ""), ("DEREG_PROOF", R, ""), ("PLATE_RETURN", OPT, ""),
        *PROXY]),
    ("REPLACE", "补换领号牌", [
        ("ID_PROOF", R, ""), ("APPLICATION", R, ""), ("PLATE_RETURN", K, "换领时交回旧号牌"), *PROXY]),
    ("THEFT", "失窃登记", [("ID_PROOF", R, ""), ("THEFT_RECEIPT", R, ""), ("APPLICATION", OPT, "")]),
    ("CORRECTION", "更正", [("ID_PROOF", R, ""), ("CORRECTION_BASIS", R, ""), ("APPLICATION", OPT, "")]),
    ("LOCK", "锁定/解锁", [("ID_PROOF", R, ""), ("LOCK_REQUEST", R, "")]),
]


def seed_dictionary() -> int:
    """Insert missing default rows; return how many were created."""
    created = 0
    materials = {m.code: m for m in db.session.scalars(select(Material))}
    for order, (code, name, mode) in enumerate(MATERIALS):
        if code not in materials:
            materials[code] = Material(code=code, name=name, color_mode=mode, sort_order=order)
            db.session.add(materials[code])
            created += 1
    types = {t.code: t for t in db.session.scalars(select(BusinessType))}
    for order, (code, name, checklist) in enumerate(BUSINESS_TYPES):
        bt = types.get(code)
        if bt is None:
            bt = BusinessType(code=code, name=name, sort_order=order)
            db.session.add(bt)
            created += 1
            for position, (material_code, requirement, note) in enumerate(checklist):
                bt.checklist.append(ChecklistItem(
                    material=materials[material_code], requirement=requirement,
                    condition_note=note, sort_order=position,
                ))
                created += 1
    db.session.flush()
    return created
