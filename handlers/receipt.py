"""A receipt sent back in the chat (its link, or its 16-letter code) is checked there, as
its page checks it: what the court recorded, when, and whether the record is unchanged."""

from __future__ import annotations

import re

from bot.core.clock import say_time
from bot.core.reply import Reply
from bot.rules import receipts
from handlers import texts
from handlers.context import Context

# The whole message is a receipt: a link ending in /v/<code>, or the code alone.
_RECEIPT = re.compile(rf"(?:\S*/v/)?([0-9a-f]{{{receipts.SHOWN}}})/?", re.IGNORECASE)


def receipt_in(text: str) -> str | None:
    found = _RECEIPT.fullmatch(text.strip())
    return found.group(1).lower() if found else None


async def check(ctx: Context, receipt: str) -> Reply:
    found = await receipts.check(ctx.session, receipt)
    if found is None:
        return Reply(texts.RECEIPT_UNKNOWN, (texts.TO_MENU,))
    recorded = texts.RECEIPT_RECORDED.format(
        court=found.court,
        kind=texts.kind_name(found.kind),
        number=texts.RECEIPT_NUMBER.format(ticket=found.ticket_id) if found.ticket_id else "",
        case_number=found.case_number,
        at=say_time(found.at),
    )
    state = texts.RECEIPT_INTACT if found.intact else texts.RECEIPT_BROKEN
    return Reply(f"{recorded}\n{state}", (texts.TO_MENU,))
