"""The Official Account's sender: an outbox text goes out as a customer-service message,
or — outside the 48-hour window, or over the per-message quota — as the template message
"a reply is waiting", linking to the signed page that shows it (bot.outbox.links). A row's
words, and the template's title line, are handlers.notices.letter_text's.

One sender serves every Official Account of the installation: a row goes out through the
account its recipient follows (a court's own for `wx:<slug>:<openid>`, bot.core.addresses;
the default account for a plain openid), with that account's client — its own access
token — and template.

WeChat's answers become the outbox's words: an error no retry can change is `Refused`, an
API quota is a `Retry` not before a minute, anything else a plain `Retry`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import timedelta

from bot.channels.wechat.api import (
    DAILY_LIMIT,
    MINUTE_LIMIT,
    PERMANENT,
    QUOTA_USED,
    WINDOW_CLOSED,
    TransientError,
    WeChatAPI,
    WeChatError,
)
from bot.core.addresses import external_id, wechat_account
from bot.core.clock import now, to_court
from bot.core.notice import Unreadable
from bot.outbox.links import reply_link
from bot.outbox.senders import Letter, Refused, Retry
from handlers import texts
from handlers.notices import letter_text

log = logging.getLogger(__name__)

CHANNEL = "wechat"
# An API quota (per minute, or per day until the operator clears it): not before this.
MINUTE_LIMIT_WAIT = timedelta(minutes=1)


@dataclass(frozen=True)
class Account:
    """A court's own Official Account as the sender uses it: its client and template."""

    api: WeChatAPI
    template_id: str


@dataclass
class WeChatSender:
    api: WeChatAPI  # the default account's (WECHAT_*)
    template_id: str  # WECHAT_TEMPLATE_ID
    base_url: str  # PUBLIC_BASE_URL: where the template's link opens
    secret: str  # MST_SECRET_KEY: signs that link
    # Courts' own accounts (MST_COURTS_FILE) by slug; their clients share `api`'s HTTP client.
    courts: dict[str, Account] = field(default_factory=dict)
    channel: str = field(default=CHANNEL, init=False)

    async def close(self) -> None:
        await self.api.http.close()

    def account_for(self, user: str) -> Account | None:
        """The account `user` follows (None: a court account this process does not have)."""
        slug = wechat_account(user)
        if slug is None:
            return Account(self.api, self.template_id)
        return self.courts.get(slug)

    def api_for(self, user: str) -> WeChatAPI | None:
        """The client of the account `user` follows: their media, their messages."""
        account = self.account_for(user)
        return None if account is None else account.api

    async def send(self, letter: Letter) -> str:
        try:
            return await self._send(letter)
        except WeChatError as exc:
            if exc.errcode in PERMANENT:
                raise Refused(f"{exc.errcode} {PERMANENT[exc.errcode]}") from exc
            if exc.errcode in (DAILY_LIMIT, MINUTE_LIMIT):
                raise Retry(str(exc), wait=MINUTE_LIMIT_WAIT) from exc
            raise Retry(str(exc)) from exc
        except TransientError as exc:
            raise Retry(str(exc)) from exc

    async def _send(self, letter: Letter) -> str:
        if letter.kind != "cs_text":
            raise WeChatError(-1000, f"unknown outbox kind {letter.kind!r}")
        try:
            title, text = letter_text(letter.payload)  # a notice's words: handlers.notices
        except Unreadable as exc:  # written by another version: one that can word it will
            raise Retry(f"{exc}") from exc
        account = self.account_for(letter.recipient)
        if account is None:  # the courts file lost it: waits until it is back, then fails
            raise Retry(f"no Official Account {wechat_account(letter.recipient)!r} configured")
        link = reply_link(self.base_url, self.secret, letter)
        letter = replace(letter, recipient=external_id(letter.recipient))  # the account's openid
        try:
            await account.api.send_text(letter.recipient, text)
            return "custom"
        except WeChatError as exc:
            if exc.errcode not in (WINDOW_CLOSED, QUOTA_USED):
                raise
            log.info(
                "outbox %s: customer-service message refused (%s); sending a template",
                letter.id,
                exc.errcode,
            )
        # Outside the 48-hour window or over the quota: a template message saying a reply
        # is waiting, linking to a page that shows it to this recipient.
        await account.api.send_template(
            letter.recipient,
            account.template_id,
            {
                "first": title,
                "keyword1": letter.payload.get("case_number", ""),
                "keyword2": to_court(now()).strftime("%Y-%m-%d %H:%M"),  # the court's time
                "remark": texts.TEMPLATE_REMARK,
            },
            url=link,
        )
        return "template"
