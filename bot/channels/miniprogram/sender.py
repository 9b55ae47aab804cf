"""The mini-program's sender: what the court tells an app-only person (a `mp:` user).

Every row is already in the person's app inbox (GET /api/mp/v1/events reads the outbox).
A subscribe message is sent on top when they granted one (a one-time grant: one message,
bot.rules.app_sessions' table `subscription`), so the phone rings; without a grant, or
when WeChat says the grant is gone (43101), the row counts as delivered to the app. A
person who also follows the Official Account is addressed by that account instead
(bot.core.addresses), so nobody is told twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import col

from bot.channels.wechat.api import (
    DAILY_LIMIT,
    MINUTE_LIMIT,
    TransientError,
    WeChatAPI,
    WeChatError,
)
from bot.core.addresses import MINIPROGRAM, external_id
from bot.core.clock import now, to_court
from bot.core.notice import Unreadable
from bot.core.text import gist
from bot.outbox.senders import Letter, Retry
from handlers.notices import letter_text
from storage.db import Database
from storage.models import Subscription

log = logging.getLogger(__name__)

NOT_SUBSCRIBED = 43101  # no grant (or it was used): the message is the app's to show
MINUTE_LIMIT_WAIT = timedelta(minutes=1)
IN_APP = "app"  # how a row went out when it stayed in the app's inbox
SUBSCRIBE = "subscribe"


def subscribe_data(title: str, text: str, moment_court: str) -> dict[str, str]:
    """The "a reply arrived" template's fields (thing: at most 20 characters)."""
    return {
        "thing1": gist(title, 20),
        "thing2": gist(" ".join(text.split()), 20),
        "time3": moment_court,
    }


@dataclass
class MiniProgramSender:
    api: WeChatAPI
    db: Database  # the grants: taken for a message, given back if it did not go
    template_id: str  # MP_SUBSCRIBE_TEMPLATE_ID
    page: str  # the mini-program page the message opens
    channel: str = field(default=MINIPROGRAM, init=False)

    async def close(self) -> None:
        await self.api.http.close()

    async def send(self, letter: Letter) -> str:
        try:
            title, text = letter_text(letter.payload)
        except Unreadable as exc:
            raise Retry(f"{exc}") from exc
        grant = await self._take_grant(letter.recipient)
        if grant is None:
            return IN_APP
        try:
            await self.api.send_subscribe(
                external_id(letter.recipient),
                self.template_id,
                subscribe_data(title, text, to_court(now()).strftime("%Y年%m月%d日 %H:%M")),
                page=self.page,
            )
        except WeChatError as exc:
            if exc.errcode == NOT_SUBSCRIBED:
                return IN_APP  # the grant is gone at WeChat's end: it stays used
            await self._give_back(grant)
            if exc.errcode in (DAILY_LIMIT, MINUTE_LIMIT):
                raise Retry(str(exc), wait=MINUTE_LIMIT_WAIT) from exc
            raise Retry(str(exc)) from exc
        except TransientError as exc:
            await self._give_back(grant)
            raise Retry(str(exc)) from exc
        return SUBSCRIBE

    async def _take_grant(self, user: str) -> int | None:
        """One unused grant of this template, marked used (a guarded UPDATE: two senders
        never take the same one)."""
        async with self.db.transaction() as session:
            for _ in range(3):
                found = (
                    await session.execute(
                        select(col(Subscription.id))
                        .where(
                            col(Subscription.user) == user,
                            col(Subscription.template_id) == self.template_id,
                            col(Subscription.used_at).is_(None),
                        )
                        .order_by(col(Subscription.id))
                        .limit(1)
                    )
                ).scalar()
                if found is None:
                    return None
                taken = await session.execute(
                    update(Subscription)
                    .where(col(Subscription.id) == found, col(Subscription.used_at).is_(None))
                    .values(used_at=now())
                )
                if getattr(taken, "rowcount", 0):
                    return int(found)
        return None

    async def _give_back(self, grant: int) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(Subscription).where(col(Subscription.id) == grant).values(used_at=None)
            )
