"""The business archive page: masked data and audited reveal, materials, versions, signature states."""

from __future__ import annotations

import json
import re

from portal.archive import services
from portal.capture.models import PageSource
from portal.db import db
from tests.conftest import login
from tests.portal.archive.conftest import audit_entries


def test_masked_data_and_reveal_for_supervisor(client, factory, org) -> None:
    business = factory.business(org.office_a)
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)
    html = client.get(f"/archive/business/{business.id}").get_data(as_text=True)
    assert "310***********1234" in html and "138****5678" in html
    assert "310115199001011234" not in html and "13812345678" not in html
    assert f'hx-post="/archive/business/{business.id}/reveal/owner_id"' in html
    response = client.post(f"/archive/business/{business.id}/reveal/owner_id", headers={"HX-Request": "true"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "310115199001011234" in fragment and "<html" not in fragment
    assert response.headers["Cache-Control"] == "no-store"
    phone = client.post(f"/archive/business/{business.id}/reveal/phone")  # without JS: the whole page
    assert phone.status_code == 200 and "13812345678" in phone.get_data(as_text=True)
    entries = audit_entries("personal.revealed")
    assert [(e.outcome, json.loads(e.detail)["kind"], e.object_id) for e in entries] == [
        ("success", "owner_id", business.serial), ("success", "phone", business.serial)]


def test_reveal_refused_without_the_role(client, factory, org) -> None:
    business = factory.business(org.office_a)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    html = client.get(f"/archive/business/{business.id}").get_data(as_text=True)
    assert "/reveal/" not in html  # no button
    response = client.post(f"/archive/business/{business.id}/reveal/owner_id")
    assert response.status_code == 403
    assert "310115199001011234" not in response.get_data(as_text=True)
    assert [e.outcome for e in audit_entries("personal.revealed")] == ["denied"]
    assert client.post(f"/archive/business/{business.id}/reveal/password").status_code == 404


def test_reveal_outside_scope_is_404(client, factory, org) -> None:
    business = factory.business(org.office_c)
    supervisor = factory.user("supervisor", org.office_a)
    login(client, supervisor.username)
    assert client.post(f"/archive/business/{business.id}/reveal/owner_id").status_code == 404
    assert audit_entries("personal.revealed", "success") == []


def test_materials_versions_and_signature_states(client, factory, org, pages) -> None:
    clerk = factory.user("clerk", org.office_a)
    business = factory.business(org.office_a)
    first = pages.add(business, "ID_PROOF", user=clerk)
    pages.add(business, "ID_PROOF", user=clerk)
    replacement = pages.add(business, "ID_PROOF", supersedes=first, user=clerk)
    pages.add(business, "APPLICATION", source=PageSource.BROWSER, user=clerk)
    forged = pages.add(business, "PURCHASE_INVOICE", forged_manifest=True)
    archive = services.business_archive(business)
    by_code = {m.material.code: m for m in archive}
    assert [r.page.id for r in by_code["ID_PROOF"].current] == [replacement.id, first.id + 1]
    assert [r.page.id for r in by_code["ID_PROOF"].current[0].versions] == [first.id]
    assert len(by_code["ID_PROOF"].history) == 3
    assert by_code["ID_PROOF"].current[0].signature == services.SignatureState.VERIFIED
    assert by_code["APPLICATION"].current[0].signature == services.SignatureState.BROWSER
    assert by_code["PURCHASE_INVOICE"].current[0].signature == services.SignatureState.INVALID
    assert [r.page.id for r in services.current_pages(archive)][-1] == forged.id

    login(client, clerk.username)
    html = client.get(f"/archive/business/{business.id}").get_data(as_text=True)
    assert html.count("/image?size=thumb&amp;t=") == 4  # thumbnails of the current pages only
    assert "终端签名已验证" in html and "浏览器上传（无终端签名）" in html and "签名验证失败" in html
    assert "已替换" in html and "补充采集：图像质量差（重新扫描）" in html
    assert f"compare={first.id}" in html  # history row links to the side-by-side comparison
    assert "PC-" in html  # the agent
    assert clerk.full_name in html  # who captured
    entry = audit_entries("archive.page_viewed")[-1]
    detail = json.loads(entry.detail)
    assert detail["view"] == "thumbnails" and len(detail["pages"]) == 4


def test_export_button_only_with_export_role(app, client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    pages.add(business)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert "导出签名 PDF" not in client.get(f"/archive/business/{business.id}").get_data(as_text=True)
    supervisor = factory.user("supervisor", org.office_a)
    other = app.test_client()
    login(other, supervisor.username)
    html = other.get(f"/archive/business/{business.id}").get_data(as_text=True)
    form = r'<form method="post" action="/archive/business/\d+/export" class="inline" hx-boost="false">'
    assert re.search(form, html)


def test_other_office_404_and_audited(client, factory, org) -> None:
    business = factory.business(org.office_b)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert client.get(f"/archive/business/{business.id}").status_code == 404
    assert client.get(f"/archive/business/{business.id}/viewer").status_code == 404
    assert [e.object_id for e in audit_entries("archive.viewed", "denied")] == [str(business.id)]
    db.session.rollback()
