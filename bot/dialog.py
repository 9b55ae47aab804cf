"""Dispatch of one inbound event: store it, load the user's conversation, run the flow
handler, store what it answers. Channels call `handle`; handlers get a `Context`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import tickets
from bot.clock import now
from bot.context import Context
from bot.deps import Deps
from bot.events import Inbound
from handlers import bind, judge, menu, texts, unsupported
from qr import codes
from storage import audit, state
from storage.models import Message, Staff

log = logging.getLogger(__name__)


_INSERT_MESSAGE = insert(Message).returning(Message.id)  # built once: runs twice per message
# Is this user staff? Asked for every message, so only the id, without the ORM.
_STAFF_BY_OPENID = select(Staff.__table__.c.id).where(  # type: ignore[attr-defined]
    Staff.__table__.c.openid == bindparam("openid")  # type: ignore[attr-defined]
)


FREE_TEXT_STEPS = {"ask", "complain", "progress", "book", "rate"}


class Duplicate(Exception):
    """The database already holds this delivery (its de-duplication key)."""


def content_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def record(
    session: AsyncSession,
    *,
    direction: str,
    inbound: Inbound,
    content: str,
    case_id: int | None,
    msg_type: str,
    msg_key: str | None = None,
) -> int:
    """Store one message and its audit event (content by digest: the row holds the text).
    Returns the message id. A plain INSERT: this runs twice for every message."""
    conn = await session.connection()
    row = {
        "direction": direction,
        "channel": inbound.channel,
        "openid": inbound.user,
        "msg_key": msg_key,
        "msg_type": msg_type,
        "content": content,
        "media_id": inbound.media_id if direction == "in" else None,
        "case_id": case_id,
        "created_at": now(),
    }
    msg_id = (await conn.execute(_INSERT_MESSAGE, row)).scalar_one()
    await audit.append(
        session,
        actor=inbound.user if direction == "in" else "bot",
        action=f"message.{direction}",
        subject=f"message:{msg_id}",
        case_id=case_id,
        payload={"type": msg_type, "sha256": content_digest(content), "channel": inbound.channel},
    )
    return int(msg_id)


async def accept(deps: Deps, inbound: Inbound, case_id: int | None) -> int:
    """Store the message on its own (when the flow could not run with it): nothing is lost."""
    try:
        async with deps.db.transaction() as session:
            return await _record_inbound(session, inbound, case_id)
    except IntegrityError as exc:
        raise Duplicate(inbound.key) from exc


async def _record_inbound(session: AsyncSession, inbound: Inbound, case_id: int | None) -> int:
    return await record(
        session,
        direction="in",
        inbound=inbound,
        content=inbound.text,
        case_id=case_id,
        msg_type=inbound.raw_type or inbound.kind,
        msg_key=inbound.key,
    )


async def respond(
    deps: Deps,
    inbound: Inbound,
    conv: dict[str, Any],
    message_id: int | None = None,
    *,
    within: float | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Run the flow and store its answer in one transaction; with no `message_id`, the
    message is stored in it too. Returns the answer and the conversation to keep.
    A flow still running after `within` seconds is cancelled: nothing of it is kept."""
    async with deps.db.transaction() as session, audit.batch(session):
        if message_id is None:
            try:
                message_id = await _record_inbound(session, inbound, conv.get("case_id"))
            except IntegrityError as exc:
                raise Duplicate(inbound.key) from exc
        ctx = Context(session, inbound, deps.settings, deps.redis, dict(conv), message_id)
        async with asyncio.timeout(within):
            answer = await route(ctx)
        if answer:
            await record(
                session,
                direction="out",
                inbound=inbound,
                content=answer,
                case_id=ctx.state.get("case_id"),
                msg_type="text",
            )
    await _after_commit(ctx)
    deps.wakeup.set()  # the flow may have queued notices: let the delivery loop look now
    return answer, ctx.state


async def _after_commit(ctx: Context) -> None:
    for effect in ctx.after_commit:
        try:
            await effect()
        except Exception:
            # The message and its answer are stored; a count lost is logged, not shown.
            log.exception("after-commit step failed for %s", ctx.inbound.key)


async def handle(
    deps: Deps,
    inbound: Inbound,
    accepted: asyncio.Event | None = None,
    *,
    store_within: float | None = None,
) -> str | None:
    """Store the message and answer it. Normally one transaction holds the message, all the
    flow did and its answer. If the flow fails, or is still running after `store_within`
    seconds, that transaction is rolled back and the message is stored on its own first:
    then a failed flow gets a polite "try again", a slow one runs again without a limit.
    `accepted` is set as soon as the message is safely stored. The answer is remembered
    under the message's de-duplication key, so a retry of it gets the same answer."""
    async with state.turn(
        deps.redis,
        inbound.user,
        rate_limit=deps.settings.user_rate_per_minute,
        remember=inbound.key,
    ) as turn:
        if not turn.held:
            log.warning(
                "%s: previous message still busy; handling %s anyway", inbound.user[:8], inbound.key
            )
        answer = await _in_turn(deps, inbound, turn, accepted, store_within)
        turn.answer = answer or ""
        return answer


async def _in_turn(
    deps: Deps,
    inbound: Inbound,
    turn: state.Turn,
    accepted: asyncio.Event | None,
    store_within: float | None,
) -> str | None:
    conv, case_id = turn.conversation, turn.conversation.get("case_id")
    if not turn.within_rate:
        await accept(deps, inbound, case_id)
        _set(accepted)
        return texts.SLOW_DOWN
    try:
        answer, turn.save = await respond(deps, inbound, conv, within=store_within)
    except Duplicate:
        raise
    except TimeoutError:
        log.warning(
            "flow for %s passed %.1f s; storing the message first", inbound.key, store_within
        )
        stored = await accept(deps, inbound, case_id)
        _set(accepted)
        return await _respond_or_apologise(deps, inbound, conv, turn, stored)
    except Exception:
        log.exception("handler failed for %s message %s", inbound.kind, inbound.key)
        await accept(deps, inbound, case_id)  # if this fails too: not stored, WeChat retries
        _set(accepted)
        return texts.BUSY
    _set(accepted)
    return answer


async def _respond_or_apologise(
    deps: Deps, inbound: Inbound, conv: dict[str, Any], turn: state.Turn, stored: int
) -> str | None:
    try:
        answer, turn.save = await respond(deps, inbound, conv, stored)
        return answer
    except Exception:
        # The message is stored; the person is told so rather than shown an error.
        log.exception("handler failed for %s message %s", inbound.kind, inbound.key)
        return texts.BUSY


def _set(accepted: asyncio.Event | None) -> None:
    if accepted is not None:
        accepted.set()


async def route(ctx: Context) -> str | None:
    """Which flow handles this event."""
    inbound = ctx.inbound
    if inbound.kind in ("scan", "subscribe") and inbound.code:
        return await bind.scan(ctx)
    if inbound.kind == "unsubscribe":
        return None
    photo_wanted = inbound.kind == "image" and ctx.state.get("sub") == "lead"  # asset-lead photos
    if inbound.kind not in ("text", "voice", "click", "subscribe") and not photo_wanted:
        return await unsupported.reply(ctx)
    if inbound.kind == "voice" and not inbound.text:
        return await unsupported.reply(ctx)  # no speech recognition result to read
    conn = await ctx.session.connection()
    staff_id = (await conn.execute(_STAFF_BY_OPENID, {"openid": inbound.user})).scalar()
    if staff_id is not None and inbound.kind != "subscribe":
        return await judge.command(ctx, await ctx.session.get_one(Staff, staff_id))
    text = inbound.text.strip()
    step = ctx.state.get("step")
    if inbound.kind in ("text", "voice"):
        # Inside a flow, free text belongs to the flow (a question may look like a code).
        in_flow = step in FREE_TEXT_STEPS
        if not in_flow and bind.looks_like_bind_code(text):
            return await bind.staff_bind(ctx)
        lookup = None if in_flow else await codes.by_typed_text(ctx.session, text)
        if lookup is not None:
            return await bind.open_case(ctx, lookup)
        if step == "verify":
            return await bind.verify(ctx)
    found = await tickets.active_case(
        ctx.session, inbound.user, ctx.state.get("case_id"), ctx.state.get("ticket_id")
    )
    if found is None:
        # The conversation was forgotten (a day idle, a restart): the bindings are not.
        ctx.state.pop("case_id", None)
        cases = await tickets.cases_of(ctx.session, inbound.user)
        if not cases:
            return await bind.welcome(ctx)
        if len(cases) > 1:
            if step == "switch" and text.isdigit():
                return await menu.switch_to(ctx, int(text))
            return await menu.switch_list(ctx)
        ctx.state["case_id"] = cases[0].id
        found = await tickets.active_case(ctx.session, inbound.user, cases[0].id)
        assert found is not None
    if inbound.kind == "subscribe":
        return await menu.menu_text(ctx)
    return await menu.handle(ctx, *found)
