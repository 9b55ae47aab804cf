"""MST_COURTS_FILE: the courts that have an Official Account of their own.

One installation may serve a province's courts. Each court listed here has its own
account: its callback is `/wechat/<slug>`, its followers are `wx:<slug>:<openid>`
(bot.core.addresses) and are written to through that account (its own access token,
shared through Redis under its app id). Courts not listed share the default account
(WECHAT_*: the province's). TOML (`.toml`) or JSON (anything else), one entry a court:

    [[court]]
    name = "衡水市桃城区人民法院"      # as its Court row (the imports) names it
    slug = "taocheng"                  # a-z, 0-9 and -, at most 16: /wechat/taocheng
    app_id = "wx1234567890abcdef"
    app_secret = "..."
    token = "..."                      # the server configuration's Token
    aes_key = "..."                    # EncodingAESKey: safe mode (unset: plaintext)
    template_id = "..."                # "a reply is waiting", outside the 48 hours
    account_name = "桃城法院"          # optional: shown where a person is sent to follow it
    account_qr = "taocheng.png"        # optional: its QR image (relative to this file)

JSON: {"court": [{"name": ..., "slug": ..., ...}]}. Checked once at start-up: anything
wrong stops it with one line naming the file, the court and the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.core.errors import ConfigError
from bot.core.settings import CourtAccount, WeChatSettings

VARIABLE = "MST_COURTS_FILE"
# The slug goes into URLs and into every follower's address (64 characters in all, an
# openid is 28): short, lower-case, nothing to escape.
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
REQUIRED = ("name", "slug", "app_id", "app_secret", "token", "template_id")
OPTIONAL = ("aes_key", "account_name", "account_qr", "api_base")


def load(path: Path | None, default: WeChatSettings) -> tuple[CourtAccount, ...]:
    """The courts file read and checked (None: no court has its own account)."""
    if path is None:
        return ()
    raw = _read(path)
    entries = raw.get("court")
    if set(raw) - {"court"} or not isinstance(entries, list):
        raise ConfigError(
            f"{VARIABLE}: {path}: expected a list of courts under 'court' "
            '([[court]] tables in TOML, {"court": [...]} in JSON)'
        )
    found: list[CourtAccount] = []
    for n, entry in enumerate(entries, 1):
        found.append(court_entry(path, n, entry, default))
    _unique(path, found, default)
    return tuple(found)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ConfigError(f"{VARIABLE}: {path} is not valid {kind}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{VARIABLE}: {path} must hold an object with a 'court' list")
    return raw


def court_entry(path: Path, n: int, entry: Any, default: WeChatSettings) -> CourtAccount:
    """The file's `n`th court, checked (ConfigError names the court and the field). `mst
    check` calls it entry by entry, to name every mistake, not only the first."""
    label = f"court {n}"
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        label = f"court {n} ({entry['name']})"

    def fail(field: str, why: str) -> ConfigError:
        return ConfigError(f"{VARIABLE}: {path}: {label}: {field}: {why}")

    if not isinstance(entry, dict):
        raise ConfigError(f"{VARIABLE}: {path}: {label}: must be a table of settings")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise fail(unknown[0], f"unknown setting (known: {', '.join(REQUIRED + OPTIONAL)})")
    values: dict[str, str] = {}
    for key in REQUIRED + OPTIONAL:
        value = entry.get(key)
        if value is None:
            if key in REQUIRED:
                raise fail(key, "missing")
            continue
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty string")
        values[key] = value.strip()
    if len(values["name"]) > 200:
        raise fail("name", "longer than a court's name may be (200 characters)")
    if not SLUG.fullmatch(values["slug"]):
        raise fail(
            "slug", f"{values['slug']!r}: 1-16 of a-z, 0-9 and '-', starting with a letter or digit"
        )
    app_id = values["app_id"]
    if not (app_id.isascii() and app_id.isalnum() and len(app_id) <= 32):
        raise fail(
            "app_id", f"{app_id!r} is not an AppID (letters and digits, like wx1234567890abcdef)"
        )
    token = values["token"]
    if not (3 <= len(token) <= 32 and token.isascii() and token.isalnum()):
        raise fail("token", "must be 3-32 letters or digits")
    aes_key = values.get("aes_key")
    if aes_key is not None and not aes_key_ok(aes_key):
        raise fail("aes_key", "must be the 43-character EncodingAESKey from WeChat")
    qr: Path | None = None
    if "account_qr" in values:
        qr = Path(values["account_qr"])
        qr = qr if qr.is_absolute() else path.parent / qr
        if qr.suffix.lower() not in (".png", ".jpg", ".jpeg") or not qr.is_file():
            raise fail("account_qr", f"{str(qr)!r} is not a PNG or JPEG file")
    api_base = values.get("api_base", default.api_base)
    parsed = urlparse(api_base)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise fail("api_base", f"{api_base!r} is not an http(s) URL")
    return CourtAccount(
        court=values["name"],
        slug=values["slug"],
        wechat=WeChatSettings(
            app_id=app_id,
            app_secret=values["app_secret"],
            token=token,
            aes_key=aes_key,
            api_base=api_base.rstrip("/"),
            template_id=values["template_id"],
            account_name=values.get("account_name"),
            account_qr=qr,
        ),
    )


def aes_key_ok(key: str) -> bool:
    """An EncodingAESKey as WeChat and WeCom give it: 43 characters of base64, 32 bytes."""
    try:
        return len(key) == 43 and len(base64.b64decode(key + "=", validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _unique(path: Path, courts: list[CourtAccount], default: WeChatSettings) -> None:
    """One account a court, one court an account: two entries naming the same court, slug
    or AppID (or the default account's AppID) would send a court's people to two places."""
    seen: dict[tuple[str, str], str] = {
        ("app_id", default.app_id): "the default account (WECHAT_APP_ID)"
    }
    for court in courts:
        for field, value in (
            ("name", court.court),
            ("slug", court.slug),
            ("app_id", court.wechat.app_id),
        ):
            other = seen.get((field, value))
            if other is not None:
                raise ConfigError(
                    f"{VARIABLE}: {path}: court {court.slug} ({court.court}): {field}: "
                    f"{value!r} is also {other}'s"
                )
            seen[(field, value)] = f"court {court.slug} ({court.court})"
