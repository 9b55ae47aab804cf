"""Ratings (评价): 满意 (1) / 基本满意 (2) / 不满意 (3), of one ticket's handling or of the
court's service in general. One rating per ticket, changeable within a day; one rating of
the service per case and day.

Closing a ticket asks its party to rate it (bot.rules.tickets.close): the party's next
message answers that, if it is the first since the closing (`asked`). Nothing is written
to the party's conversation by the closing: their own flow reads this fact."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.clock import now
from storage import audit
from storage.conversations import TTL as CONVERSATION_TTL
from storage.models import Message, Rating, Ticket

CHANGE_WINDOW = timedelta(days=1)
# A closing asks for a rating as long as a conversation is remembered: a day.
ASKED_FOR = CONVERSATION_TTL


async def give(
    session: AsyncSession, *, openid: str, case_id: int, ticket_id: int | None, score: int
) -> Rating | None:
    """Rate one of the person's tickets (`ticket_id`) or the service in general (None):
    a new rating, or theirs changed. None when the ticket is not theirs, or the day to
    change the rating has passed."""
    if ticket_id is not None:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None or ticket.openid != openid:  # only your own items
            return None
        existing = (
            await session.execute(select(Rating).where(col(Rating.ticket_id) == ticket_id))
        ).scalar_one_or_none()
    else:
        existing = (
            await session.execute(
                select(Rating)
                .where(
                    col(Rating.ticket_id).is_(None),
                    col(Rating.openid) == openid,
                    col(Rating.case_id) == case_id,
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
        session.add(existing)
        rating, action = existing, "rating.changed"
    else:
        rating = Rating(ticket_id=ticket_id, case_id=case_id, openid=openid, score=score)
        session.add(rating)
        action = "rating.given"
    await session.flush()
    await audit.append(
        session,
        actor=openid,
        action=action,
        subject=f"rating:{rating.id}",
        case_id=case_id,
        payload={"ticket": ticket_id, "score": score},
    )
    return rating


async def comment(
    session: AsyncSession, *, openid: str, case_id: int | None, rating_id: int, text: str
) -> bool:
    """What the person added to their rating `rating_id`; False when it is not theirs."""
    rating = await session.get(Rating, rating_id)
    if rating is None or rating.openid != openid:
        return False
    rating.comment = text[:500]
    rating.updated_at = now()
    session.add(rating)
    await audit.append(
        session,
        actor=openid,
        action="rating.comment",
        subject=f"rating:{rating.id}",
        case_id=case_id,
    )
    return True


# The ticket whose closing last asked this person for a rating, if no message of theirs
# (but this one) came after the closing and it is not rated yet. Built once: it runs for
# a litigant's messages at the menu (Ticket.openid is indexed; the rest is asked only of
# the few tickets closed within ASKED_FOR).
_ASKED = (
    select(Ticket)
    .where(
        col(Ticket.openid) == bindparam("openid"),
        col(Ticket.closed_at) > bindparam("since"),  # closed (a ticket is not reopened)
        ~exists().where(col(Rating.ticket_id) == col(Ticket.id)),
        ~exists().where(
            col(Message.openid) == bindparam("openid"),
            col(Message.direction) == "in",
            col(Message.id) != bindparam("message_id"),
            col(Message.created_at) > col(Ticket.closed_at),
        ),
    )
    .order_by(col(Ticket.closed_at).desc(), col(Ticket.id).desc())
    .limit(1)
)


async def asked(session: AsyncSession, openid: str, message_id: int) -> Ticket | None:
    """The ticket a person's message `message_id` (stored already) rates, if it is their
    first message since a closing asked them to rate it."""
    found = await session.execute(
        _ASKED, {"openid": openid, "since": now() - ASKED_FOR, "message_id": message_id}
    )
    return found.scalars().first()
