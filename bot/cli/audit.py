"""The audit log: `mst audit verify | anchor | receipt | export | erase`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _find_case, _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    a = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    s = a.add_parser(
        "verify",
        help="check every chain, and every message against the digest its event recorded; "
        "exit 1 naming the first bad event or message (edited or deleted; erased ones are "
        "listed, not counted against it)",
    )
    s.add_argument("--json", action="store_true", help="one JSON object: figures and findings")
    s.set_defaults(run=audit_verify)
    a.add_parser("anchor", help="record every chain's head now").set_defaults(run=audit_anchor)
    s = a.add_parser(
        "receipt", help="look up a receipt (an event hash, or its first 8+ characters)"
    )
    s.add_argument("receipt")
    s.set_defaults(run=audit_receipt)
    s = a.add_parser("export", help="a case's events as JSON Lines")
    s.add_argument("--case", required=True, dest="case_number")
    s.set_defaults(run=audit_export)
    s = a.add_parser(
        "erase",
        help="blank a message's text where the law requires it; the log records who, when, "
        "why and the original digest, and verify then reports it erased, not edited",
    )
    s.add_argument(
        "--message", required=True, type=int, dest="message_id", metavar="N", help="its id"
    )
    s.add_argument("--reason", required=True, help="the legal ground, e.g. 当事人申请删除个人信息")
    s.add_argument("--by", metavar="NAME", help="who orders or does it (default: admin)")
    s.add_argument("--json", action="store_true", help="one JSON object: what was recorded")
    s.set_defaults(run=audit_erase)


_STATE_WORDS = {"edited": "被改动", "deleted": "被删除", "erased": "依法删除"}


async def _case_numbers(session: Any, case_ids: Iterable[int | None]) -> dict[int, str]:
    """Case id -> case number, for the cases named (one query)."""
    from sqlalchemy import select
    from sqlmodel import col

    from storage.models import Case

    ids = {i for i in case_ids if i is not None}
    if not ids:
        return {}
    rows = await session.execute(
        select(col(Case.id), col(Case.case_number)).where(col(Case.id).in_(ids))
    )
    return {case_id: number for case_id, number in rows.all()}


def _finding_row(finding: Any, cases: dict[int, str]) -> dict[str, Any]:
    from bot.core.clock import to_court

    def when(moment: Any) -> str | None:
        return to_court(moment).isoformat() if moment is not None else None

    return {
        "message_id": finding.message_id,
        "case_number": cases.get(finding.case_id) if finding.case_id is not None else None,
        "event_id": finding.event_id,
        "event": finding.event,
        "recorded_at": when(finding.at),
        "erased_at": when(finding.erased_at),
        "erased_by": finding.erased_by,
        "reason": finding.reason,
    }


def _say_finding(finding: Any, cases: dict[int, str]) -> str:
    from bot.core.clock import say_time

    where = cases.get(finding.case_id, f"案件{finding.case_id}") if finding.case_id else "未归案"
    said = f"  消息 {finding.message_id}（{where}"
    if finding.at is not None:
        said += f"，{say_time(finding.at)}记录"
    said += f"，{finding.event}）"
    if finding.state == "deleted":
        return said + "：审计记录还在，消息已被删除"
    erased = (
        f"{say_time(finding.erased_at)}，由 {finding.erased_by} 依法删除，原因：{finding.reason}"
        if finding.erased_at is not None
        else ""
    )
    if finding.state == "erased":
        return f"{said}：{erased}"
    if finding.erased_at is not None:
        return f"{said}：与审计记录不符（{erased}）"
    return said + "：内容与审计记录中的摘要不符"


async def audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            verdict = await audit.verify(session)
            found = verdict.edited + verdict.deleted + verdict.erased
            cases = await _case_numbers(session, (f.case_id for f in found))
        if args.json:
            findings = {
                state: [_finding_row(f, cases) for f in getattr(verdict, state)]
                for state in _STATE_WORDS
            }
            print(
                json.dumps(
                    {
                        "intact": verdict.ok,
                        "events": verdict.events,
                        "chains": verdict.chains,
                        "anchors": verdict.anchors,
                        "problems": verdict.problems,
                        "messages": {
                            "checked": verdict.messages,
                            "not_covered": verdict.not_covered,
                            "unrecorded": verdict.unrecorded,
                            **findings,
                        },
                    },
                    ensure_ascii=False,
                )
            )
            return 0 if verdict.ok else 1
        # The messages first: the verdict stays the last line (scripts read it there).
        summary = f"消息：{verdict.messages} 条已与审计记录核对"
        for state, words in _STATE_WORDS.items():
            if getattr(verdict, state):
                summary += f"，{words} {len(getattr(verdict, state))} 条"
        if verdict.not_covered:
            summary += f"；{verdict.not_covered} 条（早先的答复）审计记录里没有摘要，未核对"
        if verdict.unrecorded:
            summary += f"；{verdict.unrecorded} 条没有对应的审计记录"
        print(summary + "。")
        for state, words in _STATE_WORDS.items():
            found = getattr(verdict, state)
            if found:
                print(f"{words}的消息：")
                for finding in found:
                    print(_say_finding(finding, cases))
        if verdict.ok:
            print(
                f"audit log intact: {verdict.events} events in {verdict.chains} chains, {verdict.anchors} anchors"
            )
        else:
            print(f"audit log BROKEN: first bad event: {verdict.problems[0]}", file=sys.stderr)
            for problem in verdict.problems[1:]:
                print(f"  also: {problem}", file=sys.stderr)
        return 0 if verdict.ok else 1

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


async def audit_erase(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core.clock import say_time, to_court
    from storage import audit

    reason = " ".join(args.reason.split())
    by = " ".join((args.by or "").split()) or "admin"
    if not reason:
        print("mst: 请用 --reason 写明删除的依据，没有改动。", file=sys.stderr)
        return 2

    async def go(db: Any) -> int:
        try:
            async with db.transaction() as session:
                done = await audit.erase_message(session, args.message_id, by=by, reason=reason)
                cases = await _case_numbers(session, [done.case_id])
        except audit.NoSuchMessage:
            print(f"mst: 没有编号为 {args.message_id} 的消息，没有改动。", file=sys.stderr)
            return 2
        except audit.AlreadyErased as exc:
            print(
                f"mst: 消息 {args.message_id} 已于 {say_time(exc.at)} 由 {exc.by} 删除，"
                "不能再删除一次，没有改动。",
                file=sys.stderr,
            )
            return 1
        case_number = cases.get(done.case_id) if done.case_id is not None else None
        if args.json:
            print(
                json.dumps(
                    {
                        "message_id": done.message_id,
                        "case_number": case_number,
                        "erased_at": to_court(done.at).isoformat(),
                        "by": done.by,
                        "reason": done.reason,
                        "sha256": done.sha256,
                        "receipt": done.receipt,
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        where = f"（{case_number}）" if case_number else ""
        print(
            f"已删除消息 {done.message_id}{where}的内容：{say_time(done.at)}，{done.by}，"
            f"原因：{done.reason}。\n审计记录保留了原内容的摘要 {done.sha256[:16]}…，"
            f"mst audit verify 会把它列为依法删除。回执：{done.receipt[:16]}"
        )
        return 0

    return await _with_db(settings, go)
