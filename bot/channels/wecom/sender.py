"""WeCom's sender: what the court tells a staff member linked to its WeCom app (a `wecom:`
user) goes out as an app message (`/cgi-bin/message/send`): a text card linking to the
item's console page when the row is about an item and its words fit a card, else text.

WeCom takes at most 30 messages a minute and 1,000 an hour per member from one app and
silently drops the rest, so each member has a budget here, in Redis, shared by every
process (`Budget`). When a member's budget runs low, their waiting rows go out together in
one message (a digest): fewer messages, none dropped. The rows a digest carried are
remembered, so delivery marks them sent without sending them again. A full window is a
`Retry` not before it has room; a member WeCom does not know is `Refused`.
"""

from __future__ import annotations

import html
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import and_, or_, select
from sqlmodel import col

from bot.channels.wecom.api import (
    CARD_BUTTON_MAX_CHARS,
    CARD_DESCRIPTION_MAX_BYTES,
    CARD_TITLE_MAX_BYTES,
    FREQUENCY,
    OURS,
    PERMANENT,
    TEXT_MAX_BYTES,
    TransientError,
    WeComAPI,
    WeComError,
)
from bot.core.addresses import WECOM, external_id
from bot.core.clock import now
from bot.core.notice import Unreadable
from bot.core.settings import Settings
from bot.outbox.senders import Letter, Refused, Retry
from handlers import texts
from handlers.notices import letter_text
from storage import state
from storage.db import Database
from storage.models import Outbox

log = logging.getLogger(__name__)

CHANNEL = WECOM
MINUTE_CAP = 30  # WeCom: per app and member, a minute
HOUR_CAP = 1000  # and an hour
# Fewer than these left in a window: the member's waiting rows go out together.
LOW_MINUTE = 10
LOW_HOUR = 100
DIGEST_ROWS = 50  # rows looked at for one digest
FREQUENCY_WAIT = timedelta(minutes=1)  # 45009: WeCom blocks for a minute (or an hour)
CARRIED_TTL_S = 4 * 86400  # past the outbox's three days of tries
VIA_TEXT, VIA_CARD, VIA_DIGEST = "wecom-text", "wecom-card", "wecom-digest"


# -- the per-member budget -------------------------------------------------------------------

# One sorted set per member: a member per message sent, scored by when. Take `n` places if
# both windows have room; answer what the windows hold and when their oldest leave them.
_TAKE = """
local moment = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', moment - 3600)
local hour = redis.call('ZCARD', KEYS[1])
local minute = redis.call('ZCOUNT', KEYS[1], '(' .. (moment - 60), '+inf')
local taken = 0
if n > 0 and minute + n <= tonumber(ARGV[3]) and hour + n <= tonumber(ARGV[4]) then
  for i = 1, n do redis.call('ZADD', KEYS[1], moment, ARGV[5] .. ':' .. i) end
  redis.call('EXPIRE', KEYS[1], 3660)
  minute = minute + n
  hour = hour + n
  taken = 1
end
local first_minute = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (moment - 60), '+inf',
  'WITHSCORES', 'LIMIT', 0, 1)
local first_hour = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {taken, minute, hour, first_minute[2] or '', first_hour[2] or ''}
"""


@dataclass(frozen=True)
class Window:
    """A member's budget as it stands: how much is left, and when there is room again."""

    taken: bool
    minute_left: int
    hour_left: int
    wait: timedelta  # until one more message fits (zero while one does)

    @property
    def full(self) -> bool:
        return self.minute_left <= 0 or self.hour_left <= 0

    @property
    def low(self) -> bool:
        return self.minute_left < LOW_MINUTE or self.hour_left < LOW_HOUR


@dataclass
class Budget:
    """Per-member message budgets at WeCom, in Redis, on the app's clock (so every process
    counts the same, and a test's frozen clock holds them still)."""

    redis: Redis
    minute_cap: int = MINUTE_CAP
    hour_cap: int = HOUR_CAP

    def _key(self, userid: str) -> str:
        return f"{state.PREFIX}wecom:sent:{userid}"

    async def left(self, userid: str) -> Window:
        return await self.take(userid, 0)

    async def take(self, userid: str, n: int) -> Window:
        """Take `n` places in both windows at once, or none (`taken` False)."""
        moment = now().timestamp()
        taken, minute, hour, first_minute, first_hour = await self.redis.register_script(_TAKE)(
            keys=[self._key(userid)],
            args=[f"{moment:.6f}", n, self.minute_cap, self.hour_cap, secrets.token_hex(6)],
        )
        minute_left, hour_left = self.minute_cap - int(minute), self.hour_cap - int(hour)
        wait = 0.0
        if minute_left <= 0 and first_minute:
            wait = max(wait, float(first_minute) + 60 - moment)
        if hour_left <= 0 and first_hour:
            wait = max(wait, float(first_hour) + 3600 - moment)
        return Window(bool(int(taken)), minute_left, hour_left, timedelta(seconds=wait + 1))


# -- words as WeCom messages ---------------------------------------------------------------


def _bytes(text: str) -> int:
    return len(text.encode())


def cut(text: str, limit: int, tail: str = "…") -> str:
    """`text` in at most `limit` bytes of UTF-8, ending with `tail` when cut."""
    if _bytes(text) <= limit:
        return text
    room = limit - _bytes(tail)
    kept = text.encode()[:room].decode("utf-8", errors="ignore")
    return kept + tail


def chunks(text: str, limit: int = TEXT_MAX_BYTES) -> list[str]:
    """`text` as messages of at most `limit` bytes, split at line ends where it can; each
    but the last ends with texts.WECOM_MORE."""
    more = "\n" + texts.WECOM_MORE
    room = limit - _bytes(more)
    parts: list[str] = []
    rest = text
    while _bytes(rest) > limit:
        head = rest.encode()[:room].decode("utf-8", errors="ignore")
        cut_at = head.rfind("\n")
        if cut_at > len(head) // 2:  # a line end not too early: split there
            head = head[:cut_at]
        parts.append(head + more)
        rest = rest[len(head) :].lstrip("\n")
    parts.append(rest)
    return parts


def item_link(base_url: str, ticket_id: int) -> str:
    """The console's page of an item (signing in with WeCom opens it in WeCom's browser)."""
    return f"{base_url.rstrip('/')}/console/items/{ticket_id}"


def messages(title: str, text: str, link: str | None) -> list[dict[str, Any]]:
    """The WeCom messages one row's words become: a text card when there is an item page
    to link and the words fit a card's description, else text (split when long, with the
    link at the end) — the words are never cut short."""
    head, _, rest = text.partition("\n")
    card_title = title if title and title != texts.NEW_MESSAGE else head
    description = text if card_title == title else rest
    escaped = html.escape(description, quote=False)  # a card's description reads a few tags
    if link and escaped and _bytes(escaped) <= CARD_DESCRIPTION_MAX_BYTES:
        return [
            {
                "msgtype": "textcard",
                "textcard": {
                    "title": cut(card_title, CARD_TITLE_MAX_BYTES),
                    "description": escaped,
                    "url": link,
                    "btntxt": texts.WECOM_CARD_BUTTON[:CARD_BUTTON_MAX_CHARS],
                },
            }
        ]
    words = f"{text}\n{link}" if link else text
    return [{"msgtype": "text", "text": {"content": part}} for part in chunks(words)]


def digest(parts: list[str]) -> str:
    return (
        texts.WECOM_DIGEST_HEAD.format(count=len(parts)) + "\n" + texts.WECOM_DIGEST_GAP.join(parts)
    )


# -- the sender ------------------------------------------------------------------------------


@dataclass
class WeComSender:
    api: WeComAPI
    db: Database
    base_url: str  # PUBLIC_BASE_URL: where a card's link opens
    budget: Budget = field(init=False)
    channel: str = field(default=CHANNEL, init=False)

    def __post_init__(self) -> None:
        self.budget = Budget(self.api.redis)

    async def close(self) -> None:
        await self.api.http.close()

    def _carried_key(self, row_id: int) -> str:
        return f"{state.PREFIX}wecom:carried:{row_id}"

    async def send(self, letter: Letter) -> str:
        if await self.api.redis.get(self._carried_key(letter.id)):
            return VIA_DIGEST  # its words went out in a digest already
        userid = external_id(letter.recipient)
        try:
            title, text = letter_text(letter.payload)
        except Unreadable as exc:  # written by another version: one that can word it will
            raise Retry(f"{exc}") from exc
        window = await self.budget.left(userid)
        if window.full:
            raise Retry(f"wecom budget of {userid} used up for now", wait=window.wait)
        if window.low:
            together = await self._waiting(letter, text)
            if len(together) > 1:
                return await self._send_digest(userid, together)
        link = item_link(self.base_url, letter.ticket_id) if letter.ticket_id else None
        out = messages(title, text, link)
        await self._send(userid, out)
        return VIA_CARD if out[0]["msgtype"] == "textcard" else VIA_TEXT

    async def _send(self, userid: str, out: list[dict[str, Any]]) -> None:
        """Send `out` within the member's budget, WeCom's answers as the outbox's words."""
        window = await self.budget.take(userid, len(out))
        if not window.taken:
            raise Retry(f"wecom budget of {userid} used up for now", wait=window.wait)
        for message in out:
            try:
                answer = await self.api.send(userid, message)
            except WeComError as exc:
                if exc.errcode in PERMANENT:
                    raise Refused(f"{exc.errcode} {PERMANENT[exc.errcode]}") from exc
                if exc.errcode == FREQUENCY:
                    raise Retry(str(exc), wait=FREQUENCY_WAIT) from exc
                raise Retry(f"{exc} {OURS.get(exc.errcode, '')}".strip()) from exc
            except TransientError as exc:
                raise Retry(str(exc)) from exc
            invalid = str(answer.get("invaliduser") or "").lower().split("|")
            if userid.lower() in invalid:
                raise Refused(f"{PERMANENT[81013]}（{userid}）")

    async def _waiting(self, letter: Letter, text: str) -> list[tuple[int, str]]:
        """This row and the member's other rows waiting to go (pending, or claimed in the
        same batch as this one), oldest first, as many as one message holds."""
        async with self.db.sessions() as session:
            token = (
                await session.execute(
                    select(col(Outbox.claim_token)).where(col(Outbox.id) == letter.id)
                )
            ).scalar()
            ours = [col(Outbox.status) == "pending"]
            if token:
                ours.append(and_(col(Outbox.status) == "sending", col(Outbox.claim_token) == token))
            rows = (
                await session.execute(
                    select(col(Outbox.id), col(Outbox.payload))
                    .where(
                        col(Outbox.channel) == CHANNEL,
                        col(Outbox.recipient) == letter.recipient,
                        col(Outbox.id) != letter.id,
                        or_(*ours),
                    )
                    .order_by(col(Outbox.id))
                    .limit(DIGEST_ROWS)
                )
            ).all()
        carried = (
            await self.api.redis.mget([self._carried_key(int(r.id or 0)) for r in rows])
            if rows
            else []
        )
        together = [(letter.id, text)]
        for (row_id, payload), gone in zip(rows, carried, strict=True):
            if gone:
                continue
            try:
                _, words = letter_text(_payload(payload))
            except Unreadable:
                continue  # it waits for a version that can word it
            if _bytes(digest([w for _, w in together] + [words])) > TEXT_MAX_BYTES:
                break
            together.append((int(row_id or 0), words))
        return sorted(together)

    async def _send_digest(self, userid: str, together: list[tuple[int, str]]) -> str:
        await self._send(
            userid, [{"msgtype": "text", "text": {"content": digest([w for _, w in together])}}]
        )
        # Only once sent: a row marked carried and never sent would be lost.
        async with self.api.redis.pipeline(transaction=False) as pipe:
            for row_id, _ in together:
                pipe.set(self._carried_key(row_id), "1", ex=CARRIED_TTL_S)
            await pipe.execute()
        log.info("wecom: %d notices to %s sent as one message", len(together), userid)
        return VIA_DIGEST


def _payload(raw: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    return data


def open_sender(
    settings: Settings, http: aiohttp.ClientSession, redis: Redis, db: Database
) -> WeComSender:
    """The process's WeCom sender (WECOM_* set), on the process's HTTP client and Redis."""
    wecom = settings.wecom
    assert wecom is not None
    api = WeComAPI(
        http=http,
        redis=redis,
        base=wecom.api_base,
        corp_id=wecom.corp_id,
        secret=wecom.secret,
        agent_id=wecom.agent_id,
    )
    return WeComSender(api=api, db=db, base_url=settings.public_base_url)
