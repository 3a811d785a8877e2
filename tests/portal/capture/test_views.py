"""The capture screen over HTTP: permissions, opening by serial, the workspace, polling, actions,
messages in place (never a 500), page images."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

from portal.agents.models import Agent
from portal.audit.models import AuditEntry
from portal.audit.services import Actor
from portal.capture import services
from portal.capture.models import CapturedPage, JobState, PageStatus, ScanJob
from portal.db import db, utcnow
from portal.org.services import create_window
from tests.conftest import login
from tests.portal.agents.conftest import page_image
from tests.portal.capture.conftest import fulfil, material, pages_of
from tests.portal.capture.test_services import jpegs, upload

HX = {"HX-Request": "true"}  # a plain (not boosted) HTMX request: fragments
WS = {**HX, "HX-Target": "workspace"}
POLL = {**HX, "X-Portal-Poll": "1"}


def text(response) -> str:  # type: ignore[no-untyped-def]
    return response.get_data(as_text=True)


def audit(action: str, outcome: str | None = None) -> list[AuditEntry]:
    stmt = select(AuditEntry).where(AuditEntry.action == action)
    if outcome:
        stmt = stmt.where(AuditEntry.outcome == outcome)
    return list(db.session.scalars(stmt.order_by(AuditEntry.seq)))


def signed_in_as(app, user):  # type: ignore[no-untyped-def]
    client = app.test_client()
    assert login(client, user.username).status_code == 302
    return client


def url(business, *parts: object) -> str:  # type: ignore[no-untyped-def]
    return "/".join([f"/capture/business/{business.id}", *map(str, parts)])


def start_scan(client, business, code: str = "ID_PROOF", **data):  # type: ignore[no-untyped-def]
    return client.post(url(business, "materials", material(code).id, "scan"), data=data, headers=HX)


# Access and opening ------------------------------------------------------------------------------

def test_index_has_an_autofocused_serial_input(signed_in) -> None:
    response = signed_in.get("/capture/")
    assert response.status_code == 200
    body = text(response)
    assert 'id="serial-input"' in body and "autofocus" in body
    assert "js/capture.js" in body


def test_roles_without_capture_rights_are_refused(app, factory, business) -> None:
    viewer = signed_in_as(app, factory.user("viewer"))
    assert viewer.get("/capture/").status_code == 403
    assert viewer.get(url(business)).status_code == 403
    assert viewer.post("/capture/open", data={"serial": business.serial}).status_code == 403
    assert audit("security.forbidden", "denied")


def test_open_by_serial_navigates_to_the_business(signed_in, business) -> None:
    response = signed_in.post("/capture/open", data={"serial": f" {business.serial}\n"}, headers=HX)
    assert response.status_code == 200
    assert json.loads(response.headers["HX-Location"])["path"] == f"/capture/business/{business.id}"
    plain = signed_in.post("/capture/open", data={"serial": business.serial})
    assert plain.status_code == 303 and plain.headers["Location"].endswith(f"/capture/business/{business.id}")
    assert audit("capture.business_opened", "success")[0].object_id == business.serial


def test_unknown_serial_message_in_place(signed_in, business) -> None:
    response = signed_in.post("/capture/open", data={"serial": "T9999999999"}, headers=HX)
    assert response.status_code == 404
    assert "未找到流水号为 T9999999999 的业务" in text(response)
    assert "<html" not in text(response)  # a fragment for the feedback element
    assert audit("capture.business_opened", "failure")[0].object_id == "T9999999999"
    full = signed_in.post("/capture/open", data={"serial": "T9999999999"})
    assert full.status_code == 404 and 'id="serial-input"' in text(full)


def test_business_of_another_office_never_shows_its_data(signed_in, factory, org) -> None:
    other = factory.business(org.office_b, type_code="LOCK", owner_name="赵六", plate_number="沪C99999")
    response = signed_in.post("/capture/open", data={"serial": other.serial}, headers=HX)
    assert response.status_code == 403
    body = text(response)
    assert "该业务不属于本登记点" in body and "赵六" not in body and "沪C99999" not in body
    assert signed_in.get(url(other)).status_code == 404
    assert "赵六" not in text(signed_in.get(url(other)))
    assert audit("capture.business_opened", "denied")


def test_workspace_shows_the_checklist_masked_data_and_agent_state(signed_in, business, agent) -> None:
    response = signed_in.get(url(business))
    assert response.status_code == 200
    body = text(response)
    assert "所有人身份证明" in body and "锁定/解锁申请书" in body and "必需" in body
    assert "310***********1234" in body and "310115199001011234" not in body
    assert "138****5678" in body and "13812345678" not in body
    assert "扫描终端在线" in body and "1号窗口" in body
    fragment = signed_in.get(url(business) + f"?material={material('LOCK_REQUEST').id}", headers=WS)
    assert fragment.status_code == 200 and "<html" not in text(fragment)
    assert '<h2>锁定/解锁申请书' in text(fragment)


def test_agent_offline_state_and_scan_refused(signed_in, business, agent) -> None:
    db.session.scalar(select(Agent)).last_heartbeat_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert "扫描终端离线" in text(signed_in.get(url(business)))
    response = start_scan(signed_in, business, window=business.department.windows[0].id)
    assert response.status_code == 409
    assert "扫描终端离线" in text(response) and 'id="workspace"' in text(response)
    assert db.session.scalar(select(func.count()).select_from(ScanJob)) == 0


# Scanning, polling, confirming -------------------------------------------------------------------

def test_scan_poll_and_confirm(signed_in, business, agent, org) -> None:
    response = start_scan(signed_in, business, window=org.window_a.id)
    assert response.status_code == 200
    job = db.session.scalar(select(ScanJob))
    assert job.requested_by_id is not None and f'id="job-{job.id}"' in text(response)
    assert "等待扫描终端接收任务" in text(response) and 'hx-trigger="every 1s"' in text(response)
    box = url(business, "jobs", job.id, "box")

    unchanged = signed_in.get(f"{box}?key=pending.0.1", headers=POLL)
    assert unchanged.status_code == 204  # nothing new: no swap
    early = signed_in.post(url(business, "jobs", job.id, "confirm"), headers=HX)
    assert early.status_code == 409 and "扫描尚未完成" in text(early)

    public_id = fulfil(agent, business, "ID_PROOF", 2, finish="", blank=(2,))["id"]
    running = signed_in.get(f"{box}?key=pending.0.1", headers=POLL)
    assert running.status_code == 200
    assert "正在扫描，已收到 2 页" in text(running) and text(running).count("<img") == 2
    assert "疑似空白页" in text(running)

    agent.report_job(public_id, "completed")
    ended = signed_in.get(f"{box}?key=running.2.1", headers=POLL)
    assert ended.status_code == 286  # htmx stops polling
    assert ended.headers["HX-Retarget"] == "#workspace" and 'id="workspace"' in text(ended)
    assert "扫描完成，共 2 页" in text(ended) and "every 1s" not in text(ended)

    confirmed = signed_in.post(url(business, "jobs", job.id, "confirm"), headers=HX)
    assert confirmed.status_code == 200
    assert "已确认 2 页" in text(confirmed) and "部分采集" in text(confirmed)
    assert [p.status for p in pages_of(business, "ID_PROOF")] == [PageStatus.CONFIRMED] * 2
    again = signed_in.post(url(business, "jobs", job.id, "confirm"), headers=HX)
    assert again.status_code == 409 and "没有待确认的页面" in text(again)


def test_cancel_and_retry_through_the_screen(signed_in, business, agent, org) -> None:
    start_scan(signed_in, business, window=org.window_a.id)
    job = db.session.scalar(select(ScanJob))
    response = signed_in.post(url(business, "jobs", job.id, "cancel"), headers=HX)
    assert response.status_code == 200 and "已取消" in text(response) and "重新扫描" in text(response)
    response = signed_in.post(url(business, "jobs", job.id, "retry"), data={"window": org.window_a.id}, headers=HX)
    assert response.status_code == 200
    states = db.session.scalars(select(ScanJob.state).order_by(ScanJob.id)).all()
    assert states == [JobState.CANCELLED, JobState.PENDING]
    assert len(audit("capture.scan_cancelled")) == 1


def test_bad_material_ids(signed_in, business, agent, org) -> None:
    response = start_scan(signed_in, business, "PURCHASE_INVOICE", window=org.window_a.id)
    assert response.status_code == 422 and "不在“锁定/解锁”的材料目录中" in text(response)
    response = signed_in.post(url(business, "materials", 999_999, "scan"), headers=HX)
    assert response.status_code == 404


def test_page_actions_and_foreign_ids(signed_in, factory, org, business, clerk) -> None:
    job = upload(business, clerk, "ID_PROOF", jpegs(2))
    other = upload(business, clerk, "LOCK_REQUEST", jpegs(1))
    first, second = services.job_staged_pages(job)
    page_url = url(business, "jobs", job.id, "pages")
    rotated = signed_in.post(f"{page_url}/{first.id}/rotate", data={"degrees": "90"}, headers=HX)
    assert rotated.status_code == 200 and f'id="job-{job.id}"' in text(rotated) and "r=90" in text(rotated)
    moved = signed_in.post(f"{page_url}/{second.id}/move", data={"step": "-1"}, headers=HX)
    assert moved.status_code == 200
    assert [p.id for p in services.job_staged_pages(job)] == [second.id, first.id]
    assert signed_in.post(f"{page_url}/{first.id}/discard", headers=HX).status_code == 200
    db.session.expire_all()
    assert db.session.get(CapturedPage, first.id).status == PageStatus.DISCARDED
    # A page of another job, a job of another business: 404.
    foreign_page = services.job_staged_pages(other)[0]
    assert signed_in.post(f"{page_url}/{foreign_page.id}/rotate", data={"degrees": "90"}, headers=HX).status_code \
        == 404
    elsewhere = factory.business(org.office_a, type_code="LOCK")
    assert signed_in.post(url(elsewhere, "jobs", job.id, "confirm"), headers=HX).status_code == 404
    assert signed_in.get(url(elsewhere, "pages", second.id, "image")).status_code == 404
    # Stale: the page was discarded by someone else meanwhile.
    stale = signed_in.post(f"{page_url}/{first.id}/rotate", data={"degrees": "90"}, headers=HX)
    assert stale.status_code == 409 and "已被确认或删除" in text(stale)
    assert signed_in.post(f"{page_url}/{second.id}/rotate", data={"degrees": "33"}, headers=HX).status_code == 400


def test_page_image_is_watermarked_and_never_cached(signed_in, business, clerk) -> None:
    job = upload(business, clerk, "ID_PROOF", jpegs(1))
    page = services.job_staged_pages(job)[0]
    thumb = signed_in.get(url(business, "pages", page.id, "image"))
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert thumb.headers["Cache-Control"] == "private, no-store"
    with Image.open(io.BytesIO(thumb.data)) as image:
        assert max(image.size) <= 340
    display = signed_in.get(url(business, "pages", page.id, "image") + "?size=display")
    with Image.open(io.BytesIO(display.data)) as image:
        assert max(image.size) > 340
    assert audit("capture.page_viewed")[0].object_id == str(page.id)


def test_browser_upload_through_the_screen(signed_in, business, org) -> None:
    files = [(io.BytesIO(page_image("a")), "a.jpg"), (io.BytesIO(page_image("b")), "b.jpg")]
    response = signed_in.post(url(business, "materials", material("ID_PROOF").id, "upload"),
                              data={"window": org.window_a.id, "files": files},
                              content_type="multipart/form-data", headers=HX)
    assert response.status_code == 200
    assert "已上传 2 页" in text(response) and "浏览器上传 2 页" in text(response)
    job = db.session.scalar(select(ScanJob))
    assert job.state == JobState.COMPLETED and job.agent_id is None
    bad = signed_in.post(url(business, "materials", material("ID_PROOF").id, "upload"),
                         data={"window": org.window_a.id, "files": [(io.BytesIO(b"%PDF-1.4"), "scan.pdf")]},
                         content_type="multipart/form-data", headers=HX)
    assert bad.status_code == 422 and "scan.pdf" in text(bad) and "JPEG、PNG、TIFF" in text(bad)
    assert db.session.scalar(select(func.count()).select_from(ScanJob)) == 1


def test_upload_over_the_request_limit_is_a_message(app, signed_in, business, org) -> None:
    settings = app.config["SETTINGS"]
    app.config["SETTINGS"] = settings.replace(max_upload_bytes=2000)
    app.config["MAX_CONTENT_LENGTH"] = 4000
    try:
        response = signed_in.post(url(business, "materials", material("ID_PROOF").id, "upload"),
                                  data={"window": org.window_a.id, "files": [(io.BytesIO(page_image("x")), "x.jpg")]},
                                  content_type="multipart/form-data", headers=HX)
    finally:
        app.config["SETTINGS"] = settings
    assert response.status_code == 413 and "超过限制" in text(response) and 'id="workspace"' in text(response)


def test_supervisor_supplements_but_does_not_capture(app, factory, org, business, clerk, agent) -> None:
    supervisor = signed_in_as(app, factory.user("supervisor", org.det1))
    initial = start_scan(supervisor, business, window=org.window_a.id)
    assert initial.status_code == 403 and "没有权限" in text(initial)
    upload_attempt = supervisor.post(url(business, "materials", material("ID_PROOF").id, "upload"), headers=HX)
    assert upload_attempt.status_code == 403  # no browser-upload right
    no_reason = start_scan(supervisor, business, window=org.window_a.id, kind="supplemental")
    assert no_reason.status_code == 422 and "补充采集须选择原因" in text(no_reason)
    ok = start_scan(supervisor, business, window=org.window_a.id, kind="supplemental", reason="missing_page")
    assert ok.status_code == 200
    job = db.session.scalar(select(ScanJob))
    assert (job.kind.value, job.reason.value, job.mode.value) == ("supplemental", "missing_page", "append")


def test_replace_page_through_the_screen(signed_in, business, clerk) -> None:
    confirm_job = upload(business, clerk, "ID_PROOF", jpegs(1))
    services.confirm_job(confirm_job, Actor.of_user(clerk))
    db.session.commit()
    old = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)[0]
    form = signed_in.get(url(business) + f"?material={material('ID_PROOF').id}&replace={old.id}", headers=WS)
    assert "替换第 1 页" in text(form)
    response = signed_in.post(url(business, "materials", material("ID_PROOF").id, "upload"),
                              data={"window": clerk.window_id, "kind": "supplemental", "mode": "replace_page",
                                    "replaces": old.id, "reason": "wrong_page",
                                    "files": [(io.BytesIO(page_image("new")), "new.jpg")]},
                              content_type="multipart/form-data", headers=HX)
    assert response.status_code == 200 and "确认替换" in text(response)
    job = db.session.scalars(select(ScanJob).order_by(ScanJob.id.desc())).first()
    confirmed = signed_in.post(url(business, "jobs", job.id, "confirm"), headers=HX)
    assert confirmed.status_code == 200 and "保留为历史版本" in text(confirmed)
    body = text(confirmed)
    assert "版本历史" in body and "已被替换" in body and "第 2 版" in body and "页面错误" in body


def test_choosing_a_window_of_the_office(signed_in, business, org) -> None:
    second = create_window(department=org.office_a, code="W2", name="2号窗口")
    db.session.commit()
    response = signed_in.post(url(business, "window"), data={"window": org.window_b.id}, headers=HX)
    assert response.status_code == 422 and "不属于本登记点" in text(response)
    response = signed_in.post(url(business, "window"), data={"window": second.id}, headers=HX)
    assert response.status_code == 200
    assert f'<option value="{second.id}" selected>' in text(response)
    assert "未登记扫描终端" in text(response)  # window 2 has no agent


def test_non_htmx_actions_redirect_back(signed_in, business, clerk) -> None:
    job = upload(business, clerk, "ID_PROOF", jpegs(1))
    response = signed_in.post(url(business, "jobs", job.id, "confirm"))
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/capture/business/{business.id}?material={job.material_id}")


@pytest.mark.parametrize("path", ["jobs/999999/box", "jobs/999999/cancel", "pages/999999/image"])
def test_unknown_ids_are_404(signed_in, business, path) -> None:
    method = signed_in.post if path.endswith("cancel") else signed_in.get
    assert method(url(business, path), headers=HX).status_code == 404


def test_recent_businesses_on_the_start_page(signed_in, business, clerk, agent) -> None:
    services.request_capture(business=business, material=material("ID_PROOF"), window=clerk.window,
                             actor=Actor.of_user(clerk))
    db.session.commit()
    body = text(signed_in.get("/capture/"))
    assert "最近采集的业务" in body and business.serial in body


def test_a_scan_of_another_material_is_watched_until_it_ends(signed_in, business, agent, org) -> None:
    start_scan(signed_in, business, "LOCK_REQUEST", window=org.window_a.id)
    job = db.session.scalar(select(ScanJob))
    elsewhere = signed_in.get(url(business) + f"?material={material('ID_PROOF').id}", headers=WS)
    assert f"/jobs/{job.id}/box?watch=1" in text(elsewhere)
    assert "本窗口正在扫描" in text(elsewhere)  # one scan per window: the scan button waits
    watch = f"{url(business, 'jobs', job.id, 'box')}?watch=1"
    fulfil(agent, business, "LOCK_REQUEST", 1, finish="")
    assert signed_in.get(watch, headers=POLL).status_code == 204  # pages arrive: still only waiting
    agent.report_job(job.public_id, "completed")
    ended = signed_in.get(watch, headers=POLL)
    assert ended.status_code == 286 and ended.headers["HX-Reswap"] == "outerHTML"
    assert "<h2>锁定/解锁申请书" in text(ended) and "扫描完成，共 1 页" in text(ended)


def test_a_barcode_batch_is_staged_like_any_job(signed_in, business, agent) -> None:
    """Pages the agent scanned without a job (associated by a cover-sheet barcode) land in a batch
    job that the clerk checks and confirms on the same screen."""
    import uuid

    from scanner_agent.portal_client import PageToUpload, now_iso

    for number in (1, 2):
        agent.upload_page(PageToUpload(
            upload_uuid=str(uuid.uuid4()), business_serial=business.serial, material_code="ID_PROOF", job_id=None,
            page_number=number, sequence=number, image=page_image(f"batch {number}"), image_format="jpeg",
            captured_at=now_iso()))
    job = db.session.scalar(select(ScanJob))
    assert job.requested_by_id is None
    body = text(signed_in.get(url(business)))
    assert "条码批量扫描" in body and f'id="job-{job.id}"' in body and "确认本材料（2 页）" in body
    assert signed_in.post(url(business, "jobs", job.id, "confirm"), headers=HX).status_code == 200
    assert len(pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)) == 2
