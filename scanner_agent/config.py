"""The agent's one configuration file, `agent.toml` in its data directory.

Data directory: `--data-dir`, else $SCANNER_AGENT_DIR, else %LOCALAPPDATA%\\EbikeScannerAgent
on Windows and ~/.local/share/ebike-scanner-agent elsewhere. It holds agent.toml, the key
(owner-only), the portal's transport key, the outbox and the logs.

```toml
portal_url = "https://archive.example.internal"
driver = "sane"            # sane | twain | folder | demo
device = ""                # driver device id; empty = first device found
source = "feeder"          # default source when a job does not say
ca_file = ""               # CA bundle for the portal's TLS certificate; empty = system
poll_wait_seconds = 20     # long-poll wait for jobs
heartbeat_seconds = 30
jpeg_quality = 85
page_timeout_seconds = 120 # a driver silent for longer is killed (DriverTimeout)
release_key_pem = ""       # pinned SM2 public key (PEM) of agent update packages
log_level = "INFO"

[driver_options]           # passed to the driver, e.g. folder = "/srv/scans/inbox"
```
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "agent.toml"


def default_data_dir() -> Path:
    if os.environ.get("SCANNER_AGENT_DIR"):
        return Path(os.environ["SCANNER_AGENT_DIR"])
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "EbikeScannerAgent"
    return Path.home() / ".local" / "share" / "ebike-scanner-agent"


class ConfigError(Exception):
    pass


@dataclass
class AgentConfig:
    data_dir: Path
    portal_url: str = ""
    driver: str = "sane"
    device: str = ""
    source: str = "feeder"
    ca_file: str = ""
    poll_wait_seconds: int = 20
    heartbeat_seconds: int = 30
    jpeg_quality: int = 85
    page_timeout_seconds: int = 120
    release_key_pem: str = ""
    log_level: str = "INFO"
    driver_options: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.data_dir / CONFIG_NAME

    @property
    def key_path(self) -> Path:
        return self.data_dir / "agent-key.pem"

    @property
    def portal_key_path(self) -> Path:
        return self.data_dir / "portal-transport.pem"

    @property
    def enrolment_path(self) -> Path:
        return self.data_dir / "enrolment.json"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @classmethod
    def load(cls, data_dir: Path | None = None) -> AgentConfig:
        data_dir = Path(data_dir or default_data_dir())
        config = cls(data_dir=data_dir)
        if config.path.exists():
            try:
                values = tomllib.loads(config.path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config.path}: {exc}") from exc
            known = set(cls.__dataclass_fields__) - {"data_dir"}
            unknown = set(values) - known
            if unknown:
                raise ConfigError(f"{config.path}: unknown settings {sorted(unknown)}")
            for key, value in values.items():
                setattr(config, key, value)
        return config

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        options = {}
        for key, value in asdict(self).items():
            if key == "data_dir":
                continue
            if key == "driver_options":
                options = value
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        lines.append("[driver_options]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in options.items())
        self.path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value)
    if "\n" in text:
        return '"""\n' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
