"""Tickets: items a litigant raises, who holds them, who may see and answer them.

Every change is written with its audit event and its outbound notices (outbox rows) in
the caller's transaction, so a ticket, its message, its record and its notice are
committed together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from bot.core import notice
from bot.core.clock import now
from bot.core.masking import mask_name
from bot.core.notice import Notice, Param
from bot.core.text import gist
from bot.outbox import queue as outbox
from bot.rules import access
from bot.rules.access import is_away
from bot.rules.deadlines import Deadlines
from storage import audit
from storage.db import insert_new
from storage.models import Binding, Case, Court, Message, Party, Staff, Ticket, core_table


@dataclass(frozen=True)
class Opened:
    ticket: Ticket
    assignee: Staff | None
    receipt: str  # the hash of the ticket's audit event: the litigant can check it later


async def binding_for(session: AsyncSession, openid: str, case_id: int) -> Binding | None:
    return (
        await session.execute(
            select(Binding).where(col(Binding.openid) == openid, col(Binding.case_id) == case_id)
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Routing:
    """Who holds a ticket (a person, or a team inbox by role), who is told, and
    (complaints) whom it is about."""

    assignee: Staff | None
    team: str | None
    inbox: str | None
    notify: list[Staff]
    subject_staff_id: int | None = None


TEAM_NAMES = {"supervision": "督查室", "reception": "集约接待", "admin": "院领导"}


async def role_team(
    session: AsyncSession, court_id: int, role: str, *, exclude: int | None = None
) -> Routing:
    """A team inbox of the court: its staff with `role`; any of them may claim an item.
    `exclude`: the person a complaint names, who is neither told nor able to see it."""
    members = await access.inbox_members(session, court_id, role)
    team = next((m.team for m in members if m.team), None) or TEAM_NAMES.get(role, role)
    notify = [m for m in members if m.id != exclude and not is_away(m)]
    return Routing(None, team, role, notify, exclude)


async def route(session: AsyncSession, case: Case, kind: str, about: str | None = None) -> Routing:
    """The one place that decides where a new item goes.

    Questions and asset leads go to the case's handling judge / enforcement officer (and
    the staff who support them), or to the court's reception team while that person is
    away. Complaints go to the court's supervision team, never to the staff member they
    are about; that person is neither told nor able to see them (bot.rules.access)."""
    if kind == "complaint":
        subject = case.judge_id if about == "staff" else None
        return await role_team(session, case.court_id, "supervision", exclude=subject)
    handler = await session.get(Staff, case.judge_id) if case.judge_id else None
    if handler is None or is_away(handler) or not handler.active:
        return await role_team(session, case.court_id, "reception")
    helpers = [s for s in await access.supporters(session, handler) if not is_away(s)]
    return Routing(handler, handler.team, None, [handler, *helpers])


def item_params(ticket: Ticket, case: Case, party: Party | None, text: str) -> dict[str, Param]:
    """What staff are told of an item (new, added to, moved to them): its number, kind and
    case, who raised it (the name masked) and their words."""
    return {
        "ticket": ticket.id,
        "kind": ticket.kind,
        "case_number": case.case_number,
        "party_role": party.role if party else None,
        "party_name": mask_name(party.name) if party else None,
        "text": text,
    }


async def open_ticket(
    session: AsyncSession,
    *,
    case: Case,
    binding: Binding,
    kind: str,
    text: str,
    message_id: int | None,
    deadlines: Deadlines,
    about: str | None = None,
) -> Opened:
    routing = await route(session, case, kind, about)
    court = await session.get(Court, case.court_id)
    created = now()
    helped = audit.acting(session)  # staff at the desk submitting it for the party
    court_name = court.name if court else None
    first_reply_due = deadlines.due(kind, created, court=court_name)
    ticket = Ticket(
        case_id=case.id or 0,
        court_id=case.court_id,
        kind=kind,
        openid=binding.openid,
        party_id=binding.party_id,
        assignee_id=routing.assignee.id if routing.assignee else None,
        team=routing.team,
        inbox=routing.inbox,
        about=about,
        subject_staff_id=routing.subject_staff_id,
        created_at=created,
        holder_since=created,
        due_at=first_reply_due,
        holder_due_at=first_reply_due,  # the first holder's due time is the promise
        close_due_at=deadlines.due(kind, created, which="close", court=court_name),
        assisted_by_id=helped.staff_id if helped is not None else None,
    )
    await insert_new(session, ticket)
    await _link(session, message_id, ticket)
    party = await session.get(Party, binding.party_id)
    for staff in routing.notify:
        to = access.address_of(staff)
        if to and access.may_see(await access.viewer(session, staff), ticket):
            await outbox.tell(
                session,
                to,
                Notice(notice.TICKET_NEW_FOR_STAFF, item_params(ticket, case, party, text)),
                case=case,
                ticket_id=ticket.id,
            )
    event = await audit.append(
        session,
        actor=binding.openid,
        action="ticket.opened",
        subject=f"ticket:{ticket.id}",
        case_id=case.id,
        payload={
            "kind": kind,
            "about": about,
            "assignee": routing.assignee.username if routing.assignee else None,
            "team": routing.team,
            "due_at": ticket.due_at.isoformat() if ticket.due_at else None,
        },
    )
    return Opened(ticket, routing.assignee, event.hash)


_MESSAGES = core_table(Message)
_LINK = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("message_id"))
    .values(ticket_id=bindparam("ticket_id"))
)


async def file_under(session: AsyncSession, message_id: int | None, ticket: Ticket) -> None:
    """File one more of the litigant's stored messages under the ticket."""
    await _link(session, message_id, ticket)


async def _link(session: AsyncSession, message_id: int | None, ticket: Ticket) -> None:
    """File the litigant's stored message under its ticket (one UPDATE, no reload)."""
    if message_id is not None:
        await (await session.connection()).execute(
            _LINK, {"message_id": message_id, "ticket_id": ticket.id}
        )


async def add_to_ticket(
    session: AsyncSession, ticket: Ticket, case: Case, text: str, message_id: int | None
) -> None:
    """A further text from the litigant on the same ticket; it reaches the same people."""
    await _link(session, message_id, ticket)
    if ticket.status == "answered":
        ticket.status = "open"  # the litigant is waiting again
        session.add(ticket)
    party = await session.get(Party, ticket.party_id) if ticket.party_id else None
    for staff in await access.who_is_told(session, ticket):
        if to := access.address_of(staff):
            await outbox.tell(
                session,
                to,
                Notice(notice.TICKET_ADDED_FOR_STAFF, item_params(ticket, case, party, text)),
                case=case,
                ticket_id=ticket.id,
            )
    await audit.append(
        session,
        actor=ticket.openid,
        action="ticket.message_added",
        subject=f"ticket:{ticket.id}",
        case_id=case.id,
        payload={"message_id": message_id},
    )


async def answer(
    session: AsyncSession, *, staff: Staff, ticket: Ticket, text: str, said: str
) -> Message:
    """`text`, the staff member's answer, goes to the party (a notice); the thread keeps it
    as `said`: the flow's words for it, who answered and what (handlers.texts.ANSWERED)."""
    case = await session.get(Case, ticket.case_id)
    assert case is not None
    msg = Message(
        direction="out",
        openid=ticket.openid,
        msg_type="text",
        content=said,
        case_id=case.id,
        ticket_id=ticket.id,
        staff_id=staff.id,
    )
    session.add(msg)
    await session.flush()
    await outbox.tell_party(
        session,
        ticket.openid,
        Notice(
            notice.TICKET_ANSWERED,
            {
                "ticket": ticket.id,
                "staff_name": staff.name,
                "staff_role": title_role(staff),
                "text": text,
            },
        ),
        case=case,
        ticket_id=ticket.id,
    )
    first = ticket.first_reply_at is None
    ticket.status = "answered"
    if first:
        ticket.first_reply_at = now()
    session.add(ticket)
    await audit.append(
        session,
        actor=f"staff:{staff.username}",
        action="ticket.answered",
        subject=f"ticket:{ticket.id}",
        case_id=case.id,
        # The thread's words by digest, as for every message: verify checks the row by it.
        payload={
            "message_id": msg.id,
            "first_reply": first,
            "sha256": audit.content_digest(said),
        },
    )
    return msg


async def close(session: AsyncSession, *, staff: Staff, ticket: Ticket) -> None:
    """Close the ticket and tell its party, who are asked to rate it: their next message
    answers that (bot.rules.ratings.asked)."""
    case = await session.get(Case, ticket.case_id)
    assert case is not None
    ticket.status = "closed"
    ticket.closed_at = now()
    session.add(ticket)
    await outbox.tell_party(
        session,
        ticket.openid,
        Notice(notice.TICKET_CLOSED, {"ticket": ticket.id, "kind": ticket.kind}),
        case=case,
        ticket_id=ticket.id,
    )
    await audit.append(
        session,
        actor=f"staff:{staff.username}",
        action="ticket.closed",
        subject=f"ticket:{ticket.id}",
        case_id=case.id,
    )


# The roles a staff member is titled by, the first they have (its words: handlers.texts).
TITLE_ROLES = ("judge", "enforcement", "clerk", "mediator", "supervision", "reception")


def title_role(staff: Staff) -> str | None:
    """The role a staff member is titled by (TITLE_ROLES), or None: no title of a role."""
    return next((role for role in TITLE_ROLES if staff.has_role(role)), None)


async def open_for_staff(session: AsyncSession, viewer: access.Viewer) -> list[tuple[Ticket, Case]]:
    """The open items a staff member may see, oldest first (their 待办 and digest)."""
    rows = await session.execute(
        select(Ticket, Case)
        .join(Case, col(Case.id) == col(Ticket.case_id))
        .where(access.visible(viewer), col(Ticket.status) != "closed")
        .order_by(col(Ticket.created_at), col(Ticket.id))
        .limit(20)
    )
    return [(t, c) for t, c in rows.all()]


async def for_user(session: AsyncSession, openid: str, case_id: int) -> list[Ticket]:
    rows = await session.execute(
        select(Ticket)
        .where(col(Ticket.openid) == openid, col(Ticket.case_id) == case_id)
        .order_by(col(Ticket.id).desc())
        .limit(10)
    )
    return list(rows.scalars())


_Judge = aliased(Staff)
_Holder = aliased(Staff)
# Everything a litigant's message may need, in one round trip: the case and their binding,
# and (outer-joined) their party, the court, the case's judge, the ticket the conversation
# is on and its holder. Built once: it runs for nearly every message.
_CASE_CONTEXT = (
    select(Case, Binding, Party, Court, _Judge, Ticket, _Holder)
    .join(Binding, col(Binding.case_id) == col(Case.id))
    .outerjoin(Party, col(Party.id) == col(Binding.party_id))
    .outerjoin(Court, col(Court.id) == col(Case.court_id))
    .outerjoin(_Judge, col(_Judge.id) == col(Case.judge_id))
    .outerjoin(
        Ticket, and_(col(Ticket.id) == bindparam("ticket_id"), col(Ticket.case_id) == col(Case.id))
    )
    .outerjoin(_Holder, col(_Holder.id) == col(Ticket.assignee_id))
    .where(col(Case.id) == bindparam("case_id"), col(Binding.openid) == bindparam("openid"))
)


async def active_case(
    session: AsyncSession, openid: str, case_id: int | None, ticket_id: int | None = None
) -> tuple[Case, Binding] | None:
    """The case a user is working on, if they are (still) verified for it.

    The party, court, judge, and the ticket `ticket_id` with its holder come in the same
    query, so the flow's later `session.get`s of them are answered from the session."""
    if not case_id:
        return None
    row = (
        await session.execute(
            _CASE_CONTEXT, {"case_id": case_id, "openid": openid, "ticket_id": ticket_id or 0}
        )
    ).first()
    if row is None:
        return None
    # The session holds loaded rows weakly; keep these for the rest of the transaction.
    session.info.setdefault("loaded", []).extend(r for r in row if r is not None)
    return row[0], row[1]


async def cases_of(session: AsyncSession, openid: str) -> list[Case]:
    rows = await session.execute(
        select(Case)
        .join(Binding, col(Binding.case_id) == col(Case.id))
        .where(col(Binding.openid) == openid)
        .order_by(col(Binding.id))
    )
    return list(rows.scalars())


async def thread(session: AsyncSession, ticket: Ticket) -> list[Message]:
    """What was said on an item, oldest first: the litigant's messages filed under it and
    the staff's answers (the bot's own replies are not part of it)."""
    rows = await session.execute(
        select(Message)
        .where(
            col(Message.ticket_id) == ticket.id,
            (col(Message.direction) == "in") | col(Message.staff_id).is_not(None),
        )
        .order_by(col(Message.id))
    )
    return list(rows.scalars())


async def first_words(session: AsyncSession, ticket: Ticket, limit: int = 200) -> str:
    """The litigant's own words that opened the item (for notices and listings)."""
    said = [m.content for m in await thread(session, ticket) if m.direction == "in" and m.content]
    return gist("\n".join(said) or "（没有文字）", limit)
