"""Reading archives: lookup, a business and its pages, page images — always through the department scope.

- `search` finds businesses by serial, plate, vehicle code, owner name (prefix), owner ID number
  (exact, through the blind index), business type, department subtree, capture state and
  acceptance date; sorted, paged with a bounded offset, counted up to `MAX_COUNT`; every search
  is audited (`archive.searched`) with its criteria, never with a clear ID number.
- `business_archive` gives a business's materials with their current pages, the version history
  and each page's signature state (the agent's SM2 manifest is verified again when shown).
- `page_image` renders what a viewer sees: the display (or thumbnail) rendition, turned by the
  page's rotation, with the viewer's watermark drawn into the pixels. Originals never leave here.
- Page views are audited per viewer session, not per image request: a page load that shows a
  business's images (the business page's thumbnails, the viewer) writes one `archive.page_viewed`
  entry naming every page it makes visible (with the cross-department reason) and hands out a
  signed view token (user, business, scope; 4 h). Image requests carrying a valid token for that
  user and business are covered by that entry; image requests without one (or with an expired or
  foreign token) are audited one by one. Paging through a 40-page business thus writes one entry,
  not 40 (and the thumbnails another one), while no image is ever served unaudited. Integrity
  failures are always audited on their own (`archive.integrity_failed`).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Select, func, select

from portal.agents.models import Agent
from portal.audit.services import Actor, record
from portal.auth.models import User
from portal.capture.models import CapturedPage, PageSource, PageStatus
from portal.db import db
from portal.dictionary.models import BusinessType, ChecklistItem, Material, Requirement
from portal.org.models import Department, Window
from portal.protect import ID_NUMBER, blind_index, mask
from portal.registry.models import Business, CaptureState
from portal.scoping import Scope, scope_for
from portal.storage.models import ImageBlob
from portal.storage.renditions import Kind, integrity_placeholder, rendition, rotate
from portal.storage.services import BlobIntegrityError
from portal.storage.watermark import apply_watermark

SEARCHED_ACTION = "archive.searched"
VIEWED_ACTION = "archive.viewed"
PAGE_VIEWED_ACTION = "archive.page_viewed"
INTEGRITY_ACTION = "archive.integrity_failed"

MAX_COUNT = 10_000  # results are counted up to here, then shown as "10,000+"
PAGE_SIZE = 20
ARCHIVE_STATUSES = (PageStatus.CONFIRMED, PageStatus.SUPERSEDED)
REASON_MAX = 200
SORTS = {"newest": "受理时间（新→旧）", "oldest": "受理时间（旧→新）"}
FIELD_LIMITS = {"serial": 40, "plate": 20, "vehicle_code": 40, "owner_name": 100, "owner_id": 40}
FIELD_LABELS = {
    "serial": "流水号", "plate": "号牌号码", "vehicle_code": "整车编码", "owner_name": "所有人姓名",
    "owner_id": "身份证明号码",
}


class NotFound(Exception):
    """No such business or page within the user's scope (indistinguishable from not existing)."""


# Lookup -----------------------------------------------------------------------------------------

# Control and invisible format characters: PostgreSQL rejects NUL in text, the others only hide
# what was really searched for. Removed from every text criterion.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SPACE = re.compile(r"\s+")


def _clean(value: str | None) -> str:
    return _INVISIBLE.sub("", value or "").strip()


def _code(value: str | None) -> str:
    """Serial, plate and vehicle code: NFKC (full-width digits and letters typed with a Chinese
    IME become ASCII), no whitespace at all."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", _clean(value)))


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        return -1
    return number if 0 < number < 2**31 else -1


def _date(raw: str | None, label: str, errors: list[str]) -> date | None:
    raw = _clean(raw)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        errors.append(f"{label}格式无效，请使用“年-月-日”。")
        return None


def local_day_start(day: date) -> datetime:
    """Midnight of `day` in the server's local zone (as every page shows times), as aware UTC."""
    return datetime.combine(day, time.min).astimezone().astimezone(UTC)


@dataclass(frozen=True)
class SearchCriteria:
    serial: str = ""
    plate: str = ""
    vehicle_code: str = ""
    owner_name: str = ""  # prefix
    owner_id: str = ""  # exact, looked up through the blind index; never logged in clear
    business_type_id: int | None = None
    department_id: int | None = None  # that department's subtree
    capture_state: CaptureState | None = None
    accepted_from: date | None = None  # inclusive, local day
    accepted_to: date | None = None  # inclusive, local day
    sort: str = "newest"
    page: int = 1
    cross: bool = False  # "跨部门查询" ticked (only honoured for LOOKUP_ALL and with a reason)
    reason: str = ""
    errors: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> SearchCriteria:
        """Parse the search form; problems are collected in Chinese. Everything typed is literal
        text: no wildcard has a meaning."""
        errors: list[str] = []
        texts = {
            "serial": _code(args.get("serial")),
            "plate": _code(args.get("plate")),
            "vehicle_code": _code(args.get("vehicle_code")),
            "owner_name": _clean(args.get("owner_name")),
            "owner_id": _code(args.get("owner_id")),
        }
        for name, value in texts.items():
            if len(value) > FIELD_LIMITS[name]:
                errors.append(f"{FIELD_LABELS[name]}过长（最多 {FIELD_LIMITS[name]} 个字符）。")
                texts[name] = value[: FIELD_LIMITS[name]]
        ids = {}
        for name, label in (("business_type", "业务类型"), ("department", "部门")):
            ids[name] = _int(args.get(name))
            if ids[name] == -1:
                errors.append(f"{label}取值无效。")
                ids[name] = None
        state_raw = (args.get("capture_state") or "").strip()
        state = None
        if state_raw:
            try:
                state = CaptureState(state_raw)
            except ValueError:
                errors.append("采集状态取值无效。")
        start = _date(args.get("accepted_from"), "受理日期（起）", errors)
        end = _date(args.get("accepted_to"), "受理日期（止）", errors)
        if start and end and end < start:
            errors.append("受理日期（止）不能早于受理日期（起）。")
        sort = args.get("sort") or "newest"
        page = _int(args.get("page")) or 1
        reason = _clean(args.get("reason"))
        if len(reason) > REASON_MAX:
            errors.append(f"查询事由过长（最多 {REASON_MAX} 个字）。")
            reason = reason[:REASON_MAX]
        return cls(
            **texts,
            business_type_id=ids["business_type"], department_id=ids["department"], capture_state=state,
            accepted_from=start, accepted_to=end, sort=sort if sort in SORTS else "newest",
            page=max(1, page), cross=(args.get("cross") or "") in {"1", "on", "true"}, reason=reason,
            errors=tuple(errors),
        )

    @property
    def has_filters(self) -> bool:
        return any((
            self.serial, self.plate, self.vehicle_code, self.owner_name, self.owner_id,
            self.business_type_id, self.department_id, self.capture_state, self.accepted_from,
            self.accepted_to,
        ))

    @property
    def needs_reason(self) -> bool:
        return self.cross and not self.reason

    def audit_detail(self) -> dict[str, Any]:
        """The criteria as logged: the ID number only masked and as its blind index."""
        detail: dict[str, Any] = {
            "serial": self.serial, "plate": self.plate, "vehicle_code": self.vehicle_code,
            "owner_name": self.owner_name, "business_type": self.business_type_id,
            "department": self.department_id,
            "capture_state": self.capture_state.value if self.capture_state else None,
            "accepted_from": self.accepted_from.isoformat() if self.accepted_from else None,
            "accepted_to": self.accepted_to.isoformat() if self.accepted_to else None,
        }
        if self.owner_id:
            detail["owner_id_masked"] = mask(ID_NUMBER, self.owner_id)
            detail["owner_id_index"] = blind_index(ID_NUMBER, self.owner_id)
        detail = {k: v for k, v in detail.items() if v}
        detail["sort"] = self.sort
        detail["page"] = self.page
        return detail


@dataclass(frozen=True)
class SearchResult:
    items: list[Business]
    count: int  # exact when not `capped`
    capped: bool  # more than MAX_COUNT matched
    page: int
    pages: int
    page_size: int

    @property
    def first(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.items else 0

    @property
    def last(self) -> int:
        return (self.page - 1) * self.page_size + len(self.items)


def _statement(scope: Scope, criteria: SearchCriteria, department: Department | None) -> Select[Any]:
    stmt = scope.apply(select(Business), Business.department_id)
    if criteria.serial:
        stmt = stmt.where(Business.serial.in_(_variants(criteria.serial)))
    if criteria.plate:
        stmt = stmt.where(Business.plate_number.in_(_variants(criteria.plate)))
    if criteria.vehicle_code:
        stmt = stmt.where(Business.vehicle_code.in_(_variants(criteria.vehicle_code)))
    if criteria.owner_name:
        stmt = stmt.where(Business.owner_name.startswith(criteria.owner_name, autoescape=True))
    if criteria.owner_id:
        stmt = stmt.where(Business.owner_id_index == blind_index(ID_NUMBER, criteria.owner_id))
    if criteria.business_type_id:
        stmt = stmt.where(Business.business_type_id == criteria.business_type_id)
    if department is not None:
        subtree = select(Department.id).where(Department.path.startswith(department.path, autoescape=True))
        stmt = stmt.where(Business.department_id.in_(subtree.scalar_subquery()))
    if criteria.capture_state:
        stmt = stmt.where(Business.capture_state == criteria.capture_state)
    if criteria.accepted_from:
        stmt = stmt.where(Business.accepted_at >= local_day_start(criteria.accepted_from))
    if criteria.accepted_to:
        stmt = stmt.where(Business.accepted_at < local_day_start(criteria.accepted_to + timedelta(days=1)))
    return stmt


def _variants(value: str) -> list[str]:
    """Exact match on the value as typed and upper-cased (plates and codes are upper case in the
    registration system; equality keeps the plain index usable)."""
    return sorted({value, value.upper()})


def search(scope: Scope, criteria: SearchCriteria, actor: Actor, *, page_size: int = PAGE_SIZE) -> SearchResult:
    """Run a lookup within `scope` and audit it (`archive.searched`). The caller checked
    `criteria.errors`."""
    department = None
    if criteria.department_id:
        department = db.session.get(Department, criteria.department_id)
    stmt = _statement(scope, criteria, department)
    if criteria.department_id and department is None:
        stmt = stmt.where(Business.id.is_(None))  # an unknown department matches nothing
    if criteria.sort == "oldest":
        ordered = stmt.order_by(Business.accepted_at.asc(), Business.id.asc())
    else:
        ordered = stmt.order_by(Business.accepted_at.desc(), Business.id.desc())
    items: list[Business] | None = None
    if criteria.page == 1:
        # Exact lookups (serial, plate, ID number) mostly fit on the first page: then the page
        # is the count, and the bounded count query is not needed.
        items = list(db.session.scalars(ordered.limit(page_size)))
        count = len(items) if len(items) < page_size else _bounded_count(stmt)
    else:
        count = _bounded_count(stmt)
    capped = count > MAX_COUNT
    shown = min(count, MAX_COUNT)
    pages = max(1, -(-shown // page_size))
    page = min(criteria.page, pages)
    if items is None:
        items = list(db.session.scalars(ordered.offset((page - 1) * page_size).limit(page_size)))
    record(
        SEARCHED_ACTION, actor=actor, object_type="business", reason=criteria.reason if scope.everywhere else "",
        detail={**criteria.audit_detail(), "page": page, "cross": scope.everywhere,
                "cross_requested": criteria.cross, "count": shown, "capped": capped},
    )
    return SearchResult(items, shown, capped, page, pages, page_size)


def _bounded_count(stmt: Select[Any]) -> int:
    """How many rows `stmt` matches, counting no further than MAX_COUNT + 1."""
    bounded = stmt.with_only_columns(Business.id).order_by(None).limit(MAX_COUNT + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(bounded)) or 0


def search_options(scope: Scope, may_cross: bool) -> dict[str, Any]:
    """Choices of the search form: active business types, the departments the user may pick
    (their subtree, or every department for a user who may look across), capture states."""
    departments = select(Department).where(Department.active.is_(True)).order_by(Department.path)
    if not may_cross:
        departments = scope.apply(departments, Department.id)
    return {
        "business_types": list(db.session.scalars(
            select(BusinessType).where(BusinessType.active.is_(True))
            .order_by(BusinessType.sort_order, BusinessType.id)
        )),
        "departments": list(db.session.scalars(departments)),
        "capture_states": list(CaptureState),
        "sorts": SORTS,
    }


# One business ------------------------------------------------------------------------------------


def business_in_scope(scope: Scope, business_id: int) -> Business:
    stmt = scope.apply(select(Business).where(Business.id == business_id), Business.department_id)
    business = db.session.scalar(stmt)
    if business is None:
        raise NotFound(business_id)
    return business


def business_by_serial(scope: Scope, serial: str) -> Business | None:
    stmt = scope.apply(select(Business).where(Business.serial == serial.strip()), Business.department_id)
    return db.session.scalar(stmt)


class SignatureState:
    """How a page reached the archive and whether its signature holds (checked when shown)."""

    VERIFIED = "verified"  # uploaded by an agent; the SM2 manifest verifies and names these bytes
    INVALID = "invalid"  # an agent page whose manifest does not verify or names other bytes
    MISSING = "missing"  # marked as an agent page, but no manifest or agent is on record
    BROWSER = "browser"  # uploaded from the browser: no agent signature exists

    LABELS: Mapping[str, tuple[str, str]] = {
        VERIFIED: ("终端签名已验证", "success"),
        INVALID: ("签名验证失败", "danger"),
        MISSING: ("缺少签名", "warning"),
        BROWSER: ("浏览器上传（无终端签名）", "neutral"),
    }


def signature_state(page: CapturedPage, agent: Agent | None, serial: str) -> str:
    if page.source == PageSource.BROWSER:
        return SignatureState.BROWSER
    if not page.manifest_envelope or agent is None:
        return SignatureState.MISSING
    import json

    from gmcrypto.envelope import verify_envelope
    from gmcrypto.errors import InvalidSignature
    from gmcrypto.sm2 import PublicKey
    from portal.agents.uploads import MANIFEST_PURPOSE

    try:
        public = PublicKey.from_pem(agent.public_key_pem)
        payload = verify_envelope(json.loads(page.manifest_envelope),
                                  lambda kid: public if kid == agent.key_id else None, MANIFEST_PURPOSE)
    except (InvalidSignature, ValueError, TypeError):
        return SignatureState.INVALID
    if payload.get("sm3") != page.content_sm3 or payload.get("business_serial") != serial:
        return SignatureState.INVALID
    return SignatureState.VERIFIED


@dataclass
class PageRow:
    page: CapturedPage
    signature: str
    agent: Agent | None
    window: Window | None
    captured_by: User | None
    confirmed_by: User | None
    versions: list[PageRow] = field(default_factory=list)  # earlier versions, newest first

    @property
    def signature_label(self) -> tuple[str, str]:
        return SignatureState.LABELS[self.signature]

    @property
    def agent_label(self) -> str:
        if self.agent is None:
            return ""
        return self.agent.hostname or f"终端 {self.agent.key_id[:8]}"


@dataclass
class MaterialArchive:
    material: Material
    requirement: Requirement | None  # None: no longer in the type's checklist
    condition_note: str
    current: list[PageRow]
    history: list[PageRow]  # every archived version (current and superseded), by position, newest first


def archive_pages(business: Business) -> list[CapturedPage]:
    """Every archived page (current and superseded) of the business."""
    return list(db.session.scalars(
        select(CapturedPage).where(
            CapturedPage.business_id == business.id, CapturedPage.status.in_(ARCHIVE_STATUSES)
        ).order_by(CapturedPage.material_id, CapturedPage.position, CapturedPage.version.desc(),
                   CapturedPage.id.desc())
    ))


def _by_id(model: Any, ids: set[int | None]) -> dict[int, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {row.id: row for row in db.session.scalars(select(model).where(model.id.in_(wanted)))}


def business_archive(business: Business, *, verify: bool = True) -> list[MaterialArchive]:
    """Materials in checklist order (then any material no longer listed) with their pages."""
    pages = archive_pages(business)
    agents = _by_id(Agent, {p.agent_id for p in pages})
    windows = _by_id(Window, {p.window_id for p in pages})
    users = _by_id(User, {p.captured_by_id for p in pages} | {p.confirmed_by_id for p in pages})
    rows: dict[int, PageRow] = {}
    for page in pages:
        agent = agents.get(page.agent_id) if page.agent_id else None
        rows[page.id] = PageRow(
            page=page,
            signature=signature_state(page, agent, business.serial) if verify else SignatureState.MISSING,
            agent=agent, window=windows.get(page.window_id) if page.window_id else None,
            captured_by=users.get(page.captured_by_id) if page.captured_by_id else None,
            confirmed_by=users.get(page.confirmed_by_id) if page.confirmed_by_id else None,
        )
    for row in rows.values():
        seen: set[int] = {row.page.id}
        older = rows.get(row.page.supersedes_id) if row.page.supersedes_id else None
        while older is not None and older.page.id not in seen:
            row.versions.append(older)
            seen.add(older.page.id)
            older = rows.get(older.page.supersedes_id) if older.page.supersedes_id else None
    items = db.session.scalars(
        select(ChecklistItem).where(ChecklistItem.business_type_id == business.business_type_id)
        .order_by(ChecklistItem.sort_order, ChecklistItem.id)
    ).all()
    result: list[MaterialArchive] = []
    listed: set[int] = set()
    for item in items:
        listed.add(item.material_id)
        result.append(MaterialArchive(item.material, item.requirement, item.condition_note, [], []))
    extra = {p.material_id: p.material for p in pages if p.material_id not in listed}
    for material in sorted(extra.values(), key=lambda m: (m.sort_order, m.id)):
        result.append(MaterialArchive(material, None, "", [], []))
    by_material = {m.material.id: m for m in result}
    for page in pages:
        target = by_material[page.material_id]
        target.history.append(rows[page.id])
        if page.status == PageStatus.CONFIRMED:
            target.current.append(rows[page.id])
    for m in result:
        m.current.sort(key=lambda r: (r.page.position, r.page.id))
    return result


def current_pages(archive: list[MaterialArchive]) -> list[PageRow]:
    """The current pages in reading order: material by material, by position."""
    return [row for m in archive for row in m.current]


# Images -----------------------------------------------------------------------------------------


def page_image(page: CapturedPage, kind: Kind, watermark: str) -> bytes:
    """The page as a viewer sees it: rendition, page rotation, watermark (JPEG).
    Raises `BlobIntegrityError` when the stored bytes no longer match their SM3."""
    blob = db.session.get(ImageBlob, page.blob_id)
    if blob is None:
        raise BlobIntegrityError(page.content_sm3, "the blob row is missing")
    data = rotate(rendition(blob, kind), page.rotation)
    return apply_watermark(data, watermark)


def page_image_or_placeholder(
    page: CapturedPage, business: Business, kind: Kind, watermark: str, actor: Actor
) -> tuple[bytes, bool]:
    """`page_image`, or the integrity-failure placeholder (audited) — never the failed bytes."""
    try:
        return page_image(page, kind, watermark), True
    except BlobIntegrityError as exc:
        record_integrity_failure(page, business, exc, actor, kind)
        return integrity_placeholder(kind), False


def record_integrity_failure(
    page: CapturedPage, business: Business, exc: BlobIntegrityError, actor: Actor, use: str
) -> None:
    record(
        INTEGRITY_ACTION, actor=actor, outcome="failure", object_type="captured_page",
        object_id=str(page.id),
        detail={"serial": business.serial, "sm3": exc.content_sm3, "problem": exc.problem, "use": use},
    )


# View tokens and page-view audit ----------------------------------------------------------------

VIEW_TOKEN_SALT = "archive-view-v1"  # noqa: S105 (a salt, not a secret)
VIEW_TOKEN_MAX_AGE = 4 * 3600


@dataclass(frozen=True)
class ViewGrant:
    """A page load that showed a business's images to a user and audited it (`session`)."""

    user_id: int
    business_id: int
    cross: bool
    session: str


def _serializer(secret: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=VIEW_TOKEN_SALT)


def issue_view_token(secret: str | bytes, grant: ViewGrant) -> str:
    return _serializer(secret).dumps([grant.user_id, grant.business_id, int(grant.cross), grant.session])


def read_view_token(
    secret: str | bytes, token: str, *, user_id: int, business_id: int, max_age: int = VIEW_TOKEN_MAX_AGE
) -> ViewGrant | None:
    """The grant in `token` when it is genuine, fresh, and for this user and business."""
    if not token or len(token) > 400:
        return None
    try:
        uid, bid, cross, session = _serializer(secret).loads(token, max_age=max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    if uid != user_id or bid != business_id:
        return None
    return ViewGrant(int(uid), int(bid), bool(cross), str(session))


def page_views(
    actor: Actor, user_id: int, business: Business, page_ids: list[int], *, view: Literal["thumbnails", "viewer"],
    cross: bool, reason: str,
) -> ViewGrant:
    """Record the one `archive.page_viewed` entry for the pages a page load makes visible, and
    return the grant that lets the image requests of that page load go without an entry each."""
    grant = ViewGrant(user_id, business.id, cross, secrets.token_hex(6))
    record(
        PAGE_VIEWED_ACTION, actor=actor, object_type="business", object_id=str(business.id),
        reason=reason if cross else "",
        detail={"serial": business.serial, "view": view, "pages": page_ids, "session": grant.session,
                "cross": cross},
    )
    return grant


def record_single_page_view(actor: Actor, page: CapturedPage, business: Business, kind: str, *,
                            cross: bool, reason: str) -> None:
    """An image request outside a viewer session (no or an expired token): its own entry."""
    record(
        PAGE_VIEWED_ACTION, actor=actor, object_type="business", object_id=str(business.id),
        reason=reason if cross else "",
        detail={"serial": business.serial, "view": "direct", "pages": [page.id], "kind": kind, "cross": cross},
    )


def viewable_page(
    user: User, page_id: int, *, token: str, secret: str | bytes, cross: bool, reason: str, actor: Actor, kind: str
) -> tuple[CapturedPage, Business]:
    """An archived page the user may see and its business; the view is audited.

    A valid view token (from the viewer or business page that showed this business to this
    user) carries that page load's scope and audit entry (no new entry); without one the
    request needs the usual scope (`cross` with a reason for another department) and gets its
    own entry. A refusal is audited too."""
    page = db.session.get(CapturedPage, page_id)
    if page is None or page.status not in ARCHIVE_STATUSES:
        raise NotFound(page_id)
    grant = read_view_token(secret, token, user_id=user.id, business_id=page.business_id)
    if grant is not None:
        cross = grant.cross
    scope = scope_for(user, cross_department=cross)
    try:
        business = business_in_scope(scope, page.business_id)
    except NotFound:
        record(PAGE_VIEWED_ACTION, actor=actor, outcome="denied", object_type="captured_page",
               object_id=str(page_id), detail={"why": "not in scope"})
        raise
    if grant is None:
        record_single_page_view(actor, page, business, kind, cross=scope.everywhere, reason=reason)
    return page, business
