"""`mst`: the command line (CONTRACT.md lists the commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.config import ConfigError, Settings, load_settings
from bot.masking import setup_logging

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    try:
        settings = load_settings()
        if args.command in ("serve", "worker"):
            code = args.run(settings, args)  # these own their event loop
        else:
            code = asyncio.run(args.run(settings, args))
    except ConfigError as exc:
        print(f"mst: configuration error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mst", description="码上通: case codes and a WeChat channel to the court"
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the web process")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port (needs REDIS_URL when > 1)",
    )
    s.set_defaults(run=serve)

    s = sub.add_parser("demo", help="run the server with a fake WeChat and play a sample exchange")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--api-port", type=int, default=8081, help="port of the local fake WeChat API")
    s.set_defaults(run=demo)

    s = sub.add_parser("chat", help="be a WeChat user in this terminal (against `mst demo`)")
    s.add_argument("--as", dest="openid", required=True, help="the WeChat openid to act as")
    s.add_argument("--url", default="http://127.0.0.1:8080", help="the server")
    s.add_argument("--api", default="http://127.0.0.1:8081", help="the fake WeChat API it sends to")
    s.set_defaults(run=chat)

    sub.add_parser(
        "worker", help="run the background jobs with arq (needs REDIS_URL)"
    ).set_defaults(run=worker)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=migrate)

    for name, fn in (("import-staff", import_staff), ("import-cases", import_cases)):
        s = sub.add_parser(name, help="import JSON Lines or a JSON array (idempotent)")
        s.add_argument("file", type=Path)
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.set_defaults(run=fn)

    s = sub.add_parser(
        "import-events", help="import enforcement events (JSON Lines or a JSON array; idempotent)"
    )
    s.add_argument("file", type=Path)
    s.set_defaults(run=import_events)

    sl = sub.add_parser("slots", help="mediators' bookable times").add_subparsers(
        dest="slots_command", required=True
    )
    s = sl.add_parser("add", help="add a mediator's slots: one, or a weekly pattern")
    s.add_argument("mediator", help="the mediator's username")
    s.add_argument("--start", required=True, help="first start, China time: 2026-11-25T09:30")
    s.add_argument("--weeks", type=int, default=0, help="repeat for N weeks (0: only --start)")
    s.add_argument(
        "--days", default="", help="weekdays of the pattern: mon,wed (default: --start's)"
    )
    s.add_argument("--minutes", type=int, default=60)
    s.add_argument("--capacity", type=int, default=1)
    s.add_argument(
        "--room", required=True, help="video room URL; {booking} and {slot} are filled in"
    )
    s.set_defaults(run=slots_add)

    s = sub.add_parser("outbox", help="notices waiting or failed; `retry` sends failed ones again")
    s.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    s.add_argument("ids", nargs="*", type=int, help="retry: only these rows (default: all failed)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=outbox_command)

    s = sub.add_parser("stats", help="visitors, feedback, ratings, satisfaction, on-time replies")
    s.add_argument("--court", help="court name")
    s.add_argument("--judge", help="the handling judge's username")
    s.add_argument("--team", help="items held by this team (e.g. 集约接待)")
    s.add_argument("--from", dest="since", help="first day, e.g. 2026-11-01 (China time)")
    s.add_argument("--to", dest="until", help="last day, included")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=stats)

    s = sub.add_parser("qr", help="a case's code: token, short code, URL, image")
    s.add_argument("case_number")
    s.add_argument("--json", action="store_true")
    s.add_argument("--png", type=Path)
    s.add_argument("--svg", type=Path)
    s.add_argument(
        "--reissue", action="store_true", help="revoke the current code and issue a new one"
    )
    s.add_argument("--revoke", action="store_true", help="revoke the current code")
    s.add_argument("--reason", default="")
    s.set_defaults(run=qr)

    s = sub.add_parser(
        "away", help="mark a staff member away (their items go to reception) or back"
    )
    s.add_argument("username")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--until", help="last day away, e.g. 2026-11-30")
    g.add_argument("--back", action="store_true")
    s.set_defaults(run=away)

    t = sub.add_parser("ticket", help="one item").add_subparsers(
        dest="ticket_command", required=True
    )
    s = t.add_parser("history", help="who held it when, and everything done to it")
    s.add_argument("number", type=int)
    s.set_defaults(run=ticket_history)

    s = sub.add_parser("overdue", help="open items past their reply deadline")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=overdue)

    s = sub.add_parser(
        "staff-code", help="a one-time code a staff member sends to bind their WeChat"
    )
    s.add_argument("username")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=staff_code)

    s = sub.add_parser("deadline", help="when an item that came in at a given time is due")
    s.add_argument("--kind", required=True, help="question, complaint, asset_lead or mediation")
    s.add_argument(
        "--from", dest="start", required=True, help="when it came in: 2026-09-30T16:00 (China time)"
    )
    s.add_argument("--court", help="court name (its own deadlines in MST_RULES_FILE)")
    s.add_argument(
        "--close", action="store_true", help="the closing deadline, not the first reply's"
    )
    s.set_defaults(run=deadline)

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
    return p


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import multiprocessing

    from bot.app import close_deps, open_deps

    if args.workers <= 1:
        _serve_one(settings, args.host, args.port, reuse_port=False)
        return 0
    if settings.redis_url is None:
        raise ConfigError(
            "REDIS_URL must be set for --workers > 1 (the processes share state in Redis)"
        )

    async def prepare() -> None:  # create or check the schema once, before the processes start
        await close_deps(await open_deps(settings))

    asyncio.run(prepare())
    procs = [
        multiprocessing.Process(target=_serve_one, args=(settings, args.host, args.port, True))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    return _supervise(procs)


def _supervise(procs: list[Any]) -> int:
    """Run until told to stop (SIGTERM/SIGINT to this process alone, as supervisors send)
    or until a worker dies; then stop every worker, gracefully first."""
    import signal
    import time

    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping and all(proc.is_alive() for proc in procs):
        time.sleep(0.2)
    if not stopping:
        print("mst: a web worker stopped unexpectedly; stopping the others", file=sys.stderr)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # aiohttp shuts down gracefully on SIGTERM
    deadline = time.monotonic() + _stop_budget()[1]
    for proc in procs:
        proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            proc.kill()
            proc.join()
    return 0 if stopping else 1


def _serve_one(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    from aiohttp import web

    from bot.app import create_app

    # Stateless web processes: several may listen on one port (SO_REUSEPORT), the kernel
    # spreads connections, and Redis + the database hold everything shared.
    loop = new_event_loop()
    own_signals = _stop_once_on_signals(loop)
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        reuse_port=reuse_port or None,
        loop=loop,
        shutdown_timeout=_stop_budget()[0],
        handle_signals=not own_signals,
    )


def _stop_once_on_signals(loop: asyncio.AbstractEventLoop) -> bool:
    """SIGINT/SIGTERM start a graceful stop; later ones are ignored. A worker is often told
    twice (Ctrl+C or systemd signal the whole process group, then `mst serve` passes the
    stop on), and aiohttp would let the second signal cut its cleanup short, leaving
    connections half closed and the work behind a `success` unfinished.
    Returns False where the loop cannot take signal handlers (Windows): aiohttp's own then."""
    import signal

    from aiohttp import web

    stopping: list[int] = []

    def on_signal(signum: int) -> None:
        if stopping:
            return  # already stopping
        stopping.append(signum)
        raise web.GracefulExit()

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
    except NotImplementedError:
        return False
    return True


def _stop_budget() -> tuple[float, float]:
    """A stopping web process: callbacks in flight answer within ANSWER_BY_S, then the flows
    still running behind a `success` get FINISH_BEHIND_S; after both (and a margin) it is
    killed. Returns (seconds for requests, seconds in all)."""
    from bot.channels.wechat import ANSWER_BY_S, FINISH_BEHIND_S

    requests = ANSWER_BY_S + 1
    return requests, requests + FINISH_BEHIND_S + 5


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (not on Windows): the same asyncio, with about a tenth
    less CPU per message (bench/hotpath.py --loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    await run_demo(settings, args.host, args.port, args.api_port)
    return 0


async def chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import run_chat

    await run_chat(settings, args.openid, args.url.rstrip("/"), args.api.rstrip("/"))
    return 0


def worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.worker import run

    return run(settings)


async def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[int]]) -> int:
    from storage import db as database

    db = database.connect(settings.database_url)
    try:
        return await fn(db)
    finally:
        await db.dispose()


async def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import migrate as run_migrations

    async def go(db: Any) -> int:
        await run_migrations(db)
        print("database schema is up to date")
        return 0

    return await _with_db(settings, go)


def _print_report(report: Any, what: str) -> int:
    for line, reason in report.skipped:
        print(f"line {line}: skipped: {reason}", file=sys.stderr)
    print(report.summary(what))
    return 0 if not report.skipped else 1


def _no_file(path: Path) -> bool:
    """An operator's typo gets one line, not a traceback."""
    if path.is_file():
        return False
    print(f"mst: cannot read {path}: no such file", file=sys.stderr)
    return True


async def import_staff(settings: Settings, args: argparse.Namespace) -> int:
    from bot import importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        return _print_report(
            await importer.import_staff(db, args.file, progress=not args.quiet), "staff"
        )

    return await _with_db(settings, go)


async def import_cases(settings: Settings, args: argparse.Namespace) -> int:
    from bot import importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        report = await importer.import_cases(
            db, args.file, secret=settings.secret_key, progress=not args.quiet
        )
        return _print_report(report, "cases")

    return await _with_db(settings, go)


async def _ensure_schema(db: Any) -> None:
    from bot.app import _schema_is_empty
    from storage.db import migrate as run_migrations

    if await _schema_is_empty(db):
        await run_migrations(db)


async def _find_case(session: Any, case_number: str) -> Any:
    """The case, or None after telling the operator there is no such case."""
    from storage.models import Case

    case = (
        await session.execute(select(Case).where(Case.case_number == case_number))
    ).scalar_one_or_none()
    if case is None:
        print(f"mst: no case {case_number}", file=sys.stderr)
    return case


async def qr(settings: Settings, args: argparse.Namespace) -> int:
    from qr import codes, render

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            if args.revoke:
                gone = await codes.revoke(
                    session, case, reason=args.reason or "revoked by admin", actor="admin"
                )
                print("code revoked" if gone else "the case has no live code")
                return 0
            code = await codes.active_code(session, case.id or 0)
            if code is None or args.reissue:
                code = await codes.issue(session, case, actor="admin")
        url = codes.url_for(settings.public_base_url, code.token)
        if args.png:
            args.png.write_bytes(render.png(url))
        if args.svg:
            args.svg.write_bytes(render.svg(url))
        info = {
            "case_number": case.case_number,
            "token": code.token,
            "short_code": code.short_code,
            "url": url,
        }
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        else:
            print(
                f"{case.case_number}\n  case code: {code.short_code[:5]}-{code.short_code[5:]}\n  url: {url}"
            )
        return 0

    return await _with_db(settings, go)


async def import_events(settings: Settings, args: argparse.Namespace) -> int:
    from bot import enforcement, importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        outcome = enforcement.Outcome()
        rows = list(importer.read_rows(args.file))
        for start in range(0, len(rows), importer.BATCH):
            async with db.transaction() as session:
                await enforcement.ingest(
                    session, rows[start : start + importer.BATCH], outcome, actor="import"
                )
        for line, reason in outcome.skipped:
            print(f"line {line}: skipped: {reason}", file=sys.stderr)
        print(
            f"events: {outcome.added} added, {outcome.unchanged} already known, {len(outcome.skipped)} skipped"
        )
        return 0 if not outcome.skipped else 1

    return await _with_db(settings, go)


WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


async def slots_add(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot import mediation, staff
    from bot.clock import CHINA_TZ

    try:
        first = datetime.fromisoformat(args.start)
        days = {WEEKDAYS[d.strip().lower()[:3]] for d in args.days.split(",") if d.strip()}
    except (ValueError, KeyError):
        print(
            "mst: --start must look like 2026-11-25T09:30 and --days like mon,wed", file=sys.stderr
        )
        return 2
    if args.minutes <= 0 or args.capacity <= 0:
        print("mst: --minutes and --capacity must be positive", file=sys.stderr)
        return 2
    first = first if first.tzinfo else first.replace(tzinfo=CHINA_TZ)
    if args.weeks > 0:
        starts = mediation.weekly_starts(
            first.astimezone(CHINA_TZ).date(),
            first.astimezone(CHINA_TZ).timetz(),
            args.weeks,
            days or {first.weekday()},
        )
    else:
        starts = [first]

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, args.mediator)
            if member is None or not member.has_role("mediator"):
                print(
                    f"mst: {args.mediator} is not a staff member with the mediator role",
                    file=sys.stderr,
                )
                return 1
            added = await mediation.add_slots(
                session,
                member,
                starts,
                minutes=args.minutes,
                capacity=args.capacity,
                room_url=args.room,
            )
        print(f"slots: {added} added, {len(starts) - added} already there")
        return 0

    return await _with_db(settings, go)


async def outbox_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot import delivery, outbox
    from bot.clock import now, say_time, say_waited
    from bot.masking import mask_text

    async def go(db: Any) -> int:
        if args.action == "retry":
            n = await delivery.requeue_failed(db, args.ids or None, actor="cli")
            if args.json:
                print(json.dumps({"requeued": n}))
            else:
                print(f"已重新排队 {n} 条失败的通知，后台会马上发送。" if n else "没有失败的通知。")
            return 0
        async with db.sessions() as session:
            r = await outbox.report(session)
        if args.json:
            print(
                json.dumps(
                    {
                        "counts": r.counts,
                        "oldest_waiting_s": (
                            int((now() - r.oldest_waiting).total_seconds())
                            if r.oldest_waiting
                            else None
                        ),
                        "failed": [
                            {
                                "id": row.id,
                                "recipient": row.recipient,
                                "case_id": row.case_id,
                                "ticket_id": row.ticket_id,
                                "error": row.last_error,
                                "created_at": row.created_at.isoformat(),
                            }
                            for row in r.failed
                        ],
                    },
                    ensure_ascii=False,
                )
            )
            return 0
        names = {"pending": "待发送", "sending": "发送中", "sent": "已发送", "failed": "失败"}
        print(
            "通知：" + "，".join(f"{names.get(k, k)} {v} 条" for k, v in sorted(r.counts.items()))
        )
        if r.oldest_waiting:
            print(f"最早一条待发送的通知已等 {say_waited(r.oldest_waiting)}")
        for row in r.failed:
            what = mask_text(json.loads(row.payload).get("text", ""))[:30]
            print(f"  失败 {row.id}：{say_time(row.created_at)}  {row.last_error}  “{what}”")
        if r.failed:
            print("要重新发送，请运行：mst outbox retry（或 mst outbox retry 编号）")
        return 0

    return await _with_db(settings, go)


async def stats(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot import stats as figures
    from bot.clock import CHINA_TZ

    def day(text: str | None, *, end: bool = False) -> datetime | None:
        if not text:
            return None
        d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return datetime.combine(d, time(0), CHINA_TZ)

    try:
        scope = figures.Scope(
            args.court, args.judge, day(args.since), day(args.until, end=True), team=args.team
        )
    except ValueError:
        print("mst: --from/--to must be dates like 2026-11-01", file=sys.stderr)
        return 2

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            result = await figures.compute(session, scope)
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            for key, value in result.items():
                print(f"{key}: {value}")
        return 0

    return await _with_db(settings, go)


async def away(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot import escalation, staff
    from bot.clock import CHINA_TZ

    until = None
    if args.until:
        try:
            last = date.fromisoformat(args.until)
        except ValueError:
            print("mst: --until must be a date like 2026-11-30", file=sys.stderr)
            return 2
        until = datetime.combine(last + timedelta(days=1), time(0), CHINA_TZ)

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, args.username)
            if member is None:
                print(f"mst: no staff member {args.username}", file=sys.stderr)
                return 1
            await escalation.set_away(session, member, until, actor="admin")
        print(f"{args.username}: " + (f"away through {args.until}" if until else "back at work"))
        return 0

    return await _with_db(settings, go)


async def ticket_history(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import CHINA_TZ
    from storage.models import AuditEvent, Staff, Ticket

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            ticket = await session.get(Ticket, args.number)
            if ticket is None:
                print(f"mst: no ticket #{args.number}", file=sys.stderr)
                return 1
            events = (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.subject == f"ticket:{ticket.id}")
                    .order_by(AuditEvent.at, AuditEvent.id)
                )
            ).scalars()
            names = dict((await session.execute(select(Staff.id, Staff.username))).all())
            for ev in events:
                payload = json.loads(ev.payload)
                holder = payload.get("to") or {}
                at = ev.at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")
                line = f"{at}  {ev.action:<20} by {ev.actor}"
                if holder:
                    who = names.get(holder.get("assignee_id")) or holder.get("team") or ""
                    line += f" -> {who} (level {holder.get('level')})"
                if payload.get("reason"):
                    line += f"  reason: {payload['reason']}"
                print(line)
        return 0

    return await _with_db(settings, go)


async def overdue(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import CHINA_TZ, now
    from storage.models import Case, Staff, Ticket

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            rows = (
                await session.execute(
                    select(Ticket, Case)
                    .join(Case, Case.id == Ticket.case_id)
                    .where(
                        Ticket.status != "closed",
                        Ticket.first_reply_at.is_(None),
                        Ticket.due_at <= now(),
                    )
                    .order_by(Ticket.due_at)
                )
            ).all()
            names = dict((await session.execute(select(Staff.id, Staff.username))).all())
        items = [
            {
                "ticket": t.id,
                "case_number": c.case_number,
                "kind": t.kind,
                "due_at": t.due_at.astimezone(CHINA_TZ).isoformat() if t.due_at else None,
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

    from bot import deadlines
    from bot.clock import CHINA_TZ, say_time

    if args.kind not in deadlines.KINDS:
        print(f"mst: --kind must be one of {', '.join(deadlines.KINDS)}", file=sys.stderr)
        return 2
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print("mst: --from must be a time like 2026-09-30T16:00 (China time)", file=sys.stderr)
        return 2
    rules = deadlines.current_rules()
    if args.court and args.court not in rules.courts:
        print(f"mst: no deadlines of its own for {args.court!r}: the defaults", file=sys.stderr)
    which = "close" if args.close else "reply"
    due = deadlines.due(args.kind, start, which=which, court=args.court).astimezone(CHINA_TZ)
    print(f"{due.isoformat()}  {say_time(due)}")
    return 0


async def staff_code(settings: Settings, args: argparse.Namespace) -> int:
    from bot import staff

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, args.username)
            if member is None:
                print(f"mst: no staff member {args.username}", file=sys.stderr)
                return 1
            code = await staff.issue_bind_code(session, member, actor="admin")
        if args.json:
            print(json.dumps({"username": member.username, "bind_code": code}))
        else:
            print(
                f"{member.username}: send {code} to the Official Account from your own WeChat (one use)"
            )
        return 0

    return await _with_db(settings, go)


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
