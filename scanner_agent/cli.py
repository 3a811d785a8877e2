"""`scanner-agent`: enroll, run, devices, scan, doctor, outbox, batch, verify-update."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gmcrypto.sm2 import PrivateKey, PublicKey
from scanner_agent import __version__
from scanner_agent.config import AgentConfig, ConfigError, default_data_dir
from scanner_agent.keystore import load_key, save_key

log = logging.getLogger("scanner_agent")


def _setup_logging(config: AgentConfig, to_file: bool = True) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if to_file:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            config.log_dir / "agent.log", maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8"))
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s", force=True)


def _client(config: AgentConfig, key: PrivateKey | None = None) -> Any:
    from scanner_agent.portal_client import PortalClient, requests_transport

    if not config.portal_url:
        raise SystemExit("not enrolled: run `scanner-agent enroll --portal URL --code CODE` first")
    verify: bool | str = config.ca_file or True
    portal_key = PublicKey.from_pem(config.portal_key_path.read_bytes()) if config.portal_key_path.exists() else None
    return PortalClient(requests_transport(config.portal_url, verify), key=key, portal_key=portal_key)


def _driver(config: AgentConfig) -> Any:
    from scanner_agent.drivers.isolation import IsolatedDriver

    return IsolatedDriver(config.driver, config.driver_options, page_timeout=config.page_timeout_seconds)


def _device(config: AgentConfig, driver: Any) -> str:
    if config.device:
        return config.device
    devices = driver.list_devices()
    if not devices:
        raise SystemExit(f"no scanner found by the {config.driver} driver")
    return devices[0].id


def cmd_enroll(args: argparse.Namespace, config: AgentConfig) -> int:
    from scanner_agent.portal_client import PortalRejected, PortalUnavailable

    if config.enrolment_path.exists() and not args.force:
        print(f"already enrolled ({config.enrolment_path}); use --force to enrol again with a new key")
        return 1
    config.portal_url = args.portal.rstrip("/")
    if args.driver:
        config.driver = args.driver
    if args.device is not None:
        config.device = args.device
    key = PrivateKey.generate()
    client = _client(config, key)
    try:
        result = client.enrol(args.code, hostname=platform.node(), version=__version__)
    except PortalRejected as exc:
        print(f"enrolment refused: {exc.code}: {exc.message}")
        return 2
    except PortalUnavailable as exc:
        print(f"portal unreachable: {exc}")
        return 3
    save_key(config.key_path, key)
    config.portal_key_path.write_text(result["portal_public_key_pem"], encoding="utf-8")
    config.enrolment_path.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    config.save()
    window = result["window"]
    print(f"enrolled as agent {result['agent_id']} for window {window['department']} {window['name']}")
    return 0


def cmd_run(args: argparse.Namespace, config: AgentConfig) -> int:
    from scanner_agent.outbox import Outbox
    from scanner_agent.runner import AgentRuntime

    _setup_logging(config)
    key = load_key(config.key_path)
    client = _client(config, key)
    driver = _driver(config)
    device = _device(config, driver)
    outbox = Outbox(config.outbox_dir)
    runtime = AgentRuntime(config, client, outbox, driver, device)
    log.info("agent %s starting: driver %s, device %s, portal %s", __version__, config.driver, device,
             config.portal_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runtime.start()
    if not args.headless:
        from scanner_agent.status_window import run_status_window

        if run_status_window(runtime, stop):
            runtime.shutdown()
            return 0
    while not stop.is_set():
        stop.wait(1.0)
    log.info("agent stopping")
    runtime.shutdown()
    outbox.close()
    return 0


def cmd_devices(args: argparse.Namespace, config: AgentConfig) -> int:
    driver = _driver(config)
    devices = driver.list_devices()
    if not devices:
        print(f"no scanner found by the {config.driver} driver")
        return 1
    for device in devices:
        print(f"{device.id}\t{device.vendor} {device.model}\t{device.kind}\tsources: {', '.join(device.sources)}")
        if args.verbose:
            print(json.dumps(driver.capabilities(device.id), ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_scan(args: argparse.Namespace, config: AgentConfig) -> int:
    from scanner_agent.drivers import ScannerError, ScanOptions
    from scanner_agent.imaging import encode_page, is_blank

    driver = _driver(config)
    device = _device(config, driver)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = ScanOptions(source=args.source or config.source, color_mode=args.mode, dpi=args.dpi)
    count = 0
    try:
        for page in driver.scan(device, options, threading.Event()):
            count += 1
            path = out / f"page-{count:03d}.jpg"
            path.write_bytes(encode_page(page.image, options.color_mode, options.dpi, config.jpeg_quality))
            print(f"{path}{'  (blank)' if is_blank(page.image) else ''}")
    except ScannerError as exc:
        print(f"scan stopped after {count} pages: {exc.code}: {exc}")
        return 2
    print(f"{count} pages written to {out}")
    return 0


def cmd_doctor(args: argparse.Namespace, config: AgentConfig) -> int:
    """Each check with a plain-language verdict; exit code = number of problems."""
    from scanner_agent.outbox import Outbox
    from scanner_agent.portal_client import PortalRejected, PortalUnavailable

    problems = 0

    def verdict(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += 0 if ok else 1
        print(f"[{'OK' if ok else 'PROBLEM'}] {what}: {detail}")

    try:
        devices = _driver(config).list_devices()
        verdict(bool(devices), "scanner", f"{len(devices)} found by the {config.driver} driver"
                if devices else f"no scanner found by the {config.driver} driver; check power and cable")
    except Exception as exc:
        verdict(False, "scanner", f"the {config.driver} driver failed: {exc}")
    key = None
    try:
        key = load_key(config.key_path)
        enrolment = json.loads(config.enrolment_path.read_text(encoding="utf-8"))
        verdict(enrolment.get("key_id") == key.public_key().key_id(), "key",
                "the local key matches the enrolment" if enrolment.get("key_id") == key.public_key().key_id()
                else "the local key does not match the enrolment; enrol again")
    except (OSError, ValueError) as exc:
        verdict(False, "key", f"cannot load the agent key: {exc}; run enroll")
    if key is not None and config.portal_url:
        try:
            started = time.time()
            answer = _client(config, key).heartbeat(scanner_state="doctor", version=__version__)
            skew = answer["server_time"] - (started + time.time()) / 2
            verdict(True, "portal", f"{config.portal_url} reachable")
            verdict(abs(skew) < 120, "clock", f"{skew:+.0f} s from the portal clock"
                    + ("" if abs(skew) < 120 else "; fix the PC's time, requests over 300 s off are refused"))
            verdict(True, "enrolment", "active")
        except PortalRejected as exc:
            verdict(exc.code != "agent_revoked", "enrolment", f"refused by the portal: {exc.code}: {exc.message}")
        except PortalUnavailable as exc:
            verdict(False, "portal", f"unreachable: {exc}")
    try:
        outbox = Outbox(config.outbox_dir, recover=False)
        stats = outbox.stats()
        outbox.close()
        failed = stats.get("failed", 0)
        verdict(failed == 0, "outbox", f"{stats.get('pending', 0)} pending, {failed} failed"
                + ("" if not failed else "; see `scanner-agent outbox`"))
    except Exception as exc:
        verdict(False, "outbox", f"cannot open: {exc}")
    return problems


def cmd_outbox(args: argparse.Namespace, config: AgentConfig) -> int:
    from scanner_agent.outbox import Outbox

    outbox = Outbox(config.outbox_dir, recover=False)
    if args.retry_failed:
        for page in outbox.failed():
            outbox.requeue(page.id)
        print("failed pages queued again")
    print(json.dumps(outbox.stats(), ensure_ascii=False))
    for page in outbox.pending() + outbox.failed():
        print(f"{page.sequence}\t{page.state}\t{page.business_serial}\t{page.material_code}\tp{page.page_number}"
              f"\t{page.error_code or ''} {page.error_message or page.last_error or ''}")
    outbox.close()
    return 0


def cmd_batch(args: argparse.Namespace, config: AgentConfig) -> int:
    """Scan a stack without a job: cover sheets / forms carrying the business serial as a QR or
    barcode split it; each group goes to the outbox for that business. Pages before the first
    code are kept in `unassigned/`, never dropped."""
    from scanner_agent.barcode import split_batch
    from scanner_agent.drivers import ScannerError, ScanOptions
    from scanner_agent.imaging import encode_page, is_blank
    from scanner_agent.outbox import Outbox
    from scanner_agent.portal_client import now_iso

    driver = _driver(config)
    options = ScanOptions(source=args.source or config.source, color_mode=args.mode, dpi=args.dpi)
    pages = []
    try:
        for page in driver.scan(_device(config, driver), options, threading.Event()):
            pages.append(page)
    except ScannerError as exc:
        print(f"scan stopped after {len(pages)} pages: {exc.code}: {exc}")
        if not pages:
            return 2
    outbox = Outbox(config.outbox_dir, recover=False)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for group in split_batch(pages):
        if group.serial is None:
            folder = config.data_dir / "unassigned" / stamp
            folder.mkdir(parents=True, exist_ok=True)
            for n, page in enumerate(group.pages, 1):
                (folder / f"page-{n:03d}.jpg").write_bytes(
                    encode_page(page.image, options.color_mode, options.dpi, config.jpeg_quality))
            print(f"{len(group.pages)} pages before the first barcode kept in {folder}")
            continue
        for page in group.pages:
            data = encode_page(page.image, options.color_mode, options.dpi, config.jpeg_quality)
            outbox.add(None, group.serial, args.material, None, data,
                       {"format": "jpeg", "captured_at": now_iso(), "blank": is_blank(page.image)})
        print(f"business {group.serial}: {len(group.pages)} pages queued for upload")
    outbox.close()
    return 0


def cmd_verify_update(args: argparse.Namespace, config: AgentConfig) -> int:
    from scanner_agent.updates import UpdateRejected, verify_update

    if not config.release_key_pem:
        print("no pinned release key (release_key_pem) in agent.toml")
        return 2
    try:
        info = verify_update(Path(args.package).read_bytes(), json.loads(Path(args.envelope).read_text()),
                             PublicKey.from_pem(config.release_key_pem), __version__)
    except UpdateRejected as exc:
        print(f"update rejected: {exc}")
        return 1
    print(f"update {info['version']} verified")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scanner-agent", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None, help=f"default: {default_data_dir()}")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("enroll", help="register this PC's agent with a one-time code")
    p.add_argument("--portal", required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--driver", choices=["sane", "twain", "folder", "demo"])
    p.add_argument("--device")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_enroll)
    p = sub.add_parser("run", help="run the agent")
    p.add_argument("--headless", action="store_true", help="no status window")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("devices", help="list scanners")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_devices)
    p = sub.add_parser("scan", help="one-off scan to a folder (diagnosis)")
    p.add_argument("--out", required=True)
    p.add_argument("--source")
    p.add_argument("--mode", default="gray", choices=["color", "gray", "bw"])
    p.add_argument("--dpi", type=int, default=200)
    p.set_defaults(func=cmd_scan)
    p = sub.add_parser("doctor", help="check scanner, portal, clock, key, enrolment and outbox")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("outbox", help="show pending and failed pages")
    p.add_argument("--retry-failed", action="store_true")
    p.set_defaults(func=cmd_outbox)
    p = sub.add_parser("batch", help="scan a stack split by barcode cover sheets (no job needed)")
    p.add_argument("--material", required=True, help="material code of the pages, e.g. APPLICATION")
    p.add_argument("--source")
    p.add_argument("--mode", default="gray", choices=["color", "gray", "bw"])
    p.add_argument("--dpi", type=int, default=200)
    p.set_defaults(func=cmd_batch)
    p = sub.add_parser("verify-update", help="check an update package against the pinned release key")
    p.add_argument("package")
    p.add_argument("envelope")
    p.set_defaults(func=cmd_verify_update)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = AgentConfig.load(args.data_dir)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(args, config))


if __name__ == "__main__":
    raise SystemExit(main())
