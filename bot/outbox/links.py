"""The signed link to one outbox message: the page /m/<row> (bot/app/pages.py) shows it to
the link's holder until it expires. Any channel's notice may point there (WeChat's template
message does, outside the 48-hour window); the signature names the row and its recipient."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from bot.core import links

LINK_TTL = timedelta(days=7)


class Addressed(Protocol):
    """An outbox row, or a sender's Letter of it."""

    @property
    def id(self) -> int | None: ...

    @property
    def recipient(self) -> str: ...


def reply_link(base_url: str, secret: str, row: Addressed) -> str:
    """A signed, expiring link to one message, for a notice's 'view' button."""
    return f"{base_url}/m/{row.id}?{links.query(secret, LINK_TTL, row.id or 0, row.recipient)}"


def link_valid(secret: str, row: Addressed, expires: str, sig: str) -> bool:
    return links.valid(secret, expires, sig, row.id or 0, row.recipient)
