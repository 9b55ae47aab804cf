"""Message kinds we do not handle yet (image, video, location, link, file...): a polite answer."""

from __future__ import annotations

from bot.core.reply import Reply
from handlers import texts
from handlers.context import Context


async def reply(ctx: Context) -> Reply | None:
    return Reply(texts.UNSUPPORTED)
