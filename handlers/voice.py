"""Voice messages (bot.dialog.dispatch.route asks here first). WeChat's recognised words
are used like typed text, checked back first where a mistake matters: the digits that
verify a party, a number that chooses in a menu, and the first words of a new item
("您说的是：“……”，对吗？回复1确认，2重说"). On 1 (typed or said) the words go on through the
step as if typed; on 2 the person says it again; anything else is a new answer.

A voice without words (WeChat recognised none) is kept: where a step takes the person's
own words it joins the item like a message ("语音留言" with the link to hear it), and the
notices about it wait until the job has fetched the audio (bot.app.jobs.fetch_voices) so
they can say how long it is ("语音留言（12秒）"); a while at most (HOLD), then they go as
they are.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.clock import now
from bot.core.events import Inbound
from bot.core.reply import Reply
from bot.outbox import queue as outbox
from bot.rules import media
from bot.rules import voice as spoken
from handlers import items, menu, texts
from handlers.context import Context
from storage.models import Binding, Case

# Words waiting for "1": kept in the conversation with where it stood when they were said.
HEARD = "heard"
# What must be unchanged for a "1" to confirm them (a scan in between moves the step).
WHERE = ("step", "sub", "case_id", "pending_case", "ticket_id")
# How long a voice without words keeps its notices back, waiting for its audio's length.
HOLD = timedelta(minutes=2)


async def hear(ctx: Context) -> Reply | None:
    """The reply where voice decides it (a check-back, "say it again", "not heard"), or
    None: the flow goes on, with `ctx.inbound` the words to use (a confirmed "1" becomes
    the words it confirms, from the voice message, with its link)."""
    inbound = ctx.inbound
    waiting = ctx.state.pop(HEARD, None)
    if isinstance(waiting, dict) and waiting.get("at") == _where(ctx.state):
        said = spoken.answer(inbound.text) if inbound.kind in ("text", "voice") else None
        if said == "1":
            _go_on_with(ctx, waiting)
            return None
        if said == "2":
            return Reply(texts.VOICE_AGAIN)
    if inbound.kind != "voice":
        return None
    if unheard(inbound):
        if menu.takes_own_words(ctx.state):
            return None  # it joins the item (join), as a message would
        if ctx.state.get("case_id") and not ctx.state.get("step"):
            return Reply(texts.VOICE_UNHEARD_MENU)
        return Reply(texts.VOICE_UNHEARD)
    # As typed: without the spaces and the full stop recognition adds.
    ctx.inbound = dataclasses.replace(inbound, text=spoken.tidy(inbound.text))
    to_check = await _to_check(ctx)
    if to_check is None:
        return None
    ctx.state[HEARD] = {
        "said": to_check,
        "message_id": ctx.message_id,
        "media_id": inbound.media_id,
        "at": _where(ctx.state),
    }
    return Reply(texts.VOICE_CONFIRM.format(said=texts.gist(to_check, 80)))


def unheard(inbound: Inbound) -> bool:
    """A voice message WeChat recognised no words in."""
    return inbound.kind == "voice" and not inbound.text.strip()


async def join(ctx: Context, case: Case, binding: Binding) -> Reply | None:
    """A voice without words, in a step that takes the person's own words: it joins the
    item as "语音留言" with the link to hear it; what staff are told of it waits for its
    audio (HOLD)."""
    ctx.inbound = dataclasses.replace(ctx.inbound, text=texts.VOICE_NOTE)
    answer = await menu.handle(ctx, case, binding)
    if ctx.message_id is not None:
        await hold(ctx.session, ctx.message_id)
    return answer


async def _to_check(ctx: Context) -> str | None:
    """The words to check back with the person, or None where they are used as they are."""
    text = ctx.inbound.text
    if ctx.state.get("step") == "verify":
        return spoken.digits_in(text)
    choice = spoken.spoken_choice(text)
    if choice is not None:
        return choice
    if menu.takes_own_words(ctx.state) and not menu.is_command(ctx.inbound.plain):
        return text if await _opens_an_item(ctx) else None
    return None


async def _opens_an_item(ctx: Context) -> bool:
    """Whether words in this step would open a new item (not add to one already open)."""
    case = await ctx.session.get(Case, ctx.state.get("case_id") or 0)
    return case is not None and await items.current(ctx, case) is None


def _where(state: dict[str, Any]) -> list[Any]:
    return [state.get(key) for key in WHERE]


def _go_on_with(ctx: Context, waiting: dict[str, Any]) -> None:
    """The confirmed words, as the voice message that said them: the step files that
    message (and its link) under the item, not the "1"."""
    ctx.inbound = dataclasses.replace(
        ctx.inbound,
        kind="voice",
        raw_type="voice",
        text=str(waiting.get("said") or ""),
        media_id=waiting.get("media_id"),
    )
    if isinstance(waiting.get("message_id"), int):
        ctx.message_id = waiting["message_id"]


# -- notices about a voice without words: held until its length is known -----------------


def _needle(message_id: int) -> str:
    """What a notice about the message holds: its signed link (bot.rules.media)."""
    return f"/media/{message_id}?"


async def hold(session: AsyncSession, message_id: int) -> None:
    """Keep back the notices this transaction queued about the voice message, until its
    audio is fetched (release) or HOLD has passed."""
    moment = now()
    await outbox.hold_mentioning(
        session, _needle(message_id), since=moment - timedelta(minutes=1), until=moment + HOLD
    )


async def release(session: AsyncSession, message_id: int, seconds: float | None) -> int:
    """The voice message's audio is fetched (or will never be): the notices held for it
    go now, saying how long it is when that is known. Returns how many were released."""
    since = now() - media.KEPT_BY_WECHAT - HOLD
    released = 0
    for row_id, payload in await outbox.untried_mentioning(
        session, _needle(message_id), since=since
    ):
        if seconds is not None:
            _say_seconds(payload, message_id, seconds)
        released += await outbox.send_now(session, row_id, payload)
    return released


def _say_seconds(payload: dict[str, Any], message_id: int, seconds: float) -> None:
    """In the notice's words (a notice's params, or a flow's own text), the "语音留言"
    before the message's link becomes "语音留言（12秒）"."""
    note = re.compile(re.escape(texts.VOICE_NOTE) + rf"(?=\n（[^\n]*/media/{message_id}\?)")
    params = payload.get("params")
    holder = params if isinstance(params, dict) else payload
    if isinstance(holder.get("text"), str):
        holder["text"] = note.sub(texts.voice_note(seconds), holder["text"])
