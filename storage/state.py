"""Short-lived shared state in Redis: conversations, retry de-duplication, the
timestamp/nonce replay window, per-user rate limits and a cross-process lock.

With no REDIS_URL the same calls run on an in-process stand-in (fakeredis), so one
process needs no server. Every key starts with `mst:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)
PREFIX = "mst:"
CONVERSATION_TTL_S = 24 * 3600
# WeChat retries within 15 s; keep the key well past that so a late retry still matches.
DEDUPE_TTL_S = 300
PENDING = "__pending__"


def connect(url: str | None) -> Redis:
    if url is None:
        import fakeredis  # the stand-in: imported only by a process that runs on it

        return fakeredis.FakeAsyncRedis(decode_responses=True)
    # Bounded waits: with Redis gone a message must fail fast (503, WeChat retries), not
    # hang past WeChat's 5 s on a socket that never answers.
    options: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 30,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
    if url.startswith(SENTINEL_SCHEME + "://"):
        return _through_sentinel(parse_sentinel(url), options)
    client: Redis = Redis.from_url(url, **options)
    return client


# -- Redis through Sentinel ------------------------------------------------------------------

# REDIS_URL=redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master[/db]: ask
# these sentinels (port 26379 unless given) where the master called `master` is, and follow
# it when they fail over. The password (and user) are the master's; the sentinels themselves
# are asked without one (arq's worker cannot give them one either).
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel(url: str) -> SentinelAddress:
    """The parts of a `redis+sentinel://` URL; ValueError says what is wrong with it."""
    prefix = SENTINEL_SCHEME + "://"
    if not url.startswith(prefix):
        raise ValueError(f"a sentinel URL starts with {prefix}")
    rest = url[len(prefix) :]
    if "?" in rest or "#" in rest:
        raise ValueError("a sentinel URL takes no query: redis+sentinel://host:port,…/master/db")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = []
    for item in netloc.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = port, str(SENTINEL_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel {item!r} is not host:port")
        sentinels.append((host, int(port)))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError(
            "name the master after the sentinels: redis+sentinel://host:port,…/mymaster[/db]"
        )
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"the database after the master must be a number, got {parts[1]!r}")
    return SentinelAddress(
        tuple(sentinels),
        unquote(parts[0]),
        int(parts[1]) if len(parts) == 2 else 0,
        username,
        password,
    )


class _SentinelRedis(Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


def _through_sentinel(address: SentinelAddress, options: dict[str, Any]) -> Redis:
    # redis-py's Sentinel() carries no annotations.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(address.sentinels),
        sentinel_kwargs={
            k: v for k, v in options.items() if k.startswith("socket_") or k == "decode_responses"
        },
    )
    client: Redis = sentinels.master_for(
        address.master,
        redis_class=_SentinelRedis,
        db=address.db,
        username=address.username,
        password=address.password,
        **options,
    )
    return client


def conversation_key(user: str) -> str:
    return f"{PREFIX}conv:{user}"


def seen_key(msg_key: str) -> str:
    """Where a message's claim, then its answer, is kept for WeChat's retries."""
    return f"{PREFIX}seen:{msg_key}"


def _conversation_json(state: dict[str, Any]) -> str:
    return json.dumps(state, ensure_ascii=False)


# -- conversation state --------------------------------------------------------


async def load_conversation(r: Redis, user: str) -> dict[str, Any]:
    raw = await r.get(conversation_key(user))
    return json.loads(raw) if raw else {}


async def save_conversation(r: Redis, user: str, state: dict[str, Any]) -> None:
    key = conversation_key(user)
    if state:
        await r.set(key, _conversation_json(state), ex=CONVERSATION_TTL_S)
    else:
        await r.delete(key)


# -- retry de-duplication --------------------------------------------------------


async def release_message(r: Redis, msg_key: str) -> None:
    """Forget a claim whose processing failed, so WeChat's retry can try again."""
    await r.delete(seen_key(msg_key))


async def seen(r: Redis, msg_key: str) -> tuple[str | None, float | None]:
    """What an earlier delivery left, in one read: (the answer it gave, or None while it
    is still being worked on; seconds since it was claimed, while no answer is kept)."""
    value = await r.get(seen_key(msg_key))
    if value is None:
        return None, None
    if not value.startswith(PENDING):
        return value, None
    return None, max(time.time() - float(value[len(PENDING) :] or 0), 0.0)


async def earlier_answer(r: Redis, msg_key: str) -> str | None:
    """The answer given to an earlier delivery, or None while it is still being worked on."""
    return (await seen(r, msg_key))[0]


async def claimed_for(r: Redis, msg_key: str) -> float | None:
    """Seconds since the message was claimed, while no answer is kept for it (else None)."""
    return (await seen(r, msg_key))[1]


_SETTLE = """
local v = redis.call('GET', KEYS[1])
if (not v) or string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], '', 'EX', ARGV[2])
  return ''
end
return v
"""


async def settle(r: Redis, msg_key: str) -> str:
    """A message the database already has: the answer kept for it, or (none kept) ''
    from now on, so later retries do not wait. An answer kept is never overwritten."""
    return str(
        await r.register_script(_SETTLE)(keys=[seen_key(msg_key)], args=[PENDING, DEDUPE_TTL_S])
    )


# -- replay window -----------------------------------------------------------------


async def admit(r: Redis, timestamp: str, nonce: str, msg_key: str, nonce_ttl_s: int) -> str:
    """Replay check and retry de-duplication in one round trip (this runs per message):
    'replay' when the timestamp+nonce already carried another message, 'retry' when this
    message was taken before, 'new' otherwise."""
    nonce_key = f"{PREFIX}nonce:{timestamp}:{nonce}"
    async with r.pipeline(transaction=False) as pipe:
        pipe.set(nonce_key, msg_key, nx=True, ex=nonce_ttl_s)
        pipe.get(nonce_key)
        # The claim says when it was taken: a retry can tell a first delivery still within
        # its time from one whose process died (bot.channels.wechat.callback).
        pipe.set(seen_key(msg_key), f"{PENDING}{time.time():.3f}", nx=True, ex=DEDUPE_TTL_S)
        _, owner, first = await pipe.execute()
    if owner != msg_key:
        if first:  # not ours after all: give the claim back
            await release_message(r, msg_key)
        return "replay"
    return "new" if first else "retry"


# -- cross-process lock ------------------------------------------------------------


def lock(r: Redis, name: str, *, timeout_s: float = 30, wait_s: float | None = 10) -> Lock:
    """`async with lock(r, "token"):` — held by one process at a time, freed after timeout_s."""
    return r.lock(f"{PREFIX}lock:{name}", timeout=timeout_s, blocking_timeout=wait_s)


@contextlib.asynccontextmanager
async def try_lock(r: Redis, name: str, *, timeout_s: float = 60) -> AsyncIterator[bool]:
    """Yields True when this process got the lock at once, False when another holds it."""
    held = lock(r, name, timeout_s=timeout_s, wait_s=None)
    got = await held.acquire(blocking=False)
    try:
        yield bool(got)
    finally:
        if got:
            with contextlib.suppress(LockError):  # expired meanwhile: nothing to free
                await held.release()


# -- counters (wrong digits → lockout, daily caps) ---------------------------------------


async def counted(r: Redis, name: str) -> int:
    return int(await r.get(f"{PREFIX}count:{name}") or 0)


async def bump(r: Redis, name: str, window_s: int) -> int:
    """Count one; the count lives `window_s` from the first one."""
    key = f"{PREFIX}count:{name}"
    async with r.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        count, _ = await pipe.execute()
    return int(count)


async def clear_count(r: Redis, name: str) -> None:
    await r.delete(f"{PREFIX}count:{name}")


async def failures(r: Redis, name: str) -> int:
    return await counted(r, f"fail:{name}")


async def add_failure(r: Redis, name: str, window_s: int) -> int:
    return await bump(r, f"fail:{name}", window_s)


async def clear_failures(r: Redis, name: str) -> None:
    await clear_count(r, f"fail:{name}")


# -- one message of a user at a time -------------------------------------------------------

# Take the user's turn, and with it their conversation and rate count: one round trip per
# message. ARGV[4] = 1 means "waited long enough": read them without the turn.
_TAKE_TURN = """
local held = 1
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[4] ~= '1' then return {-1, '', 0} end
  held = 0
end
local conv = redis.call('GET', KEYS[2]) or ''
local n = redis.call('INCR', KEYS[3])
if n == 1 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
return {held, conv, n}
"""
# Save the conversation (ARGV[4] = 1; empty means forget it), remember the answer to the
# message for its retries (ARGV[5] = 1), and give the turn back if it is still ours (it
# expires after the lock time).
_END_TURN = """
if ARGV[4] == '1' then
  if ARGV[2] == '' then redis.call('DEL', KEYS[2])
  else redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
end
if ARGV[5] == '1' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[7]) end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


@dataclass
class Turn:
    held: bool  # False: the previous message kept the turn too long; this one went ahead
    conversation: dict[str, Any]
    within_rate: bool
    count: int  # the user's messages in the rate window, this one included
    save: dict[str, Any] | None = None  # set it to store the conversation when the turn ends
    answer: str | None = None  # set it to remember the answer to the message (see `remember`)
    # Redis could not be reached: no turn, no rate count, no cached conversation. The
    # message is still handled (the database keeps the conversation and de-duplicates).
    degraded: bool = False


@contextlib.asynccontextmanager
async def turn(
    r: Redis,
    user: str,
    *,
    rate_limit: int,
    rate_window_s: int = 60,
    timeout_s: float = 15,
    wait_s: float = 3,
    remember: str | None = None,
) -> AsyncIterator[Turn]:
    """One message of a user at a time (two lines sent quickly must not both open a ticket,
    nor overwrite each other's conversation), with the user's conversation and whether they
    are within `rate_limit` messages per `rate_window_s`. If the previous message holds the
    turn for longer than `wait_s`, this one goes ahead all the same (`held` is False).
    Whatever is in `save` when the block ends becomes the conversation, and `answer` is
    kept as the answer to the message whose de-duplication key is `remember`, in the
    same round trip: a retry of that message gets the same answer."""
    token = secrets.token_hex(8)
    keys = [f"{PREFIX}lock:user:{user}", conversation_key(user), f"{PREFIX}rate:user:{user}"]
    give_up = time.monotonic() + wait_s
    try:
        while True:
            forced = time.monotonic() >= give_up
            args: list[str | int] = [token, int(timeout_s * 1000), rate_window_s, int(forced)]
            held, raw, count = await r.register_script(_TAKE_TURN)(keys=keys, args=args)
            if int(held) >= 0:
                break
            await asyncio.sleep(0.02)
    except RedisError as exc:
        log.warning("redis unavailable (%s): %s handled without its turn", exc, user[:8])
        yield Turn(held=False, conversation={}, within_rate=True, count=0, degraded=True)
        return
    taken = Turn(
        held=bool(int(held)),
        conversation=json.loads(raw) if raw else {},
        within_rate=int(count) <= rate_limit,
        count=int(count),
    )
    try:
        yield taken
    finally:
        saved, answer = taken.save, taken.answer if remember else None
        try:
            await r.register_script(_END_TURN)(
                keys=[*keys[:2], seen_key(remember or "")],
                args=[
                    token if taken.held else "",
                    _conversation_json(saved) if saved else "",
                    CONVERSATION_TTL_S,
                    int(saved is not None),
                    int(answer is not None),
                    answer or "",
                    DEDUPE_TTL_S,
                ],
            )
        except RedisError as exc:
            # All of it is in the database already; the cache catches up next time.
            log.warning("redis unavailable (%s): the turn of %s ends uncached", exc, user[:8])


# -- the jobs' heartbeat -------------------------------------------------------------

HEARTBEAT_KEY = f"{PREFIX}heartbeat:jobs"


async def heartbeat(r: Redis) -> None:
    """The background jobs ran just now (whoever runs them: a worker or the web process)."""
    await r.set(HEARTBEAT_KEY, f"{time.time():.3f}", ex=24 * 3600)


async def heartbeat_age(r: Redis) -> float | None:
    """Seconds since the jobs last ran, or None if they never did (or Redis forgot)."""
    value = await r.get(HEARTBEAT_KEY)
    return None if value is None else max(time.time() - float(value), 0.0)
