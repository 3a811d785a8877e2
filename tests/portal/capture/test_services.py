"""Capture services: opening a business, starting scans and browser uploads, the staging area,
confirmation with completeness, supplemental capture with versions, and bad input."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

from portal.agents.models import Agent
from portal.audit.models import AuditEntry
from portal.audit.services import Actor, write_pending
from portal.capture import services
from portal.capture.models import (
    CapturedPage,
    CaptureKind,
    JobState,
    PageSource,
    PageStatus,
    ScanJob,
    SupplementMode,
    SupplementReason,
)
from portal.capture.services import CaptureError, UploadedFile
from portal.db import db, utcnow
from portal.registry.models import Business, CaptureState
from portal.scoping import scope_for
from tests.portal.agents.conftest import page_image
from tests.portal.capture.conftest import fulfil, job_by_public_id, material, pages_of, scan_and_fulfil

LIMIT = 25 * 1024 * 1024


def actions(name: str) -> list[AuditEntry]:
    write_pending()  # entries are appended at commit; these tests read them before committing
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == name).order_by(AuditEntry.seq)))


def png(size: tuple[int, int] = (300, 400)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, 200).save(buffer, "PNG")
    return buffer.getvalue()


def tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (300, 400), 180).save(buffer, "TIFF")
    return buffer.getvalue()


def upload(business, user, code: str, files: list[UploadedFile], **kwargs) -> ScanJob:  # type: ignore[no-untyped-def]
    kwargs.setdefault("max_bytes", LIMIT)
    kwargs.setdefault("max_pixels", 60_000_000)
    job = services.browser_upload(business=business, material=material(code), window=user.window,
                                  actor=Actor.of_user(user), files=files, **kwargs)
    db.session.commit()
    return job


def jpegs(n: int) -> list[UploadedFile]:
    return [UploadedFile(f"page{i}.jpg", page_image(f"upload {i}")) for i in range(1, n + 1)]


def confirm(job: ScanJob, user) -> services.Confirmation:  # type: ignore[no-untyped-def]
    result = services.confirm_job(job, Actor.of_user(user))
    db.session.commit()
    return result


def error_of(call, *args, **kwargs) -> CaptureError:  # type: ignore[no-untyped-def]
    with pytest.raises(CaptureError) as info:
        call(*args, **kwargs)
    db.session.rollback()
    return info.value


# Opening a business -------------------------------------------------------------------------------

def test_open_business_by_serial_within_scope_normalises_reader_input(business, clerk) -> None:
    scope = scope_for(clerk)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in business.serial)  # as typed with a Chinese IME
    for typed in (business.serial, f"  {business.serial}\r\n", full_width):
        found, fetched = services.open_business(scope, typed)
        assert (found.id, fetched) == (business.id, False)


def test_unknown_and_malformed_serials_get_clear_messages(business, clerk) -> None:
    scope = scope_for(clerk)
    unknown = error_of(services.open_business, scope, "NOPE0000001")
    assert (unknown.code, unknown.status) == ("unknown_serial", 404)
    assert "NOPE0000001" in unknown.message_zh and "未找到" in unknown.message_zh
    assert error_of(services.open_business, scope, "  ").code == "serial_required"
    assert error_of(services.open_business, scope, "12<script>").code == "bad_serial"


def test_business_of_another_office_is_refused(factory, org, clerk) -> None:
    other = factory.business(org.office_b, type_code="LOCK")
    exc = error_of(services.open_business, scope_for(clerk), other.serial)
    assert (exc.code, exc.status, exc.message_zh) == ("business_out_of_scope", 403, "该业务不属于本登记点。")
    supervisor = factory.user("supervisor", org.det1)  # det1 contains offices A and B
    assert services.open_business(scope_for(supervisor), other.serial)[0].id == other.id


def _fake_registry(monkeypatch, fetch) -> None:  # type: ignore[no-untyped-def]
    """Stand in for the registration system at the registry service's on-demand fetch."""
    import portal.registry.services

    monkeypatch.setattr(portal.registry.services, "fetch_business", fetch)


def test_on_demand_fetch_brings_a_business_not_synced_yet(monkeypatch, factory, org, clerk) -> None:
    asked: list[str] = []

    def fetch(serial: str) -> Business:
        asked.append(serial)
        from portal.registry.records import BusinessRecord
        from portal.registry.services import apply_record, find_business

        return find_business(serial) or apply_record(BusinessRecord(
            serial=serial, business_type_code="LOCK", department_code="OA", accepted_at=utcnow(),
            owner_name="王五"))[1]

    _fake_registry(monkeypatch, fetch)
    business, fetched = services.open_business(scope_for(clerk), "NEW0000000042")
    assert fetched and business.serial == "NEW0000000042" and asked == ["NEW0000000042"]
    db.session.commit()
    again, fetched_again = services.open_business(scope_for(clerk), "NEW0000000042")
    assert again == business and not fetched_again


def test_on_demand_fetch_not_found_failing_or_quarantined(monkeypatch, clerk) -> None:
    from portal.registry.services import BusinessQuarantined, RegistrySourceError

    _fake_registry(monkeypatch, lambda serial: None)
    assert error_of(services.open_business, scope_for(clerk), "X1").code == "unknown_serial"

    def down(serial: str) -> None:
        raise RegistrySourceError("登记系统暂时无法访问，请稍后重试。")

    _fake_registry(monkeypatch, down)
    exc = error_of(services.open_business, scope_for(clerk), "X2")
    assert exc.code == "registry_unavailable" and "登记系统" in exc.message_zh

    def quarantined(serial: str) -> None:
        raise BusinessQuarantined(f"业务 {serial} 的业务类型未知，已转交系统管理员处理，暂时无法采集。")

    _fake_registry(monkeypatch, quarantined)
    exc = error_of(services.open_business, scope_for(clerk), "X3")
    assert exc.code == "business_quarantined" and "系统管理员" in exc.message_zh


# Starting scans ----------------------------------------------------------------------------------

def test_scan_uses_the_material_settings_of_the_dictionary(business, clerk, agent) -> None:
    id_proof = material("ID_PROOF")
    id_proof.dpi = 300
    db.session.commit()
    job = services.request_capture(business=business, material=id_proof, window=clerk.window,
                                   actor=Actor.of_user(clerk))
    db.session.commit()
    claimed = agent.next_job(wait=0)
    assert claimed["id"] == job.public_id
    assert claimed["options"]["dpi"] == 300 and claimed["options"]["color_mode"] == id_proof.color_mode.value
    assert actions("capture.scan_started")[-1].object_id == job.public_id


def test_scan_for_an_offline_agent_is_refused(business, clerk, agent) -> None:
    db.session.scalar(select(Agent)).last_heartbeat_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    exc = error_of(services.request_capture, business=business, material=material("ID_PROOF"),
                   window=clerk.window, actor=Actor.of_user(clerk))
    assert (exc.code, exc.status) == ("agent_offline", 409)
    assert "离线" in exc.message_zh
    assert db.session.scalar(select(func.count()).select_from(ScanJob)) == 0


def test_material_the_type_does_not_have_is_refused(business, clerk, agent) -> None:
    exc = error_of(services.request_capture, business=business, material=material("PURCHASE_INVOICE"),
                   window=clerk.window, actor=Actor.of_user(clerk))
    assert exc.code == "material_not_in_checklist" and "购车发票" in exc.message_zh
    exc = error_of(upload, business, clerk, "PURCHASE_INVOICE", jpegs(1))
    assert exc.code == "material_not_in_checklist"
    assert error_of(services.checklist_material, business, 999_999).status == 404


def test_supplemental_capture_needs_a_reason(business, clerk, agent) -> None:
    confirm(upload(business, clerk, "ID_PROOF", jpegs(1)), clerk)
    base = {"business": business, "material": material("ID_PROOF"), "window": clerk.window,
            "actor": Actor.of_user(clerk), "kind": CaptureKind.SUPPLEMENTAL}
    assert error_of(services.request_capture, **base).code == "reason_required"
    exc = error_of(services.request_capture, **base, reason=SupplementReason.OTHER, reason_text="  ")
    assert exc.code == "reason_required" and "其他" in exc.message_zh
    job = services.request_capture(**base, reason=SupplementReason.OTHER, reason_text="原件背面有签字")
    assert (job.kind, job.reason_text) == (CaptureKind.SUPPLEMENTAL, "原件背面有签字")
    assert actions("capture.supplement_requested")[-1].reason == "原件背面有签字"


def test_a_complete_business_changes_only_by_supplemental_capture(business, clerk, agent) -> None:
    for code in ("ID_PROOF", "LOCK_REQUEST"):
        confirm(upload(business, clerk, code, jpegs(1)), clerk)
    assert db.session.get(Business, business.id).capture_state == CaptureState.COMPLETE
    exc = error_of(services.request_capture, business=business, material=material("ID_PROOF"),
                   window=clerk.window, actor=Actor.of_user(clerk))
    assert (exc.code, exc.status) == ("supplement_required", 409) and "补充采集" in exc.message_zh
    exc = error_of(upload, business, clerk, "ID_PROOF", jpegs(1))
    assert exc.code == "supplement_required"
    job = upload(business, clerk, "ID_PROOF", jpegs(1), kind=CaptureKind.SUPPLEMENTAL,
                 reason=SupplementReason.MISSING_PAGE)
    assert confirm(job, clerk).confirmed[0].position == 2


def test_cancel_then_retry_queues_the_same_scan(business, clerk, agent) -> None:
    job = services.request_capture(business=business, material=material("ID_PROOF"), window=clerk.window,
                                   actor=Actor.of_user(clerk))
    services.cancel_job(job, Actor.of_user(clerk))
    db.session.commit()
    assert job.state == JobState.CANCELLED
    again = services.retry_job(business, job, clerk.window, Actor.of_user(clerk))
    db.session.commit()
    assert again.id != job.id and again.state == JobState.PENDING and again.material_id == job.material_id
    # Retry of a running job cancels it first (one scan per window).
    third = services.retry_job(business, again, clerk.window, Actor.of_user(clerk))
    db.session.commit()
    assert again.state == JobState.CANCELLED and third.state == JobState.PENDING
    browser_job = upload(business, clerk, "LOCK_REQUEST", jpegs(1))
    assert error_of(services.retry_job, business, browser_job, clerk.window, Actor.of_user(clerk)).code == \
        "cannot_retry"


def test_failed_scan_shows_the_agents_message_and_keeps_the_pages(business, clerk, agent) -> None:
    job = services.request_capture(business=business, material=material("ID_PROOF"), window=clerk.window,
                                   actor=Actor.of_user(clerk))
    db.session.commit()
    fulfil(agent, business, "ID_PROOF", 1, finish="failed", error_code="paper_jam",
           error_message="扫描仪卡纸，请取出卡住的纸张，并从未成功扫描的页面起重新扫描。")
    view = services.job_view(job_by_public_id(job.public_id))
    assert view.tone == "danger" and view.title.startswith("扫描仪卡纸")
    assert view.detail.startswith("扫描仪卡纸，请取出")
    assert view.confirmable and len(view.pages) == 1  # the page that made it can be confirmed
    assert services.open_jobs(business, material("ID_PROOF")) == [view.job]


def test_job_states_are_described_for_the_clerk(business, clerk, agent) -> None:
    job = services.request_capture(business=business, material=material("ID_PROOF"), window=clerk.window,
                                   actor=Actor.of_user(clerk))
    db.session.commit()
    assert services.job_view(job).title == "等待扫描终端接收任务"
    db.session.scalar(select(Agent)).last_heartbeat_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    offline = services.job_view(job)
    assert (offline.title, offline.tone) == ("扫描终端离线", "danger")
    fulfil(agent, business, "ID_PROOF", 2, finish="")  # the heartbeat-less agent still uploads
    running = services.job_view(job_by_public_id(job.public_id))
    assert running.title == "正在扫描，已收到 2 页" and running.active and not running.confirmable


# Staging -----------------------------------------------------------------------------------------

def test_rotate_reorder_discard_then_confirm(business, clerk, agent) -> None:
    job = scan_and_fulfil(agent, business, clerk, "ID_PROOF", pages=4)
    actor = Actor.of_user(clerk)
    p1, p2, p3, p4 = services.job_staged_pages(job)
    services.rotate_page(job, p2.id, 90, actor)
    services.rotate_page(job, p2.id, 90, actor)
    services.rotate_page(job, p1.id, -90, actor)
    services.move_page(job, p3.id, -1, actor)  # 1 3 2 4
    services.move_page(job, p1.id, -1, actor)  # already first: unchanged
    services.discard_page(job, p4.id, actor)
    db.session.commit()
    assert [p.id for p in services.job_staged_pages(job)] == [p1.id, p3.id, p2.id]
    assert (db.session.get(CapturedPage, p2.id).rotation, db.session.get(CapturedPage, p1.id).rotation) == (180, 270)
    result = confirm(job, clerk)
    assert [(p.id, p.position) for p in result.confirmed] == [(p1.id, 1), (p3.id, 2), (p2.id, 3)]
    discarded = db.session.get(CapturedPage, p4.id)
    assert discarded.status == PageStatus.DISCARDED  # kept for the audit trail, never in the archive
    assert len(actions("capture.page_rotated")) == 3 and len(actions("capture.page_moved")) == 2
    assert actions("capture.page_discarded")[0].object_id == str(p4.id)
    assert len(actions("capture.confirmed")) == 1
    with pytest.raises(CaptureError):
        services.rotate_page(job, p1.id, 45, actor)


def test_stale_edits_and_foreign_ids(factory, org, business, clerk, agent) -> None:
    job = upload(business, clerk, "ID_PROOF", jpegs(2))
    other_job = upload(business, clerk, "LOCK_REQUEST", jpegs(1))
    page, _ = services.job_staged_pages(job)
    foreign = services.job_staged_pages(other_job)[0]
    actor = Actor.of_user(clerk)
    assert error_of(services.rotate_page, job, foreign.id, 90, actor).status == 404  # page of another job
    assert error_of(services.discard_page, job, 999_999, actor).status == 404
    other_business = factory.business(org.office_a, type_code="LOCK")
    assert error_of(services.job_of, other_business, job.id).status == 404
    assert error_of(services.business_page, other_business, page.id).status == 404
    confirm(job, clerk)  # someone confirms meanwhile
    for call, args in ((services.rotate_page, (90,)), (services.move_page, (1,)), (services.discard_page, ())):
        exc = error_of(call, job, page.id, *args, actor)
        assert (exc.code, exc.status) == ("stale", 409) and "请刷新" in exc.message_zh
    exc = error_of(services.confirm_job, job, actor)
    assert exc.code == "nothing_to_confirm"


def test_confirm_is_refused_while_the_scan_runs(business, clerk, agent) -> None:
    job = services.request_capture(business=business, material=material("ID_PROOF"), window=clerk.window,
                                   actor=Actor.of_user(clerk))
    db.session.commit()
    exc = error_of(services.confirm_job, job, Actor.of_user(clerk))
    assert (exc.code, exc.status) == ("job_not_finished", 409) and exc.message_zh.startswith("扫描尚未完成")
    fulfil(agent, business, "ID_PROOF", 2, finish="")  # pages arrived, the agent has not reported the end
    exc = error_of(services.confirm_job, job_by_public_id(job.public_id), Actor.of_user(clerk))
    assert exc.code == "job_not_finished"
    assert pages_of(business, "ID_PROOF", PageStatus.CONFIRMED) == []


def test_confirm_appends_and_recomputes_completeness(business, clerk, agent) -> None:
    first = scan_and_fulfil(agent, business, clerk, "ID_PROOF", pages=2)
    result = confirm(first, clerk)
    assert result.state == CaptureState.PARTIAL
    assert [p.position for p in result.confirmed] == [1, 2]
    assert all(p.confirmed_by_id == clerk.id and p.version == 1 for p in result.confirmed)
    second = scan_and_fulfil(agent, business, clerk, "ID_PROOF", pages=2)  # not complete yet: initial capture
    assert [p.position for p in confirm(second, clerk).confirmed] == [3, 4]
    stored = db.session.get(Business, business.id)
    assert (stored.required_captured, stored.page_count, stored.completed_at) == (1, 4, None)
    confirm(scan_and_fulfil(agent, business, clerk, "LOCK_REQUEST", pages=1), clerk)
    db.session.expire_all()
    stored = db.session.get(Business, business.id)
    assert stored.capture_state == CaptureState.COMPLETE
    assert (stored.required_captured, stored.required_count, stored.page_count) == (2, 2, 5)
    assert stored.completed_at is not None
    entry = actions("capture.confirmed")[-1]
    assert entry.object_id == business.serial and '"state":"complete"' in entry.detail


def test_confirm_closes_the_warning_and_refreshes_the_statistics_at_once(business, clerk) -> None:
    from portal.stats.models import CaptureSummary
    from portal.warnings.models import WarningClosure
    from portal.warnings.services import evaluate_all, open_warning
    from tests.portal.warnings.test_evaluation import set_rule

    set_rule("LOCK")  # counted from acceptance
    evaluate_all()  # accepted weeks ago, nothing captured: warned
    warning = open_warning(business.id)
    assert warning is not None
    confirm(upload(business, clerk, "ID_PROOF", jpegs(2)), clerk)
    summary = db.session.get(CaptureSummary, business.id)
    assert (summary.pages, summary.complete, summary.window_id) == (2, False, clerk.window.id)
    assert open_warning(business.id) is not None  # partial: still warned
    confirm(upload(business, clerk, "LOCK_REQUEST", jpegs(1)), clerk)
    db.session.expire_all()
    assert open_warning(business.id) is None
    assert db.session.get(type(warning), warning.id).closure == WarningClosure.CAPTURED
    summary = db.session.get(CaptureSummary, business.id)
    stored = db.session.get(Business, business.id)
    assert (summary.pages, summary.complete, summary.business_version) == (3, True, stored.version)
    assert summary.delay_seconds == pytest.approx((stored.completed_at - stored.accepted_at).total_seconds(), abs=0.01)


# Supplemental capture: versions -------------------------------------------------------------------

def _supplement(business, clerk, code, n, mode, replaces=None, reason=SupplementReason.POOR_QUALITY):  # type: ignore[no-untyped-def]
    return upload(business, clerk, code, jpegs(n), kind=CaptureKind.SUPPLEMENTAL, mode=mode, replaces=replaces,
                  reason=reason)


def test_replace_one_page_keeps_every_version(business, clerk) -> None:
    confirm(upload(business, clerk, "ID_PROOF", jpegs(2)), clerk)
    v1, _ = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)
    result = confirm(_supplement(business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, v1), clerk)
    v2 = result.confirmed[0]
    assert (v2.position, v2.version, v2.supersedes_id, v2.kind) == (1, 2, v1.id, CaptureKind.SUPPLEMENTAL)
    assert v2.reason == SupplementReason.POOR_QUALITY and result.superseded == [v1]
    v3 = confirm(_supplement(business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, v2,
                             SupplementReason.WRONG_PAGE), clerk).confirmed[0]
    assert (v3.version, v3.supersedes_id) == (3, v2.id)
    current = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)
    assert [(p.position, p.version) for p in current] == [(1, 3), (2, 1)]
    history = services.material_history(business, material("ID_PROOF"))
    assert [(r.page.position, r.page.version, r.page.status) for r in history] == [
        (1, 3, PageStatus.CONFIRMED), (1, 2, PageStatus.SUPERSEDED), (1, 1, PageStatus.SUPERSEDED),
        (2, 1, PageStatus.CONFIRMED)]
    assert history[0].source.startswith("浏览器上传") and history[0].captured_by == clerk.full_name
    stored = db.session.get(Business, business.id)
    assert stored.page_count == 2  # the archive counts current pages; old versions stay, not counted
    assert db.session.scalar(select(func.count()).select_from(CapturedPage)) == 4  # nothing deleted


def test_replace_page_needs_exactly_one_new_page(business, clerk) -> None:
    confirm(upload(business, clerk, "ID_PROOF", jpegs(1)), clerk)
    old = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)[0]
    job = _supplement(business, clerk, "ID_PROOF", 2, SupplementMode.REPLACE_PAGE, old)
    exc = error_of(services.confirm_job, job, Actor.of_user(clerk))
    assert exc.code == "one_page_only" and "1 页" in exc.message_zh
    services.discard_page(job, services.job_staged_pages(job)[1].id, Actor.of_user(clerk))
    db.session.commit()
    assert confirm(job, clerk).confirmed[0].supersedes_id == old.id


def test_replacing_a_page_someone_replaced_meanwhile_is_stale(business, clerk, factory, org) -> None:
    colleague = factory.user("clerk", org.office_a, window=org.window_a)
    confirm(upload(business, clerk, "ID_PROOF", jpegs(1)), clerk)
    old = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)[0]
    mine = _supplement(business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, old)
    theirs = _supplement(business, colleague, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, old)
    confirm(theirs, colleague)
    exc = error_of(services.confirm_job, mine, Actor.of_user(clerk))
    assert (exc.code, exc.status) == ("stale", 409) and "已被他人替换" in exc.message_zh
    exc = error_of(_supplement, business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, old)
    assert exc.code == "stale"


def test_replace_a_whole_material(business, clerk) -> None:
    confirm(upload(business, clerk, "ID_PROOF", jpegs(2)), clerk)
    old = pages_of(business, "ID_PROOF", PageStatus.CONFIRMED)
    result = confirm(_supplement(business, clerk, "ID_PROOF", 3, SupplementMode.REPLACE_MATERIAL), clerk)
    assert {p.id for p in result.superseded} == {p.id for p in old}
    assert [(p.position, p.version) for p in result.confirmed] == [(1, 2), (2, 2), (3, 2)]
    assert [p.supersedes_id for p in result.confirmed] == [old[0].id, old[1].id, None]
    assert all(p.status == PageStatus.SUPERSEDED for p in pages_of(business, "ID_PROOF", PageStatus.SUPERSEDED))
    assert len(pages_of(business, "ID_PROOF", PageStatus.SUPERSEDED)) == 2
    assert db.session.get(Business, business.id).page_count == 3


def test_replace_needs_something_to_replace(factory, org, business, clerk) -> None:
    exc = error_of(_supplement, business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_MATERIAL)
    assert exc.code == "nothing_to_replace"
    assert error_of(_supplement, business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE).code == "page_required"
    other = factory.business(org.office_a, type_code="LOCK")
    confirm(upload(other, clerk, "ID_PROOF", jpegs(1)), clerk)
    foreign = pages_of(other, "ID_PROOF", PageStatus.CONFIRMED)[0]
    exc = error_of(_supplement, business, clerk, "ID_PROOF", 1, SupplementMode.REPLACE_PAGE, foreign)
    assert exc.status == 404
    exc = error_of(upload, business, clerk, "ID_PROOF", jpegs(1), mode=SupplementMode.REPLACE_MATERIAL)
    assert exc.code == "supplement_required"  # replacing is never an initial capture


# Browser uploads ---------------------------------------------------------------------------------

def test_browser_upload_is_one_completed_job_per_batch(business, clerk) -> None:
    files = [UploadedFile("front.jpg", page_image("front")), UploadedFile("back.PNG", png()),
             UploadedFile("scan.tif", tiff())]
    job = upload(business, clerk, "ID_PROOF", files)
    assert (job.state, job.source, job.agent_id, job.pages_received) == (JobState.COMPLETED, PageSource.BROWSER,
                                                                         None, 3)
    pages = services.job_staged_pages(job)
    assert [p.media_type for p in pages] == ["image/jpeg", "image/png", "image/tiff"]
    assert [p.position for p in pages] == [1, 2, 3]
    assert all(p.source == PageSource.BROWSER and not p.signature_verified and p.window_id == clerk.window_id
               for p in pages)
    assert actions("capture.browser_upload")[0].object_id == job.public_id
    assert len(actions("capture.page_uploaded")) == 3
    assert len(confirm(job, clerk).confirmed) == 3


@pytest.mark.parametrize(("name", "data", "code"), [
    ("notes.txt", b"not an image at all", "format_not_allowed"),
    ("page.jpg", b"\xff\xd8\xff\xe0 truncated jpeg", "image_invalid"),
    ("page.jpg", None, "format_mismatch"),  # PNG bytes named .jpg
    ("anim.gif", b"GIF89a....", "format_not_allowed"),
    ("empty.png", b"", "empty_file"),
])
def test_browser_upload_rejects_bad_files_and_stores_nothing(business, clerk, name, data, code) -> None:
    files = [UploadedFile("good.jpg", page_image("good")), UploadedFile(name, png() if data is None else data)]
    exc = error_of(upload, business, clerk, "ID_PROOF", files)
    assert exc.code == code and name in exc.message_zh
    assert db.session.scalar(select(func.count()).select_from(CapturedPage)) == 0
    assert db.session.scalar(select(func.count()).select_from(ScanJob)) == 0


def test_browser_upload_limits(business, clerk) -> None:
    exc = error_of(upload, business, clerk, "ID_PROOF", jpegs(1), max_bytes=1000)
    assert (exc.code, exc.status) == ("too_large", 413)
    exc = error_of(upload, business, clerk, "ID_PROOF", [UploadedFile("big.png", png((2000, 2000)))],
                   max_pixels=1_000_000)
    assert exc.code == "image_too_many_pixels"
    assert error_of(upload, business, clerk, "ID_PROOF", []).code == "no_files"


# The screen --------------------------------------------------------------------------------------

def test_screen_selects_the_first_missing_required_material_and_lists_open_jobs(business, clerk, agent) -> None:
    screen = services.capture_screen(business, material_id=None, window=clerk.window, windows=[clerk.window])
    assert screen.selected.material.code == "ID_PROOF" and screen.window.online
    confirm(upload(business, clerk, "ID_PROOF", jpegs(1)), clerk)
    staged = upload(business, clerk, "LOCK_REQUEST", jpegs(2))
    screen = services.capture_screen(business, material_id=None, window=clerk.window, windows=[clerk.window])
    assert screen.selected.material.code == "LOCK_REQUEST"
    assert [j.job.id for j in screen.jobs] == [staged.id] and len(screen.jobs[0].pages) == 2
    done = services.capture_screen(business, material_id=material("ID_PROOF").id, window=clerk.window,
                                   windows=[clerk.window])
    assert done.jobs == [] and len(done.current) == 1  # a confirmed job is no longer "open"


def test_page_image_is_the_rotated_rendition_with_the_viewers_watermark(business, clerk) -> None:
    from portal.storage.models import ImageBlob
    from portal.storage.renditions import rendition

    job = upload(business, clerk, "ID_PROOF", jpegs(1))
    page = services.job_staged_pages(job)[0]
    plain = rendition(db.session.get(ImageBlob, page.blob_id), "thumb")
    marked, intact = services.page_image(page, "thumb", "测试 B00001 2026-11-23 10:00")
    assert intact and marked != plain
    with Image.open(io.BytesIO(marked)) as image:
        upright = image.size
    services.rotate_page(job, page.id, 90, Actor.of_user(clerk))
    turned, _ = services.page_image(page, "thumb", "测试 B00001 2026-11-23 10:00")
    with Image.open(io.BytesIO(turned)) as image:
        assert image.size == (upright[1], upright[0])


def test_page_image_of_a_damaged_blob_is_a_placeholder(app, business, clerk) -> None:
    from portal.storage.services import blob_store

    job = upload(business, clerk, "ID_PROOF", jpegs(1))
    page = services.job_staged_pages(job)[0]
    blob_store().put(page.content_sm3, b"GMB1 tampered")
    data, intact = services.page_image(page, "display", "x")
    assert not intact
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
