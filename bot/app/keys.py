"""Typed keys for what the aiohttp application carries beyond the dialog's (DEPS, SETTINGS
in bot.dialog.deps)."""

from __future__ import annotations

from aiohttp import web

STARTED = web.AppKey("started", float)  # time.monotonic() when the app was made
