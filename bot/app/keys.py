"""Typed keys for what the aiohttp application carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from bot.app.config import Settings
from bot.app.deps import Deps

if TYPE_CHECKING:  # bot.channels.wechat.callback imports this module
    from bot.channels.wechat.callback import Gate

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
GATE: web.AppKey[Gate] = web.AppKey("gate")  # admission and known outages
STARTED = web.AppKey("started", float)  # time.monotonic() when the app was made
