"""How a person is addressed across channels.

Flows and rules know a person by one string, `user` (a binding's, a ticket's, a
conversation's key). In the Official Account chat, and on the H5 pages opened in WeChat's
browser (web authorisation gives the same openid), it is the Official Account openid. A
mini-program user gets their own openid from WeChat; where WeChat also gives a unionid
that an Official Account user already has, they are that user (one person, one set of
cases, one lockout); otherwise they are `mp:<openid>`, and what is sent to them goes
through the mini-program (its subscribe messages, and the app's own inbox).

A party helped at the court's service desk is `desk:<party id>` (bot.rules.desk): bound to
that one case only, so whoever helps them sees nothing else of theirs; what is sent to
them reaches their own WeChat if they have one, else the desk (bot.channels.desk).

A follower of a court's own Official Account (MST_COURTS_FILE: bot.app.courts) is
`wx:<slug>:<openid>`: an openid is the account's own, so the same person on two accounts
is two users, each written to through the account they follow. The default account's
(the province's, WECHAT_*) are plain openids, as they always were.

Staff linked to the court's WeCom (企业微信) app are `wecom:<userid>` when they write from
it, and are told things there (bot.rules.access.address_of). WeCom compares userids
without case, so the address holds the userid lower-cased.
"""

from __future__ import annotations

WECHAT = "wechat"
MINIPROGRAM = "miniprogram"
H5 = "h5"
DESK = "desk"
WECOM = "wecom"
MP_PREFIX = "mp:"
DESK_PREFIX = "desk:"
WECOM_PREFIX = "wecom:"
ACCOUNT_PREFIX = "wx:"  # a court's own Official Account: wx:<slug>:<openid>
# Our user columns hold 64 characters: a WeCom userid (WeCom allows 64 bytes) is kept to
# what fits after its prefix.
WECOM_USERID_MAX = 64 - len(WECOM_PREFIX)


def mp_user(openid: str) -> str:
    """The user a mini-program openid is, when no Official Account identity is known."""
    return MP_PREFIX + openid


def desk_user(party_id: int) -> str:
    """The user a party is while staff at the desk act for them."""
    return f"{DESK_PREFIX}{party_id}"


def desk_party(user: str) -> int | None:
    """The party a desk user stands for; None for anyone else."""
    rest = user.removeprefix(DESK_PREFIX)
    return int(rest) if rest != user and rest.isdigit() else None


def wecom_user(userid: str) -> str:
    """The user a WeCom member is (their userid as WeCom compares it: without case)."""
    return WECOM_PREFIX + userid.lower()


def wecom_userid(user: str) -> str | None:
    """The WeCom userid of a `wecom:` user; None for anyone else."""
    rest = user.removeprefix(WECOM_PREFIX)
    return rest if rest != user and rest else None


def wechat_user(openid: str, account: str | None = None) -> str:
    """The user an Official Account's openid is: plain on the default account, else
    `wx:<slug>:<openid>` on the court's account `account`."""
    return openid if account is None else f"{ACCOUNT_PREFIX}{account}:{openid}"


def wechat_account(user: str) -> str | None:
    """The slug of the court account a `wx:` user follows; None for anyone else."""
    rest = user.removeprefix(ACCOUNT_PREFIX)
    slug, colon, openid = rest.partition(":")
    return slug if rest != user and colon and slug and openid else None


def channel_of(user: str) -> str:
    """The channel the outbox reaches `user` through."""
    if user.startswith(MP_PREFIX):
        return MINIPROGRAM
    if user.startswith(WECOM_PREFIX):
        return WECOM
    return DESK if user.startswith(DESK_PREFIX) else WECHAT


def external_id(user: str) -> str:
    """The channel's own id for `user` (the openid or userid the channel's API wants)."""
    account = wechat_account(user)
    if account is not None:
        return user.removeprefix(f"{ACCOUNT_PREFIX}{account}:")
    return user.removeprefix(MP_PREFIX).removeprefix(WECOM_PREFIX)
