"""Signed PDF export of a business's archive.

The export is one ZIP with two files, so that the PDF and its signature always belong together:

- `<serial>.pdf`: cover (business data masked, QR code of the serial, export time and user),
  catalogue of materials with page counts, then every current page (display rendition, page
  rotation, the exporting user's watermark drawn into the pixels) scaled to A4;
- `<serial>.pdf.sig.json`: a detached SM2 signature by the portal's key in the system's signed
  envelope format, purpose "archive-export", payload {serial, sm3 and size of the PDF bytes,
  exported_at, exported_by, key_id, pages, ...}.

`portal verify-export FILE SIG [--key PEM]` checks the pair (`verify_export` below).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import qrcode

from gmcrypto.envelope import envelope_from_bytes, envelope_to_bytes, sign_envelope, verify_envelope
from gmcrypto.errors import InvalidSignature
from gmcrypto.sm2 import PublicKey, Signer
from gmcrypto.sm3 import sm3_hex
from portal.archive import services
from portal.archive.pdf import CatalogueLine, PdfDocument, PdfPage, build_pdf, first_image_page
from portal.audit.services import Actor, record
from portal.auth.models import User
from portal.capture.models import CapturedPage
from portal.db import db, utcnow
from portal.registry.models import Business
from portal.storage.models import ImageBlob
from portal.storage.renditions import cached_rendition, integrity_placeholder, remember_rendition, render, rotate
from portal.storage.services import BlobIntegrityError, load_image
from portal.storage.watermark import apply_watermark, watermark_text

EXPORT_PURPOSE = "archive-export"
EXPORTED_ACTION = "archive.exported"
RENDER_THREADS = min(4, os.cpu_count() or 1)


class NothingToExport(Exception):
    """The business has no confirmed page."""

    message_zh = "该业务还没有已确认的影像页，无法导出档案。"


class ExportInvalid(Exception):
    """An exported PDF and its signature do not verify; the message says why (English)."""


@dataclass(frozen=True)
class ExportBundle:
    serial: str
    pdf: bytes
    envelope: dict[str, Any]
    exported_at: datetime
    page_count: int  # image pages
    integrity_failures: list[int] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.serial) or "archive"

    @property
    def pdf_name(self) -> str:
        return f"{self.stem}.pdf"

    @property
    def sig_name(self) -> str:
        return f"{self.stem}.pdf.sig.json"

    @property
    def zip_name(self) -> str:
        return f"archive-{self.stem}-{self.exported_at.astimezone().strftime('%Y%m%d%H%M%S')}.zip"

    def signature_bytes(self) -> bytes:
        return envelope_to_bytes(self.envelope)

    def zip_bytes(self) -> bytes:
        out = io.BytesIO()
        stamp = self.exported_at.astimezone().timetuple()[:6]
        with zipfile.ZipFile(out, "w") as archive:
            # The PDF is mostly JPEG already: stored, not deflated.
            archive.writestr(zipfile.ZipInfo(self.pdf_name, stamp), self.pdf, zipfile.ZIP_STORED)
            archive.writestr(zipfile.ZipInfo(self.sig_name, stamp), self.signature_bytes(), zipfile.ZIP_DEFLATED)
        return out.getvalue()


def _local(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "—"


def _qr_png(serial: str) -> bytes:
    code = qrcode.QRCode(border=1, box_size=8, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(serial)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().get_image().save(out, "PNG")
    return out.getvalue()


def business_facts(business: Business) -> list[tuple[str, str]]:
    """The business data as printed on the cover: personal data masked."""
    return [
        ("流水号", business.serial),
        ("业务类型", business.business_type.name),
        ("业务状态", business.status.label),
        ("办理部门", business.department.name),
        ("号牌号码", business.plate_number or "—"),
        ("整车编码", business.vehicle_code or "—"),
        ("所有人", business.owner_name or "—"),
        ("身份证明号码", business.owner_id_masked or "—"),
        ("联系电话", business.phone_masked or "—"),
        ("经办人", business.clerk_name or "—"),
        ("受理时间", _local(business.accepted_at)),
        ("办结时间", _local(business.finished_at)),
        ("采集状态", business.capture_state.label),
    ]


def export_archive(
    business: Business, exporter: User, actor: Actor, signer: Signer, *, cross: bool = False, reason: str = "",
    now: datetime | None = None,
) -> ExportBundle:
    """Build, sign and audit the export of `business` by `exporter` (who may see it: checked by the
    caller). Pages whose stored bytes fail their check become a marked placeholder page, are
    listed in the signed payload and audited; the export itself goes on. A business without a
    confirmed page raises `NothingToExport` (the refusal is audited)."""
    archive = services.business_archive(business)
    rows = services.current_pages(archive)
    if not rows:
        record(EXPORTED_ACTION, actor=actor, outcome="failure", object_type="business", object_id=str(business.id),
               detail={"serial": business.serial, "why": "no confirmed pages"})
        raise NothingToExport(business.serial)
    now = now or utcnow()
    mark = watermark_text(exporter.full_name, exporter.badge_number, now)
    images = _watermarked_pages(rows, mark)
    pages: list[PdfPage] = []
    failures: list[int] = []
    for material in archive:
        for index, row in enumerate(material.current, 1):
            page = row.page
            heading = f"{material.material.name} 第 {index}/{len(material.current)} 页"
            if page.version > 1:
                heading += f" · 第 {page.version} 版"
            note = f"{services.SignatureState.LABELS[row.signature][0]} · 采集于 {_local(page.captured_at)}"
            jpeg = images[page.id]
            failed = isinstance(jpeg, BlobIntegrityError)
            if isinstance(jpeg, BlobIntegrityError):
                services.record_integrity_failure(page, business, jpeg, actor, "export")
                jpeg = integrity_placeholder("display")
                failures.append(page.id)
                heading += " · 影像完整性校验失败"
            width, height = _jpeg_size(jpeg)
            pages.append(PdfPage(jpeg, width, height, heading, note, failed))
    catalogue: list[CatalogueLine] = []
    next_page = first_image_page(len(archive))
    for material in archive:
        count = len(material.current)
        catalogue.append(CatalogueLine(
            material.material.name, material.requirement.label if material.requirement else "（已不在目录）",
            count, next_page if count else None,
        ))
        next_page += count
    key_id = signer.public_key().key_id()
    department = exporter.department.name if exporter.department else ""
    export_facts = [
        ("导出时间", now.astimezone().strftime("%Y-%m-%d %H:%M:%S")),
        ("导出人", f"{exporter.full_name}（警号 {exporter.badge_number or '—'}，{department}）"),
        ("影像页数", f"{len(pages)} 页"),
    ]
    if cross:
        export_facts.append(("跨部门查询事由", reason))
    if failures:
        export_facts.append(("完整性校验", f"{len(failures)} 页影像完整性校验失败，已以占位页代替"))
    export_facts.append(("签名", f"SM2 签名（签名密钥 {key_id}），签名文件与本文件一同提供，"
                                 "可用“portal verify-export”校验"))
    doc = PdfDocument(
        serial=business.serial, title="非机动车业务档案", facts=business_facts(business),
        export_facts=export_facts, qr_png=_qr_png(business.serial), catalogue=catalogue, pages=pages,
        footer=f"流水号 {business.serial} · 导出人 {exporter.full_name}（{exporter.badge_number}）"
               f" · {now.astimezone().strftime('%Y-%m-%d %H:%M')}",
        watermark=mark,
    )
    pdf = build_pdf(doc, author=exporter.full_name)
    payload: dict[str, Any] = {
        "serial": business.serial,
        "sm3": sm3_hex(pdf),
        "size": len(pdf),
        "exported_at": now.isoformat(timespec="seconds"),
        "exported_by": exporter.username,
        "exported_by_name": exporter.full_name,
        "badge_number": exporter.badge_number,
        "key_id": key_id,
        "pages": len(pages),
        "page_ids": [row.page.id for row in rows],
        "integrity_failures": failures,
    }
    envelope = sign_envelope(payload, signer, EXPORT_PURPOSE)
    record(
        EXPORTED_ACTION, actor=actor, object_type="business", object_id=str(business.id),
        outcome="failure" if failures else "success", reason=reason if cross else "",
        detail={"serial": business.serial, "pages": len(pages), "sm3": payload["sm3"], "size": len(pdf),
                "key_id": key_id, "cross": cross, "integrity_failures": failures},
    )
    return ExportBundle(business.serial, pdf, envelope, now, len(pages), failures)


@dataclass
class _Work:
    page: CapturedPage
    blob: ImageBlob | None
    display: bytes | None = None  # cached display rendition
    original: bytes | None = None  # when the rendition still has to be made
    made: tuple[bytes, int, int] | None = None


def _watermarked_pages(rows: list[services.PageRow], mark: str) -> dict[int, bytes | BlobIntegrityError]:
    """Every page as the viewer shows it (display rendition, rotation, watermark), by page id.

    Reading and storing go through the request's database session in this thread; decoding,
    scaling and watermarking (Pillow, which releases the GIL) run on a few threads at once."""
    result: dict[int, bytes | BlobIntegrityError] = {}
    work: list[_Work] = []
    for row in rows:
        item = _Work(row.page, db.session.get(ImageBlob, row.page.blob_id))
        try:
            if item.blob is None:
                raise BlobIntegrityError(row.page.content_sm3, "the blob row is missing")
            item.display = cached_rendition(item.blob, "display")
            if item.display is None:
                item.original = load_image(item.blob)
        except BlobIntegrityError as exc:
            result[row.page.id] = exc
            continue
        work.append(item)

    def finish(item: _Work) -> bytes:
        if item.display is None:
            assert item.original is not None
            item.made = render(item.original, "display")
            item.display = item.made[0]
        return apply_watermark(rotate(item.display, item.page.rotation), mark)

    with ThreadPoolExecutor(max_workers=min(RENDER_THREADS, max(1, len(work)))) as pool:
        for item, jpeg in zip(work, pool.map(finish, work), strict=True):
            result[item.page.id] = jpeg
    for item in work:
        if item.made is not None and item.blob is not None:
            remember_rendition(item.blob, "display", *item.made)
    return result


def _jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def verify_export(pdf: bytes, signature: bytes, public_key: PublicKey) -> dict[str, Any]:
    """The signed payload when `signature` is the portal's valid signature of exactly `pdf`;
    `ExportInvalid` with the reason otherwise."""
    try:
        envelope = envelope_from_bytes(signature)
        payload = verify_envelope(
            envelope, lambda kid: public_key if kid == public_key.key_id() else None, EXPORT_PURPOSE
        )
    except InvalidSignature as exc:
        raise ExportInvalid(f"signature does not verify: {exc}") from None
    if payload.get("size") != len(pdf):
        raise ExportInvalid(f"size mismatch: the signature covers {payload.get('size')} bytes, the file has {len(pdf)}")
    if payload.get("sm3") != sm3_hex(pdf):
        raise ExportInvalid("SM3 mismatch: the file is not the exported PDF (changed after signing)")
    if payload.get("key_id") != envelope.get("signer"):
        raise ExportInvalid("the payload names another key than the one that signed it")
    return payload
