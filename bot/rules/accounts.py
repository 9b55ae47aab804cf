"""Which Official Account serves which court: the one rule, for every flow that opens a
case or binds someone to a court (handlers.bind).

A court listed in MST_COURTS_FILE has its own account; every other court is served by the
default one (WECHAT_*, the province's). Someone writing from an account may open, verify
for and bind to only the cases and staff of the courts that account serves: a code of
another court is refused, naming the account that serves it. The app channels (the
mini-program, the service desk) are one for the whole installation and are not bound by
this; neither are bindings made before a court got its own account (nothing is moved).
Plain data, no secret: the rules know an account by its slug and its name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.core.addresses import WECHAT, channel_of, wechat_account
from bot.core.settings import Settings


@dataclass(frozen=True)
class Account:
    slug: str | None  # None: the default (the province's) account
    name: str | None = None  # 公众号名称, as people know it; None: not configured


@dataclass(frozen=True)
class Accounts:
    # Court name -> its own account; courts not in it are the default account's.
    own: Mapping[str, Account] = field(default_factory=dict)
    default: Account = Account(None)

    @classmethod
    def of(cls, settings: Settings) -> Accounts:
        return cls(
            {c.court: Account(c.slug, c.wechat.account_name) for c in settings.courts},
            Account(None, settings.wechat.account_name),
        )

    def of_court(self, court: str) -> Account:
        """The account that serves `court`."""
        return self.own.get(court, self.default)

    def of_user(self, user: str) -> Account | None:
        """The account `user` writes from; None when they are no Official Account user."""
        if channel_of(user) != WECHAT:
            return None
        slug = wechat_account(user)
        if slug is None:
            return self.default
        return next((a for a in self.own.values() if a.slug == slug), Account(slug))

    def elsewhere(self, user: str, court: str) -> Account | None:
        """The account serving `court` when `user` writes from another one (they are to
        be sent there); None when this account serves the court, or the user is not on an
        Official Account."""
        theirs = self.of_user(user)
        if theirs is None:
            return None
        serving = self.of_court(court)
        return None if serving.slug == theirs.slug else serving
