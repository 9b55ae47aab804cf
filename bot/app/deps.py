"""What a process holds open: settings, the database, Redis, the WeChat API client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

from bot.app.config import Settings
from bot.channels.wechat.api import WeChatAPI
from storage.db import Database


@dataclass
class Deps:
    settings: Settings
    db: Database
    redis: Redis
    api: WeChatAPI | None = None  # None: nothing is delivered (e.g. a CLI command)
    # Set when new outbox rows are committed, so in-process delivery needn't wait a tick.
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
