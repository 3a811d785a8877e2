"""Fixtures of the scanner-agent tests.

SANE: ``sane_config_dir`` builds a private SANE configuration that loads only SANE's own
``test`` backend (a real driver stack: dll → test backend); SANE reads ``SANE_CONFIG_DIR``
at ``sane.init()``, so drivers get the directory explicitly (``SaneDriver(config_dir=...)``
in-process, ``IsolatedDriver(..., env={"SANE_CONFIG_DIR": ...})`` in a child process).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

HAVE_SANE = importlib.util.find_spec("sane") is not None


def _missing_sane() -> None:
    """The test command installs SANE (scripts/system-packages.sh, the `sane` extra): a missing
    SANE is a failure, never a skip."""
    pytest.fail("python-sane / libsane not installed: run scripts/test.sh (it installs them)")


def _write_sane_dir(path: Path, test_conf: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dll.conf").write_text("test\n", encoding="ascii")
    (path / "test.conf").write_text(test_conf, encoding="ascii")
    return path


@pytest.fixture(scope="session")
def sane_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_SANE:
        _missing_sane()
    # one virtual device, otherwise the backend's defaults
    return _write_sane_dir(tmp_path_factory.mktemp("sane"), "number_of_devices 1\n")


@pytest.fixture(scope="session")
def sane_config_dir_16bit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same backend, but its default depth is 16 (python-sane's corrupt-image trap)."""
    if not HAVE_SANE:
        _missing_sane()
    return _write_sane_dir(
        tmp_path_factory.mktemp("sane16"),
        'number_of_devices 1\ndepth 16\nmode Color\ntest-picture "Color pattern"\n',
    )


@pytest.fixture(scope="session")
def cjk_font_available() -> bool:
    from scanner_agent.drivers.demo_driver import CJK_FONT_CANDIDATES

    return any(Path(p).exists() for p in CJK_FONT_CANDIDATES)


@pytest.fixture
def inbox(tmp_path: Path):
    path = tmp_path / "inbox"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
