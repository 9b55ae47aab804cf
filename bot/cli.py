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
    s = sub.add_parser("check", help="what is still demo or missing before going live")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=check_setup)

    for name, fn, what in (
        ("import-staff", import_staff, "staff"),
        ("import-cases", import_cases, "cases"),
        ("import-events", import_events, "enforcement events"),
    ):
        s = sub.add_parser(
            name,
            help=f"import {what}: .csv or .xlsx with a header row (columns: bot/importer.py "
            "COLUMNS), else JSON Lines or a JSON array (idempotent)",
        )
        s.add_argument("file", type=Path)
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--json", action="store_true", help="one JSON object: counts and errors")
        s.set_defaults(run=fn)

    sl = sub.add_parser(
        "slots", help="mediators' bookable times: add, list, remove"
    ).add_subparsers(dest="slots_command", required=True)
    s = sl.add_parser("add", help="add a mediator's slots: one, or a weekly pattern")
    s.add_argument("mediator", nargs="?", help="the mediator's username (or --mediator)")
    s.add_argument("--mediator", dest="mediator_option", metavar="USERNAME", help="the same")
    s.add_argument("--start", required=True, help="first start, China time: 2026-11-25T09:30")
    s.add_argument("--weeks", type=int, default=0, help="repeat for N weeks (0: only --start)")
    s.add_argument(
        "--days", default="", help="weekdays of the pattern: mon,wed (default: --start's)"
    )
    s.add_argument("--minutes", type=int, default=60)
    s.add_argument("--capacity", type=int, default=1)
    s.add_argument(
        "--room",
        required=True,
        help="where the parties join: /room/{token} for this server's room page (a signed "
        "link per booking), or the court's video-platform URL ({slot} and {booking} are "
        "filled in with the ids)",
    )
    s.set_defaults(run=slots_add)
    s = sl.add_parser("list", help="slots, their mediator, free or booked (names masked)")
    s.add_argument("--mediator", help="only this mediator's (username)")
    s.add_argument("--from", dest="since", help="first day, China time (default: today)")
    s.add_argument("--to", dest="until", help="last day, included")
    s.add_argument("--court", help="only this court's mediators (court name)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=slots_list)
    s = sl.add_parser(
        "remove", help="remove slots by ID (see `slots list`), or a mediator's at a start time"
    )
    s.add_argument("ids", nargs="*", type=int, metavar="ID")
    s.add_argument("--mediator", help="with --start: the mediator's username")
    s.add_argument("--start", help="with --mediator: the slot's start, China time")
    s.add_argument(
        "--force",
        action="store_true",
        help="a booked slot too: its bookings are cancelled and the parties, the mediator "
        "and the judge are told",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=slots_remove)

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
    s.add_argument(
        "--scene",
        action="store_true",
        help="also ask WeChat for the account's own QR for this case: a scan opens the chat",
    )
    s.set_defaults(run=qr)

    from qr.sheet import LAYOUTS as label_layouts  # the module loads reportlab only to write

    s = sub.add_parser(
        "qr-sheet", help="an A4 PDF of many cases' codes to print and cut (issues missing codes)"
    )
    s.add_argument("case_numbers", nargs="*", metavar="CASE_NUMBER", help="cases to print")
    s.add_argument(
        "--cases-file", type=Path, help="one case number per line (UTF-8, or GBK as Windows saves)"
    )
    s.add_argument("--filed-from", type=_day, help="cases filed on or after, e.g. 2026-11-01")
    s.add_argument("--filed-to", type=_day, help="cases filed on or before (included)")
    s.add_argument("--court", help="only this court's cases (court name)")
    s.add_argument("--out", type=Path, required=True, help="the PDF to write")
    s.add_argument(
        "--layout",
        choices=list(label_layouts),
        default="2x4",
        help="labels per page: columns x rows (3x4: smaller type)",
    )
    s.add_argument(
        "--json", action="store_true", help="counts, unknown case numbers and every code"
    )
    s.set_defaults(run=qr_sheet)

    s = sub.add_parser(
        "away", help="mark a staff member away (their items go to reception) or back"
    )
    s.add_argument("username")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--until", help="last day away, e.g. 2026-11-30")
    g.add_argument("--back", action="store_true")
    s.set_defaults(run=away)

    c = sub.add_parser("court", help="the court's service desk people are told of").add_subparsers(
        dest="court_command", required=True
    )
    s = c.add_parser("set", help="phone, address, hours (an empty value clears one)")
    s.add_argument("name", help="the court's full name, as in the imports")
    s.add_argument("--phone", help="诉讼服务电话, e.g. 0318-2123456")
    s.add_argument("--address", help="诉讼服务中心地址")
    s.add_argument("--hours", help="办公时间, e.g. 工作日 8:30-12:00 13:30-17:30")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=court_set)
    s = c.add_parser("list", help="every court and what people are told")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=court_list)

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
    s.add_argument("--json", action="store_true")
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

    asyncio.run(_print_check(settings))

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


async def _print_check(settings: Settings) -> None:
    """At start: what is still demo or missing, so nobody goes live on demo credentials."""
    from bot import check

    async def go(db: Any) -> int:
        try:
            found = await check.findings(settings, db)
        except Exception:  # a schema not created yet: serve creates it; settings still count
            found = await check.findings(settings, None)
        print(check.summary(found), file=sys.stderr)
        return 0

    await _with_db(settings, go)


def _warn_if_local(settings: Settings) -> None:
    from bot import check

    if check.public_url_is_local(settings):
        print(
            f"注意：PUBLIC_BASE_URL 还是 {settings.public_base_url}，"
            "这样印出的二维码在当事人的手机上打不开。",
            file=sys.stderr,
        )


async def check_setup(settings: Settings, args: argparse.Namespace) -> int:
    from bot import check

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        found = await check.findings(settings, db)
        if args.json:
            print(json.dumps([f.as_dict() for f in found], ensure_ascii=False))
        else:
            print(check.summary(found))
        return 0 if all(f.ok or not f.needed for f in found) else 1

    return await _with_db(settings, go)


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


def _import_result(
    args: argparse.Namespace,
    summary: str,
    counts: dict[str, int],
    skipped: list[tuple[int, str]],
    source: Any,
) -> int:
    """An import's figures and skipped rows: Chinese for people, one JSON object with --json.
    Rows are numbered as the person finds them: a JSON file's line, a spreadsheet's row."""
    if args.json:
        print(
            json.dumps(
                {
                    "file": str(args.file),
                    "format": source.format,  # json | csv | xlsx
                    "header_row": source.header_row,  # csv/xlsx: "row" counts sheet rows
                    **counts,
                    "skipped": len(skipped),
                    "errors": [{"row": n, "reason": why} for n, why in skipped],
                    "ignored_columns": source.ignored,
                },
                ensure_ascii=False,
            )
        )
        return 0 if not skipped else 1
    for n, why in skipped:
        print(f"第 {n} 行未导入：{why}", file=sys.stderr)
    if skipped and source.header_row:
        head = source.header_row
        print(
            f"（行号即表格中的行号：表头是第 {head} 行，其下第一行是第 {head + 1} 行）",
            file=sys.stderr,
        )
    if source.ignored:
        print(f"未识别的列，已忽略：{'、'.join(source.ignored)}", file=sys.stderr)
    print(summary)
    return 0 if not skipped else 1


def _print_report(args: argparse.Namespace, report: Any, what: str) -> int:
    counts = {"added": report.added, "changed": report.updated, "unchanged": report.unchanged}
    return _import_result(args, report.summary(what), counts, report.skipped, report)


def _unreadable(path: Path, exc: Exception) -> int:
    print(f"mst: cannot read {path}: {exc}", file=sys.stderr)
    return 1


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
        try:
            report = await importer.import_staff(
                db, args.file, progress=not (args.quiet or args.json)
            )
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        return _print_report(args, report, "人员")

    return await _with_db(settings, go)


async def import_cases(settings: Settings, args: argparse.Namespace) -> int:
    from bot import importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        try:
            report = await importer.import_cases(
                db, args.file, secret=settings.secret_key, progress=not (args.quiet or args.json)
            )
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        return _print_report(args, report, "案件")

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
    from qr import codes

    _warn_if_local(settings)

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            case = await _find_case(session, args.case_number)
            if case is None:
                return 1
            if args.revoke:
                gone = await codes.revoke(
                    session, case, reason=args.reason or "revoked by admin", actor="admin"
                )
                if args.json:
                    print(json.dumps({"case_number": case.case_number, "revoked": bool(gone)}))
                else:
                    print("二维码已停用。" if gone else "这个案件没有在用的二维码。")
                return 0
            code = await codes.active_code(session, case.id or 0)
            if code is None or args.reissue:
                code = await codes.issue(session, case, actor="admin")
        url = codes.url_for(settings.public_base_url, code.token)
        scene: dict[str, Any] = {}
        if args.scene:
            try:
                scene = await _scene_qr(settings, code.token)
            except Exception as exc:  # WeChat refused or unreachable: one line, not a traceback
                print(f"mst: 微信没有生成带参数二维码：{exc}", file=sys.stderr)
                return 1
            url = scene["scene_url"]  # the image encodes WeChat's own code
        if args.png or args.svg:
            from qr import render  # qrcode and its image code: only when an image is asked for
        if args.png:
            args.png.write_bytes(render.png(url))
        if args.svg:
            args.svg.write_bytes(render.svg(url))
        info = {
            "case_number": case.case_number,
            "token": code.token,
            "short_code": code.short_code,
            "url": codes.url_for(settings.public_base_url, code.token),
            **scene,
        }
        if args.json:
            print(json.dumps(info, ensure_ascii=False))
        elif scene:
            print(
                f"{case.case_number}\n  案件码：{code.short_code[:5]}-{code.short_code[5:]}"
                f"\n  微信扫码直达：{scene['scene_url']}"
            )
        else:
            print(
                f"{case.case_number}\n  case code: {code.short_code[:5]}-{code.short_code[5:]}\n  url: {url}"
            )
        return 0

    return await _with_db(settings, go)


async def _scene_qr(settings: Settings, token: str) -> dict[str, str]:
    """WeChat's own QR for the case (/cgi-bin/qrcode/create, scene = the case's token)."""
    from urllib.parse import quote

    from bot.app import open_api
    from storage import state

    redis = state.connect(settings.redis_url)
    api = open_api(settings, redis)
    api.stable = True
    try:
        made = await api.scene_qr(token)
    finally:
        await api.http.close()
        await redis.aclose()
    return {
        "scene_url": str(made["url"]),
        "scene_image": "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
        + quote(str(made["ticket"])),
    }


def _day(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-02") from None


def _sheet_numbers(args: argparse.Namespace) -> list[str] | None:
    """The case numbers asked for, in order, each once; None for a filing-date selection."""
    if args.cases_file is None and not args.case_numbers:
        return None
    raw = list(args.case_numbers)
    if args.cases_file is not None:
        data = args.cases_file.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("gb18030", errors="replace")  # Notepad's "ANSI" on Chinese Windows
        raw += text.splitlines()
    wanted = (n.strip() for n in raw)
    return list(dict.fromkeys(n for n in wanted if n and not n.startswith("#")))


async def qr_sheet(settings: Settings, args: argparse.Namespace) -> int:
    """`mst qr-sheet`: every chosen case's code on labels, the way `mst qr` shows one."""
    from sqlalchemy import and_

    from qr import codes, sheet
    from storage.models import Case, CaseCode, Court

    by_list = bool(args.case_numbers or args.cases_file)
    by_date = args.filed_from is not None or args.filed_to is not None
    if by_list == by_date:
        print(
            "mst: give case numbers (or --cases-file), or --filed-from/--filed-to; not both",
            file=sys.stderr,
        )
        return 2
    if args.filed_from and args.filed_to and args.filed_from > args.filed_to:
        print("mst: --filed-from is after --filed-to", file=sys.stderr)
        return 2
    if args.cases_file is not None and _no_file(args.cases_file):
        return 1
    if not args.out.parent.is_dir():
        print(f"mst: cannot write {args.out}: no such directory", file=sys.stderr)
        return 1
    numbers = _sheet_numbers(args)
    if numbers == []:
        print(f"mst: no case numbers in {args.cases_file}", file=sys.stderr)
        return 1
    _warn_if_local(settings)

    columns = (Case.id, Case.case_number, Court.name, CaseCode.token, CaseCode.short_code)
    live = and_(CaseCode.case_id == Case.id, CaseCode.revoked_at.is_(None))
    base = select(*columns).join(Court, Court.id == Case.court_id).outerjoin(CaseCode, live)

    async def go(db: Any) -> int:
        rows: list[Any] = []
        issued: list[str] = []
        elsewhere: list[str] = []
        unknown: list[str] = []
        async with db.sessions() as session:
            if args.court is not None:
                court_id = (
                    await session.execute(select(Court.id).where(Court.name == args.court))
                ).scalar_one_or_none()
                if court_id is None:
                    print(f"mst: no court {args.court}", file=sys.stderr)
                    return 1
            if numbers is None:
                query = base.where(Case.filed_on.is_not(None))
                if args.filed_from:
                    query = query.where(Case.filed_on >= args.filed_from)
                if args.filed_to:
                    query = query.where(Case.filed_on <= args.filed_to)
                if args.court is not None:
                    query = query.where(Case.court_id == court_id)
                rows = list((await session.execute(query.order_by(Case.filed_on, Case.id))).all())
            else:
                found: dict[str, Any] = {}
                for i in range(0, len(numbers), 500):
                    chunk = numbers[i : i + 500]
                    query = base.where(Case.case_number.in_(chunk))
                    found.update((r.case_number, r) for r in await session.execute(query))
                for number in numbers:
                    row = found.get(number)
                    if row is None:
                        unknown.append(number)
                    elif args.court is not None and row.name != args.court:
                        elsewhere.append(number)
                    else:
                        rows.append(row)
        # A case without a live code gets one, as `mst qr` gives it (one written meanwhile
        # by someone else is kept).
        missing = [i for i, row in enumerate(rows) if row.token is None]
        if missing:
            async with db.transaction() as session:
                for i in missing:
                    row = rows[i]
                    code = await codes.active_code(session, row.id)
                    if code is None:
                        case = await session.get(Case, row.id)
                        code = await codes.issue(session, case, actor="admin")
                        issued.append(row.case_number)
                    rows[i] = (row.id, row.case_number, row.name, code.token, code.short_code)
        labels = [
            sheet.Label(court, number, short, codes.url_for(settings.public_base_url, token))
            for _, number, court, token, short in rows
        ]
        pages = sheet.write(labels, args.out, layout=args.layout) if labels else 0
        per_page = sheet.per_page(args.layout)
        if args.json:
            info = {
                "file": str(args.out) if labels else None,
                "cases": len(labels),
                "pages": pages,
                "layout": args.layout,
                "issued": issued,
                "unknown": unknown,
                "other_court": elsewhere,
                "codes": [
                    {
                        "case_number": label.case_number,
                        "court": label.court,
                        "token": token,
                        "short_code": label.short_code,
                        "url": label.url,
                        "page": i // per_page + 1,
                    }
                    for i, (label, (_, _, _, token, _)) in enumerate(zip(labels, rows, strict=True))
                ],
            }
            print(json.dumps(info, ensure_ascii=False))
        else:
            if unknown:
                print(f"mst: 以下 {len(unknown)} 个案号查无此案，未打印：", file=sys.stderr)
                for number in unknown:
                    print(f"  {number}", file=sys.stderr)
            if elsewhere:
                print(
                    f"mst: 以下 {len(elsewhere)} 个案件不属于{args.court}，未打印：",
                    file=sys.stderr,
                )
                for number in elsewhere:
                    print(f"  {number}", file=sys.stderr)
            if labels:
                print(f"已生成 {len(labels)} 个案件的二维码，共 {pages} 页：{args.out}")
                if issued:
                    print(f"其中 {len(issued)} 个案件原先没有二维码，已新发")
            else:
                print("mst: 没有可打印的案件，未生成文件", file=sys.stderr)
        return 0 if labels else 1

    return await _with_db(settings, go)


async def import_events(settings: Settings, args: argparse.Namespace) -> int:
    from bot import enforcement, importer

    if _no_file(args.file):
        return 1

    async def go(db: Any) -> int:
        await _ensure_schema(db)
        try:
            loaded = importer.load(args.file, "events")
        except importer.FileError as exc:
            return _unreadable(args.file, exc)
        outcome = enforcement.Outcome()
        # Rows that could not be read say why themselves (ingest would only see no object).
        outcome.skipped = [(n, str(r)) for n, r in loaded.rows if isinstance(r, importer.RowError)]
        rows = [(n, r) for n, r in loaded.rows if not isinstance(r, importer.RowError)]
        for start in range(0, len(rows), importer.BATCH):
            async with db.transaction() as session:
                await enforcement.ingest(
                    session, rows[start : start + importer.BATCH], outcome, actor="import"
                )
        outcome.skipped.sort(key=lambda item: item[0])
        summary = (
            f"执行事件：新增 {outcome.added}，已有 {outcome.unchanged}，跳过 {len(outcome.skipped)}"
        )
        counts = {"added": outcome.added, "changed": 0, "unchanged": outcome.unchanged}
        return _import_result(args, summary, counts, outcome.skipped, loaded)

    return await _with_db(settings, go)


WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _slot_mediator(args: argparse.Namespace) -> str | None:
    """`slots add chenjing` and `slots add --mediator chenjing` alike; None after saying why."""
    given = {m for m in (args.mediator, args.mediator_option) if m}
    if len(given) == 1:
        return given.pop()
    if given:
        print("mst: 调解员只能给一个：位置参数和 --mediator 不一致", file=sys.stderr)
    else:
        print("mst: 请给出调解员：mst slots add --mediator USERNAME --start ...", file=sys.stderr)
    return None


def _room_template(settings: Settings, room: str) -> str | None:
    """The slot's room URL: `/room/{token}` is this server's room page; None after saying why."""
    from urllib.parse import urlparse

    url = settings.public_base_url + room if room.startswith("/") else room
    own_pages = settings.public_base_url + "/room/"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 300:
        print(
            f"mst: --room 要是 http(s) 网址（300 个字符以内）或 /room/{{token}}：{room}",
            file=sys.stderr,
        )
        return None
    if url.startswith(own_pages) and url != own_pages + "{token}":
        print(
            "mst: 本系统的调解室页面只认签名链接，不认编号：请用 --room /room/{token}",
            file=sys.stderr,
        )
        return None
    return url


async def slots_add(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot import mediation, staff
    from bot.clock import court_tz

    username = _slot_mediator(args)
    if username is None:
        return 2
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
    room = _room_template(settings, args.room)
    if room is None:
        return 2
    first = first if first.tzinfo else first.replace(tzinfo=court_tz())
    if args.weeks > 0:
        starts = mediation.weekly_starts(
            first.astimezone(court_tz()).date(),
            first.astimezone(court_tz()).timetz(),
            args.weeks,
            days or {first.weekday()},
        )
    else:
        starts = [first]

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, username)
            if member is None or not member.has_role("mediator"):
                print(
                    f"mst: {username} is not a staff member with the mediator role",
                    file=sys.stderr,
                )
                return 1
            added = await mediation.add_slots(
                session,
                member,
                starts,
                minutes=args.minutes,
                capacity=args.capacity,
                room_url=room,
            )
        print(f"slots: {added} added, {len(starts) - added} already there")
        return 0

    return await _with_db(settings, go)


def _who_booked(taken: Any) -> str:
    """原告王**（(2026)冀1102民初1234号）: the party masked, never an openid."""
    from bot.masking import mask_name

    party = taken.party
    who = f"{party.role}{mask_name(party.name)}" if party else "当事人"
    return f"{who}（{taken.case.case_number}）"


def _say_slot(view: Any) -> str:
    """编号3（11月25日 周三 上午9:30，调解员陈静）"""
    from bot.clock import say_time

    return f"编号{view.slot.id}（{say_time(view.slot.start_at)}，调解员{view.mediator.name}）"


def _slot_json(view: Any) -> dict[str, Any]:
    from bot.clock import court_tz
    from bot.masking import mask_name

    slot = view.slot
    return {
        "id": slot.id,
        "mediator": view.mediator.username,
        "mediator_name": view.mediator.name,
        "court": view.court.name,
        "start_at": slot.start_at.astimezone(court_tz()).isoformat(),
        "end_at": slot.end_at.astimezone(court_tz()).isoformat(),
        "minutes": int((slot.end_at - slot.start_at).total_seconds() // 60),
        "capacity": slot.capacity,
        "booked": len(view.taken),
        "free": len(view.taken) < slot.capacity,
        "room_url": slot.room_url,
        "bookings": [
            {
                "booking": t.booking.id,
                "case_number": t.case.case_number,
                "party_role": t.party.role if t.party else None,
                "party_name": mask_name(t.party.name) if t.party else None,
                "booked_at": t.booking.created_at.astimezone(court_tz()).isoformat(),
            }
            for t in view.taken
        ],
    }


async def slots_list(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot import mediation, staff
    from bot.clock import court_tz, now, say_time
    from storage.models import Court

    try:
        first = (
            date.fromisoformat(args.since) if args.since else now().astimezone(court_tz()).date()
        )
        last = date.fromisoformat(args.until) if args.until else None
    except ValueError:
        print("mst: --from/--to 要写成日期，例如 2026-11-25", file=sys.stderr)
        return 2
    since = datetime.combine(first, time(0), court_tz())
    until = datetime.combine(last + timedelta(days=1), time(0), court_tz()) if last else None

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            mediator_id = court_id = None
            if args.mediator:
                member = await staff.by_username(session, args.mediator)
                if member is None:
                    print(f"mst: 没有工作人员 {args.mediator}", file=sys.stderr)
                    return 1
                mediator_id = member.id
            if args.court:
                court = (
                    await session.execute(select(Court).where(Court.name == args.court))
                ).scalar_one_or_none()
                if court is None:
                    print(f"mst: 没有这个法院：{args.court}", file=sys.stderr)
                    return 1
                court_id = court.id
            views = await mediation.list_slots(
                session, mediator_id=mediator_id, court_id=court_id, since=since, until=until
            )
        if args.json:
            print(json.dumps([_slot_json(v) for v in views], ensure_ascii=False))
            return 0
        span = f"{first.isoformat()} 起" + (f"至 {last.isoformat()}" if last else "")
        if not views:
            print(f"没有调解时段（{span}）。")
            return 0
        free = sum(1 for v in views if not v.taken)
        print(
            f"调解时段（{span}）共 {len(views)} 个：空闲 {free} 个，有预约 {len(views) - free} 个"
        )
        several_courts = len({v.court.id for v in views}) > 1
        for v in views:
            minutes = int((v.slot.end_at - v.slot.start_at).total_seconds() // 60)
            if not v.taken:
                state = "空闲"
            else:
                full = (
                    "已约满"
                    if len(v.taken) >= v.slot.capacity
                    else f"已约 {len(v.taken)}/{v.slot.capacity}"
                )
                state = full + "：" + "、".join(_who_booked(t) for t in v.taken)
            court = f"  {v.court.name}" if several_courts else ""
            print(
                f"  编号{v.slot.id}  {say_time(v.slot.start_at)}（{minutes}分钟）"
                f"  {v.mediator.name}{court}  {state}"
            )
        return 0

    return await _with_db(settings, go)


async def slots_remove(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot import mediation, staff
    from bot.clock import court_tz, say_time
    from storage.models import MediationSlot

    by_time = args.mediator is not None or args.start is not None
    if by_time == bool(args.ids) or (by_time and not (args.mediator and args.start)):
        print(
            "mst: 给出时段编号（mst slots remove 3 4），或者调解员和开始时间"
            "（mst slots remove --mediator chenjing --start 2026-11-25T09:30），二者选一",
            file=sys.stderr,
        )
        return 2
    start = None
    if by_time:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            print("mst: --start 要写成 2026-11-25T09:30（北京时间）", file=sys.stderr)
            return 2
        start = start if start.tzinfo else start.replace(tzinfo=court_tz())

    def refused(outcome: Any) -> str:
        view = outcome.view
        if outcome.result == "not_found":
            return f"没有编号为 {outcome.slot_id} 的调解时段（可能已经删除），没有改动。"
        who = "、".join(_who_booked(t) for t in view.taken)
        if outcome.result == "booked":
            return (
                f"{_say_slot(view)}已有预约：{who}，没有删除。\n"
                f"请先告诉调解员{view.mediator.name}和预约的当事人，改约后再删除；"
                "或者加 --force：系统会取消这些预约，并通知当事人、调解员和承办法官。"
            )
        if outcome.result == "too_late":
            return (
                f"{_say_slot(view)}离开始不到2小时或已经开始，预约已不能在系统里取消，没有删除。\n"
                f"请直接打电话告诉调解员{view.mediator.name}和预约的当事人：{who}。"
            )
        return f"{_say_slot(view)}刚刚有人预约，没有删除。请用 mst slots list 重新查看。"

    async def go(db: Any) -> int:
        ids = list(dict.fromkeys(args.ids))  # each once, in the order given
        if by_time:
            async with db.sessions() as session:
                member = await staff.by_username(session, args.mediator)
                found = (
                    await session.execute(
                        select(MediationSlot.id).where(
                            MediationSlot.mediator_id == (member.id if member else -1),
                            MediationSlot.start_at == start,
                            MediationSlot.capacity > 0,
                        )
                    )
                ).scalar_one_or_none()
            if found is None:
                assert start is not None
                print(
                    f"mst: 调解员 {args.mediator} 在 {say_time(start)} 没有调解时段，没有改动。",
                    file=sys.stderr,
                )
                return 1
            ids = [found]
        results = []
        for slot_id in ids:
            try:
                async with db.transaction() as session:
                    outcome = await mediation.remove_slot(
                        session, slot_id, force=args.force, actor="admin"
                    )
            except mediation.SlotChanged:
                outcome = mediation.Removal(slot_id, "changed")
                async with db.sessions() as session:
                    views = await mediation.list_slots(session, slot_id=slot_id)
                outcome.view = views[0] if views else None
                if outcome.view is None:
                    outcome.result = "not_found"
            removed = outcome.result == "removed"
            if removed:
                line = f"已删除{_say_slot(outcome.view)}。"
                if outcome.cancelled:
                    line += (
                        "已取消其中的预约："
                        + "、".join(_who_booked(t) for t in outcome.cancelled)
                        + "，并通知了当事人、调解员和承办法官。"
                    )
            else:
                line = refused(outcome)
            if not args.json:
                print(
                    line if removed else f"mst: {line}", file=sys.stdout if removed else sys.stderr
                )
            results.append(
                {
                    "id": slot_id,
                    "result": outcome.result,
                    "cancelled_bookings": [t.booking.id for t in outcome.cancelled],
                    "message": line,
                }
            )
        if args.json:
            print(json.dumps(results, ensure_ascii=False))
        return 0 if all(r["result"] == "removed" for r in results) else 1

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
    from bot.clock import court_tz

    def day(text: str | None, *, end: bool = False) -> datetime | None:
        if not text:
            return None
        d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return datetime.combine(d, time(0), court_tz())

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
            print(figures.report(result, _stats_title(args)))
        return 0

    return await _with_db(settings, go)


def _court_row(court: Any) -> dict[str, Any]:
    from bot import courts

    return {
        "name": court.name,
        "phone": court.phone,
        "address": court.address,
        "hours": court.hours,
        "missing": courts.missing(court),
    }


_DESK_WORDS = {"phone": "电话", "address": "地址", "hours": "时间"}


async def court_set(settings: Settings, args: argparse.Namespace) -> int:
    from bot import courts

    values = {f: getattr(args, f) for f in courts.FIELDS if getattr(args, f) is not None}
    if not values:
        print("mst: 请至少给出 --phone、--address、--hours 之一", file=sys.stderr)
        return 2

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            court = await courts.by_name(session, args.name)
            if court is None:
                known = "、".join(c.name for c in await courts.all_courts(session)) or "（还没有）"
                print(f"mst: 没有这个法院：{args.name}\n已有的法院：{known}", file=sys.stderr)
                return 1
            try:
                change = await courts.set_desk(session, court, values, actor="admin")
            except courts.DeskError as exc:
                print(f"mst: {exc}", file=sys.stderr)
                return 2
            row = _court_row(court) | {"changed": sorted(change.changed)}
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        elif change.changed:
            said = "、".join(_DESK_WORDS[f] for f in courts.FIELDS if f in change.changed)
            print(f"已更新{args.name}的{said}。")
        else:
            print(f"{args.name}：没有变化。")
        return 0

    return await _with_db(settings, go)


async def court_list(settings: Settings, args: argparse.Namespace) -> int:
    from bot import courts

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            rows = [_court_row(c) for c in await courts.all_courts(session)]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        if not rows:
            print("还没有法院：导入工作人员或案件时会建立。")
        for row in rows:
            print(row["name"])
            for f in courts.FIELDS:
                print(f"  {_DESK_WORDS[f]}：{row[f] or '（未填写，当事人看不到）'}")
        return 0

    return await _with_db(settings, go)


def _stats_title(args: argparse.Namespace) -> str:
    who = "，".join(
        x
        for x in (
            args.court or "全部法院",
            f"团队 {args.team}" if args.team else "",
            f"承办法官 {args.judge}" if args.judge else "",
        )
        if x
    )
    when = f"{args.since or '开始'} 至 {args.until or '今天'}" if args.since or args.until else "全部时间"
    return f"{who}（{when}）"


async def away(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot import escalation, staff
    from bot.clock import court_tz

    until = None
    if args.until:
        try:
            last = date.fromisoformat(args.until)
        except ValueError:
            print("mst: --until must be a date like 2026-11-30", file=sys.stderr)
            return 2
        until = datetime.combine(last + timedelta(days=1), time(0), court_tz())

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


_HISTORY_WORDS = {
    "ticket.opened": "提交",
    "ticket.message_added": "当事人补充",
    "ticket.answered": "答复",
    "ticket.claimed": "认领",
    "ticket.transferred": "转办",
    "ticket.moved": "改由他人办理",
    "ticket.escalated": "到期升级",
    "ticket.warned": "到期提醒",
    "ticket.refused": "操作被拒绝",
    "ticket.closed": "办结",
}
_ACTOR_WORDS = {"system": "系统", "admin": "管理员", "import": "导入"}


async def ticket_history(settings: Settings, args: argparse.Namespace) -> int:
    from bot.clock import court_tz
    from bot.masking import mask_name
    from storage.models import AuditEvent, Party, Staff, Ticket

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            ticket = await session.get(Ticket, args.number)
            if ticket is None:
                print(f"mst: 没有 #{args.number} 这个事项", file=sys.stderr)
                return 1
            events = (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.subject == f"ticket:{ticket.id}")
                    .order_by(AuditEvent.at, AuditEvent.id)
                )
            ).scalars()
            staff = {
                row.id: row for row in (await session.execute(select(Staff))).scalars()
            }
            by_username = {m.username: m for m in staff.values()}
            party = await session.get(Party, ticket.party_id) if ticket.party_id else None
            # The litigant is named as the court knows them, masked; never by their openid.
            litigant = f"当事人{mask_name(party.name)}" if party else "当事人"

            def actor(raw: str) -> str:
                if raw.startswith("staff:"):
                    member = by_username.get(raw[6:])
                    return f"{member.name}（{member.username}）" if member else raw[6:]
                return _ACTOR_WORDS.get(raw, litigant)

            rows = []
            for ev in events:
                payload = json.loads(ev.payload)
                holder = payload.get("to") or {}
                member = staff.get(holder.get("assignee_id")) if holder else None
                rows.append(
                    {
                        "at": ev.at.astimezone(court_tz()).isoformat(),
                        "action": ev.action,
                        "what": _HISTORY_WORDS.get(ev.action, ev.action),
                        "by": actor(ev.actor),
                        "to": (member.name if member else holder.get("team")) if holder else None,
                        "level": holder.get("level") if holder else None,
                        "reason": payload.get("reason"),
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
    from bot.clock import court_tz, now
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

    from bot import deadlines
    from bot.clock import court_tz, say_time

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
    due = deadlines.due(args.kind, start, which=which, court=args.court).astimezone(court_tz())
    if args.json:
        print(json.dumps({"kind": args.kind, "which": which, "due": due.isoformat()}))
    else:
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
