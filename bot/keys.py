"""Typed keys for what the aiohttp application carries."""

from aiohttp import web

from bot.config import Settings
from bot.deps import Deps

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
GATE = web.AppKey("gate", object)  # bot.channels.wechat.Gate: admission and known outages
STARTED = web.AppKey("started", float)  # time.monotonic() when the app was made
