"""Who may see, do and be told what: the one place the access rules live.

Every listing, command, push, digest and page asks these functions; none decides for
itself. The rules, court first:

- Nothing crosses courts: a staff member sees only tickets of their own court.
- An item routed to a person is seen by that person, by the staff who support them
  (their assistant and clerk: `Staff.supports`) and by their division's leader (role
  `leader`, same team), who may reassign it. Other judges of the team see nothing of it.
- An item in a team inbox (`Ticket.inbox`: reception, supervision, admin) is seen by the
  court's staff with that role, claimed or not.
- A complaint stays within supervision and the leadership above it: never the person it
  names nor those who support that person, never a division leader.

A staff member's relation to a ticket decides the verbs they may use (`VERBS`).

The one exception to "nothing crosses courts" is read-only and holds only figures: staff
with role `province` (the high court's) read every court's dashboard and the province's
view side by side (`reads_province`); they see no court's items, as anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.addresses import wecom_user
from bot.core.clock import now
from storage import audit
from storage.models import Staff, Ticket

INBOX_ROLES = ("reception", "supervision", "admin")
PROVINCE_ROLE = "province"
# Where a complaint may be: supervision, or the leadership up its escalation chain.
COMPLAINT_INBOXES = ("supervision", "admin")

# What each relation allows. A claim also needs the item to be unclaimed.
VERBS: dict[str, frozenset[str]] = {
    "holder": frozenset({"answer", "close", "transfer"}),
    "supporter": frozenset({"answer", "close"}),
    "inbox": frozenset({"answer", "close", "claim", "transfer"}),
    "leader": frozenset({"transfer"}),
}


def reads_province(staff: Staff) -> bool:
    """May read every court's figures (the province's view, each court's dashboard)."""
    return staff.active and staff.has_role(PROVINCE_ROLE)


@dataclass(frozen=True)
class Viewer:
    """A staff member as the rules see them: with the ids of the people they support."""

    staff: Staff
    supports: frozenset[int] = frozenset()

    @property
    def id(self) -> int:
        return self.staff.id or 0


async def viewer(session: AsyncSession, staff: Staff) -> Viewer:
    """The staff member with the people they support, resolved within their own court."""
    names = staff.supported()
    if not names:
        return Viewer(staff)
    ids = (
        await session.execute(
            select(col(Staff.id)).where(
                col(Staff.court_id) == staff.court_id, col(Staff.username).in_(names)
            )
        )
    ).scalars()
    return Viewer(staff, frozenset(i for i in ids if i is not None))


def _names_subject(v: Viewer, t: Ticket) -> bool:
    return t.subject_staff_id is not None and (
        t.subject_staff_id == v.id or t.subject_staff_id in v.supports
    )


def relation(v: Viewer, t: Ticket) -> str | None:
    """How a staff member stands to a ticket: holder, supporter, inbox, leader, or None."""
    s = v.staff
    if not s.active or s.court_id != t.court_id:
        return None
    if t.kind == "complaint":
        if _names_subject(v, t):
            return None
        if t.assignee_id == v.id:
            return "holder"
        return "inbox" if t.inbox is not None and s.has_role(t.inbox) else None
    if t.assignee_id is not None and t.assignee_id == v.id:
        return "holder"
    if t.assignee_id is not None and t.assignee_id in v.supports:
        return "supporter"
    if t.inbox is not None and s.has_role(t.inbox):
        return "inbox"
    if t.inbox is None and s.has_role("leader") and s.team is not None and s.team == t.team:
        return "leader"
    return None


def may_see(v: Viewer, t: Ticket) -> bool:
    return relation(v, t) is not None


def may_act(v: Viewer, t: Ticket, verb: str) -> bool:
    """verb: answer, close, claim or transfer."""
    how = relation(v, t)
    if how is None or verb not in VERBS[how]:
        return False
    return verb != "claim" or t.assignee_id is None


def visible(v: Viewer) -> Any:
    """may_see as an SQL condition on Ticket, for listings and digests."""
    s = v.staff
    if not s.active:
        return false()
    mine = {v.id}
    inboxes = [r for r in INBOX_ROLES if s.has_role(r)]
    in_my_inbox = col(Ticket.inbox).in_(inboxes) if inboxes else false()
    ordinary: list[ColumnElement[bool]] = [
        col(Ticket.assignee_id).in_(mine | v.supports),
        in_my_inbox,
    ]
    if s.has_role("leader") and s.team:
        ordinary.append(and_(col(Ticket.inbox).is_(None), col(Ticket.team) == s.team))
    not_about_me = or_(
        col(Ticket.subject_staff_id).is_(None),
        col(Ticket.subject_staff_id).notin_(mine | v.supports),
    )
    return and_(
        col(Ticket.court_id) == s.court_id,
        or_(
            and_(col(Ticket.kind) != "complaint", or_(*ordinary)),
            and_(
                col(Ticket.kind) == "complaint",
                not_about_me,
                or_(col(Ticket.assignee_id) == v.id, in_my_inbox),
            ),
        ),
    )


def address_of(staff: Staff) -> str | None:
    """Where a staff member is told something: the court's WeCom app when they are linked
    to it (no 48-hour window there), else their own WeChat; None when neither is bound.
    Every notice to staff asks this, so a member is never told twice, nor in two places."""
    if staff.wecom_userid:
        return wecom_user(staff.wecom_userid)
    return staff.openid


def is_away(staff: Staff | None) -> bool:
    return staff is not None and staff.away_until is not None and staff.away_until > now()


async def inbox_members(session: AsyncSession, court_id: int, role: str) -> list[Staff]:
    """The court's active staff with `role`: the members of that team inbox."""
    rows = (
        await session.execute(
            select(Staff)
            .where(
                col(Staff.court_id) == court_id, col(Staff.active), col(Staff.roles).contains(role)
            )
            .order_by(col(Staff.id))
        )
    ).scalars()
    return [s for s in rows if s.has_role(role)]


# Built once: asked for every new item (tickets.route).
_SUPPORTERS = (
    select(Staff)
    .where(
        col(Staff.court_id) == bindparam("court_id"),
        col(Staff.active),
        col(Staff.supports).like(bindparam("pattern"), escape="/"),
    )
    .order_by(col(Staff.id))
)


def _containing(text: str) -> str:
    """A LIKE pattern for `text` anywhere, its own % and _ taken literally."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


async def supporters(session: AsyncSession, person: Staff) -> list[Staff]:
    """The staff of the same court who support `person` (assistant, clerk)."""
    rows = (
        await session.execute(
            _SUPPORTERS,
            {"court_id": person.court_id, "pattern": _containing(person.username)},
        )
    ).scalars()
    return [s for s in rows if person.username in s.supported()]


async def who_is_told(session: AsyncSession, t: Ticket) -> list[Staff]:
    """Who is told news on a ticket (a follow-up, a warning): its holder and their
    supporters, or, while unclaimed, its inbox's members who are at work. Each of them
    may see it: the list is filtered by the same rule."""
    if t.assignee_id is not None:
        holder = await session.get(Staff, t.assignee_id)
        people = [] if holder is None else [holder, *await supporters(session, holder)]
    elif t.inbox is not None:
        people = [s for s in await inbox_members(session, t.court_id, t.inbox) if not is_away(s)]
    else:
        people = []
    return [s for s in people if may_see(await viewer(session, s), t)]


def moved(t: Ticket, target: Staff) -> Ticket:
    """The ticket as it would stand once transferred to `target`: a complaint stays in
    its supervision or leadership inbox, held by the target; an inbox item given to one
    of the inbox's members stays in view of the inbox; anything else becomes the target's."""
    inbox = t.inbox if t.inbox is not None and target.has_role(t.inbox) else None
    if t.kind == "complaint" and inbox is None:
        inbox = next((r for r in COMPLAINT_INBOXES if target.has_role(r)), None)
    return _copy(t, assignee_id=target.id, team=target.team, inbox=inbox)


def may_transfer(v: Viewer, t: Ticket, target: Viewer) -> bool:
    """A transfer is allowed when the mover may transfer, and the item, once moved, is one
    the target may see and handle: so never across courts, never a complaint to the person
    it names or out of supervision, never to someone who then cannot see it."""
    if not may_act(v, t, "transfer") or (target.id == v.id and t.assignee_id == v.id):
        return False
    after = moved(t, target.staff)
    if t.kind == "complaint" and after.inbox not in COMPLAINT_INBOXES:
        return False
    return relation(target, after) == "holder"


def _copy(t: Ticket, **changes: Any) -> Ticket:
    """A detached copy of a ticket with some fields changed (for asking the rules 'what if')."""
    data = t.model_dump()
    data.update(changes)
    return Ticket(**data)


async def record_refusal(
    session: AsyncSession, staff: Staff, ticket: Ticket, *, verb: str, reason: str | None
) -> None:
    """A staff member asked for what these rules refuse them: kept in the record."""
    await audit.append(
        session,
        actor=f"staff:{staff.username}",
        action="ticket.refused",
        subject=f"ticket:{ticket.id}",
        case_id=ticket.case_id,
        payload={"verb": verb, "reason": reason},
    )
