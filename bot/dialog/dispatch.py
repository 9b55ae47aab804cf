"""Dispatch of one inbound event: store it, load the user's conversation, run the flow
handler, store what it answers. Channels call `handle`; handlers get a `Context`.

A flow too slow for WeChat's 5 s is cut off and rolled back; the message is then stored on
its own with a PendingFlow row, its flow runs again, and its answer goes out through the
outbox. If the process stops before that commits, `resume_stranded` (a job) finishes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from bot.core.addresses import wecom_userid
from bot.core.clock import now
from bot.core.events import Inbound
from bot.core.reply import Reply, as_text
from bot.dialog.deps import Deps
from bot.outbox import queue as outbox
from bot.rules import desk, tickets
from handlers import actions, bind, home, judge, menu, receipt, texts, unsupported, voice
from handlers import desk as desk_flow
from handlers.context import Context
from qr import codes
from storage import audit, conversations, state
from storage.models import Message, PendingFlow, Staff, core_table

log = logging.getLogger(__name__)


_INSERT_MESSAGE = insert(Message).returning(col(Message.id))  # built once: runs twice per message
# Is this user staff? Asked for every message, so only the id, without the ORM.
_STAFF = core_table(Staff)
_STAFF_BY_OPENID = select(_STAFF.c.id).where(_STAFF.c.openid == bindparam("openid"))
# Someone writing from the court's WeCom app (`wecom:<userid>`) is staff by their linked
# userid: a statement of its own, so the WeChat path still asks one prebuilt statement.
_STAFF_BY_WECOM = select(_STAFF.c.id).where(_STAFF.c.wecom_userid == bindparam("userid"))


async def _staff_id(conn: AsyncConnection, user: str) -> int | None:
    """The staff member `user` is, by their WeChat openid or their WeCom userid."""
    userid = wecom_userid(user)
    if userid is None:
        found = await conn.execute(_STAFF_BY_OPENID, {"openid": user})
    else:
        found = await conn.execute(_STAFF_BY_WECOM, {"userid": userid})
    staff_id: int | None = found.scalar()
    return staff_id


# A PendingFlow row this old was left by a process that stopped: its own rerun starts at once.
STRANDED_AFTER = timedelta(minutes=1)


class Duplicate(Exception):
    """The database already holds this delivery (its de-duplication key)."""


class AlreadyRun(Exception):
    """The message's pending flow was run by someone else meanwhile."""


class DeskClosed(Exception):
    """A turn claims a desk session nobody may act in now (ended, idle, someone else's)."""


async def _desk_turn(session: AsyncSession, inbound: Inbound) -> None:
    """At the service desk: the turn's writes become the assistant's for the party; a turn
    whose desk session is not theirs or not open does nothing at all."""
    if inbound.desk is not None and (
        await desk.for_turn(session, inbound.desk, inbound.assisted_by or "", inbound.user) is None
    ):
        raise DeskClosed(inbound.key)


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
    media_id = inbound.media_id if direction == "in" else None
    row = {
        "direction": direction,
        "channel": inbound.channel,
        "openid": inbound.user,
        "msg_key": msg_key,
        "msg_type": msg_type,
        "content": content,
        "media_id": media_id,
        "case_id": case_id,
        "created_at": now(),
    }
    msg_id = (await conn.execute(_INSERT_MESSAGE, row)).scalar_one()
    assert msg_id is not None  # the new row's primary key
    payload = {
        "type": msg_type,
        "sha256": content_digest(content),
        "media_sha256": audit.media_digest(media_id),
        "channel": inbound.channel,
    }
    await audit.append(
        session,
        actor=inbound.user if direction == "in" else "bot",
        action=f"message.{direction}",
        subject=f"message:{msg_id}",
        case_id=case_id,
        payload=payload,
        who=inbound.user,  # on no case: the person's shard of `global`, in and out alike
    )
    return int(msg_id)


async def accept(
    deps: Deps, inbound: Inbound, case_id: int | None, *, pending: bool = False
) -> int:
    """Store the message on its own (when the flow could not run with it): nothing is lost.
    `pending`: its flow is still to run, and a PendingFlow row says so until it has."""
    try:
        async with deps.db.transaction() as session:
            await _desk_turn(session, inbound)
            message_id = await _record_inbound(session, inbound, case_id)
            if pending:
                await (await session.connection()).execute(
                    insert(PendingFlow),
                    {
                        "message_id": message_id,
                        "inbound": json.dumps(dataclasses.asdict(inbound), ensure_ascii=False),
                        "created_at": now(),
                    },
                )
            return message_id
    except IntegrityError as exc:
        raise Duplicate(inbound.key) from exc


def reply_key(msg_key: str) -> str:
    """The key of the answer given in the callback to the message `msg_key`."""
    return f"re:{msg_key}"


async def stored_reply(deps: Deps, msg_key: str) -> tuple[bool, str | None]:
    """Whether a delivery of this message is in the database, and the answer given to it
    in the callback, if one was (an answer that went through the outbox is not)."""
    async with deps.db.sessions() as session:
        found = await session.execute(
            select(col(Message.msg_key), col(Message.content)).where(
                col(Message.msg_key).in_([msg_key, reply_key(msg_key)])
            )
        )
        rows = {key: content for key, content in found.all()}
    return msg_key in rows, rows.get(reply_key(msg_key))


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
) -> tuple[Reply | None, dict[str, Any]]:
    """Run the flow and store its answer (the chat's text of it, as_text) in one
    transaction. Returns the answer and the conversation to keep. A flow still running
    after `within` seconds is cancelled: nothing of it is kept.

    With no `message_id`, the message is stored in the transaction too. With one, it was
    stored before and its PendingFlow row is taken here (AlreadyRun if it is gone); the
    callback's moment has passed, so the answer is queued in the outbox, not returned."""
    resumed = message_id is not None
    async with deps.db.transaction() as session, audit.batch(session):
        await _desk_turn(session, inbound)
        # An app's action is about the case it names, whatever the chat is on.
        on_case = (
            await actions.case_of(session, inbound)
            if inbound.kind == "action"
            else conv.get("case_id")
        )
        if message_id is None:
            try:
                message_id = await _record_inbound(session, inbound, on_case)
            except IntegrityError as exc:
                raise Duplicate(inbound.key) from exc
        elif not await _take_pending(session, message_id):
            raise AlreadyRun(inbound.key)
        ctx = Context(
            session, inbound, deps.settings.flow, deps.redis, deps.rules, dict(conv), message_id
        )
        async with asyncio.timeout(within):
            answer = await route(ctx)
        said = as_text(answer) if answer is not None else ""
        if not said:
            answer = None
        if ctx.state != conv:  # the step survives a Redis restart: it commits with the message
            await conversations.save(session, inbound.user, ctx.state)
        if said:
            await record(
                session,
                direction="out",
                inbound=inbound,
                content=said,
                case_id=on_case if inbound.kind == "action" else ctx.state.get("case_id"),
                msg_type="text",
                # An answer for the callback: findable by a retry whose first delivery's
                # process died before it could answer.
                msg_key=None if resumed else reply_key(inbound.key),
            )
            if resumed:
                await outbox.tell(session, inbound.user, said)
    await _after_commit(ctx)
    deps.wakeup.set()  # the flow may have queued notices: let the delivery loop look now
    return (None if resumed else answer), ctx.state


async def _take_pending(session: AsyncSession, message_id: int) -> bool:
    """Take the message's PendingFlow row for this transaction. On PostgreSQL a second
    taker waits here until the first commits, then finds nothing; SQLite's writers queue."""
    gone = await (await session.connection()).execute(
        delete(PendingFlow).where(col(PendingFlow.message_id) == message_id)
    )
    return bool(gone.rowcount)


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
) -> Reply | None:
    """Store the message and answer it: the Reply, for the channel to render. Normally one
    transaction holds the message, all the flow did and its answer. If the flow fails, or
    is still running after `store_within` seconds, that transaction is rolled back and the
    message is stored on its own first: then a failed flow gets a polite "try again"; a
    slow one runs again without a limit, and its answer goes through the outbox (None is
    returned: the callback says `success`). `accepted` is set as soon as the message is
    safely stored. The answer's chat text is remembered under the message's de-duplication
    key, so a retry of it gets the same answer."""
    async with state.turn(
        deps.redis,
        inbound.user,
        rate_limit=deps.settings.user_rate_per_minute,
        remember=inbound.key,
    ) as turn:
        if not turn.held and not turn.degraded:
            log.warning(
                "%s: previous message still busy; handling %s anyway", inbound.user[:8], inbound.key
            )
        answer = await _in_turn(deps, inbound, turn, accepted, store_within)
        turn.answer = as_text(answer) if answer is not None else ""
        return answer


async def _in_turn(
    deps: Deps,
    inbound: Inbound,
    turn: state.Turn,
    accepted: asyncio.Event | None,
    store_within: float | None,
) -> Reply | None:
    await _recall(deps, inbound.user, turn)
    conv, case_id = turn.conversation, turn.conversation.get("case_id")
    if conv.get("desk") and not desk_flow.own_word(inbound):
        # Staff acting for a party from their own WeChat (代办): this message is the party's.
        return await _for_party(deps, inbound, turn, accepted, store_within)
    if not turn.within_rate:
        # Staff answer many people: they have their own, higher limit (asked only here, past
        # the litigants' one), and what goes over it is refused visibly, never swallowed.
        staff = await _is_staff(deps, inbound.user)
        if not staff or turn.count > deps.settings.staff_rate_per_minute:
            await accept(deps, inbound, case_id)
            _set(accepted)
            if staff:
                return Reply(
                    texts.STAFF_TOO_FAST.format(text=texts.gist(" ".join(inbound.text.split()), 30))
                )
            return Reply(texts.SLOW_DOWN)
    try:
        answer, turn.save = await respond(deps, inbound, conv, within=store_within)
    except Duplicate:
        raise
    except DeskClosed:
        raise  # nothing stored: nobody may act in that desk session now (the caller says so)
    except TimeoutError:
        log.warning(
            "flow for %s passed %.1f s; storing the message first", inbound.key, store_within
        )
        stored = await accept(deps, inbound, case_id, pending=True)
        _set(accepted)
        await _resume(deps, inbound, turn, stored)
        return None  # the answer is in the outbox
    except Exception:
        log.exception("handler failed for %s message %s", inbound.kind, inbound.key)
        # Stored with a PendingFlow row: the resume job runs the flow again later (a
        # database that flapped mid-flow, say), so the message still reaches a person.
        # If this fails too: not stored, WeChat retries.
        await accept(deps, inbound, case_id, pending=True)
        _set(accepted)
        return Reply(texts.BUSY)
    _set(accepted)
    return answer


async def _for_party(
    deps: Deps,
    inbound: Inbound,
    turn: state.Turn,
    accepted: asyncio.Event | None,
    store_within: float | None,
) -> Reply | None:
    """A staff member's message in their desk session: handled as the party's, in the
    party's turn. If the session has ended (30 idle minutes, say), the staff member is
    themselves again and is told so."""
    on = turn.conversation["desk"]
    as_party = dataclasses.replace(inbound, user=on["user"], desk=on["id"], assisted_by=on["staff"])
    try:
        return await handle(deps, as_party, accepted, store_within=store_within)
    except DeskClosed:
        pass
    turn.save = {k: v for k, v in turn.conversation.items() if k != "desk"}
    async with deps.db.transaction() as session:
        await conversations.save(session, inbound.user, turn.save)
    return Reply(texts.DESK_ENDED_BY_ITSELF)


async def _recall(deps: Deps, user: str, turn: state.Turn) -> None:
    """Redis had no conversation for the user (a day idle, or Redis lost it): the one kept
    in the database, if any, is theirs."""
    if not turn.conversation:
        async with deps.db.sessions() as session:
            turn.conversation = await conversations.load(session, user)


async def _is_staff(deps: Deps, user: str) -> bool:
    async with deps.db.sessions() as session:
        return await _staff_id(await session.connection(), user) is not None


async def _resume(deps: Deps, inbound: Inbound, turn: state.Turn, message_id: int) -> None:
    """Run the flow of a message stored with a PendingFlow row, with no time limit; the
    answer goes out through the outbox. If the flow fails, the person is asked (through
    the outbox too) to send it again, as for any failed flow; the message stays stored."""
    try:
        _, turn.save = await respond(deps, inbound, turn.conversation, message_id)
    except AlreadyRun:
        log.info("pending flow of %s was already run", inbound.key)
    except Exception:
        log.exception("handler failed for %s message %s", inbound.kind, inbound.key)
        async with deps.db.transaction() as session:
            if await _take_pending(session, message_id):
                await outbox.tell(session, inbound.user, texts.BUSY)
        deps.wakeup.set()


async def resume_stranded(deps: Deps, limit: int = 20) -> int:
    """Messages whose flow was cut off and whose process stopped before running it again:
    run them now, each in its user's turn. Returns how many were looked at."""
    async with deps.db.sessions() as session:
        rows = (
            await session.execute(
                select(col(PendingFlow.message_id), col(PendingFlow.inbound))
                .where(col(PendingFlow.created_at) < now() - STRANDED_AFTER)
                .order_by(col(PendingFlow.message_id))
                .limit(limit)
            )
        ).all()
    for message_id, raw in rows:
        inbound = Inbound(**json.loads(raw))
        log.warning("resuming the flow of %s, left by a stopped process", inbound.key)
        async with state.turn(
            deps.redis, inbound.user, rate_limit=deps.settings.user_rate_per_minute
        ) as turn:
            await _recall(deps, inbound.user, turn)
            await _resume(deps, inbound, turn, message_id)
    return len(rows)


def _set(accepted: asyncio.Event | None) -> None:
    if accepted is not None:
        accepted.set()


async def route(ctx: Context) -> Reply | None:
    """Which flow handles this event."""
    inbound = ctx.inbound
    if ctx.state.get("step") == "desk":  # a staff member starting 代办 (handlers.desk)
        staff_id = await _staff_id(await ctx.session.connection(), inbound.user)
        if staff_id is not None:
            return await desk_flow.step(ctx, await ctx.session.get_one(Staff, staff_id))
    if wecom_userid(inbound.user) is not None:
        # The court's WeCom app is for staff: nobody there is led into a litigant's flow.
        staff_id = await _staff_id(await ctx.session.connection(), inbound.user)
        if staff_id is None:
            if inbound.kind == "text" and bind.looks_like_bind_code(inbound.text):
                return await bind.staff_bind(ctx)
            return Reply(texts.WECOM_NOT_LINKED)
        if inbound.kind == "subscribe":  # they were given the app: how it works
            return Reply(texts.WECOM_WELCOME.format(example=judge.a_week_on()))
    if (inbound.desk is not None or ctx.state.get("desk")) and inbound.kind in (
        "scan",
        "subscribe",
    ):
        return Reply(texts.DESK_ONE_CASE)  # at the desk, a party is helped on one case only
    if inbound.kind in ("scan", "subscribe") and inbound.code:
        return await bind.scan(ctx)
    if inbound.kind == "unsubscribe":
        return None
    if inbound.kind == "action":  # an app's form: the chat's own flows, by name
        return await actions.run(ctx)
    photo_wanted = inbound.kind == "image" and menu.takes_photo(ctx.state)  # asset-lead photos
    if inbound.kind not in ("text", "voice", "click", "subscribe") and not photo_wanted:
        return await unsupported.reply(ctx)
    staff_id = await _staff_id(await ctx.session.connection(), inbound.user)
    if staff_id is not None and inbound.kind != "subscribe":
        if voice.unheard(inbound):
            return await unsupported.reply(ctx)  # staff commands are read, not heard
        return await judge.command(ctx, await ctx.session.get_one(Staff, staff_id))
    # Voice: its words checked back where a mistake matters; a confirmed "1" goes on as the
    # words it confirms. A voice without words joins an item like a message (below).
    if (heard := await voice.hear(ctx)) is not None:
        return heard
    inbound = ctx.inbound
    text = inbound.text.strip()
    step = ctx.state.get("step")
    if inbound.kind == "text" and (key := receipt.receipt_in(inbound.plain)) is not None:
        return await receipt.check(ctx, key)  # a receipt sent back: checked, in any step
    if inbound.kind in ("text", "voice"):
        # Inside a flow, free text belongs to the flow (a question may look like a code),
        # except a case code that is really one: that opens its case, never joins an item.
        in_flow = menu.takes_free_text(ctx.state)
        if not in_flow and bind.looks_like_bind_code(text):
            return await bind.staff_bind(ctx)
        lookup = await codes.by_typed_text(ctx.session, inbound.plain)
        if lookup is not None and inbound.desk is not None:
            return Reply(texts.DESK_ONE_CASE)
        if lookup is not None and (not in_flow or lookup.status in ("ok", "revoked")):
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
                return await home.switch_to(ctx, int(text))
            return await home.switch_list(ctx)
        ctx.state["case_id"] = cases[0].id
        found = await tickets.active_case(ctx.session, inbound.user, cases[0].id)
        assert found is not None
    if inbound.kind == "subscribe":
        return await home.menu_text(ctx)
    if voice.unheard(inbound):
        return await voice.join(ctx, *found)  # its notices wait for its audio's length
    return await menu.handle(ctx, *found)
