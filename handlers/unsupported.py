"""Message kinds we do not handle yet (image, video, location, link, file...): a polite answer."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.reply import Reply
from handlers import texts


async def reply(ctx: Context) -> Reply | None:
    return Reply(texts.UNSUPPORTED)
