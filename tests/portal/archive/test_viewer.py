"""The viewer and its images: watermarked server-side, never cached, audited, integrity failures shown."""

from __future__ import annotations

import io
import json
import re

from PIL import Image, ImageChops

from portal.db import db
from portal.storage.models import ImageBlob
from portal.storage.renditions import rendition
from portal.storage.services import LocalBlobStore, blob_store
from tests.conftest import login
from tests.portal.archive.conftest import audit_entries, red_pixels


def _tokens(html: str) -> list[str]:
    return [src.replace("&amp;", "&") for src in re.findall(r'data-src="([^"]+)"', html)]


def test_viewer_lists_pages_with_token_urls(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    first = pages.add(business, "ID_PROOF")
    second = pages.add(business, "ID_PROOF")
    newer = pages.add(business, "ID_PROOF", supersedes=first)
    third = pages.add(business, "APPLICATION")
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    response = client.get(f"/archive/business/{business.id}/viewer?page={third.id}&compare={first.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sources = _tokens(html)
    assert [int(re.search(r"/page/(\d+)/", s).group(1)) for s in sources] == [newer.id, second.id, third.id]
    assert all("t=" in s for s in sources)
    assert "第 3 / 3 页" in html  # opened at the requested page
    assert 'id="viewer-compare-pane" hidden' in html  # the compared version is not of this page
    html = client.get(f"/archive/business/{business.id}/viewer?page={newer.id}&compare={first.id}").get_data(
        as_text=True)
    assert 'id="viewer-compare-pane" hidden' not in html and f"/archive/page/{first.id}/image" in html
    assert "js/viewer.js" in html and "<script>" not in html  # no inline script (CSP)
    entries = audit_entries("archive.page_viewed")
    assert len(entries) == 2
    detail = json.loads(entries[0].detail)
    assert detail["view"] == "viewer" and set(detail["pages"]) == {first.id, second.id, newer.id, third.id}


def test_image_is_watermarked_not_cached_and_covered_by_the_viewer_entry(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business, rotation=90)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    html = client.get(f"/archive/business/{business.id}/viewer").get_data(as_text=True)
    url = _tokens(html)[0]
    before = len(audit_entries("archive.page_viewed"))
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Portal-Integrity"] == "ok"
    shown = response.data
    plain = rendition(db.session.get(ImageBlob, page.blob_id), "display")
    with Image.open(io.BytesIO(shown)) as got, Image.open(io.BytesIO(plain)) as base:
        assert got.size == (base.height, base.width)  # the page's rotation is applied
        turned = base.convert("RGB").rotate(-90, expand=True)
        difference = ImageChops.difference(got.convert("RGB"), turned).getbbox()
    assert difference is not None  # the watermark changed the pixels
    assert red_pixels(shown) > 500 and red_pixels(plain) == 0
    assert len(audit_entries("archive.page_viewed")) == before  # covered by the viewer's entry


def test_image_without_token_is_audited_each_time(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert client.get(f"/archive/page/{page.id}/image").status_code == 200
    assert client.get(f"/archive/page/{page.id}/image?size=thumb&t=forged").status_code == 200
    entries = audit_entries("archive.page_viewed")
    assert [json.loads(e.detail)["view"] for e in entries] == ["direct", "direct"]
    assert client.get(f"/archive/page/{page.id}/image?size=original").status_code == 404


def test_token_is_bound_to_user_and_business(app, client, factory, org, pages) -> None:
    mine = factory.business(org.office_a)
    mine_page = pages.add(mine)
    other = factory.business(org.office_a)
    other_page = pages.add(other)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    url = _tokens(client.get(f"/archive/business/{mine.id}/viewer").get_data(as_text=True))[0]
    token = url.split("t=")[1]
    before = len(audit_entries("archive.page_viewed"))
    client.get(f"/archive/page/{other_page.id}/image?t={token}")  # token of another business
    assert len(audit_entries("archive.page_viewed")) == before + 1
    colleague = factory.user("clerk", org.office_a)
    second = app.test_client()
    login(second, colleague.username)
    second.get(f"/archive/page/{mine_page.id}/image?t={token}")  # token of another user
    assert len(audit_entries("archive.page_viewed")) == before + 2


def test_images_outside_scope_are_404(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business)
    viewer_c = factory.user("viewer", org.office_c)
    login(client, viewer_c.username)
    assert client.get(f"/archive/page/{page.id}/image").status_code == 404
    assert client.get(f"/archive/page/{page.id}/image?cross=1").status_code == 404  # no reason
    assert audit_entries("archive.page_viewed", "denied")
    ok = client.get(f"/archive/page/{page.id}/image?cross=1&reason=协查")
    assert ok.status_code == 200
    entry = audit_entries("archive.page_viewed", "success")[-1]
    assert entry.reason == "协查"
    html = client.get(f"/archive/business/{business.id}/viewer?cross=1&reason=协查").get_data(as_text=True)
    url = _tokens(html)[0]
    assert "reason" not in url  # the token carries the grant
    assert client.get(url).status_code == 200
    assert client.get("/archive/page/999999/image").status_code == 404


def test_clerk_without_view_pages_cannot_open_images(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business)
    admin = factory.user("auditadmin", org.office_a)
    login(client, admin.username)
    assert client.get(f"/archive/page/{page.id}/image").status_code == 403
    assert client.get(f"/archive/business/{business.id}/viewer").status_code == 403


def test_tampered_blob_shows_the_placeholder_and_is_audited(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business)
    store = blob_store()
    assert isinstance(store, LocalBlobStore)
    path = store.path(page.content_sm3)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of the encrypted original
    path.write_bytes(bytes(raw))
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    response = client.get(f"/archive/page/{page.id}/image")
    assert response.status_code == 200
    assert response.headers["X-Portal-Integrity"] == "failed"
    assert response.headers["Cache-Control"] == "private, no-store"
    with Image.open(io.BytesIO(response.data)) as image:
        assert image.size == (1200, 1650)  # the placeholder, not the scan (800 x 1100)
        assert image.getpixel((3, 3))[0] > 150 > image.getpixel((3, 3))[1]  # red frame
    failures = audit_entries("archive.integrity_failed")
    assert len(failures) == 1 and failures[0].outcome == "failure"
    assert failures[0].object_id == str(page.id)
    assert "altered" in json.loads(failures[0].detail)["problem"]


def test_tampered_rendition_is_caught_too(client, factory, org, pages) -> None:
    business = factory.business(org.office_a)
    page = pages.add(business)
    clerk = factory.user("clerk", org.office_a)
    login(client, clerk.username)
    assert client.get(f"/archive/page/{page.id}/image").headers["X-Portal-Integrity"] == "ok"
    from sqlalchemy import select

    from portal.storage.models import Rendition

    cached = db.session.scalar(select(Rendition).where(Rendition.source_blob_id == page.blob_id))
    store = blob_store()
    rendition_blob = db.session.get(ImageBlob, cached.blob_id)
    store.path(rendition_blob.content_sm3).write_bytes(b"GMB1" + b"\x00" * 64)
    assert client.get(f"/archive/page/{page.id}/image").headers["X-Portal-Integrity"] == "failed"
    assert len(audit_entries("archive.integrity_failed")) == 1
