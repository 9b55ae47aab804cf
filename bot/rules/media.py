"""Photos and voice a litigant sent, for the staff who hold the item: a signed link that
fetches the file from WeChat when opened (WeChat keeps users' media three days; the link
lives as long)."""

from __future__ import annotations

from datetime import timedelta

from bot.core import links

LINK_TTL = timedelta(days=3)
WORDS = {"image": "照片", "voice": "语音"}


def link(base_url: str, secret: str, message_id: int) -> str:
    return f"{base_url}/media/{message_id}?{links.query(secret, LINK_TTL, 'media', message_id)}"


def valid(secret: str, message_id: int, expires: str, sig: str) -> bool:
    return links.valid(secret, expires, sig, "media", message_id)


def line(kind: str, url: str) -> str:
    """What staff read under a photo or a voice message: where to see or hear it."""
    return f"（{'查看' if kind == 'image' else '收听'}{WORDS.get(kind, '附件')}：{url}）"
