"""Upload ingest: pages per second and latency with several agents uploading at once.

Runs the real portal (`portal run`, waitress) in a subprocess on loopback and N in-process agent
clients (scanner_agent.portal_client over HTTP), each enrolled with its own SM2 key, uploading
signed, sealed A4 pages (150 dpi grayscale JPEG, distinct content per page).

    python bench/bench_ingest.py --agents 4 --pages 50 [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmcrypto.sm2 import PrivateKey
from scanner_agent.portal_client import PageToUpload, PortalClient, requests_transport


def page_jpeg(n: int, rng: random.Random) -> bytes:
    image = Image.new("L", (1240, 1754), 250)
    draw = ImageDraw.Draw(image)
    draw.text((100, 80), f"PAGE {n} {uuid.uuid4()}", fill=0)
    for y in range(200, 1650, 28):
        draw.line((100, y, 100 + rng.randrange(400, 1040), y), fill=rng.randrange(0, 90), width=3)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, dpi=(150, 150))
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--pages", type=int, default=50, help="pages per agent")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--threads", type=int, default=16, help="waitress threads")
    args = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    env = {**os.environ, "PORTAL_INSTANCE_DIR": str(instance), "PORTAL_PBKDF2_ITERATIONS": "1000"}
    if args.database_url:
        env["PORTAL_DATABASE_URL"] = args.database_url
    os.environ.update(env)
    from flask_migrate import upgrade

    from portal.agents.services import create_enrolment_code
    from portal.app import create_app
    from portal.audit.services import Actor
    from portal.db import db
    from portal.dictionary.seed import seed_dictionary
    from portal.org.models import DepartmentKind as K
    from portal.org.services import create_department, create_window
    from portal.registry.records import BusinessRecord
    from portal.registry.services import apply_record

    app = create_app()
    codes, serials = [], []
    with app.app_context():
        upgrade()
        seed_dictionary()
        hq = create_department(code="HQ", name="总队", kind=K.HEADQUARTERS, parent=None)
        det = create_department(code="D1", name="支队", kind=K.DETACHMENT, parent=hq)
        office = create_department(code="O1", name="登记点", kind=K.OFFICE, parent=det)
        for i in range(args.agents):
            window = create_window(department=office, code=f"W{i:02d}", name=f"{i}号窗口")
            codes.append(create_enrolment_code(window, Actor.system())[0])
            serial = f"B{i:06d}"
            apply_record(BusinessRecord(serial=serial, business_type_code="REGISTER", department_code="O1",
                                        accepted_at=datetime.now(UTC)))
            serials.append(serial)
        db.session.commit()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    portal = subprocess.Popen([str(Path(sys.executable).parent / "portal"), "run", "--port", str(port),
                               "--threads", str(args.threads)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        clients = []
        for code in codes:
            client = PortalClient(requests_transport(url), key=PrivateKey.generate())
            client.enrol(code)
            clients.append(client)
        rng = random.Random(1)
        pages = [[page_jpeg(a * 1000 + n, rng) for n in range(args.pages)] for a in range(args.agents)]
        sizes = [len(p) for batch in pages for p in batch]
        latencies: list[float] = []
        lock = threading.Lock()

        def run(agent: int) -> None:
            for n, data in enumerate(pages[agent], 1):
                page = PageToUpload(str(uuid.uuid4()), serials[agent], "APPLICATION", None, None, n, data, "jpeg",
                                    datetime.now(UTC).isoformat(timespec="seconds"))
                started = time.perf_counter()
                answer = clients[agent].upload_page(page)
                elapsed = time.perf_counter() - started
                assert answer["status"] == "stored", answer
                with lock:
                    latencies.append(elapsed)

        threads = [threading.Thread(target=run, args=(a,)) for a in range(args.agents)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - started
    finally:
        portal.terminate()
        portal.wait(10)
    latencies.sort()
    count = len(latencies)
    db_name = "PostgreSQL" if args.database_url.startswith("postgres") else "SQLite"
    print(f"| {db_name} | {args.agents} agents × {args.pages} pages | {statistics.mean(sizes) / 1024:.0f} KiB | "
          f"{count / total:.1f} pages/s | {latencies[count // 2] * 1000:.0f} ms | "
          f"{latencies[int(count * 0.95) - 1] * 1000:.0f} ms | {total:.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
