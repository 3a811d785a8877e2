"""The long-running agent: take jobs, scan, put every page in the outbox, upload, report.

Three loops on three threads share one outbox:
- jobs: long-poll the portal, scan a job's pages into the outbox, report the job's end once
  all its pages have left the outbox (so a clerk never confirms a half-uploaded material);
- uploader: send due pages, ack on success, mark failed on a permanent rejection, back off on
  a transient failure (portal down, network down);
- heartbeat: tell the portal the agent and scanner state.

A job in progress is remembered in `current_job.json`, so a restarted agent reports the end of
the job it was doing instead of leaving it "running" for ever.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner_agent import __version__
from scanner_agent.config import AgentConfig
from scanner_agent.drivers import ScannerDriver, ScannerError, ScanOptions
from scanner_agent.imaging import ImageLimitError, encode_page, is_blank
from scanner_agent.outbox import Outbox, OutboxPage
from scanner_agent.portal_client import PageToUpload, PortalClient, PortalRejected, PortalUnavailable, now_iso

log = logging.getLogger("scanner_agent")


@dataclass
class AgentState:
    """What the status window and `doctor` show."""

    portal_reachable: bool = False
    scanner_state: str = "idle"
    last_error: str = ""
    current_job: str | None = None
    pages_scanned: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class JobMemory:
    """The job in progress, on disk (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("job state file %s is corrupt; ignoring it", self.path)
            return None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class AgentRuntime:
    def __init__(self, config: AgentConfig, client: PortalClient, outbox: Outbox, driver: ScannerDriver,
                 device: str) -> None:
        self.config, self.client, self.outbox, self.driver, self.device = config, client, outbox, driver, device
        self.stop = threading.Event()
        self.wake_uploader = threading.Event()
        self.cancel_scan = threading.Event()
        self.state = AgentState()
        self.jobs = JobMemory(config.data_dir / "current_job.json")
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("uploader", self.uploader_loop), ("heartbeat", self.heartbeat_loop),
                             ("jobs", self.jobs_loop)):
            thread = threading.Thread(target=target, name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.cancel_scan.set()
        self.wake_uploader.set()
        for thread in self._threads:
            thread.join(timeout)

    # -- uploads -----------------------------------------------------------------------------
    def upload_once(self) -> bool:
        """Send one due page. Returns False when nothing was due."""
        page = self.outbox.next_due()
        if page is None:
            return False
        try:
            data = self.outbox.read_bytes(page)
        except Exception as exc:
            self.outbox.reject(page.id, "file_corrupt", f"local page file unreadable: {exc}")
            log.error("page %s: local file unreadable: %s", page.page_uuid, exc)
            return True
        try:
            answer = self.client.upload_page(self._to_upload(page, data))
        except PortalUnavailable as exc:
            self.state.portal_reachable = False
            self.outbox.mark_retry(page.id, str(exc))
            log.warning("page %s: portal unavailable, will retry: %s", page.page_uuid, exc)
            return True
        except PortalRejected as exc:
            self.state.portal_reachable = True
            self.outbox.reject(page.id, exc.code, exc.message_zh)
            log.error("page %s rejected by the portal: %s %s", page.page_uuid, exc.code, exc.message)
            if exc.code == "job_closed":
                self.cancel_scan.set()
            return True
        self.state.portal_reachable = True
        self.outbox.ack(page.id)
        log.info("page %s %s (portal page %s)", page.page_uuid, answer.get("status"), answer.get("page_id"))
        if answer.get("job_state") == "cancelled":
            self.cancel_scan.set()
        return True

    def _to_upload(self, page: OutboxPage, data: bytes) -> PageToUpload:
        meta = page.meta
        return PageToUpload(
            upload_uuid=page.page_uuid, business_serial=page.business_serial or "",
            material_code=page.material_code or "", job_id=page.job_id, page_number=page.page_number,
            sequence=page.sequence, image=data, image_format=meta.get("format", "jpeg"),
            captured_at=meta.get("captured_at", now_iso()), blank=bool(meta.get("blank")),
        )

    def uploader_loop(self) -> None:
        while not self.stop.is_set():
            try:
                if self.upload_once():
                    continue
            except Exception:
                log.exception("uploader error")
            due = self.outbox.next_due_at()
            delay = 5.0 if due is None else min(max(due - time.time(), 0.05), 5.0)
            self.wake_uploader.wait(delay)
            self.wake_uploader.clear()

    # -- heartbeat ---------------------------------------------------------------------------
    def heartbeat_once(self) -> dict[str, Any] | None:
        try:
            answer = self.client.heartbeat(
                scanner_model=self.state.extra.get("scanner_model", self.device),
                scanner_state=self.state.scanner_state, version=__version__,
                outbox_pending=self.outbox.stats().get("pending", 0),
            )
        except (PortalUnavailable, PortalRejected) as exc:
            self.state.portal_reachable = False
            self.state.last_error = str(exc)
            log.warning("heartbeat failed: %s", exc)
            return None
        self.state.portal_reachable = True
        return answer

    def heartbeat_loop(self) -> None:
        while not self.stop.is_set():
            self.heartbeat_once()
            self.stop.wait(self.config.heartbeat_seconds)

    # -- jobs --------------------------------------------------------------------------------
    def jobs_loop(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                if self.finish_remembered_job():
                    job = self.client.next_job(wait=self.config.poll_wait_seconds)
                    if job is not None:
                        self.run_job(job)
                else:
                    self.stop.wait(1.0)
                backoff = 1.0
            except PortalUnavailable as exc:
                self.state.portal_reachable = False
                log.warning("portal unavailable: %s (retry in %.0f s)", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except PortalRejected as exc:
                self.state.last_error = f"{exc.code}: {exc.message}"
                log.error("portal rejected the agent: %s", exc)
                self.stop.wait(30.0)
            except Exception:
                log.exception("job loop error")
                self.stop.wait(5.0)

    def finish_remembered_job(self) -> bool:
        """Report the end of a job whose pages have all left the outbox. True when none is left."""
        job = self.jobs.load()
        if job is None:
            return True
        if not job.get("scan_finished"):
            job.update(scan_finished=True, final_state="failed", error_code="agent_restarted",
                       error_message="扫描终端程序在扫描过程中重新启动，已扫描的页面已上传，请核对后补扫。")
            self.jobs.save(job)
        waiting = [p for p in self.outbox.pending() if p.job_id == job["id"]]
        if waiting:
            return False
        try:
            self.client.report_job(job["id"], job["final_state"], job.get("error_code", ""),
                                   job.get("error_message", ""))
        except PortalRejected as exc:
            log.warning("job %s end not accepted (%s); forgetting it", job["id"], exc.code)
        self.jobs.clear()
        self.state.current_job = None
        return True

    def run_job(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        options = job.get("options", {})
        self.cancel_scan.clear()
        self.jobs.save({"id": job_id, "scan_finished": False, "pages": 0})
        self.state.current_job, self.state.scanner_state, self.state.pages_scanned = job_id, "scanning", 0
        log.info("job %s: %s for business %s", job_id, job.get("material_code"), job.get("business_serial"))
        final, code, message = "completed", "", ""
        count = 0
        try:
            self.client.report_job(job_id, "running")
            scan_options = ScanOptions(source=options.get("source", self.config.source),
                                       color_mode=options.get("color_mode", "gray"),
                                       dpi=int(options.get("dpi", 200)))
            for page in self.driver.scan(self.device, scan_options, self.cancel_scan):
                data = encode_page(page.image, scan_options.color_mode, scan_options.dpi, self.config.jpeg_quality)
                count += 1
                self.outbox.add(job_id, job["business_serial"], job["material_code"], count, data,
                                {"format": "jpeg", "captured_at": now_iso(), "blank": is_blank(page.image)})
                self.jobs.save({"id": job_id, "scan_finished": False, "pages": count})
                self.state.pages_scanned = count
                self.wake_uploader.set()
            self.state.scanner_state = "ready"
        except ScannerError as exc:
            final, code, message = ("cancelled" if exc.code == "cancelled" else "failed"), exc.code, exc.user_message
            self.state.scanner_state = f"error:{exc.code}"
            log.warning("job %s: scanner error %s after %d pages: %s", job_id, exc.code, count, exc)
        except ImageLimitError as exc:
            final, code, message = "failed", exc.code, exc.user_message
            log.warning("job %s: %s", job_id, exc)
        self.jobs.save({"id": job_id, "scan_finished": True, "pages": count, "final_state": final,
                        "error_code": code, "error_message": message})
        self.wake_uploader.set()


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
