"""Every letter answered on time (有信必复): early warnings, escalation when a deadline
passes, and items moving off the desk of a judge who is away or silent.

`run` is the periodic job (every minute: in the worker, or in-process; bot/app/jobs.py). Each step is a
guarded UPDATE — `WHERE level = <the level we saw>` / `warned_at IS NULL` — so running it
twice at once, or again after downtime, moves each ticket once per level, not repeatedly.
Every move is one audit event with its reason (a code: OVERDUE, AWAY, …; a transfer's own
words are its `note`), so `mst ticket history N` can say who held an item when, and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import notice
from bot.core.clock import court_tz, now
from bot.core.errors import ConfigError
from bot.core.notice import Notice, iso
from bot.outbox import queue as outbox
from bot.rules import access, tickets
from bot.rules.deadlines import DEFAULT_RULES, Deadlines, Rules
from storage import audit, state
from storage.db import Database
from storage.models import Case, Court, Party, Staff, Ticket

log = logging.getLogger(__name__)

# Why an item moves (its words: handlers.texts.MOVE_REASONS).
OVERDUE = "overdue"  # a first-reply deadline passed unanswered: one level up
AWAY = "away"  # its holder is away
SILENT = "silent"  # its holder has not answered for `silent_after`
CLAIMED = "claimed"  # taken from a team inbox
TRANSFERRED = "transferred"  # given to someone by a staff member
REQUESTED = "requested"  # raised a level by a staff member, their reason its `note`

# Who takes an item when its deadline passes, level by level: the court's reception
# team (集约接待), then its leadership. Complaints start with supervision and go up to the
# leadership. A court may set its own chain per kind in MST_RULES_FILE.
DEFAULT_CHAINS: dict[str, list[str]] = {
    "question": ["reception", "admin"],
    "asset_lead": ["reception", "admin"],
    "mediation": ["reception", "admin"],
    "complaint": ["admin"],
}


@dataclass(frozen=True)
class Policy:
    """How a court escalates, read once at start-up (`load_policy`), with the working time
    its deadlines count in."""

    deadlines: Deadlines = field(default_factory=Deadlines)
    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # court -> kind -> roles
    warn_share: float = 0.75
    away_move_after: timedelta = timedelta(hours=1)
    silent_after: timedelta | None = None  # off unless a court sets it

    def chain(self, court: str, kind: str) -> list[str]:
        return self.chains.get(court, {}).get(kind) or DEFAULT_CHAINS.get(
            kind, ["reception", "admin"]
        )


def load_policy(deadlines: Deadlines) -> Policy:
    """Escalation settings from MST_RULES_FILE (its parsed JSON is in `deadlines.rules`,
    read and checked at start-up), per court and top-level:
    {"courts": {"<court>": {"escalation": {"question": ["reception", "admin"]}}},
     "warn_share": 0.75, "away_move_after_minutes": 60, "silent_after_hours": 24}."""
    rules: Rules = deadlines.rules
    if rules is DEFAULT_RULES or rules.source is None:
        return Policy(deadlines=deadlines)
    raw = rules.raw
    try:
        chains = {
            court: {
                kind: [str(r) for r in roles]
                for kind, roles in (rules.get("escalation") or {}).items()
            }
            for court, rules in (raw.get("courts") or {}).items()
        }
        silent = raw.get("silent_after_hours")
        policy = Policy(
            deadlines=deadlines,
            chains=chains,
            warn_share=float(raw.get("warn_share", 0.75)),
            away_move_after=timedelta(minutes=float(raw.get("away_move_after_minutes", 60))),
            silent_after=timedelta(hours=float(silent)) if silent else None,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"MST_RULES_FILE: bad escalation rules: {exc}") from exc
    if not 0 < policy.warn_share < 1:
        raise ConfigError("MST_RULES_FILE: warn_share must be between 0 and 1")
    return policy


async def _court_name(session: AsyncSession, case: Case) -> str:
    court = await session.get(Court, case.court_id)
    return court.name if court else ""


async def move(
    session: AsyncSession,
    deadlines: Deadlines,
    ticket: Ticket,
    case: Case,
    to: tickets.Routing,
    *,
    action: str,
    reason: str,
    actor: str,
    note: str | None = None,
    expect_level: int | None = None,
    new_level: int | None = None,
) -> bool:
    """Hand a ticket to a new holder: guarded, recorded, and everyone concerned told.
    `reason`: its code (OVERDUE, AWAY, …); `note`: the words a staff member gave for it (a transfer).

    False when someone else moved it first (the guard saw another level or holder)."""
    moment = now()
    before_assignee, before_team, before_level = ticket.assignee_id, ticket.team, ticket.level
    before_inbox = ticket.inbox
    values: dict[str, Any] = {
        "assignee_id": to.assignee.id if to.assignee else None,
        "team": to.team,
        "inbox": to.inbox,
        "holder_since": moment,
        "warned_at": None,
        "level": before_level if new_level is None else new_level,
    }
    if ticket.first_reply_at is None:
        # The new holder gets the kind's full allowance from now.
        values["holder_due_at"] = deadlines.due(
            ticket.kind, moment, court=await _court_name(session, case)
        )
    guard: list[ColumnElement[bool]] = [col(Ticket.id) == ticket.id, col(Ticket.status) != "closed"]
    guard.append(col(Ticket.level) == (before_level if expect_level is None else expect_level))
    guard.append(
        col(Ticket.assignee_id).is_(None)
        if before_assignee is None
        else col(Ticket.assignee_id) == before_assignee
    )
    done = await session.execute(update(Ticket).where(*guard).values(**values))
    if cast(CursorResult[Any], done).rowcount != 1:
        return False
    for key, value in values.items():
        setattr(ticket, key, value)
    party = await session.get(Party, ticket.party_id) if ticket.party_id else None
    said = await tickets.first_words(session, ticket)  # the new holder reads the words
    for staff in to.notify:
        address = access.address_of(staff)
        if address and access.may_see(await access.viewer(session, staff), ticket):
            await outbox.tell(
                session,
                address,
                Notice(
                    notice.TICKET_MOVED_FOR_STAFF,
                    {
                        **tickets.item_params(ticket, case, party, said),
                        "reason": reason,
                        **({"note": note} if note else {}),
                    },
                ),
                case=case,
                ticket_id=ticket.id,
            )
    await outbox.tell_party(
        session,
        ticket.openid,
        Notice(
            notice.TICKET_MOVED_FOR_PARTY,
            {
                "ticket": ticket.id,
                "kind": ticket.kind,
                "holder_name": to.assignee.name if to.assignee else None,
                "holder_role": tickets.title_role(to.assignee) if to.assignee else None,
                "inbox": ticket.inbox,
                # The reply it promises: only while the first reply is still owed.
                "due": iso(ticket.holder_due_at) if ticket.first_reply_at is None else None,
            },
        ),
        case=case,
        ticket_id=ticket.id,
    )
    await audit.append(
        session,
        actor=actor,
        action=action,
        subject=f"ticket:{ticket.id}",
        case_id=case.id,
        payload={
            "reason": reason,
            **({"note": note} if note else {}),
            "from": {
                "assignee_id": before_assignee,
                "team": before_team,
                "inbox": before_inbox,
                "level": before_level,
            },
            "to": {
                "assignee_id": values["assignee_id"],
                "team": to.team,
                "inbox": to.inbox,
                "level": values["level"],
            },
        },
    )
    return True


async def _open_tickets(session: AsyncSession, *conditions: Any) -> list[tuple[Ticket, Case]]:
    rows = await session.execute(
        select(Ticket, Case)
        .join(Case, col(Case.id) == col(Ticket.case_id))
        .where(col(Ticket.status) != "closed", *conditions)
    )
    return [(t, c) for t, c in rows.all()]


async def warn(session: AsyncSession, policy: Policy) -> int:
    """Remind the holder once `warn_share` of the allowed working time has passed."""
    moment = now()
    sent = 0
    for ticket, case in await _open_tickets(
        session,
        col(Ticket.first_reply_at).is_(None),
        col(Ticket.warned_at).is_(None),
        col(Ticket.holder_due_at).is_not(None),
    ):
        assert ticket.holder_due_at is not None
        clock = policy.deadlines.for_court(await _court_name(session, case))
        if moment < clock.warning_point(
            ticket.holder_since, ticket.holder_due_at, policy.warn_share
        ):
            continue
        if moment >= ticket.holder_due_at:
            continue  # escalation's turn, not a warning's
        done = await session.execute(
            update(Ticket)
            .where(
                col(Ticket.id) == ticket.id,
                col(Ticket.warned_at).is_(None),
                col(Ticket.level) == ticket.level,
            )
            .values(warned_at=moment)
        )
        if cast(CursorResult[Any], done).rowcount != 1:
            continue
        for staff in await access.who_is_told(session, ticket):
            if address := access.address_of(staff):
                await outbox.tell(
                    session,
                    address,
                    Notice(
                        notice.TICKET_WARNED,
                        {
                            "ticket": ticket.id,
                            "case_number": case.case_number,
                            "due": iso(ticket.holder_due_at),
                        },
                    ),
                    case=case,
                    ticket_id=ticket.id,
                )
        await audit.append(
            session,
            actor="system",
            action="ticket.warned",
            subject=f"ticket:{ticket.id}",
            case_id=case.id,
            payload={"level": ticket.level, "due_at": ticket.holder_due_at.isoformat()},
        )
        sent += 1
    return sent


async def escalate(session: AsyncSession, policy: Policy) -> int:
    """A first-reply deadline passed unanswered: one level up the court's chain."""
    moved = 0
    for ticket, case in await _open_tickets(
        session, col(Ticket.first_reply_at).is_(None), col(Ticket.holder_due_at) <= now()
    ):
        chain = policy.chain(await _court_name(session, case), ticket.kind)
        if ticket.level >= len(chain):
            continue  # at the top already; it stays on the overdue list
        target = await tickets.role_team(
            session, case.court_id, chain[ticket.level], exclude=ticket.subject_staff_id
        )
        if await move(
            session,
            policy.deadlines,
            ticket,
            case,
            target,
            action="ticket.escalated",
            reason=OVERDUE,
            actor="system",
            expect_level=ticket.level,
            new_level=ticket.level + 1,
        ):
            moved += 1
    return moved


@dataclass(frozen=True)
class Up:
    """Where raising an item takes it: a team inbox of the court's chain, at that level."""

    role: str
    level: int


def next_up(policy: Policy, court: str, ticket: Ticket) -> Up | None:
    """One level up the court's chain for the item's kind, past the inbox it already sits
    in (an item that went to reception off an away judge's desk goes on to the leadership,
    not to reception again). None: at the top already."""
    chain = policy.chain(court, ticket.kind)
    for index in range(ticket.level, len(chain)):
        if chain[index] != ticket.inbox:
            return Up(chain[index], index + 1)
    return None


def may_escalate(v: access.Viewer, ticket: Ticket) -> bool:
    """Raising an item moves it, as a transfer does: whoever the chat lets move it may raise
    it (bot.rules.access: its holder, its inbox's members, the division leader; never a
    supporter), and only while it is open."""
    return ticket.status != "closed" and access.may_act(v, ticket, "transfer")


# Why raising an item did not happen.
AT_TOP = "at_top"  # nowhere further up the chain
NOBODY = "nobody"  # the next inbox has no one (but the person a complaint names) to take it
TAKEN = "taken"  # someone moved it first


@dataclass(frozen=True)
class Raised:
    """What `escalate_now` came to: `up` where it went, else `why` not."""

    up: Up | None
    team: str | None = None  # the inbox's team name, for the words
    why: str | None = None


async def escalation_target(session: AsyncSession, policy: Policy, ticket: Ticket) -> Raised:
    """Where `escalate_now` would take the item now (its inbox and that team's name), else
    why not (AT_TOP, NOBODY): a page offers the button only where it can work."""
    case = await session.get_one(Case, ticket.case_id)
    up = next_up(policy, await _court_name(session, case), ticket)
    if up is None:
        return Raised(None, why=AT_TOP)
    members = await access.inbox_members(session, case.court_id, up.role)
    if not [m for m in members if m.id != ticket.subject_staff_id]:
        return Raised(None, why=NOBODY)
    team = next((m.team for m in members if m.team), None) or tickets.TEAM_NAMES.get(
        up.role, up.role
    )  # as tickets.role_team names it
    return Raised(up, team)


async def escalate_now(
    session: AsyncSession, policy: Policy, ticket: Ticket, by: Staff, reason: str
) -> Raised:
    """A staff member raises an item one level up its chain now (the caller checked
    `may_escalate`). The same move as an overdue escalation (`ticket.escalated`, a new
    allowance for the new holder), recorded with its reason code REQUESTED, the staff member
    as actor and their words as its note: the new inbox's members read them; the litigant is
    told only who handles the item now, never why."""
    where = await escalation_target(session, policy, ticket)
    if where.up is None:
        return where
    case = await session.get_one(Case, ticket.case_id)
    target = await tickets.role_team(
        session, case.court_id, where.up.role, exclude=ticket.subject_staff_id
    )
    moved = await move(
        session,
        policy.deadlines,
        ticket,
        case,
        target,
        action="ticket.escalated",
        reason=REQUESTED,
        note=reason.strip() or None,
        actor=f"staff:{by.username}",
        expect_level=ticket.level,
        new_level=where.up.level,
    )
    return Raised(where.up, target.team) if moved else Raised(None, why=TAKEN)


async def off_absent_desks(session: AsyncSession, policy: Policy) -> int:
    """Open items of a staff member who is away (after `away_move_after`), or silent on
    them for `silent_after`, go to the court's reception team."""
    moment = now()
    moved = 0
    for ticket, case in await _open_tickets(
        session, col(Ticket.assignee_id).is_not(None), col(Ticket.kind) != "complaint"
    ):
        holder = await session.get(Staff, ticket.assignee_id)
        if holder is None:
            continue
        if access.is_away(holder) and ticket.holder_since <= moment - policy.away_move_after:
            reason = AWAY
        elif (
            policy.silent_after is not None
            and ticket.first_reply_at is None
            and ticket.holder_since <= moment - policy.silent_after
        ):
            reason = SILENT
        else:
            continue
        target = await tickets.role_team(session, case.court_id, "reception")
        if await move(
            session,
            policy.deadlines,
            ticket,
            case,
            target,
            action="ticket.moved",
            reason=reason,
            actor="system",
        ):
            moved += 1
    return moved


async def run(db: Database, redis: Redis, policy: Policy) -> dict[str, int]:
    """The periodic job: warnings, escalations, items off absent desks. One process at a
    time (a Redis lock); what it queued is in the outbox when it returns."""
    async with state.try_lock(redis, "deadlines", timeout_s=120) as got:
        if not got:
            return {}
        async with db.transaction() as session:
            result = {
                "warned": await warn(session, policy),
                "escalated": await escalate(session, policy),
                "moved": await off_absent_desks(session, policy),
            }
    if any(result.values()):
        log.info("deadlines: %s", result)
    return result


DIGEST_HOUR = 8  # the morning digest goes after 8:00, the court's time


async def morning_digest(db: Database, redis: Redis, deadlines: Deadlines) -> int:
    """Once each of its working days after 8:00: each court's staff get their open items
    and those due today. Per court: its own calendar (`Deadlines.for_court`: a court whose
    holiday file makes today a day off sends nothing while the others send) and its own
    once-a-day key. The court's time is MST_TIMEZONE (bot.core.clock), the one every
    deadline counts in."""
    today = now().astimezone(court_tz())
    if today.hour < DIGEST_HOUR:
        return 0
    day = today.date().isoformat()
    # The key before the digest went per court: sent already today by an older version.
    if await redis.exists(f"{state.PREFIX}digest:{day}"):
        return 0
    async with db.sessions() as session:
        courts = list((await session.execute(select(Court).order_by(col(Court.id)))).scalars())
    sent = 0
    for court in courts:
        if not deadlines.for_court(court.name).is_workday(today.date()):
            continue
        if not await redis.set(
            f"{state.PREFIX}digest:{court.id}:{day}", "1", nx=True, ex=2 * 86400
        ):
            continue  # another process, or an earlier run today, sent this court's
        sent += await _court_digest(db, court.id or 0, today)
    return sent


async def _court_digest(db: Database, court_id: int, today: datetime) -> int:
    """The digest to each reachable staff member of one court who has open items."""
    end_of_day = datetime.combine(today.date(), datetime.max.time(), court_tz())
    sent = 0
    async with db.transaction() as session:
        staff_rows = (
            await session.execute(
                select(Staff).where(
                    col(Staff.court_id) == court_id,
                    col(Staff.active),
                    col(Staff.openid).is_not(None) | col(Staff.wecom_userid).is_not(None),
                )
            )
        ).scalars()
        for member in staff_rows:
            items = await tickets.open_for_staff(session, await access.viewer(session, member))
            if not items:
                continue
            due_today = [
                t
                for t, _ in items
                if t.holder_due_at and t.holder_due_at <= end_of_day and t.first_reply_at is None
            ]
            await outbox.tell(
                session,
                access.address_of(member),
                Notice(
                    notice.STAFF_DIGEST,
                    {
                        "name": member.name,
                        "count": len(items),
                        "due_today": len(due_today),
                        "items": [
                            {
                                "ticket": t.id,
                                "case_number": c.case_number,
                                "status": t.status,
                                "due": iso(t.holder_due_at) if t.first_reply_at is None else None,
                            }
                            for t, c in items[:10]
                        ],
                    },
                ),
            )
            sent += 1
    return sent


async def claim(session: AsyncSession, deadlines: Deadlines, staff: Staff, ticket: Ticket) -> bool:
    """Take a team-inbox item: the first claim wins (guarded on it still being unclaimed)."""
    case = await session.get(Case, ticket.case_id)
    assert case is not None
    return await move(
        session,
        deadlines,
        ticket,
        case,
        # The inbox keeps it in view; nobody else is told.
        tickets.Routing(staff, ticket.team, ticket.inbox, []),
        action="ticket.claimed",
        reason=CLAIMED,
        actor=f"staff:{staff.username}",
    )


async def transfer(
    session: AsyncSession, deadlines: Deadlines, by: Staff, ticket: Ticket, to: Staff, reason: str
) -> bool:
    """Give the item to `to` (the caller checked access.may_transfer); they and the staff
    who support them are told."""
    case = await session.get(Case, ticket.case_id)
    assert case is not None
    after = access.moved(ticket, to)
    told = [to] if ticket.kind == "complaint" else [to, *await access.supporters(session, to)]
    return await move(
        session,
        deadlines,
        ticket,
        case,
        tickets.Routing(to, after.team, after.inbox, told),
        action="ticket.transferred",
        reason=TRANSFERRED,
        note=reason or None,
        actor=f"staff:{by.username}",
    )


async def set_away(
    session: AsyncSession, staff: Staff, until: datetime | None, *, actor: str
) -> None:
    staff.away_until = until
    session.add(staff)
    await audit.append(
        session,
        actor=actor,
        action="staff.away" if until else "staff.back",
        subject=f"staff:{staff.username}",
        payload={"until": until.isoformat() if until else None},
    )
