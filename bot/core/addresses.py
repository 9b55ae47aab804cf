"""How a person is addressed across channels.

Flows and rules know a person by one string, `user` (a binding's, a ticket's, a
conversation's key). In the Official Account chat, and on the H5 pages opened in WeChat's
browser (web authorisation gives the same openid), it is the Official Account openid. A
mini-program user gets their own openid from WeChat; where WeChat also gives a unionid
that an Official Account user already has, they are that user (one person, one set of
cases, one lockout); otherwise they are `mp:<openid>`, and what is sent to them goes
through the mini-program (its subscribe messages, and the app's own inbox).
"""

from __future__ import annotations

WECHAT = "wechat"
MINIPROGRAM = "miniprogram"
H5 = "h5"
MP_PREFIX = "mp:"


def mp_user(openid: str) -> str:
    """The user a mini-program openid is, when no Official Account identity is known."""
    return MP_PREFIX + openid


def channel_of(user: str) -> str:
    """The channel the outbox reaches `user` through."""
    return MINIPROGRAM if user.startswith(MP_PREFIX) else WECHAT


def external_id(user: str) -> str:
    """The channel's own id for `user` (the openid the channel's API wants)."""
    return user.removeprefix(MP_PREFIX)
