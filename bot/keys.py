"""Typed keys for what the aiohttp application carries."""

from aiohttp import web

from bot.config import Settings
from bot.deps import Deps

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
