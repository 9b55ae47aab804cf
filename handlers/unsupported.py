"""Message kinds we do not handle yet (image, video, location, link, file...): a polite answer."""

from __future__ import annotations

from bot.core.context import Context
from handlers import texts


async def reply(ctx: Context) -> str | None:
    return texts.UNSUPPORTED
