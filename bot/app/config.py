"""Settings from environment variables (and an optional `.env`), named as in CONTRACT.md.

A wrong value stops start-up with one line naming the variable: `ConfigError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from dotenv import dotenv_values

from bot.app import courts
from bot.core import clock
from bot.core.clock import DEFAULT_TIMEZONE
from bot.core.errors import ConfigError
from bot.core.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_PUBLIC_BASE_URL,
    DEFAULT_WECHAT_API_BASE,
    DEFAULT_WECHAT_OPEN_BASE,
    DEFAULT_WECOM_API_BASE,
    DEMO_SUBSCRIBE_TEMPLATE_ID,
    DEMO_TEMPLATE_ID,
    DEMO_WECHAT_APP_ID,
    DEMO_WECHAT_APP_SECRET,
    DEMO_WECHAT_TOKEN,
    ConsoleSettings,
    MiniProgramSettings,
    Settings,
    WeChatSettings,
    WeComSettings,
)
from bot.rules import rulebook

__all__ = ["ConfigError", "Settings", "WeChatSettings", "load_settings"]

SECRET_FILE_NAME = ".mst_secret"
SIGNING_KEY_FILE_NAME = ".mst_signing_key"


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
        signing_key=_signing_key(get("MST_SIGNING_KEY"), data_dir),
        past_signing_keys=_past_keys(get("MST_PAST_SIGNING_KEYS")),
        public_base_url=_http_url(
            "PUBLIC_BASE_URL", get("PUBLIC_BASE_URL", DEFAULT_PUBLIC_BASE_URL)
        ),
        wechat=WeChatSettings(
            app_id=get("WECHAT_APP_ID", DEMO_WECHAT_APP_ID) or "",
            app_secret=get("WECHAT_APP_SECRET", DEMO_WECHAT_APP_SECRET) or "",
            token=_wechat_token(get("WECHAT_TOKEN", DEMO_WECHAT_TOKEN) or ""),
            aes_key=_aes_key(get("WECHAT_AES_KEY")),
            api_base=_http_url("WECHAT_API_BASE", get("WECHAT_API_BASE", DEFAULT_WECHAT_API_BASE)),
            template_id=get("WECHAT_TEMPLATE_ID", DEMO_TEMPLATE_ID) or "",
            account_name=get("WECHAT_ACCOUNT_NAME"),
            account_qr=_image(get("WECHAT_ACCOUNT_QR")),
        ),
        miniprogram=MiniProgramSettings(
            app_id=get("MP_APP_ID") or None,
            app_secret=get("MP_APP_SECRET") or None,
            subscribe_template_id=get("MP_SUBSCRIBE_TEMPLATE_ID", DEMO_SUBSCRIBE_TEMPLATE_ID) or "",
            open_base=_http_url(
                "WECHAT_OPEN_BASE", get("WECHAT_OPEN_BASE", DEFAULT_WECHAT_OPEN_BASE)
            ),
        ),
        console=ConsoleSettings.parse(get("MST_CONSOLE_TRUSTED_PROXIES")),
        wecom=_wecom(get),
        enforcement_token=get("MST_ENFORCEMENT_TOKEN"),
        data_dir=data_dir,
        jobs_in_process=_flag("MST_JOBS_IN_PROCESS", get("MST_JOBS_IN_PROCESS", "1")),
        holidays_file=_path(get("MST_HOLIDAYS_FILE")),
        rules_file=_path(get("MST_RULES_FILE")),
        timezone=_timezone(get("MST_TIMEZONE", DEFAULT_TIMEZONE) or DEFAULT_TIMEZONE),
        log_format=_log_format(get("LOG_FORMAT")),
    )
    # Courts with their own Official Account (bot.app.courts); the rest share WECHAT_*.
    settings = replace(settings, courts=courts.load(_path(get("MST_COURTS_FILE")), settings.wechat))
    if len(settings.secret_key) < 32:
        raise ConfigError("MST_SECRET_KEY must be at least 32 characters")
    clock.set_timezone(settings.timezone)
    # A bad holiday or rules file stops start-up here, naming its variable; the rules are
    # built for use where a process opens what it holds (bot.app.factory.open_deps).
    rulebook.of(settings)
    return settings


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (KeyError, ValueError):
        raise ConfigError(
            f"MST_TIMEZONE: unknown time zone {name!r} (e.g. Asia/Shanghai)"
        ) from None
    return name


def _log_format(value: str | None) -> str | None:
    if value is not None and value.lower() not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be json or text, got {value!r}")
    return None if value is None else value.lower()


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
    url = _database_scheme(url)
    # `?pooler=pgbouncer` (storage.db.split_pooler): PostgreSQL behind PgBouncer's transaction mode.
    from storage.db import split_pooler

    try:
        split_pooler(url)
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    return url


def _database_scheme(url: str) -> str:
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
    from storage.state import SENTINEL_SCHEME, parse_sentinel

    if url.startswith(SENTINEL_SCHEME + "://"):
        # Through Redis Sentinel (storage.state.parse_sentinel): the master it names.
        try:
            parse_sentinel(url)
        except ValueError as exc:
            raise ConfigError(f"REDIS_URL: {exc}") from None
        return url
    if urlparse(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            "REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel://"
        )
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
    return _kept(data_dir / SECRET_FILE_NAME, lambda: secrets.token_urlsafe(48), "MST_SECRET_KEY")


def _signing_key(value: str | None, data_dir: Path) -> bytes:
    """MST_SIGNING_KEY, or (unset) the one generated on first run and kept beside the data:
    the base64 of a 32-byte Ed25519 private key. Tree heads signed with it stay checkable
    against one public key across restarts."""
    if value is not None:
        return _ed25519_key(value, "MST_SIGNING_KEY")
    path = data_dir / SIGNING_KEY_FILE_NAME
    kept = _kept(
        path, lambda: base64.b64encode(secrets.token_bytes(32)).decode(), "MST_SIGNING_KEY"
    )
    return _ed25519_key(kept, f"MST_SIGNING_KEY not set, and {path}")


def _past_keys(value: str | None) -> tuple[bytes, ...]:
    """MST_PAST_SIGNING_KEYS: the public keys the log signed with before, comma-separated,
    each the base64 of 32 bytes (what /transparency/key printed as public_key then)."""
    keys = []
    for part in (value or "").split(","):
        if part.strip():
            try:
                key = base64.b64decode(part.strip(), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                raise ConfigError(
                    "MST_PAST_SIGNING_KEYS must be base64 Ed25519 public keys (32 bytes each), "
                    "separated by commas"
                )
            keys.append(key)
    return tuple(keys)


def _ed25519_key(value: str, name: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{name} must be the base64 of a 32-byte Ed25519 private key")
    return key


def _kept(path: Path, make: Callable[[], str], variable: str) -> str:
    """A value generated on first run and kept in `path`, readable by the owner only. The
    first process to create the file wins; the others read theirs."""
    try:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            value = make()
            with contextlib.suppress(FileExistsError):  # another process was first
                _create(path, value)
                return value
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{variable} not set and cannot keep one in {path}: {exc}") from exc


def _create(path: Path, value: str) -> None:
    """A new file (0600) holding `value`, never seen half-written: written to a temporary
    file, then linked into place. FileExistsError when there is one already."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")  # 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise
        except OSError:  # a volume without hard links: an exclusive create in place
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
                fh.write(value + "\n")
    finally:
        os.unlink(temporary)


WECOM_NEEDED = ("WECOM_CORP_ID", "WECOM_AGENT_ID", "WECOM_SECRET", "WECOM_TOKEN", "WECOM_AES_KEY")


def _wecom(get: Callable[..., str | None]) -> WeComSettings | None:
    """The WeCom app for staff: all five of WECOM_NEEDED, or none (WeCom off). A half-set
    group would leave staff unreachable there without a word: it stops start-up instead."""
    given = {name: get(name) for name in WECOM_NEEDED}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ConfigError(
            f"{missing[0]} is not set: WeCom needs all of {', '.join(WECOM_NEEDED)} (or none)"
        )
    corp_id, agent_id, secret, token, aes_key = (given[n] or "" for n in WECOM_NEEDED)
    if not (corp_id.isascii() and corp_id.isalnum() and len(corp_id) <= 64):
        raise ConfigError(f"WECOM_CORP_ID must be the CorpID (letters and digits), got {corp_id!r}")
    if not (agent_id.isdigit() and len(agent_id) <= 10):
        raise ConfigError(f"WECOM_AGENT_ID must be the app's AgentId (a number), got {agent_id!r}")
    if not (3 <= len(token) <= 32 and token.isascii() and token.isalnum()):
        raise ConfigError("WECOM_TOKEN must be 3-32 letters or digits")
    try:
        key_ok = len(aes_key) == 43 and len(base64.b64decode(aes_key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        key_ok = False
    if not key_ok:
        raise ConfigError("WECOM_AES_KEY must be the 43-character EncodingAESKey from WeCom")
    return WeComSettings(
        corp_id=corp_id,
        agent_id=int(agent_id),
        secret=secret,
        token=token,
        aes_key=aes_key,
        api_base=_http_url("WECOM_API_BASE", get("WECOM_API_BASE", DEFAULT_WECOM_API_BASE)),
    )
