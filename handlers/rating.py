"""Rating (评价): 满意 / 基本满意 / 不满意 and an optional comment, of one ticket's handling
or of the court's service in general. One rating per ticket, changeable within a day."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from bot.core.clock import now
from bot.core.context import Context
from bot.core.reply import Choice, Reply
from bot.rules import tickets
from handlers import home, texts
from storage import audit, conversations, state
from storage.models import Binding, Case, Rating, Ticket

CHANGE_WINDOW = timedelta(days=1)
SCORES = {"1": 1, "2": 2, "3": 3, "满意": 1, "基本满意": 2, "不满意": 3}
SERVICE = "9"
SERVICE_WORDS = "本院的整体服务"
THIS_ONE = "这件事的办理"


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    mine = [
        t
        for t in await tickets.for_user(ctx.session, ctx.inbound.user, case.id or 0)
        if t.status != "open"
    ]
    if not mine:  # nothing of theirs to rate: no list with one choice, straight to the score
        ctx.state.update(step="rate", sub="score", rate_ticket=None)
        return texts.RATE_NOTHING_YET + _score(SERVICE_WORDS)
    # One number per line, the one to reply with; the item is named by its words.
    listed = [
        Choice(
            str(i),
            f"{tickets.KIND_NAMES.get(t.kind, '诉求')}"
            f"“{texts.gist(await tickets.first_words(ctx.session, t), 12)}”"
            f"（{tickets.STATUS_NAMES.get(t.status, t.status)}）",
        )
        for i, t in enumerate(mine[:8], start=1)
    ]
    ctx.state.update(step="rate", sub="pick", rate_options=[t.id for t in mine[:8]])
    return Reply(texts.RATE_PICK_LEAD, (*listed, texts.RATE_SERVICE, texts.TO_MENU))


def _score(what: str, ticket_id: int | None = None) -> Reply:
    return Reply(
        texts.RATE_SCORE_LEAD.format(what=what),
        (*texts.SCORE_CHOICES, texts.TO_MENU),
        item=f"ticket:{ticket_id}" if ticket_id else None,
    )


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    text = ctx.inbound.plain if ctx.state.get("sub") != "comment" else ctx.inbound.text.strip()
    sub = ctx.state.get("sub")
    if sub == "pick":
        options = ctx.state.get("rate_options", [])
        if text == SERVICE:
            ctx.state.update(sub="score", rate_ticket=None)
            return _score(SERVICE_WORDS)
        if text.isdigit() and 1 <= int(text) <= len(options):
            ctx.state.update(sub="score", rate_ticket=options[int(text) - 1])
            return _score(THIS_ONE, options[int(text) - 1])
        return await start(ctx, case, binding)
    if sub == "score":
        score = SCORES.get(text)
        if score is None:
            ticket_id = ctx.state.get("rate_ticket")
            return _score(THIS_ONE if ticket_id else SERVICE_WORDS, ticket_id)
        rating = await _save(ctx, case, score)
        if rating is None:
            return await _done(ctx, texts.RATE_TOO_LATE)
        ctx.state.update(sub="comment", rating_id=rating.id)
        return Reply(texts.RATE_THANKS, (texts.TO_MENU_SAID,), item=f"rating:{rating.id}")
    if sub == "comment" and text:
        rating = await ctx.session.get(Rating, ctx.state.get("rating_id") or 0)
        if rating is not None and rating.openid == ctx.inbound.user:
            rating.comment = text[:500]
            rating.updated_at = now()
            ctx.session.add(rating)
            await audit.append(
                ctx.session,
                actor=ctx.inbound.user,
                action="rating.comment",
                subject=f"rating:{rating.id}",
                case_id=case.id,
            )
        return await _done(ctx, texts.RATE_COMMENT_SAVED)
    return await start(ctx, case, binding)


async def _done(ctx: Context, prefix: str) -> Reply:
    home.home(ctx)
    return prefix + await home.menu_text(ctx)


async def _save(ctx: Context, case: Case, score: int) -> Rating | None:
    """Create or change the rating; None when the one-day window to change it has passed."""
    ticket_id = ctx.state.get("rate_ticket")
    if ticket_id is not None:
        ticket = await ctx.session.get(Ticket, ticket_id)
        if ticket is None or ticket.openid != ctx.inbound.user:  # only your own items
            return None
        existing = (
            await ctx.session.execute(select(Rating).where(col(Rating.ticket_id) == ticket_id))
        ).scalar_one_or_none()
    else:
        existing = (
            await ctx.session.execute(
                select(Rating)
                .where(
                    col(Rating.ticket_id).is_(None),
                    col(Rating.openid) == ctx.inbound.user,
                    col(Rating.case_id) == case.id,
                )
                .order_by(col(Rating.id).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if existing is not None and existing.created_at < now() - CHANGE_WINDOW:
            existing = None  # a service rating is per day: a new day, a new rating
    if existing is not None:
        if existing.created_at < now() - CHANGE_WINDOW:
            return None
        existing.score, existing.updated_at = score, now()
        ctx.session.add(existing)
        rating, action = existing, "rating.changed"
    else:
        rating = Rating(
            ticket_id=ticket_id, case_id=case.id or 0, openid=ctx.inbound.user, score=score
        )
        ctx.session.add(rating)
        action = "rating.given"
    await ctx.session.flush()
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action=action,
        subject=f"rating:{rating.id}",
        case_id=case.id,
        payload={"ticket": ticket_id, "score": score},
    )
    return rating


async def ask_after_close(ctx: Context, ticket: Ticket) -> None:
    """When a ticket is closed, the litigant's next message 1/2/3 rates it. Their
    conversation is kept with the closing (it survives Redis) and cached once it commits."""
    conv: dict[str, Any] = await state.load_conversation(
        ctx.redis, ticket.openid
    ) or await conversations.load(ctx.session, ticket.openid)
    conv.update(case_id=ticket.case_id, step="rate", sub="score", rate_ticket=ticket.id)
    await conversations.save(ctx.session, ticket.openid, conv)
    ctx.after_commit.append(partial(state.save_conversation, ctx.redis, ticket.openid, conv))
