"""Configuration: every setting comes from an environment variable with a documented default.

This is the one place the portal reads configuration. `docs/configuration.md` lists every key.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise RuntimeError(f"environment variable {name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise RuntimeError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class RegistryOptions:
    """The registration-system integration (docs/registry-api.md)."""

    sync_minutes: int = 5  # PORTAL_REGISTRY_SYNC_MINUTES: scheduled sync interval (0 = no scheduled sync)
    timeout_seconds: int = 10  # PORTAL_REGISTRY_TIMEOUT_SECONDS: per HTTP request
    retries: int = 3  # PORTAL_REGISTRY_RETRIES: extra attempts on connection errors and 5xx
    page_size: int = 500  # PORTAL_REGISTRY_PAGE_SIZE: records per page (1..1000)
    overlap_seconds: int = 300  # PORTAL_REGISTRY_OVERLAP_SECONDS: re-read margin behind the watermark
    sign_requests: bool = False  # PORTAL_REGISTRY_SIGN_REQUESTS: add the SM2-signed envelope header
    sync_now_seconds: int = 20  # PORTAL_REGISTRY_SYNC_NOW_SECONDS: time bound of "sync now" in a request

    @classmethod
    def from_env(cls) -> RegistryOptions:
        return cls(
            sync_minutes=_env_int("PORTAL_REGISTRY_SYNC_MINUTES", 5, 0),
            timeout_seconds=_env_int("PORTAL_REGISTRY_TIMEOUT_SECONDS", 10, 1),
            retries=_env_int("PORTAL_REGISTRY_RETRIES", 3, 0),
            page_size=min(_env_int("PORTAL_REGISTRY_PAGE_SIZE", 500, 1), 1000),
            overlap_seconds=_env_int("PORTAL_REGISTRY_OVERLAP_SECONDS", 300, 0),
            sign_requests=_env_bool("PORTAL_REGISTRY_SIGN_REQUESTS", False),
            sync_now_seconds=_env_int("PORTAL_REGISTRY_SYNC_NOW_SECONDS", 20, 1),
        )


@dataclass
class Settings:
    """Portal settings. Field comments name the environment variable."""

    instance_dir: Path  # PORTAL_INSTANCE_DIR, default ./instance
    database_url: str  # PORTAL_DATABASE_URL, default sqlite:///<instance>/portal.sqlite3
    data_dir: Path  # PORTAL_DATA_DIR, default <instance>/data (encrypted images)
    secret_key: str  # PORTAL_SECRET_KEY, default generated once into <instance>/secret_key
    master_key_file: Path  # PORTAL_MASTER_KEY_FILE, default <instance>/keys/master.key
    portal_key_file: Path  # PORTAL_SIGNING_KEY_FILE, default <instance>/keys/portal-sm2.pem
    data_key_file: Path  # PORTAL_DATA_KEY_FILE, default <instance>/keys/data.key (field keys)
    # PORTAL_TRANSPORT_KEY_FILE, default <instance>/keys/portal-transport-sm2.pem
    transport_key_file: Path | None = None
    session_idle_minutes: int = 30  # PORTAL_SESSION_IDLE_MINUTES
    password_min_length: int = 10  # PORTAL_PASSWORD_MIN_LENGTH
    password_min_classes: int = 3  # PORTAL_PASSWORD_MIN_CLASSES (of lower/upper/digit/symbol)
    password_max_age_days: int = 90  # PORTAL_PASSWORD_MAX_AGE_DAYS
    password_history: int = 5  # PORTAL_PASSWORD_HISTORY (reuse forbidden)
    lockout_threshold: int = 5  # PORTAL_LOCKOUT_THRESHOLD
    lockout_minutes: int = 15  # PORTAL_LOCKOUT_MINUTES
    pbkdf2_iterations: int = 200_000  # PORTAL_PBKDF2_ITERATIONS
    max_upload_bytes: int = 25 * 1024 * 1024  # PORTAL_MAX_UPLOAD_BYTES
    max_image_pixels: int = 60_000_000  # PORTAL_MAX_IMAGE_PIXELS
    secure_cookies: bool = False  # PORTAL_SECURE_COOKIES (set true behind HTTPS)
    audit_checkpoint_every: int = 500  # PORTAL_AUDIT_CHECKPOINT_EVERY entries
    audit_checkpoint_minutes: int = 60  # PORTAL_AUDIT_CHECKPOINT_MINUTES
    agent_clock_skew_seconds: int = 300  # PORTAL_AGENT_CLOCK_SKEW_SECONDS
    registry_url: str = ""  # PORTAL_REGISTRY_URL (empty: no HTTP source configured)
    registry_token: str = ""  # PORTAL_REGISTRY_TOKEN
    demo: bool = False  # PORTAL_DEMO (show demo hints on the sign-in page)
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_env(cls, instance_dir: Path | None = None) -> Settings:
        inst = Path(_env("PORTAL_INSTANCE_DIR", str(instance_dir or Path.cwd() / "instance")))
        inst = inst.resolve()
        inst.mkdir(parents=True, exist_ok=True)
        return cls(
            instance_dir=inst,
            database_url=_env("PORTAL_DATABASE_URL", f"sqlite:///{inst / 'portal.sqlite3'}"),
            data_dir=Path(_env("PORTAL_DATA_DIR", str(inst / "data"))),
            secret_key=_env("PORTAL_SECRET_KEY", "") or _instance_secret(inst),
            master_key_file=Path(_env("PORTAL_MASTER_KEY_FILE", str(inst / "keys" / "master.key"))),
            portal_key_file=Path(
                _env("PORTAL_SIGNING_KEY_FILE", str(inst / "keys" / "portal-sm2.pem"))
            ),
            data_key_file=Path(_env("PORTAL_DATA_KEY_FILE", str(inst / "keys" / "data.key"))),
            transport_key_file=Path(
                _env("PORTAL_TRANSPORT_KEY_FILE", str(inst / "keys" / "portal-transport-sm2.pem"))
            ),
            session_idle_minutes=_env_int("PORTAL_SESSION_IDLE_MINUTES", 30),
            password_min_length=_env_int("PORTAL_PASSWORD_MIN_LENGTH", 10),
            password_min_classes=_env_int("PORTAL_PASSWORD_MIN_CLASSES", 3),
            password_max_age_days=_env_int("PORTAL_PASSWORD_MAX_AGE_DAYS", 90),
            password_history=_env_int("PORTAL_PASSWORD_HISTORY", 5),
            lockout_threshold=_env_int("PORTAL_LOCKOUT_THRESHOLD", 5),
            lockout_minutes=_env_int("PORTAL_LOCKOUT_MINUTES", 15),
            pbkdf2_iterations=_env_int("PORTAL_PBKDF2_ITERATIONS", 200_000),
            max_upload_bytes=_env_int("PORTAL_MAX_UPLOAD_BYTES", 25 * 1024 * 1024),
            max_image_pixels=_env_int("PORTAL_MAX_IMAGE_PIXELS", 60_000_000),
            secure_cookies=_env_bool("PORTAL_SECURE_COOKIES", False),
            audit_checkpoint_every=_env_int("PORTAL_AUDIT_CHECKPOINT_EVERY", 500),
            audit_checkpoint_minutes=_env_int("PORTAL_AUDIT_CHECKPOINT_MINUTES", 60),
            agent_clock_skew_seconds=_env_int("PORTAL_AGENT_CLOCK_SKEW_SECONDS", 300),
            registry_url=_env("PORTAL_REGISTRY_URL", ""),
            registry_token=_env("PORTAL_REGISTRY_TOKEN", ""),
            demo=_env_bool("PORTAL_DEMO", False),
            registry=RegistryOptions.from_env(),
        )

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]


def _instance_secret(instance_dir: Path) -> str:
    """Generate the session secret once and keep it in the instance folder (mode 0600)."""
    path = instance_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
