"""Photos and voice a litigant sent, for the staff who hold the item: a signed link that
fetches the file from WeChat when opened (WeChat keeps users' media three days; the link
lives as long)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.core import links

LINK_TTL = timedelta(days=3)
KINDS = ("image", "voice")  # what a litigant sends that staff get a link to (words: handlers.texts)


@dataclass(frozen=True)
class MediaLinks:
    """Signs and checks the links to a litigant's media, built once at start-up (flows get
    the links, never the secret)."""

    base_url: str
    secret: str

    def link(self, message_id: int) -> str:
        query = links.query(self.secret, LINK_TTL, "media", message_id)
        return f"{self.base_url}/media/{message_id}?{query}"

    def valid(self, message_id: int, expires: str, sig: str) -> bool:
        return links.valid(self.secret, expires, sig, "media", message_id)
