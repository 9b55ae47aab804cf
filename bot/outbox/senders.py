"""What a channel gives the outbox: a `Sender` that delivers one row to one person.

The delivery loop (bot/outbox/delivery.py) claims rows, picks the sender registered for the
row's `channel` in `Deps.senders`, and records the outcome. A sender knows its channel's own
limits (WeChat's 48-hour window and templates, WeCom's per-member rate) and says what
happened by returning how the row went out, or raising `Retry` or `Refused`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol


@dataclass(frozen=True)
class Letter:
    """One outbox row as a sender sees it: which row, to whom, what kind, what to say.

    Plain data (no database row): a sender reads it and touches nothing else."""

    id: int
    channel: str
    recipient: str
    kind: str  # "cs_text": something to say to one person
    # Either a flow's own words ({"text": ...}) or a notice as data ({"notice_kind",
    # "params"}: bot.core.notice); a sender gets the words from handlers.notices.letter_text.
    payload: dict[str, Any]
    ticket_id: int | None = None  # the item it is about, if any (a sender may link its page)


class Retry(Exception):
    """Not sent now; try again later. `wait`: a limit the channel knows (a quota) — not
    before it, and not given up on for it (the quota passes); without it, the usual
    growing pause, and the row fails once it is old and tried many times."""

    def __init__(self, reason: str, wait: timedelta | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class Refused(Exception):
    """No retry can change it (the person unfollowed, blocked us, is unknown): the row
    fails at once, with this reason."""


class Sender(Protocol):
    @property
    def channel(self) -> str:
        """The `Outbox.channel` this sender delivers."""
        ...

    async def send(self, letter: Letter) -> str:
        """Deliver the letter; return how it went out (e.g. "custom", "template"), which
        the delivery records and counts. Raise `Retry` or `Refused` when it did not."""
        ...

    async def close(self) -> None:
        """Let go of what it holds open (an HTTP client), when the process stops."""
        ...


def by_channel(*senders: Sender) -> dict[str, Sender]:
    """`Deps.senders` from some senders, each under its own channel."""
    return {sender.channel: sender for sender in senders}
