"""What a process holds open: settings, the database, Redis, the WeChat API client, and
the senders the outbox delivers through (one per channel)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

from bot.app.config import Settings, rules_of
from bot.channels.wechat.api import WeChatAPI
from bot.outbox.senders import Sender
from bot.rules.rulebook import Rulebook
from storage.db import Database


@dataclass
class Deps:
    settings: Settings
    db: Database
    redis: Redis
    api: WeChatAPI | None = None  # the WeChat client (pages fetch a litigant's media with it)
    # The outbox delivers a row through senders[row.channel]; empty: nothing is delivered
    # (e.g. a CLI command).
    senders: dict[str, Sender] = field(default_factory=dict)
    # Set when new outbox rows are committed, so in-process delivery needn't wait a tick.
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # The court's rules, built once from the settings (None: built here from them).
    rules: Rulebook = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = rules_of(self.settings)
