"""The console's sessions and form tokens.

A session is a random token in the browser's cookie and, in Redis under the token's SHA-256,
who signed in and when. It ends after IDLE without a request (each request moves that on),
after ABSOLUTE whatever happens, at sign-out, and when the staff member's password changes.
Both limits are checked against the app's clock (storage.clock), not only Redis's expiry,
so a moved clock ends a session as the real one would.

Every form carries a token: an HMAC of the session's token with MST_SECRET_KEY. The sign-in
forms, before there is a session, use a random cookie of their own (`PRE_COOKIE`) instead,
so a page elsewhere cannot sign a browser in either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from redis.asyncio import Redis

from bot.core.clock import now
from storage import state
from storage.models import Staff

PATH = "/console"
COOKIE = "mst_console"
PRE_COOKIE = "mst_console_pre"
PENDING_COOKIE = "mst_console_2fa"  # the password was right; the TOTP code is still owed
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
PENDING_TTL = timedelta(minutes=5)
PRE_TTL = timedelta(hours=12)
FLASH_TTL_S = 300
_TOKEN = 32  # bytes of randomness in every token


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(kind: str, token: str) -> str:
    return f"{state.PREFIX}console:{kind}:{digest(token)}"


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# How `find` gets the staff member a session names (a database read the page makes).
StaffLookup = Callable[[int], Awaitable[Staff | None]]


@dataclass(frozen=True)
class Session:
    token: str
    staff_id: int
    created_at: datetime


async def start(redis: Redis, staff: Staff) -> str:
    """A new session for `staff`: its token, for the cookie (kept here only as a digest)."""
    token = secrets.token_urlsafe(_TOKEN)
    moment = now()
    body = {
        "staff_id": staff.id,
        "created_at": moment.isoformat(),
        "seen_at": moment.isoformat(),
        "password_set_at": _stamp(staff.password_set_at),
    }
    await redis.set(_key("s", token), json.dumps(body), ex=int(IDLE.total_seconds()))
    return token


async def find(redis: Redis, token: str, staff_of: StaffLookup) -> tuple[Session, Staff] | None:
    """The live session `token` names and its staff member (looked up by `staff_of`), the
    idle time moved on; None when there is none, it ran out, or the password changed since."""
    if not token or len(token) > 100:
        return None
    key = _key("s", token)
    raw = await redis.get(key)
    if raw is None:
        return None
    body = json.loads(raw)
    moment = now()
    created = datetime.fromisoformat(body["created_at"])
    seen = datetime.fromisoformat(body["seen_at"])
    if moment - seen > IDLE or moment - created > ABSOLUTE:
        await redis.delete(key)
        return None
    staff = await staff_of(int(body["staff_id"]))
    if (
        staff is None
        or not staff.active
        or body["password_set_at"] != _stamp(staff.password_set_at)
    ):
        await redis.delete(key)
        return None
    body["seen_at"] = moment.isoformat()
    left = min(IDLE, ABSOLUTE - (moment - created))
    await redis.set(key, json.dumps(body), ex=max(int(left.total_seconds()), 1))
    return Session(token, int(body["staff_id"]), created), staff


async def end(redis: Redis, token: str) -> None:
    if token:
        await redis.delete(_key("s", token), _key("flash", token))


# -- between a right password and the TOTP code ---------------------------------------------


async def start_pending(redis: Redis, staff: Staff) -> str:
    token = secrets.token_urlsafe(_TOKEN)
    body = {"staff_id": staff.id, "password_set_at": _stamp(staff.password_set_at)}
    await redis.set(_key("p", token), json.dumps(body), ex=int(PENDING_TTL.total_seconds()))
    return token


async def pending(redis: Redis, token: str) -> int | None:
    """The staff id whose password was right in this browser a moment ago."""
    if not token or len(token) > 100:
        return None
    raw = await redis.get(_key("p", token))
    return int(json.loads(raw)["staff_id"]) if raw else None


async def end_pending(redis: Redis, token: str) -> None:
    if token:
        await redis.delete(_key("p", token))


async def code_used(redis: Redis, staff_id: int, code: str) -> bool:
    """Whether this TOTP code already signed this person in; marks it used. A code seen
    over someone's shoulder is no good a second time (it lives 90 s at most)."""
    fresh = await redis.set(f"{state.PREFIX}console:totp:{staff_id}:{code}", "1", nx=True, ex=180)
    return not fresh


# -- what a page says after a form was sent ---------------------------------------------------


async def flash(redis: Redis, token: str, text: str) -> None:
    await redis.set(_key("flash", token), text, ex=FLASH_TTL_S)


async def take_flash(redis: Redis, token: str) -> str | None:
    key = _key("flash", token)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(key)
        pipe.delete(key)
        said, _ = await pipe.execute()
    return str(said) if said else None


# -- form tokens ---------------------------------------------------------------------------


def form_token(secret: str, token: str, purpose: str = "session") -> str:
    return hmac.new(
        secret.encode(), f"console-csrf\n{purpose}\n{token}".encode(), hashlib.sha256
    ).hexdigest()[:40]


def form_token_ok(secret: str, token: str, given: str, purpose: str = "session") -> bool:
    if not token or not given:
        return False
    return hmac.compare_digest(given.encode(), form_token(secret, token, purpose).encode())


def new_pre_token() -> str:
    return secrets.token_urlsafe(_TOKEN)


# -- cookies -------------------------------------------------------------------------------


def set_cookie(
    response: web.StreamResponse, name: str, value: str, max_age: timedelta | None = None
) -> None:
    """None: until the browser closes (the server ends the session sooner anyway)."""
    response.set_cookie(
        name,
        value,
        max_age=None if max_age is None else int(max_age.total_seconds()),
        path=PATH,
        secure=True,
        httponly=True,
        samesite="Lax",
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PATH, secure=True, httponly=True, samesite="Lax")
