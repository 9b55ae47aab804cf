"""The service desk (陪诉访导): staff acting for a party who is there in person.

An assistant (role `assistant` or `reception`) picks the party from the case's list, sees
their ID, types the last four digits of the phone the person states (wrong digits count
as any wrong verification: bot.rules.attempts), and confirms the person accepted the
consent statement read aloud. Then a `DeskSession` is open: one per staff member and one
per party at a time, ended by the assistant or after 30 idle minutes.

While it is open, the chat's own flows run for the party as `desk:<party id>`
(bot.core.addresses.desk_user), a user bound to this one case only, so the assistant
sees none of the party's other cases and nobody else's items. Every event written in such
a turn names the assistant as actor, the party it was done for, and the consent
(storage.audit.Acting). An item submitted so remembers who helped (`assisted_by_id`).
What the court answers reaches the party's own WeChat when they have one, else the desk
(bot.channels.desk); when they later bind their own WeChat, their items follow them
(bot.rules.bindings.hand_over).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import links
from bot.core.addresses import DESK, DESK_PREFIX, desk_party, desk_user
from bot.core.clock import now
from bot.rules import attempts, bindings, tickets
from storage import audit
from storage.models import (
    AuditEvent,
    Binding,
    Case,
    Court,
    DeskSession,
    Message,
    Outbox,
    Party,
    Staff,
    Ticket,
)

IDLE = timedelta(minutes=30)
SLIP_TTL = timedelta(days=1)  # a slip's link is made to print now, at the desk
ROLES = ("assistant", "reception")
# What the assistant reads aloud and confirms the person accepted; kept word for word.
CONSENT_STATEMENT = "当事人同意由工作人员代为提交，内容已向本人读过"
VIA = ("console", "wechat")


def slip_link(base_url: str, secret: str, ticket_id: int) -> str:
    """The signed address of an item's printable slip (bot.channels.desk)."""
    return f"{base_url}/slip/{ticket_id}?{links.query(secret, SLIP_TTL, 'slip', ticket_id)}"


def slip_valid(secret: str, ticket_id: int, expires: str, sig: str) -> bool:
    return links.valid(secret, expires, sig, "slip", ticket_id)


def may_help(staff: Staff) -> bool:
    """Whether this staff member may act for people at the desk."""
    return staff.active and any(staff.has_role(role) for role in ROLES)


def actor_of(staff: Staff) -> str:
    return f"staff:{staff.username}"


@dataclass(frozen=True)
class Started:
    """`desk` when it opened; else why not (`refused`): role | party | consent | id |
    digits | locked | busy (this assistant helps someone else) | taken (another assistant
    helps this party)."""

    desk: DeskSession | None = None
    refused: str | None = None
    helper: str | None = None  # taken: who helps the party now (their name)


async def parties_of(session: AsyncSession, case: Case) -> list[Party]:
    """The case's parties, in the court's order: the list the assistant chooses from."""
    rows = await session.execute(
        select(Party).where(col(Party.case_id) == case.id).order_by(col(Party.id))
    )
    return list(rows.scalars())


async def open_for(session: AsyncSession, staff_id: int) -> DeskSession | None:
    """The staff member's open desk session, if any; one idle too long is ended here."""
    desk = (
        await session.execute(
            select(DeskSession).where(
                col(DeskSession.staff_id) == staff_id, col(DeskSession.ended_at).is_(None)
            )
        )
    ).scalar_one_or_none()
    return await _unless_idle(session, desk)


async def _open_for_party(session: AsyncSession, party_id: int) -> DeskSession | None:
    desk = (
        await session.execute(
            select(DeskSession).where(
                col(DeskSession.party_id) == party_id, col(DeskSession.ended_at).is_(None)
            )
        )
    ).scalar_one_or_none()
    return await _unless_idle(session, desk)


async def _unless_idle(session: AsyncSession, desk: DeskSession | None) -> DeskSession | None:
    if desk is None or now() - desk.last_active_at <= IDLE:
        return desk
    await _close(session, desk, "idle", "system")
    return None


async def start(
    session: AsyncSession,
    staff: Staff,
    case: Case,
    party_id: int,
    *,
    digits: str,
    id_checked: bool,
    consent: bool,
    via: str,
) -> Started:
    """Open a desk session for `party_id` of `case`, if everything the desk must check holds.
    Nothing is written for a refusal but a wrong try at the digits."""
    if not may_help(staff) or case.court_id != staff.court_id or via not in VIA:
        return Started(refused="role")
    party = await session.get(Party, party_id)
    if party is None or party.case_id != case.id:
        return Started(refused="party")
    if not consent:
        return Started(refused="consent")
    if not id_checked:
        return Started(refused="id")
    if await open_for(session, staff.id or 0) is not None:
        return Started(refused="busy")
    other = await _open_for_party(session, party_id)
    if other is not None:
        helper = await session.get(Staff, other.staff_id)
        return Started(refused="taken", helper=helper.name if helper else None)
    actor = actor_of(staff)
    tries = await attempts.verify_tries(session, actor, case.id or 0)
    if tries.blocked() is not None:
        return Started(refused="locked")
    if digits.strip() != party.phone_tail:
        await bindings.wrong_digits(session, actor, case.id or 0, tries)
        return Started(refused="digits")
    user = desk_user(party_id)
    desk = DeskSession(
        court_id=case.court_id,
        staff_id=staff.id or 0,
        case_id=case.id or 0,
        party_id=party_id,
        user=user,
        via=via,
        consent=CONSENT_STATEMENT,
        id_checked=id_checked,
    )
    # Two desks starting for one person at the same moment: the open-session indexes let
    # one commit; the other's transaction fails (IntegrityError) and changes nothing. No
    # savepoint here: the dialog's audit batch must not lose its cached chain heads.
    session.add(desk)
    await session.flush()
    acting(session, desk, staff)
    existing = (
        await session.execute(
            select(Binding).where(col(Binding.openid) == user, col(Binding.case_id) == case.id)
        )
    ).scalar_one_or_none()
    if existing is None:
        await bindings.bind(session, user, case.id or 0, party, method="assisted")
    await audit.append(
        session,
        actor=user,
        action="desk.started",
        subject=f"desk_session:{desk.id}",
        case_id=case.id,
        payload={"via": via, "statement": CONSENT_STATEMENT, "id_checked": id_checked},
    )
    return Started(desk=desk)


def acting(session: AsyncSession, desk: DeskSession, staff: Staff) -> None:
    """What this transaction writes, it writes as `staff` acting for the desk's party."""
    audit.act_for(
        session,
        audit.Acting(
            actor=actor_of(staff),
            staff_id=staff.id or 0,
            on_behalf_of=desk.user,
            consent=f"desk_session:{desk.id}",
        ),
    )


async def for_turn(
    session: AsyncSession, desk_id: int, staff_username: str, user: str
) -> DeskSession | None:
    """The desk session a turn claims to run in, if it is open, not idle, this staff
    member's and for this user; the turn's writes are then the assistant's for the party
    and the session's idle clock restarts. None: nobody may act in it (ended, idle, or
    someone else's), and the turn must not run."""
    desk = await session.get(DeskSession, desk_id, with_for_update=True)
    if desk is None or desk.ended_at is not None or desk.user != user:
        return None
    staff = await session.get(Staff, desk.staff_id)
    if staff is None or staff.username != staff_username or not may_help(staff):
        return None
    if await _unless_idle(session, desk) is None:
        return None
    desk.last_active_at = now()
    session.add(desk)
    acting(session, desk, staff)
    return desk


async def end(session: AsyncSession, desk: DeskSession, staff: Staff) -> bool:
    """The assistant ends their session (结束代办). False if it was not theirs or had ended."""
    if desk.staff_id != staff.id or desk.ended_at is not None:
        return False
    await _close(session, desk, "ended", actor_of(staff))
    return True


async def _close(session: AsyncSession, desk: DeskSession, reason: str, actor: str) -> None:
    desk.ended_at = now()
    desk.end_reason = reason
    session.add(desk)
    await session.flush()
    await audit.append(
        session,
        actor=actor,
        action="desk.ended",
        subject=f"desk_session:{desk.id}",
        case_id=desk.case_id,
        payload={"reason": reason, "on_behalf_of": desk.user},
    )


async def own_wechat(session: AsyncSession, party_id: int) -> str | None:
    """The party's own account (WeChat or the mini-program), bound to their case, if any:
    where what the court tells them goes instead of the desk."""
    return (
        await session.execute(
            select(col(Binding.openid))
            .where(
                col(Binding.party_id) == party_id,
                col(Binding.openid).not_like(f"{DESK_PREFIX}%"),
            )
            .order_by(col(Binding.verified_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def last_helper(session: AsyncSession, party_id: int) -> Staff | None:
    """Who helped the party at the desk most recently (told when an answer arrives)."""
    staff_id = (
        await session.execute(
            select(col(DeskSession.staff_id))
            .where(col(DeskSession.party_id) == party_id)
            .order_by(col(DeskSession.started_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return await session.get(Staff, staff_id) if staff_id is not None else None


@dataclass(frozen=True)
class AtDesk:
    """Something the court told a party who has no WeChat: kept at the desk to print."""

    letter: Outbox
    party: Party
    case: Case
    ticket: Ticket | None


async def kept_at_desk(session: AsyncSession, court_id: int, limit: int = 50) -> list[AtDesk]:
    """The court's answers delivered to the desk for people with no WeChat of their own,
    newest first."""
    rows = await session.execute(
        select(Outbox, Case, Ticket)
        .join(Case, col(Case.id) == col(Outbox.case_id))
        .outerjoin(Ticket, col(Ticket.id) == col(Outbox.ticket_id))
        .where(
            col(Outbox.channel) == DESK,
            col(Outbox.status) == "sent",
            col(Case.court_id) == court_id,
        )
        .order_by(col(Outbox.id).desc())
        .limit(limit)
    )
    kept = []
    for letter, case, ticket in rows.all():
        party = await session.get(Party, desk_party(letter.recipient) or 0)
        if party is None or party.case_id != case.id:
            continue
        # Someone with their own WeChat heard it there (bot.channels.desk), or has it in
        # 我的诉求 now: the desk has nothing to print for them.
        if await own_wechat(session, party.id or 0) is None:
            kept.append(AtDesk(letter=letter, party=party, case=case, ticket=ticket))
    return kept


async def helpers(session: AsyncSession, tickets: list[Ticket]) -> dict[int, str]:
    """Who submitted which of these items at the desk: ticket id -> the staff member's name
    (what the person reads: "由工作人员赵敏代为提交")."""
    ids = {t.assisted_by_id for t in tickets if t.assisted_by_id is not None}
    if not ids:
        return {}
    rows = await session.execute(
        select(col(Staff.id), col(Staff.name)).where(col(Staff.id).in_(ids))
    )
    names = {staff_id: name for staff_id, name in rows.all()}
    return {
        t.id or 0: names[t.assisted_by_id]
        for t in tickets
        if t.assisted_by_id is not None and t.assisted_by_id in names
    }


@dataclass(frozen=True)
class Slip:
    """What a printed slip says of an item (bot.channels.desk): for the person to take home."""

    ticket: Ticket
    case: Case
    court: Court
    party: Party | None
    holder: Staff | None
    helper: str | None  # the staff member who submitted it for them, if one did
    said: list[Message]  # their own words and the court's answers, oldest first
    receipt: str | None  # the receipt's code (bot.rules.receipts), to check the record


async def slip(session: AsyncSession, ticket_id: int) -> Slip | None:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    case = await session.get_one(Case, ticket.case_id)
    court = await session.get_one(Court, ticket.court_id)
    opened = (
        await session.execute(
            select(col(AuditEvent.hash)).where(
                col(AuditEvent.action) == "ticket.opened",
                col(AuditEvent.subject) == f"ticket:{ticket.id}",
            )
        )
    ).scalar_one_or_none()
    return Slip(
        ticket=ticket,
        case=case,
        court=court,
        party=await session.get(Party, ticket.party_id) if ticket.party_id else None,
        holder=await session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None,
        helper=(await helpers(session, [ticket])).get(ticket_id),
        said=await tickets.thread(session, ticket),
        receipt=opened,
    )
