"""Signed, expiring links: a page for whoever holds the link (a waiting message, a
litigant's photo), until it expires. One signature rule for all of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from bot.core.clock import now


def signature(secret: str, *parts: object) -> str:
    """HMAC-SHA256 over the parts joined by dots, 144 bits, URL-safe."""
    message = ".".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(
        hmac.new(secret.encode(), message, hashlib.sha256).digest()[:18]
    ).decode()


def query(secret: str, ttl: timedelta, *parts: object) -> str:
    """`e=<expiry>&s=<signature>` for a link that names `parts` (the expiry signed last)."""
    expires = int((now() + ttl).timestamp())
    return f"e={expires}&s={signature(secret, *parts, expires)}"


def valid(secret: str, expires: str, sig: str, *parts: object) -> bool:
    if not expires.isdigit() or int(expires) < now().timestamp():
        return False
    return hmac.compare_digest(signature(secret, *parts, int(expires)), sig)
