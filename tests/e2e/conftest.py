"""End-to-end fixtures: the real portal (waitress, in a subprocess), the real agent process, a
loopback TCP relay between them that the test can cut, and SANE's `test` backend."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class PortalProcess:
    def __init__(self, settings, database_url: str, log_path: Path) -> None:  # type: ignore[no-untyped-def]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {**os.environ, "PORTAL_INSTANCE_DIR": str(settings.instance_dir),
                    "PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": settings.secret_key,
                    "PORTAL_PBKDF2_ITERATIONS": "1000"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([str(BIN / "portal"), "run", "--port", str(self.port), "--threads", "8"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._healthy, 30, what="portal /healthz")

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Relay:
    """A loopback TCP relay the test can cut (connections refused) and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cut = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()


class AgentProcess:
    def __init__(self, data_dir: Path, sane_dir: Path, log_path: Path) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        self.env = {**os.environ, "SANE_CONFIG_DIR": str(sane_dir)}
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "scanner-agent"), "--data-dir", str(self.data_dir), *args],
                              env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([str(BIN / "scanner-agent"), "--data-dir", str(self.data_dir), "run",
                                      "--headless"], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def e2e_sane_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sane"
    path.mkdir()
    (path / "dll.conf").write_text("test\n", encoding="ascii")
    (path / "test.conf").write_text("number_of_devices 1\n", encoding="ascii")
    return path


@pytest.fixture
def portal_process(app, settings, database_url, tmp_path) -> Iterator[PortalProcess]:  # type: ignore[no-untyped-def]
    portal = PortalProcess(settings, database_url, tmp_path / "portal.log")
    portal.start()
    yield portal
    portal.stop()


@pytest.fixture
def relay(portal_process) -> Iterator[Relay]:  # type: ignore[no-untyped-def]
    r = Relay(portal_process.port)
    yield r
    r.close()


@pytest.fixture
def agent_process(tmp_path, e2e_sane_dir) -> Iterator[AgentProcess]:  # type: ignore[no-untyped-def]
    agent = AgentProcess(tmp_path / "agent", e2e_sane_dir, tmp_path / "agent.log")
    yield agent
    agent.stop()
