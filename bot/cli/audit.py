"""The audit log: `mst audit verify | anchor | receipt | export`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _find_case, _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    a = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    a.add_parser(
        "verify", help="check every chain; exit 1 naming the first bad event"
    ).set_defaults(run=audit_verify)
    a.add_parser("anchor", help="record every chain's head now").set_defaults(run=audit_anchor)
    s = a.add_parser(
        "receipt", help="look up a receipt (an event hash, or its first 8+ characters)"
    )
    s.add_argument("receipt")
    s.set_defaults(run=audit_receipt)
    s = a.add_parser("export", help="a case's events as JSON Lines")
    s.add_argument("--case", required=True, dest="case_number")
    s.set_defaults(run=audit_export)


async def audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            verdict = await audit.verify(session)
        if verdict.ok:
            print(
                f"audit log intact: {verdict.events} events in {verdict.chains} chains, {verdict.anchors} anchors"
            )
            return 0
        print(f"audit log BROKEN: first bad event: {verdict.problems[0]}", file=sys.stderr)
        for problem in verdict.problems[1:]:
            print(f"  also: {problem}", file=sys.stderr)
        return 1

    return await _with_db(settings, go)


async def audit_anchor(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            ev = await audit.anchor(session)
        print(f"anchor recorded: {ev.hash}" if ev else "nothing new since the last anchor")
        return 0

    return await _with_db(settings, go)


async def audit_receipt(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            found = await audit.find_receipt(session, args.receipt)
            verdict = await audit.verify(session) if found else None
        if not found:
            print(f"mst: no event with receipt {args.receipt!r}", file=sys.stderr)
            return 1
        for ev in found:
            print(
                json.dumps(
                    {
                        "hash": ev.hash,
                        "chain": ev.chain,
                        "seq": ev.seq,
                        "at": ev.at.isoformat(),
                        "action": ev.action,
                        "subject": ev.subject,
                    },
                    ensure_ascii=False,
                )
            )
        if verdict is not None and not verdict.ok:
            print(f"warning: the audit log is broken: {verdict.problems[0]}", file=sys.stderr)
            return 1
        print("the audit log is intact: this record has not been changed since it was made")
        return 0

    return await _with_db(settings, go)


async def audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            for event in await audit.export_case(session, case.id or 0):
                print(json.dumps(event, ensure_ascii=False))
        return 0

    return await _with_db(settings, go)
