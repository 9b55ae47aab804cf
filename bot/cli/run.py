"""Running it: the web process, the worker, the demo and its chat, migrations, and the go-live check."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.app.config import ConfigError, Settings
from bot.cli.common import _ensure_schema, _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
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
    s.add_argument(
        "--wecom", action="store_true", help="the judge answers from WeCom (a local fake WeCom)"
    )
    s.set_defaults(run=demo)
    s = sub.add_parser("chat", help="be a WeChat user in this terminal (against `mst demo`)")
    s.add_argument("--as", dest="openid", required=True, help="the WeChat openid to act as")
    s.add_argument("--url", default="http://127.0.0.1:8080", help="the server")
    s.add_argument("--api", default="http://127.0.0.1:8081", help="the fake WeChat API it sends to")
    s.set_defaults(run=chat)
    s = sub.add_parser(
        "console", help="talk to the flows at this terminal, through the console channel"
    )
    s.add_argument("--as", dest="user", required=True, help="who you are on the console channel")
    s.set_defaults(run=console)
    sub.add_parser(
        "worker", help="run the background jobs with arq (needs REDIS_URL)"
    ).set_defaults(run=worker)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=migrate)
    s = sub.add_parser("check", help="what is still demo or missing before going live")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=check_setup)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    import multiprocessing

    from bot.app.factory import close_deps, open_deps

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
    from bot.app import check

    async def go(db: Any) -> int:
        try:
            found = await check.findings(settings, db)
        except Exception:  # a schema not created yet: serve creates it; settings still count
            found = await check.findings(settings, None)
        print(check.summary(found), file=sys.stderr)
        return 0

    await _with_db(settings, go)


async def check_setup(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import check

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

    from bot.app.factory import create_app

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
    from bot.channels.wechat.callback import ANSWER_BY_S, FINISH_BEHIND_S

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
    from bot.cli.demo import run_demo

    await run_demo(settings, args.host, args.port, args.api_port, wecom=args.wecom)
    return 0


async def console(settings: Settings, args: argparse.Namespace) -> int:
    """The console channel on the database and Redis the settings name (as `mst serve`
    would): each line typed is a message, answered here. An empty line or end of input
    leaves."""
    from bot.app.factory import close_deps, open_deps
    from bot.channels.console import Console, ConsoleSender

    deps = await open_deps(settings)
    deps.senders[ConsoleSender.channel] = ConsoleSender(sys.stdout)
    talk = Console(deps, args.user, sys.stdout)
    try:
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            await talk.say(line)
    finally:
        await close_deps(deps)
    return 0


async def chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli.demo import run_chat

    await run_chat(settings, args.openid, args.url.rstrip("/"), args.api.rstrip("/"))
    return 0


def worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app.worker import run

    return run(settings)


async def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import migrate as run_migrations

    async def go(db: Any) -> int:
        await run_migrations(db)
        print("database schema is up to date")
        return 0

    return await _with_db(settings, go)
