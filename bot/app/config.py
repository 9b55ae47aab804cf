"""Settings from environment variables (and an optional `.env`), named as in CONTRACT.md.

A wrong value stops start-up with one line naming the variable: `ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from dotenv import dotenv_values

from bot.core import clock
from bot.core.clock import DEFAULT_TIMEZONE
from bot.core.errors import ConfigError
from bot.rules import rulebook

__all__ = ["ConfigError", "Settings", "load_settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./mst.db"
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_WECHAT_API_BASE = "https://api.weixin.qq.com"
# Demo values so a fresh checkout runs; a court sets its own.
DEMO_WECHAT_APP_ID = "wx0000000000demo00"
DEMO_WECHAT_APP_SECRET = "demo-app-secret"
DEMO_WECHAT_TOKEN = "mashangtong"
DEMO_TEMPLATE_ID = "demo-reply-waiting"
SECRET_FILE_NAME = ".mst_secret"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str = ""
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL
    wechat_app_id: str = DEMO_WECHAT_APP_ID
    wechat_app_secret: str = DEMO_WECHAT_APP_SECRET
    wechat_token: str = DEMO_WECHAT_TOKEN
    wechat_aes_key: str | None = None
    wechat_api_base: str = DEFAULT_WECHAT_API_BASE
    # Template for "a reply is waiting" when the 48-hour customer-service window is closed.
    wechat_template_id: str = DEMO_TEMPLATE_ID
    # What the landing page a printed code opens shows, so a person can follow the account:
    # its name (公众号名称) and an image of its own QR code (PNG or JPEG).
    wechat_account_name: str | None = None
    wechat_account_qr: Path | None = None
    # Bearer token the court's enforcement system uses to push events; unset: endpoint off.
    enforcement_token: str | None = None
    data_dir: Path = field(default_factory=lambda: Path("."))
    # Background jobs on a timer inside the web process (embedded default);
    # off when `mst worker` (arq) runs them, and in tests that drive jobs by hand.
    jobs_in_process: bool = True
    anchor_interval_s: float = 300.0
    # How often the outbox is looked at when nothing wakes it (new rows wake it at once).
    outbox_interval_s: float = 2.0
    # How often mediation reminders (day before, hour before) are looked for.
    reminder_interval_s: float = 60.0
    # Largest callback body accepted; WeChat's messages are a few KiB at most.
    max_callback_bytes: int = 64 * 1024
    # How far a callback's timestamp may be from our clock (WeChat retries within 15 s).
    timestamp_tolerance_s: int = 300
    # Callbacks worked on at once per process. Beyond it a callback waits for its turn up
    # to `admit_wait_s` (and never past what its answer by 4 s allows), then gets 503
    # (WeChat retries): how many get in follows how fast the server really is.
    max_in_flight: int = 64
    admit_wait_s: float = 3.0
    # Messages per user per minute before we ask them to slow down.
    user_rate_per_minute: int = 30
    # Staff answer many people at once; over this their command is refused, visibly.
    staff_rate_per_minute: int = 120
    # Per user and case, per China calendar day: complaints, and messages added to them.
    complaint_daily_cap: int = 1
    complaint_message_daily_cap: int = 5
    # Deadlines (bot/deadlines.py): the court's holiday file for years past the official
    # calendar's data, and deadline rules per court (JSON). Checked and put in force at start-up.
    holidays_file: Path | None = None
    rules_file: Path | None = None
    # Every time a person reads, and the working day deadlines count in (an IANA name).
    timezone: str = DEFAULT_TIMEZONE

    @property
    def safe_mode(self) -> bool:
        return self.wechat_aes_key is not None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | Path | None = ".env"
) -> Settings:
    """Read settings; the process environment wins over `.env`."""
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    def get(name: str, default: str | None = None) -> str | None:
        value = values.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    data_dir = Path(get("MST_DATA_DIR", ".") or ".")
    settings = Settings(
        database_url=_database_url(get("DATABASE_URL", DEFAULT_DATABASE_URL) or ""),
        redis_url=_redis_url(get("REDIS_URL")),
        secret_key=get("MST_SECRET_KEY") or _stored_secret(data_dir),
        public_base_url=_http_url(
            "PUBLIC_BASE_URL", get("PUBLIC_BASE_URL", DEFAULT_PUBLIC_BASE_URL)
        ),
        wechat_app_id=get("WECHAT_APP_ID", DEMO_WECHAT_APP_ID) or "",
        wechat_app_secret=get("WECHAT_APP_SECRET", DEMO_WECHAT_APP_SECRET) or "",
        wechat_token=_wechat_token(get("WECHAT_TOKEN", DEMO_WECHAT_TOKEN) or ""),
        wechat_aes_key=_aes_key(get("WECHAT_AES_KEY")),
        wechat_api_base=_http_url(
            "WECHAT_API_BASE", get("WECHAT_API_BASE", DEFAULT_WECHAT_API_BASE)
        ),
        wechat_template_id=get("WECHAT_TEMPLATE_ID", DEMO_TEMPLATE_ID) or "",
        wechat_account_name=get("WECHAT_ACCOUNT_NAME"),
        wechat_account_qr=_image(get("WECHAT_ACCOUNT_QR")),
        enforcement_token=get("MST_ENFORCEMENT_TOKEN"),
        data_dir=data_dir,
        jobs_in_process=_flag("MST_JOBS_IN_PROCESS", get("MST_JOBS_IN_PROCESS", "1")),
        holidays_file=_path(get("MST_HOLIDAYS_FILE")),
        rules_file=_path(get("MST_RULES_FILE")),
        timezone=_timezone(get("MST_TIMEZONE", DEFAULT_TIMEZONE) or DEFAULT_TIMEZONE),
    )
    if len(settings.secret_key) < 32:
        raise ConfigError("MST_SECRET_KEY must be at least 32 characters")
    clock.set_timezone(settings.timezone)
    # A bad holiday or rules file stops start-up here, naming its variable; the rules are
    # built for use where a process opens what it holds (bot.app.factory.open_deps).
    rules_of(settings)
    return settings


def rules_of(settings: Settings) -> rulebook.Rulebook:
    """The court's rules these settings name, read and checked."""
    return rulebook.load(
        secret_key=settings.secret_key,
        holidays_file=settings.holidays_file,
        rules_file=settings.rules_file,
    )


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):
        raise ConfigError(
            f"MST_TIMEZONE: unknown time zone {name!r} (e.g. Asia/Shanghai)"
        ) from None
    return name


def _image(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or not path.is_file():
        raise ConfigError(f"WECHAT_ACCOUNT_QR must be a PNG or JPEG file, got {value!r}")
    return path


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _database_url(url: str) -> str:
    scheme = url.split("://", 1)[0]
    # Accept the URLs people paste from hosting panels and pick the async driver.
    if scheme in ("postgres", "postgresql"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if scheme == "sqlite":
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            f"DATABASE_URL: unsupported scheme {scheme!r} "
            "(use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db)"
        )
    return url


def _redis_url(url: str | None) -> str | None:
    if url is None:
        return None
    if urlparse(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    return url


def _http_url(name: str, url: str | None) -> str:
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
    return (url or "").rstrip("/")


def _wechat_token(token: str) -> str:
    # WeChat's rule for the server-configuration Token: 3-32 letters or digits.
    if not (3 <= len(token) <= 32 and token.isascii() and token.isalnum()):
        raise ConfigError("WECHAT_TOKEN must be 3-32 letters or digits")
    return token


def _aes_key(key: str | None) -> str | None:
    if key is None:
        return None
    try:
        ok = len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ConfigError("WECHAT_AES_KEY must be the 43-character EncodingAESKey from WeChat")
    return key


def _flag(name: str, value: str | None) -> bool:
    lowered = (value or "").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0")


def _stored_secret(data_dir: Path) -> str:
    """The key generated on first run and kept beside the data, so restarts keep sessions valid."""
    path = data_dir / SECRET_FILE_NAME
    try:
        if not path.is_file():
            data_dir.mkdir(parents=True, exist_ok=True)
            secret = secrets.token_urlsafe(48)
            try:
                # Created readable by the owner only.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: use theirs
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secret + "\n")
                return secret
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"MST_SECRET_KEY not set and cannot keep one in {path}: {exc}") from exc
