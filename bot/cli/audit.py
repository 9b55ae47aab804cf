"""The audit log: `mst audit verify | anchor | receipt | export | erase`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _find_case, _with_db
from bot.cli.tickets import _ACTOR_WORDS, _HISTORY_WORDS, _MOVES
from bot.core.addresses import wecom_user
from bot.core.clock import court_tz, now, say_time, to_court
from bot.core.masking import mask_name
from bot.rules.tickets import title_role
from handlers import texts


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    a = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    s = a.add_parser(
        "verify",
        help="check the events new since the last check (their chains, their messages, the "
        "signed head chain); --full: every chain, every message and the transparency log; "
        "exit 1 naming the first bad event or message (edited or deleted; erased ones are "
        "listed, not counted against it)",
    )
    s.add_argument("--json", action="store_true", help="one JSON object: figures and findings")
    s.add_argument(
        "--full",
        action="store_true",
        help="check everything (every event of every chain, every message, the whole "
        "transparency log: forks, swapped heads), not only what is new",
    )
    s.set_defaults(run=audit_verify)
    a.add_parser("anchor", help="record every chain's head now").set_defaults(run=audit_anchor)
    s = a.add_parser(
        "receipt", help="look up a receipt (an event hash, or its first 8+ characters)"
    )
    s.add_argument("receipt")
    s.set_defaults(run=audit_receipt)
    s = a.add_parser(
        "export",
        help="a case's record: its events as JSON Lines (the default), or readable "
        "(--format json or html): who said what, when, each message checked",
    )
    s.add_argument("--case", required=True, dest="case_number")
    s.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="jsonl",
        help="jsonl: the events as stored, one a line; json: the readable record (texts, "
        "people by name, every check); html: the same as one page to print",
    )
    s.add_argument("--out", metavar="FILE", help="write it to FILE (default: standard output)")
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
    s = a.add_parser(
        "messages",
        help="a case's messages with their ids (what `erase --message` takes): when, who, "
        "the first words; --text: only those containing it",
    )
    s.add_argument("--case", required=True, dest="case_number")
    s.add_argument("--text", metavar="WORDS", help="only messages containing these words")
    s.add_argument("--json", action="store_true", help="one JSON object a message, a line")
    s.set_defaults(run=audit_messages)
    from bot.cli import transparency  # `mst audit publish`: the transparency log's head

    transparency.add_to(a)


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
    from bot.app.jobs import extend_log
    from bot.rules import rulebook
    from storage import audit, transparency

    signer = rulebook.of(settings).signer

    async def go(db: Any) -> int:
        log_problems: list[str] = []
        if signer is not None:  # what the job has not put in yet goes in first (as publish)
            jobs_log = logging.getLogger("bot.app.jobs")
            level = jobs_log.level
            jobs_log.setLevel(logging.WARNING)  # its "head signed" line: not verify's output
            try:
                await extend_log(db, signer)
            except transparency.LogDamaged as exc:
                log_problems.append(f"transparency log: {exc}")
            finally:
                jobs_log.setLevel(level)
        inc: transparency.Incremental | None = None
        logv: transparency.LogVerdict | None = None
        async with db.transaction() as session:
            if not args.full and signer is not None and not log_problems:
                inc = await transparency.verify_since(
                    session, signer.public_key, past_keys=signer.past_keys
                )
            head = await transparency.latest_head(session)
            if inc is not None:
                verdict = inc.verdict
                log_problems += inc.problems
            elif signer is not None:
                verdict, logv = await transparency.verify_full(
                    session, signer.public_key, past_keys=signer.past_keys
                )
                log_problems += logv.problems
            else:
                verdict = await audit.verify(session)
            ok = verdict.ok and not log_problems
            if ok and signer is not None:
                await transparency.record_check(
                    session,
                    inc.head if inc is not None else head,
                    mode=transparency.INCREMENTAL if inc is not None else transparency.FULL,
                    events=verdict.events,
                )
            found = verdict.edited + verdict.deleted + verdict.erased
            cases = await _case_numbers(session, (f.case_id for f in found))
        problems = verdict.problems + log_problems
        mode = "incremental" if inc is not None else "full"
        if args.json:
            findings = {
                state: [_finding_row(f, cases) for f in getattr(verdict, state)]
                for state in _STATE_WORDS
            }
            log: dict[str, Any] | None = None
            if inc is not None:
                log = {
                    "from_size": inc.since.size,
                    "size": inc.head.size if inc.head is not None else 0,
                    "root": inc.head.root if inc.head is not None else None,
                    "new_leaves": inc.leaves,
                    "chain_only": inc.chain_only,
                }
            elif logv is not None:
                log = {
                    "size": head.size if head is not None else 0,
                    "root": head.root if head is not None else None,
                    "leaves": logv.leaves,
                    "heads": logv.heads,
                    "unsequenced": logv.unsequenced,
                }
            print(
                json.dumps(
                    {
                        "intact": ok,
                        "mode": mode,
                        "events": verdict.events,
                        "chains": verdict.chains,
                        "anchors": verdict.anchors,
                        "problems": problems,
                        "messages": {
                            "checked": verdict.messages,
                            "not_covered": verdict.not_covered,
                            "unrecorded": verdict.unrecorded,
                            **findings,
                        },
                        "log": log,
                    },
                    ensure_ascii=False,
                )
            )
            return 0 if ok else 1
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
        if inc is not None:
            size = inc.head.size if inc.head is not None else 0
            line = (
                f"增量核对：上次核对到第 {inc.since.size} 条，本次新增 {verdict.events} 条事件"
                f"（{verdict.chains} 条链），签名树头到第 {size} 条"
            )
            if inc.chain_only:
                line += f"；其中 {inc.chain_only} 条尚未进入签名树头，只按链核对"
            print(line + "。")
            print(
                "增量核对只覆盖新事件和签名树头链；旧事件的改动请用 mst audit verify --full 全量核对。"
            )
        elif logv is not None:
            line = f"透明日志：{logv.leaves} 个叶子、{logv.heads} 个签名树头已全量核对"
            if logv.unsequenced:
                line += f"；{logv.unsequenced} 条事件尚未进入日志"
            print(line + "。")
        if ok and inc is not None:
            print(
                f"audit log intact: {verdict.events} new events in {verdict.chains} chains, "
                f"{verdict.anchors} anchors (incremental since {inc.since.size} leaves; "
                "--full checks everything)"
            )
        elif ok:
            print(
                f"audit log intact: {verdict.events} events in {verdict.chains} chains, {verdict.anchors} anchors"
            )
        else:
            print(f"audit log BROKEN: first bad event: {problems[0]}", file=sys.stderr)
            for problem in problems[1:]:
                print(f"  also: {problem}", file=sys.stderr)
            if inc is not None:
                print(
                    "增量核对发现问题；请用 mst audit verify --full 全量核对并定位。",
                    file=sys.stderr,
                )
        return 0 if ok else 1

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
            # The record's own chain (as the receipt page checks it), not the whole log:
            # one look-up costs what its chain costs (`mst audit verify` checks the rest).
            verdict = None
            for chain in dict.fromkeys(ev.chain for ev in found):
                verdict = await audit.verify(session, chain=chain, limit_problems=1)
                if not verdict.ok:
                    break
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
            print(f"warning: the record's chain is broken: {verdict.problems[0]}", file=sys.stderr)
            return 1
        print("the record's chain is intact: this record has not been changed since it was made")
        return 0

    return await _with_db(settings, go)


EXPORT_FORMATS = ("jsonl", "json", "html")


async def audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from storage import audit
    from storage.models import Court

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            if args.format == "jsonl":
                events = await audit.export_case(session, case.id or 0)
                said = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
                readable = None
            else:
                record = await audit.case_record(session, case.id or 0)
                court = await session.get(Court, case.court_id)
                people = await _People.load(session, case)
                readable = _readable(case, court, record, people)
                readable["log"] = await _log_proofs(session, record, readable["events"])
        if readable is not None:
            said = (
                _html(readable)
                if args.format == "html"
                else json.dumps(readable, ensure_ascii=False, indent=2) + "\n"
            )
        if args.out is None:
            sys.stdout.write(said)
        else:
            try:
                await asyncio.to_thread(Path(args.out).write_text, said, encoding="utf-8")
            except OSError as exc:
                print(f"mst: cannot write {args.out}: {exc}", file=sys.stderr)
                return 1
            print(f"已写入 {args.out}")
        if readable is not None and not readable["summary"]["intact"]:
            print(
                f"注意：{case.case_number} 的记录有异常（见导出的摘要），请用 mst audit verify 复核。",
                file=sys.stderr,
            )
        return 0

    return await _with_db(settings, go)


# -- the readable record (--format json | html) ------------------------------------------

# Who did it, where the record names no person (`mst ticket history` says the same).
_ACTORS = {
    **_ACTOR_WORDS,
    "bot": "码上通（自动回复）",
    "worker": "系统（发送通知）",
    "cli": "管理员（命令行）",
    "demo": "演示",
    "enforcement-system": "执行案件管理系统",
}
UNKNOWN_PERSON = "未登记的身份"  # an id the court cannot put a name to: never shown raw
# Payload fields that hold a person's channel id.
_PERSON_FIELDS = frozenset({"to", "openid", "on_behalf_of", "user", "recipient"})
# What an event did, in words (the items' own: `mst ticket history`'s, bot.cli.tickets).
_DID = {
    "code.issued": "生成案件二维码",
    "code.revoked": "停用案件二维码",
    "code.scanned": "扫描案件二维码",
    "bind.verified": "核实身份，绑定本案",
    "bind.failed": "核实身份未通过（手机号后四位不符）",
    "bind.case_paused": "暂停本案手机号核实（错误次数过多）",
    "case.updated": "更新案件信息",
    "message.delivered": "通知送达",
    "delivery.failed": "通知发送失败",
    "delivery.requeued": "重新发送通知",
    "rating.given": "评价",
    "rating.changed": "修改评价",
    "rating.comment": "补充评价意见",
    "mediation.booked": "预约调解",
    "mediation.cancelled": "取消调解预约",
    "mediation.no_show": "记录调解未到场",
    "enforcement.event": "执行进展",
    "message.erased": "依法删除消息内容",
}
# A message's check, in words.
CHECK_WORDS = {
    "ok": "✔ 与记录一致",
    "edited": "✘ 内容被改动",
    "deleted": "✘ 被删除",
    "erased": "依法删除",
    "not_covered": "未核对（记录中没有摘要）",
    "unrecorded": "✘ 没有对应的审计记录（记录之外插入）",
}
_SCORES = {int(c.key): c.label for c in texts.SCORE_CHOICES}


def _when(moment: datetime) -> str:
    return to_court(moment).strftime("%Y-%m-%d %H:%M")


async def audit_messages(settings: Settings, args: argparse.Namespace) -> int:
    """A case's messages by id, oldest first, so an operator can name the one to erase."""
    from sqlalchemy import select
    from sqlmodel import col

    from bot.core.text import gist
    from storage.models import Message

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            query = select(Message).where(col(Message.case_id) == case.id)
            if args.text:
                query = query.where(col(Message.content).contains(args.text, autoescape=True))
            found = list((await session.execute(query.order_by(col(Message.id)))).scalars())
            people = await _People.load(session, case)
        for m in found:
            who = (
                people.staff(people.by_id[m.staff_id])
                if m.staff_id in people.by_id
                else people.person(m.openid)
                if m.direction == "in"
                else {"kind": "system", "label": "码上通（自动回复）"}
            )
            said = m.content or ("（图片等附件）" if m.media_id else "（空，或已依法删除）")
            if args.json:
                row = {
                    "message_id": m.id,
                    "at": to_court(m.created_at).isoformat(timespec="seconds"),
                    "direction": m.direction,
                    "who": who["label"],
                    "ticket": m.ticket_id,
                    "text": m.content,
                    "attachment": m.media_id is not None,
                }
                print(json.dumps(row, ensure_ascii=False))
            else:
                print(
                    f"消息 {m.id}  {say_time(m.created_at)}  {who['label']}  "
                    f"{gist(' '.join(said.split()), 40)}"
                )
        if not found and not args.json:
            print(f"{case.case_number} 没有{'含“' + args.text + '”的' if args.text else ''}消息。")
        return 0

    return await _with_db(settings, go)


class _People:
    """The people a case's record names, as a reader may see them: staff by title and
    name, litigants by role and masked name; never by a channel id."""

    def __init__(self, staff: list[Any], parties: dict[str, Any]) -> None:
        self.by_username = {m.username: m for m in staff}
        self.by_id = {m.id: m for m in staff}
        self.by_openid = {m.openid: m for m in staff if m.openid}
        # Staff writing from the court's WeCom app are `wecom:<userid>` (bot.core.addresses).
        self.by_openid |= {wecom_user(m.wecom_userid): m for m in staff if m.wecom_userid}
        self.parties = parties  # channel id -> the party it is bound as, in this case

    @classmethod
    async def load(cls, session: Any, case: Any) -> _People:
        from sqlalchemy import select
        from sqlmodel import col

        from storage.models import Binding, Party, Staff

        staff = list((await session.execute(select(Staff))).scalars())
        bound = await session.execute(
            select(col(Binding.openid), Party)
            .join(Party, col(Party.id) == col(Binding.party_id))
            .where(col(Binding.case_id) == case.id)
        )
        return cls(staff, {openid: party for openid, party in bound.all()})

    def staff(self, member: Any) -> dict[str, Any]:
        title = texts.staff_title(member)
        return {
            "kind": "staff",
            "name": member.name,
            "title": title,
            "username": member.username,
            "label": texts.say_holder(member.name, title_role(member), None),
        }

    def person(self, external_id: str | None) -> dict[str, Any]:
        """Someone by their channel id (an openid)."""
        member = self.by_openid.get(external_id) if external_id else None
        if member is not None:
            return self.staff(member)
        party = self.parties.get(external_id) if external_id else None
        if party is not None:
            name = mask_name(party.name)
            return {
                "kind": "litigant",
                "role": party.role,
                "name": name,
                "label": f"{party.role}{name}",
            }
        return {"kind": "unknown", "label": UNKNOWN_PERSON}

    def actor(self, raw: str) -> dict[str, Any]:
        """Who an event says did it: a staff username, a word for the system, or an id."""
        if raw.startswith("staff:"):
            member = self.by_username.get(raw[6:])
            if member is not None:
                return self.staff(member)
            return {"kind": "staff", "username": raw[6:], "label": f"工作人员（{raw[6:]}）"}
        if raw in _ACTORS:
            return {"kind": "system", "label": _ACTORS[raw]}
        return self.person(raw)

    def holder(self, to: dict[str, Any]) -> str | None:
        """Who holds an item after a move (an event's `to`), as the litigant is told."""
        member = self.by_id.get(to.get("assignee_id"))
        if member is not None:
            return str(self.staff(member)["label"])
        return to.get("team") or (texts.WHO.get(to["inbox"]) if to.get("inbox") else None)

    def scrub(self, value: Any, key: str | None = None) -> Any:
        """A payload with every channel id put as the person it names."""
        if isinstance(value, dict):
            return {k: self.scrub(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        if isinstance(value, str) and (
            key in _PERSON_FIELDS or value in self.by_openid or value in self.parties
        ):
            return self.person(value)["label"]
        return value


def _ticket_number(subject: str) -> int | None:
    kind, _, ref = subject.partition(":")
    return int(ref) if kind == "ticket" and ref.isdigit() else None


def _message_row(m: Any, people: _People, actor: dict[str, Any] | None) -> dict[str, Any]:
    """A message as the readable record shows it: its words (none once erased or gone),
    who it is from or to, and its check in words."""
    if m.text:
        text: str | None = m.text
    elif m.check != "erased" and m.msg_type in texts.MEDIA_WORDS:
        text = texts.unsaid(m.msg_type)  # a photo or a voice message: [照片]
    else:
        text = None  # gone, erased, or nothing said (a scan)
    words = CHECK_WORDS[m.check]
    erased = None
    if m.finding is not None and m.finding.erased_at is not None:
        erased = {
            "at": to_court(m.finding.erased_at).isoformat(),
            "by": m.finding.erased_by,
            "reason": m.finding.reason,
        }
        if m.check == "erased":
            words = f"依法删除于 {_when(m.finding.erased_at)}，由 {m.finding.erased_by}，原因：{m.finding.reason}"
    return {
        "id": m.message_id,
        "direction": m.direction,
        "type": m.msg_type,
        "from": actor or (people.person(m.openid) if m.direction == "in" else None),
        "to": people.person(m.openid) if m.direction == "out" else None,
        "ticket": m.ticket_id,
        "text": text,
        "media": m.media,
        "check": m.check,
        "check_words": words,
        "recorded_sha256": m.recorded_sha256,
        "erased": erased,
    }


def _did(
    e: Any, payload: Any, people: _People, kinds: dict[int, str], message: dict[str, Any] | None
) -> str:
    """What an event did, in plain words: 咨询 #1, 答复 #1, 转办 #1 → 法官李四 …"""
    p = payload if isinstance(payload, dict) else {}
    number = _ticket_number(e.subject)
    item = f" #{number}" if number is not None else ""
    if e.action == "message.in":
        ticket = message["ticket"] if message else None
        if ticket is not None:
            return f"{texts.kind_name(kinds.get(ticket, ''))} #{ticket}"
        kind = (message or {}).get("type") or ""
        if kind == "event.scan":
            return "扫码"
        if kind.startswith("event."):
            return "操作菜单"
        return {"image": "发来照片", "voice": "发来语音"}.get(kind, "发来消息")
    if e.action == "message.out":
        to = (message or {}).get("to") or {}
        return f"回复{to.get('label', '')}"
    if e.action == "ticket.opened":
        kind = texts.kind_name(str(p.get("kind") or ""))
        member = people.by_username.get(p.get("assignee") or "")
        holder = people.staff(member)["label"] if member else p.get("team")
        return f"提交{kind}{item}" + (f"，交{holder}办理" if holder else "")
    if e.action in _HISTORY_WORDS:
        said = f"{_HISTORY_WORDS[e.action]}{item}"
        if e.action in _MOVES and isinstance(p.get("to"), dict):
            holder = people.holder(p["to"])
            if holder:
                said += f" → {holder}"
        return said
    if e.action in ("rating.given", "rating.changed"):
        score = _SCORES.get(p["score"], "") if isinstance(p.get("score"), int) else ""
        what = f" #{p['ticket']}" if p.get("ticket") else "本院的整体服务"
        return f"{_DID[e.action]}{what}：{score}"
    if e.action == "enforcement.event":
        return f"执行进展：{texts.EVENT_NAMES.get(str(p.get('kind')), str(p.get('kind')))}"
    if e.action in ("message.delivered", "delivery.failed") and p.get("to"):
        ticket = f"（#{p['ticket']}）" if p.get("ticket") else ""
        return f"{_DID[e.action]}{ticket}：{people.person(p['to'])['label']}"
    if e.action == "message.erased":
        return f"{_DID[e.action]}（消息 {p.get('message_id')}）"
    return _DID.get(e.action, str(e.action))


def _why(e: Any, payload: Any) -> str | None:
    """A move's reason (as `mst ticket history` names it), an erasure's or a refusal's."""
    p = payload if isinstance(payload, dict) else {}
    reason = p.get("reason")
    if not isinstance(reason, str) or not reason:
        return None
    if e.action in _MOVES:
        return texts.move_reason(reason, p.get("note"))
    return reason


async def _log_proofs(session: Any, record: Any, events: list[dict[str, Any]]) -> Any:
    """Each event's place in the transparency log, with its inclusion proof against the
    latest signed head (put in the event as `log`), and that head: anyone can check the
    record is the one the court's log holds (RFC 6962), without trusting this file."""
    from bot.app.transparency import head_json
    from storage import transparency

    head = await transparency.latest_head(session)
    if head is None:
        return None
    for entry, shown in zip(record.entries, events, strict=True):
        try:
            found = await transparency.inclusion(session, event_id=entry.id, size=head.size)
        except (transparency.NotInLog, transparency.OutOfRange):
            shown["log"] = None  # written after the head: in the next one
            continue
        except transparency.LogDamaged:
            shown["log"] = {"damaged": True}
            continue
        shown["log"] = {
            "leaf_index": found.leaf_index,
            "leaf_hash": found.leaf_hash,
            "proof": found.proof,
        }
    return {
        "head": head_json(head),
        "how": "RFC 6962: leaf_hash = SHA-256(0x00 || bytes.fromhex(hash)); the proof leads "
        "from it to head.root; /transparency/key verifies head.signature",
    }


def _readable(case: Any, court: Any, record: Any, people: _People) -> dict[str, Any]:
    """The case's record as a reader needs it (the JSON export; the page is drawn from it)."""
    kinds: dict[int, str] = {}
    for e in record.entries:
        number = _ticket_number(e.subject)
        if e.action == "ticket.opened" and number is not None and isinstance(e.payload, dict):
            kinds[number] = str(e.payload.get("kind") or "")
    judge = people.by_id.get(case.judge_id)
    events = []
    for e in record.entries:
        actor = people.actor(e.actor)
        payload = e.payload
        on_behalf = payload.get("on_behalf_of") if isinstance(payload, dict) else None
        if on_behalf:
            actor = {**actor, "label": f"{actor['label']}（代{people.person(on_behalf)['label']}）"}
        message = _message_row(e.message, people, actor) if e.message is not None else None
        events.append(
            {
                "seq": e.seq,
                "at": to_court(e.at).isoformat(),
                "who": actor,
                "action": e.action,
                "what": _did(e, payload, people, kinds, message),
                "why": _why(e, payload),
                "subject": e.subject,
                "message": message,
                "links": e.links,
                "intact": e.intact,
                "payload": people.scrub(payload),
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            }
        )
    items: dict[int, dict[str, Any]] = {}
    for e, shown in zip(record.entries, events, strict=True):
        number = _ticket_number(e.subject)
        if number is None or not e.action.startswith("ticket."):
            continue
        item = items.setdefault(
            number,
            {
                "ticket": number,
                "kind": kinds.get(number),
                "kind_name": texts.kind_name(kinds.get(number, "")),
                "history": [],
            },
        )
        p = e.payload if isinstance(e.payload, dict) else {}
        holder = None
        if e.action == "ticket.opened":
            member = people.by_username.get(p.get("assignee") or "")
            holder = people.staff(member)["label"] if member else p.get("team")
        elif e.action in _MOVES and isinstance(p.get("to"), dict):
            holder = people.holder(p["to"])
        level = p["to"].get("level") if isinstance(p.get("to"), dict) else None
        item["history"].append(
            {
                "at": shown["at"],
                "action": e.action,
                "what": _HISTORY_WORDS.get(e.action, e.action),
                "by": shown["who"]["label"],
                "holder": holder,
                "level": level if isinstance(level, int) and level > 0 else None,
                "reason": shown["why"],
            }
        )
    verdict = record.verdict
    # Each message once (an erased one is named by its event and by its erasure's).
    checks = list(
        {ev["message"]["id"]: ev["message"]["check"] for ev in events if ev["message"]}.values()
    )
    unrecorded = [_message_row(m, people, None) for m in record.unrecorded]
    return {
        "court": court.name if court else None,
        "case_number": case.case_number,
        "case_type": case.case_type,
        "cause": case.cause,
        "judge": people.staff(judge)["label"] if judge else None,
        "exported_at": to_court(now()).isoformat(),
        "time_zone": str(court_tz()),
        "summary": {
            "intact": record.intact,
            "events": len(events),
            "messages": len(checks) + len(unrecorded),
            **{state: checks.count(state) for state in CHECK_WORDS if state != "unrecorded"},
            "unrecorded": len(unrecorded),
            "events_edited": sum(not e.intact for e in record.entries),
            "events_unlinked": sum(not e.links for e in record.entries),
            "anchors": verdict.anchors,
            "problems": verdict.problems,
            "head": record.head,
        },
        "events": events,
        "unrecorded_messages": unrecorded,
        "tickets": [items[n] for n in sorted(items)],
    }


# The page (--format html): one file, nothing fetched, every value escaped; A4 to print.
_PAGE_STYLE = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
  "Microsoft YaHei", "WenQuanYi Micro Hei", "SimSun", sans-serif;
  color: #1a1a1a; font-size: 14px; line-height: 1.6; margin: 24px auto; padding: 0 24px;
  max-width: 1120px; }
h1 { font-size: 24px; text-align: center; margin: 0 0 16px; letter-spacing: 2px; }
.court { text-align: center; font-size: 18px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 2px solid #333; padding-bottom: 4px; margin: 28px 0 12px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #b8b8b8; padding: 6px 8px; vertical-align: top; text-align: left;
  overflow-wrap: anywhere; }
th { background: #f0f0f0; font-weight: bold; white-space: nowrap; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.meta th { width: 7em; }
table.log { table-layout: fixed; }
.said { white-space: pre-wrap; }
.bot .said { color: #555; font-size: 13px; }
.answer .said { font-weight: bold; }
.gone { color: #8a5a00; font-style: italic; }
.small { font-size: 12px; color: #666; }
.hash { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 10px; color: #777;
  overflow-wrap: anywhere; }
.ok { color: #1a7f37; }
.bad { color: #c62828; font-weight: bold; }
.erased { color: #8a5a00; }
.muted { color: #777; }
tr.broken td { background: #fff1f0; }
.summary { border: 1px solid #b8b8b8; border-left: 8px solid; padding: 10px 16px; margin: 16px 0; }
.summary.intact { border-left-color: #1a7f37; background: #f1f9f3; }
.summary.broken { border-left-color: #c62828; background: #fff1f0; }
.summary .verdict { font-size: 17px; font-weight: bold; margin: 4px 0 8px; }
.summary ul { margin: 0; padding-left: 1.4em; }
.problems { margin-top: 8px; }
.problems li { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 12px; }
footer { margin-top: 28px; border-top: 1px solid #b8b8b8; padding-top: 8px; font-size: 12px;
  color: #555; }
.nw { white-space: nowrap; }
@media print { body { margin: 0; padding: 0; max-width: none; font-size: 12px; }
  th, td { padding: 4px 5px; } h2 { break-after: avoid; } }
"""

# The record's columns: 序号, 时间, 谁, 做了什么, 说的话, 核对 (shares of the width, on a
# screen and on A4 alike; the words take the rest).
_LOG_COLUMNS = ("7%", "12%", "12%", "16%", None, "15%")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _at(iso: str) -> str:
    """A moment of the record (already in the court's time zone) as date over time."""
    t = datetime.fromisoformat(iso)
    return f"<span class='nw'>{t:%Y-%m-%d}</span><br><span class='nw'>{t:%H:%M:%S}</span>"


def _check_cell(check: str, words: str) -> str:
    css = {"ok": "ok", "erased": "erased", "not_covered": "muted"}.get(check, "bad")
    return f"<div class='{css}'>{_e(words)}</div>"


def _message_check(message: dict[str, Any]) -> str:
    """A message's check; an erasure's when, who and why each on a line of its own."""
    erased = message["erased"]
    if message["check"] != "erased" or not erased:
        return _check_cell(message["check"], message["check_words"])
    when = datetime.fromisoformat(erased["at"]).strftime("%Y-%m-%d %H:%M")
    return (
        f"<div class='erased'>依法删除于 <span class='nw'>{_e(when)}</span>，"
        f"由 {_e(erased['by'])}，原因：{_e(erased['reason'])}</div>"
    )


def _said_cell(message: dict[str, Any] | None) -> str:
    if message is None:
        return ""
    if message["text"] is not None and message["text"] != "":
        said = f"<div class='said'>{_e(message['text'])}</div>"
        if message["check"] == "edited":
            said += "<div class='small'>（这是数据库里现在的内容，与当时记录的不一致）</div>"
        return said
    if message["check"] == "erased" or message["erased"]:
        return f"<div class='gone'>{_e(texts.ERASED)}</div>"
    if message["check"] == "deleted":
        return "<div class='gone'>（这条消息已不在数据库中）</div>"
    return ""


def _log_row(ev: dict[str, Any]) -> str:
    message = ev["message"]
    checks = []
    if message is not None:
        checks.append(_message_check(message))
    if not ev["intact"]:
        checks.append(_check_cell("edited", "✘ 这条记录被改动（与其哈希不符）"))
    if not ev["links"]:
        checks.append(_check_cell("unlinked", "✘ 与前一条记录衔接不上（有记录被删除或调换）"))
    if not checks:
        checks.append(_check_cell("ok", "✔ 记录完好"))
    broken = not (ev["intact"] and ev["links"]) or (
        message is not None and message["check"] in ("edited", "deleted", "unrecorded")
    )
    kind = ""
    if ev["action"] == "message.out":
        kind = "bot"
    elif ev["action"] == "ticket.answered":
        kind = "answer"
    css = " ".join(c for c in (kind, "broken" if broken else "") if c)
    what = _e(ev["what"])
    if ev["why"]:
        what += f"<div class='small'>原因：{_e(ev['why'])}</div>"
    return (
        f"<tr class='{css}'>"
        f"<td>{ev['seq']}<div class='hash'>{_e(ev['hash'][:6])}</div></td>"
        f"<td>{_at(ev['at'])}</td>"
        f"<td>{_e(ev['who']['label'])}</td>"
        f"<td>{what}</td>"
        f"<td>{_said_cell(message)}</td>"
        f"<td>{''.join(checks)}</td></tr>"
    )


def _summary(r: dict[str, Any]) -> str:
    s = r["summary"]
    if s["intact"]:
        verdict = (
            f"✔ 记录完整：本案 {s['events']} 条记录前后衔接、未被改动；{s['ok']} 条消息与记录一致。"
        )
    else:
        verdict = "✘ 记录有异常：下面标红的记录或消息与审计记录不符。"
    figures = [
        f"记录 {s['events']} 条，其中被改动 {s['events_edited']} 条，"
        f"前后衔接不上 {s['events_unlinked']} 处；"
        + (
            f"本案记录的末尾已与 {s['anchors']} 个锚点核对"
            if s["anchors"]
            else "还没有锚点记录本案的末尾（mst audit anchor）"
        ),
        f"消息 {s['messages']} 条：与记录一致 {s['ok']} 条，内容被改动 {s['edited']} 条，"
        f"被删除 {s['deleted']} 条，依法删除 {s['erased']} 条，"
        f"未核对（早先的答复，记录中没有摘要）{s['not_covered']} 条，"
        f"没有对应审计记录 {s['unrecorded']} 条",
    ]
    body = "".join(f"<li>{_e(f)}</li>" for f in figures)
    problems = ""
    if s["problems"]:
        items = "".join(f"<li>{_e(p)}</li>" for p in s["problems"])
        problems = (
            "<div class='problems'>核对发现的问题（与 mst audit verify 的说法相同）："
            f"<ol>{items}</ol></div>"
        )
    state = "intact" if s["intact"] else "broken"
    return (
        f"<section class='summary {state}'><p class='verdict'>{_e(verdict)}</p>"
        f"<ul>{body}</ul>{problems}</section>"
    )


def _moves(item: dict[str, Any]) -> str:
    held = [(h["holder"], h["at"]) for h in item["history"] if h["holder"]]
    line = " → ".join(
        f"{_e(holder)}（{_e(datetime.fromisoformat(at).strftime('%Y-%m-%d %H:%M'))} 起）"
        for holder, at in held
    )
    rows = []
    for h in item["history"]:
        holder = _e(h["holder"]) if h["holder"] else ""
        if h["holder"] and h["level"]:
            holder += f"（第{h['level']}级）"
        rows.append(
            f"<tr><td>{_at(h['at'])}</td><td>{_e(h['what'])}</td><td>{_e(h['by'])}</td>"
            f"<td>{holder}</td><td>{_e(h['reason'])}</td></tr>"
        )
    return (
        f"<h3>#{item['ticket']} {_e(item['kind_name'])}</h3>"
        + (f"<p>先后承办：{line}</p>" if line else "")
        + "<table class='moves'><thead><tr><th style='width:12%'>时间</th>"
        "<th style='width:14%'>经过</th><th style='width:20%'>由谁</th>"
        "<th style='width:22%'>此后由谁办理</th><th>原因</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _html(r: dict[str, Any]) -> str:
    """The readable record as one page, in the court's words, to print or to keep."""
    exported = datetime.fromisoformat(r["exported_at"]).strftime("%Y-%m-%d %H:%M")
    meta = (
        "<table class='meta'>"
        f"<tr><th>案号</th><td>{_e(r['case_number'])}</td>"
        f"<th>案由</th><td>{_e(r['cause'])}</td></tr>"
        f"<tr><th>案件类型</th><td>{_e(r['case_type'])}</td>"
        f"<th>承办法官</th><td>{_e(r['judge'] or '—')}</td></tr>"
        f"<tr><th>导出时间</th><td>{_e(exported)}</td>"
        f"<th>时区</th><td>时间均为法院所在时区（{_e(r['time_zone'])}）</td></tr></table>"
    )
    columns = "".join(f"<col style='width:{w}'>" if w else "<col>" for w in _LOG_COLUMNS)
    log = (
        f"<table class='log'><colgroup>{columns}</colgroup><thead><tr><th>序号</th>"
        "<th>时间</th><th>谁</th><th>做了什么</th><th>说的话</th><th>核对</th></tr></thead>"
        f"<tbody>{''.join(_log_row(ev) for ev in r['events'])}</tbody></table>"
    )
    if not r["events"]:
        log = "<p>本案还没有任何记录。</p>"
    extra = ""
    if r["unrecorded_messages"]:
        rows = "".join(
            f"<tr class='broken'><td>{m['id']}</td>"
            f"<td>{_e((m['from'] or m['to'] or {}).get('label'))}</td>"
            f"<td>{_said_cell(m)}</td><td>{_message_check(m)}</td></tr>"
            for m in r["unrecorded_messages"]
        )
        extra = (
            "<h2>没有审计记录的消息</h2><p>这些消息存在本案的消息表里，审计记录中却没有，"
            "是在记录之外写进去的。</p><table><thead><tr><th style='width:10%'>消息编号</th>"
            "<th style='width:18%'>谁</th><th>内容</th><th style='width:22%'>核对</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
        )
    items = "".join(_moves(item) for item in r["tickets"]) or "<p>本案没有事项。</p>"
    head = r["summary"]["head"]
    footer = (
        "本记录由“码上通”的审计日志导出（mst audit export），每条记录都与前一条以哈希相连；"
        "用 mst audit verify 可以复核。"
        + (f"本案最后一条记录的哈希：<span class='hash'>{_e(head)}</span>" if head else "")
    )
    return (
        "<!DOCTYPE html>\n<html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(r['case_number'])} 案件记录</title><style>{_PAGE_STYLE}</style></head>"
        f"<body><header><div class='court'>{_e(r['court'])}</div><h1>案件沟通记录</h1>"
        f"{meta}</header>{_summary(r)}<h2>记录（按时间先后）</h2>{log}{extra}"
        f"<h2>办理过程</h2>{items}<footer>{footer}</footer></body></html>\n"
    )


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
                        "copies_blanked": done.copies,
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        where = f"（{case_number}）" if case_number else ""
        print(
            f"已删除消息 {done.message_id}{where}的内容：{say_time(done.at)}，{done.by}，"
            f"原因：{done.reason}。\n"
            + (f"通知里引用这段内容的 {done.copies} 处也已删除。\n" if done.copies else "")
            + f"审计记录保留了原内容的摘要 {done.sha256[:16]}…，"
            f"mst audit verify 会把它列为依法删除。回执：{done.receipt[:16]}"
        )
        return 0

    return await _with_db(settings, go)
