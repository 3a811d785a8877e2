"""Signed PDF export: layout, watermark, Chinese text, signature and `portal verify-export`."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from gmcrypto.envelope import envelope_from_bytes
from gmcrypto.sm3 import sm3_hex
from portal.archive.export import EXPORT_PURPOSE
from portal.keys import key_provider
from portal.storage.services import LocalBlobStore, blob_store
from tests.conftest import login
from tests.portal.archive.conftest import audit_entries, red_pixels


def _export(client, business, **data):  # type: ignore[no-untyped-def]
    return client.post(f"/archive/business/{business.id}/export", data=data)


def _unzip(response) -> tuple[str, bytes, str, bytes]:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        names = archive.namelist()
        pdf_name = next(n for n in names if n.endswith(".pdf"))
        sig_name = next(n for n in names if n.endswith(".sig.json"))
        return pdf_name, archive.read(pdf_name), sig_name, archive.read(sig_name)


@pytest.fixture
def exported(client, factory, org, pages, tmp_path):  # type: ignore[no-untyped-def]
    business = factory.business(org.office_a, serial="EXP-0001")
    for code in ("ID_PROOF", "ID_PROOF", "APPLICATION"):
        pages.add(business, code)
    pages.add(business, "PURCHASE_INVOICE", data=_landscape())
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)
    response = _export(client, business)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    pdf_name, pdf, sig_name, sig = _unzip(response)
    (tmp_path / pdf_name).write_bytes(pdf)
    (tmp_path / sig_name).write_bytes(sig)
    return {"business": business, "response": response, "pdf": pdf, "sig": sig, "user": supervisor,
            "pdf_path": tmp_path / pdf_name, "sig_path": tmp_path / sig_name}


def _landscape() -> bytes:
    from tests.portal.archive.conftest import jpeg

    return jpeg("landscape invoice", size=(1100, 800))


def test_zip_with_pdf_and_signature(exported) -> None:
    response = exported["response"]
    assert response.mimetype == "application/zip"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert 'attachment; filename="archive-EXP-0001-' in response.headers["Content-Disposition"]
    envelope = envelope_from_bytes(exported["sig"])
    assert envelope["purpose"] == EXPORT_PURPOSE
    payload = envelope["payload"]
    assert payload["serial"] == "EXP-0001" and payload["pages"] == 4
    assert payload["sm3"] == sm3_hex(exported["pdf"]) and payload["size"] == len(exported["pdf"])
    assert payload["exported_by"] == exported["user"].username
    assert payload["key_id"] == key_provider().public_key.key_id() == envelope["signer"]
    entry = audit_entries("archive.exported")[-1]
    assert entry.outcome == "success" and json.loads(entry.detail)["sm3"] == payload["sm3"]


def test_pdf_layout_text_and_font(exported) -> None:
    reader = PdfReader(io.BytesIO(exported["pdf"]))
    assert len(reader.pages) == 2 + 4  # cover, catalogue (one page), one page per image
    cover = reader.pages[0].extract_text()
    assert "非机动车业务档案" in cover and "EXP-0001" in cover
    assert "310***********1234" in cover and "310115199001011234" not in cover
    assert exported["user"].full_name in cover and "导出时间" in cover
    catalogue = reader.pages[1].extract_text()
    assert "材料目录" in catalogue and "所有人身份证明" in catalogue and "3–4" in catalogue
    assert "非机动车登记申请表" in catalogue
    fonts = reader.pages[0]["/Resources"]["/Font"]
    descriptors = [font.get_object()["/FontDescriptor"] for font in fonts.values()
                   if "/FontDescriptor" in font.get_object()]
    assert any("/FontFile2" in d for d in descriptors)  # the CJK TrueType font is embedded
    last = reader.pages[5]
    assert float(last.mediabox.width) > float(last.mediabox.height)  # landscape scan, landscape page
    assert "第 6 / 6 页" in last.extract_text()


def test_exported_images_carry_the_watermark(exported) -> None:
    reader = PdfReader(io.BytesIO(exported["pdf"]))
    for page in reader.pages[2:]:
        images = page.images
        assert len(images) == 1
        assert red_pixels(images[0].data) > 100  # a plain rendition has none (see test_viewer)


def test_chinese_renders_in_the_pdf(exported, tmp_path) -> None:
    assert shutil.which("pdftoppm"), "install poppler-utils (scripts/system-packages.sh)"
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(exported["pdf_path"]),
                    str(tmp_path / "cover")], check=True, timeout=60)
    png = next(tmp_path.glob("cover*.png"))
    with Image.open(png) as image:
        raw = image.convert("RGB").tobytes()
    blue = sum(1 for i in range(0, len(raw), 3) if raw[i + 2] > 140 and raw[i] < 80)  # the blue title
    dark = sum(1 for i in range(0, len(raw), 3) if raw[i] < 100 and raw[i + 1] < 100 and raw[i + 2] < 100)
    assert blue > 200 and dark > 500  # glyphs were drawn (no empty boxes only)


def test_cover_qr_code_reads_the_serial(exported, tmp_path) -> None:
    import zxingcpp
    assert shutil.which("pdftoppm"), "install poppler-utils (scripts/system-packages.sh)"
    subprocess.run(["pdftoppm", "-png", "-r", "100", "-f", "1", "-l", "1", str(exported["pdf_path"]),
                    str(tmp_path / "qr")], check=True, timeout=60)
    with Image.open(next(tmp_path.glob("qr*.png"))) as image:
        codes = zxingcpp.read_barcodes(image)
    assert [c.text for c in codes] == ["EXP-0001"]


def test_verify_export_cli(app, exported, tmp_path) -> None:
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["verify-export", str(exported["pdf_path"]), str(exported["sig_path"])])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("OK") and "EXP-0001" in ok.output
    pem = tmp_path / "portal-public.pem"
    pem.write_bytes(key_provider().public_key.to_pem())
    with_key = runner.invoke(args=["verify-export", str(exported["pdf_path"]), str(exported["sig_path"]),
                                   "--key", str(pem)])
    assert with_key.exit_code == 0 and "OK" in with_key.output

    changed = bytearray(exported["pdf"])
    changed[len(changed) // 2] ^= 0x01
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(bytes(changed))
    failed = runner.invoke(args=["verify-export", str(bad), str(exported["sig_path"])])
    assert failed.exit_code == 1 and "FAILED" in failed.output and "SM3 mismatch" in failed.output

    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(exported["pdf"][:-1])
    assert runner.invoke(args=["verify-export", str(truncated), str(exported["sig_path"])]).exit_code == 1

    envelope = json.loads(exported["sig"])
    envelope["payload"]["exported_by"] = "someone-else"
    forged = tmp_path / "forged.sig.json"
    forged.write_text(json.dumps(envelope))
    result = runner.invoke(args=["verify-export", str(exported["pdf_path"]), str(forged)])
    assert result.exit_code == 1 and "bad signature" in result.output

    from gmcrypto.sm2 import PrivateKey

    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(PrivateKey.generate().public_key().to_pem())
    result = runner.invoke(args=["verify-export", str(exported["pdf_path"]), str(exported["sig_path"]),
                                 "--key", str(stranger)])
    assert result.exit_code == 1 and "unknown signer" in result.output


def test_export_without_pages_has_a_clear_message(client, factory, org) -> None:
    business = factory.business(org.office_a)
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)
    response = _export(client, business)
    assert response.status_code == 422
    assert "没有已确认的影像页，无法导出" in response.get_data(as_text=True)
    entry = audit_entries("archive.exported")[-1]
    assert entry.outcome == "failure" and "no confirmed pages" in entry.detail


def test_export_needs_the_role_and_the_scope(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    pages.add(business)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert _export(client, business).status_code == 403
    viewer = factory.user("viewer", org.office_c)
    login(client, viewer.username)
    client.post("/logout")
    login(client, viewer.username)
    assert _export(client, business).status_code == 404
    assert _export(client, business, cross="1").status_code == 404  # a reason is required
    response = _export(client, business, cross="1", reason="协查 2026-7")
    assert response.status_code == 200
    _, pdf, _, _ = _unzip(response)
    assert "协查 2026-7" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    entry = audit_entries("archive.exported", "success")[-1]
    assert entry.reason == "协查 2026-7" and json.loads(entry.detail)["cross"] is True
    assert client.get(f"/archive/business/{business.id}/export").status_code == 405


def test_integrity_failure_in_export_is_marked_signed_and_audited(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    good = pages.add(business)
    bad = pages.add(business)
    store = blob_store()
    assert isinstance(store, LocalBlobStore)
    Path(store.path(bad.content_sm3)).write_bytes(b"not an encrypted blob")
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)
    response = _export(client, business)
    assert response.status_code == 200
    _, pdf, _, sig = _unzip(response)
    payload = json.loads(sig)["payload"]
    assert payload["integrity_failures"] == [bad.id] and payload["page_ids"] == [good.id, bad.id]
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 4
    assert "影像完整性校验失败" in reader.pages[3].extract_text()
    assert [e.object_id for e in audit_entries("archive.integrity_failed")] == [str(bad.id)]
    assert audit_entries("archive.exported")[-1].outcome == "failure"


def test_export_caches_display_renditions(client, factory, org, pages) -> None:
    from sqlalchemy import func, select

    from portal.db import db
    from portal.storage.models import Rendition

    business = factory.business(org.office_a)
    for _ in range(3):
        pages.add(business)
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)

    def renditions() -> int:
        db.session.expire_all()
        return db.session.scalar(select(func.count()).select_from(Rendition).where(Rendition.kind == "display"))

    assert renditions() == 0
    first = _export(client, business)
    assert first.status_code == 200 and renditions() == 3  # made on worker threads, stored afterwards
    second = _export(client, business)
    assert second.status_code == 200 and renditions() == 3  # reused
    pdf_a, pdf_b = _unzip(first)[1], _unzip(second)[1]
    assert len(PdfReader(io.BytesIO(pdf_a)).pages) == len(PdfReader(io.BytesIO(pdf_b)).pages) == 5
