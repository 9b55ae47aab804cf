"""Photos and voice a litigant sent, for the staff who hold the item: a signed link that
fetches the file from WeChat when opened (WeChat keeps users' media three days; the link
lives as long)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from bot.clock import now

LINK_TTL = timedelta(days=3)
WORDS = {"image": "照片", "voice": "语音"}


def _sig(secret: str, message_id: int, expires: int) -> str:
    mac = hmac.new(secret.encode(), f"media.{message_id}.{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def link(base_url: str, secret: str, message_id: int) -> str:
    expires = int((now() + LINK_TTL).timestamp())
    return f"{base_url}/media/{message_id}?e={expires}&s={_sig(secret, message_id, expires)}"


def valid(secret: str, message_id: int, expires: str, sig: str) -> bool:
    if not expires.isdigit() or int(expires) < now().timestamp():
        return False
    return hmac.compare_digest(_sig(secret, message_id, int(expires)), sig)


def line(kind: str, url: str) -> str:
    """What staff read under a photo or a voice message: where to see or hear it."""
    return f"（{'查看' if kind == 'image' else '收听'}{WORDS.get(kind, '附件')}：{url}）"
