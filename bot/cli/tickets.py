"""Items and their deadlines: `mst ticket history`, `mst overdue`, `mst deadline`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal

from sqlalchemy import select
from sqlmodel import col

from bot.app.config import Settings
from bot.cli.common import _with_db
from bot.rules.history import MOVES
from handlers import texts

_MOVES = MOVES  # events that move an item (bot.cli.audit names them too)


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    t = sub.add_parser("ticket", help="one item").add_subparsers(
        dest="ticket_command", required=True
    )
    s = t.add_parser("history", help="who held it when, and everything done to it")
    s.add_argument("number", type=int)
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=ticket_history)
    s = sub.add_parser("overdue", help="open items past their reply deadline")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=overdue)
    s = sub.add_parser("deadline", help="when an item that came in at a given time is due")
    s.add_argument("--kind", required=True, help="question, complaint, asset_lead or mediation")
    s.add_argument(
        "--from", dest="start", required=True, help="when it came in: 2026-09-30T16:00 (China time)"
    )
    s.add_argument("--court", help="court name (its own deadlines in MST_RULES_FILE)")
    s.add_argument(
        "--close", action="store_true", help="the closing deadline, not the first reply's"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=deadline)


_HISTORY_WORDS = texts.HISTORY_WORDS


_ACTOR_WORDS = {"system": "系统", "admin": "管理员", "import": "导入"}


async def ticket_history(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core.clock import court_tz
    from bot.core.masking import mask_name
    from bot.rules import history
    from handlers import texts
    from storage.models import Party, Ticket

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            ticket = await session.get(Ticket, args.number)
            if ticket is None:
                print(f"mst: 没有 #{args.number} 这个事项", file=sys.stderr)
                return 1
            steps = await history.of_ticket(session, ticket)
            party = await session.get(Party, ticket.party_id) if ticket.party_id else None
        # The litigant is named as the court knows them, masked; never by their openid.
        litigant = f"当事人{mask_name(party.name)}" if party else "当事人"

        def actor(step: history.Step) -> str:
            if step.actor.startswith("staff:"):
                member = step.by
                return f"{member.name}（{member.username}）" if member else step.actor[6:]
            return _ACTOR_WORDS.get(step.actor, litigant)

        rows: list[dict[str, Any]] = []
        for step in steps:
            reason = step.reason
            if step.action in _MOVES and reason is not None:
                reason = texts.move_reason(reason, step.note)
            to = step.to
            rows.append(
                {
                    "at": step.at.astimezone(court_tz()).isoformat(),
                    "action": step.action,
                    "what": _HISTORY_WORDS.get(step.action, step.action),
                    "by": actor(step),
                    "to": (to.staff.name if to.staff else to.team) if to else None,
                    "level": to.level if to else None,
                    "reason": reason,
                }
            )
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        for row in rows:
            line = f"{row['at'][:16].replace('T', ' ')}  {row['what']}  {row['by']}"
            if row["to"]:
                line += f" → {row['to']}（第{row['level']}级）"
            if row["reason"]:
                line += f"  原因：{row['reason']}"
            print(line)
        return 0

    return await _with_db(settings, go)


async def overdue(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core.clock import court_tz, now
    from storage.models import Case, Staff, Ticket

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            rows = (
                await session.execute(
                    select(Ticket, Case)
                    .join(Case, col(Case.id) == col(Ticket.case_id))
                    .where(
                        col(Ticket.status) != "closed",
                        col(Ticket.first_reply_at).is_(None),
                        col(Ticket.due_at) <= now(),
                    )
                    .order_by(col(Ticket.due_at))
                )
            ).all()
            names = dict((await session.execute(select(col(Staff.id), col(Staff.username)))).all())
        items = [
            {
                "ticket": t.id,
                "case_number": c.case_number,
                "kind": t.kind,
                "due_at": t.due_at.astimezone(court_tz()).isoformat() if t.due_at else None,
                "holder": names.get(t.assignee_id) or t.team,
                "level": t.level,
            }
            for t, c in rows
        ]
        if args.json:
            print(json.dumps(items, ensure_ascii=False))
        else:
            for i in items:
                print(
                    f"#{i['ticket']} {i['case_number']} {i['kind']} due {i['due_at']} "
                    f"held by {i['holder']} (level {i['level']})"
                )
            print(f"{len(items)} overdue")
        return 0

    return await _with_db(settings, go)


async def deadline(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot.core.clock import court_tz, say_time
    from bot.rules import deadlines

    if args.kind not in deadlines.KINDS:
        print(f"mst: --kind must be one of {', '.join(deadlines.KINDS)}", file=sys.stderr)
        return 2
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print("mst: --from must be a time like 2026-09-30T16:00 (China time)", file=sys.stderr)
        return 2
    from bot.rules import rulebook

    working = rulebook.of(settings).deadlines
    rules = working.rules
    if args.court and args.court not in rules.courts:
        print(f"mst: no deadlines of its own for {args.court!r}: the defaults", file=sys.stderr)
    which: Literal["reply", "close"] = "close" if args.close else "reply"
    due = working.due(args.kind, start, which=which, court=args.court).astimezone(court_tz())
    if args.json:
        print(json.dumps({"kind": args.kind, "which": which, "due": due.isoformat()}))
    else:
        print(f"{due.isoformat()}  {say_time(due)}")
    return 0
