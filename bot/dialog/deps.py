"""What a process holds open, as the dialog and the channels above it use it: settings,
the database, Redis, the court's rules, and the senders the outbox delivers through (one
per channel). The app opens it (bot.app.factory.open_deps) and puts it on the aiohttp app
under DEPS, where a channel's handlers find it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from bot.core.settings import Settings
from bot.outbox.senders import Sender
from bot.rules import rulebook
from bot.rules.rulebook import Rulebook
from storage.db import Database


@dataclass
class Deps:
    settings: Settings
    db: Database
    redis: Redis
    # The outbox delivers a row through senders[row.channel]; empty: nothing is delivered
    # (e.g. a CLI command).
    senders: dict[str, Sender] = field(default_factory=dict)
    # Set when new outbox rows are committed, so in-process delivery needn't wait a tick.
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    # The court's rules, built once from the settings (None: built here from them).
    rules: Rulebook = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = rulebook.of(self.settings)


SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
