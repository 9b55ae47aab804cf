"""What the WeChat and WeCom API clients share (bot.channels.wechat.api,
bot.channels.wecom.api): both speak JSON over HTTPS with an `errcode`, both hand out one
access token per app that every process must share — a new one may invalidate the old —
so it is kept in Redis and fetched single-flight under a cross-process lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bot.core import metrics
from bot.core.clock import now
from storage import state

log = logging.getLogger(__name__)

SYSTEM_BUSY = -1
TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)
# Token fetches are capped per day: after one, refuse to fetch another for this long; a
# token still refused meanwhile means "try the call later", not "fetch again".
TOKEN_REFRESH_FLOOR_S = 60
# Refresh this long before the stated expiry, so no call carries a dying token.
TOKEN_MARGIN_S = 300


class ApiError(Exception):
    """The API answered with an error code."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class TransientError(Exception):
    """Network trouble, a 5xx, or 'system busy': try again later."""


async def request_json(
    http: aiohttp.ClientSession,
    url: str,
    method: str,
    *,
    params: dict[str, str],
    payload: Any = None,
    error: type[ApiError],
    name: str,
) -> dict[str, Any]:
    """One call; its JSON, or `error` for an errcode, or TransientError for what a later
    try may change (the network, a 5xx, errcode -1). `name` is what the messages call it."""
    body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
    path = url.split("/", 3)[-1] if "://" in url else url
    try:
        async with http.request(
            method,
            url,
            params=params,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"} if body else None,
            timeout=TIMEOUT,
        ) as resp:
            if resp.status >= 500:
                raise TransientError(f"/{path}: HTTP {resp.status}")
            if resp.status != 200:
                raise error(-resp.status, f"HTTP {resp.status}")
            data: dict[str, Any] = json.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise TransientError(f"/{path}: {type(exc).__name__}: {exc}") from exc
    errcode = int(data.get("errcode", 0) or 0)
    if errcode == SYSTEM_BUSY:
        raise TransientError(f"/{path}: {name} system busy")
    if errcode:
        raise error(errcode, str(data.get("errmsg", ""))[:200])
    return data


async def shared_token(
    redis: Redis,
    *,
    key: str,
    name: str,
    fetch: Callable[[bool], Awaitable[dict[str, Any]]],
    stale: str | None = None,
) -> str:
    """The app's token, kept in Redis under `key`. `stale`: a token the API just refused —
    replace it, unless one was fetched within TOKEN_REFRESH_FLOOR_S (then TransientError:
    call again later). Single-flight across processes: one fetch under the lock, the others
    reuse it. `fetch(forced)` asks the API for a token ({"access_token", "expires_in"})."""
    cached: str | None = await redis.get(f"{state.PREFIX}{key}")
    if cached and cached != stale:
        return cached
    async with state.lock(redis, key, timeout_s=30, wait_s=15):
        cached = await redis.get(f"{state.PREFIX}{key}")  # another process was first
        if cached and cached != stale:
            return cached
        fetched_key = f"{state.PREFIX}{key}:fetched"
        fetched = float(await redis.get(fetched_key) or 0)
        if stale and now().timestamp() - fetched < TOKEN_REFRESH_FLOOR_S:
            raise TransientError(
                f"{name} refused a token fetched under {TOKEN_REFRESH_FLOOR_S} s ago; "
                "not fetching another yet"
            )
        await redis.set(fetched_key, f"{now().timestamp():.3f}", ex=86400)
        data = await fetch(stale is not None)
        token = str(data["access_token"])
        ttl = max(int(data.get("expires_in", 7200)) - TOKEN_MARGIN_S, 60)
        await redis.set(f"{state.PREFIX}{key}", token, ex=ttl)
        log.info("%s access token refreshed (valid %d s)", name, ttl)
        metrics.TOKEN_REFRESHES.inc()
        return token


async def with_token(
    call: Callable[[str], Awaitable[dict[str, Any]]],
    token: Callable[[str | None], Awaitable[str]],
    *,
    invalid: set[int] | frozenset[int],
    what: str,
) -> dict[str, Any]:
    """`call(token)` with the shared token; a refused token (an errcode in `invalid`) is
    replaced and the call tried once more. Refused again: TransientError."""
    current = await token(None)
    for attempt in range(2):
        try:
            return await call(current)
        except ApiError as exc:
            if exc.errcode not in invalid:
                raise
            if attempt == 1:
                raise TransientError(f"{what}: token refused twice ({exc})") from exc
            log.warning("%s: the access token was refused (%s); refreshing", what, exc.errcode)
            current = await token(current)
    raise AssertionError("unreachable")
