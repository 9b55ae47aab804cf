"""The /wechat callback under load: the real server (`mst serve`) against a bare aiohttp
handler, both driven by the same client in the same run.

    python -m bench.callback [--scenario text|ask] [--workers 1 | --workers 1,2]
                             [--backend sqlite|pg|both] [--mode plain|safe|both]
                             [--concurrency 50] [--requests 3000] [--port-base 18100]
                             [--rate 500 | --rate 50,500] [--rate-duration 10]

For each backend x mode: a fresh database (SQLite file in a temp dir, or the `test_c`
PostgreSQL database with its `public` schema dropped and re-created, Redis db 12
flushed), `mst migrate`, `mst serve`, wait for /healthz, warm up, then N text messages
"你好" from many distinct openids with unique MsgIds, built, signed and (safe mode)
encrypted by bot.fakes.wechat.callbacks exactly as WeChat does, sent by C concurrent
client tasks (closed loop). With --rate R (or a list), then an open loop per rate: requests start at fixed
1/R intervals whatever the completions, latency counted from each request's scheduled
start (so a slow server cannot hide its queueing), and requests that started late are
counted. All requests are built before the clock starts; replies are decoded and checked
after it stops, so the client's crypto does not steal CPU from the server while timed.

--scenario ask: instead of "你好" from strangers, questions from verified litigants in the
ask step (seeded by bench.seed before the server starts): each opens or joins their ticket,
with its audit event and an outbox notice to the judge; checked against the database after.
--workers K: `mst serve --workers K` (pg only for K > 1); CPU and RSS summed over the
server's processes.
--peer (on by default for `ask` on pg): the same run against bench.peer, what a developer
would write in an afternoon (WeRoBot under gunicorn with K sync workers, synchronous
SQLAlchemy ORM on psycopg2, the same schema and seeded world), and a table of project ÷
peer: closed-loop msg/s, p99 at each rate, server CPU per message. Its packages are the
`bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import math
import os
import platform
import re
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from bench import common, seed
from bot.fakes.wechat.callbacks import WeChatServer, text_xml
from handlers import texts

TOKEN = "benchtoken"
APP_ID = "wx5be1c7b3c0de0012"
ACCOUNT = "gh_mashangtong"
HEADERS = {"Content-Type": "text/xml"}
WECHAT_PATIENCE_S = 5.0  # WeChat drops the connection after 5 s and retries
# The server allows 30 messages per user per minute; stay well under it per phase.
MAX_PER_USER = 20
# SQLite `ask`: the case code, then "1" (unmeasured) put a litigant in the ask step.
ENTER_MESSAGES = 2
ASK_NEW = texts.ASK_RECEIVED.split("{ticket}")[0]  # 已收到您的咨询，编号 #
ASK_JOINED = texts.ASK_ADDED.split("{ticket}")[0]  # 已补充到咨询 #
# The peer's packages (the `bench` extra), by import name.
PEER_MODULES = ("werobot", "bottle", "gunicorn", "psycopg2")
PEER_INSTALL = "pip install -e '.[bench]'"
PEER_RETRY = "audit chain taken, trying again"  # bench.peer's log line
# Unique across runs too: 64-bit like WeChat's, from the clock in microseconds.
_MSG_IDS = itertools.count(time.time_ns() // 1000)


@dataclass
class Req:
    url: URL
    body: bytes
    query: dict[str, str]
    openid: str
    key: str  # the server's de-duplication key, wx:<MsgId>


@dataclass
class Result:
    status: int | str  # HTTP status, or the exception's name
    latency: float  # seconds, from the (scheduled) start to the last byte of the reply
    raw: bytes | None
    lag: float = 0.0  # open loop: how late the request actually started


@dataclass
class Phase:
    target: str
    mode: str
    kind: str  # closed | open
    requests: int
    concurrency: int | None = None
    rate: float | None = None
    wall_s: float = 0.0
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    over_5s: int = 0
    late: int = 0
    max_lag_ms: float = 0.0
    checked: int = 0
    bad_replies: int = 0
    bad_kinds: dict[str, int] = field(default_factory=dict)
    reply_kinds: dict[str, int] = field(default_factory=dict)  # ask: new ticket / joined ticket
    samples: list[dict[str, Any]] = field(default_factory=list)  # a few failures, for the JSON
    rss_mb: float | None = None
    workers: int = 1
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    machine_cpu_s: float | None = None  # every process on the box, ours and anyone else's

    @property
    def busy_cores(self) -> float | None:
        return (
            None
            if self.machine_cpu_s is None or not self.wall_s
            else self.machine_cpu_s / self.wall_s
        )

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


# -- requests -------------------------------------------------------------------------


def build(server: WeChatServer, base: str, senders: Sequence[tuple[str, str]]) -> list[Req]:
    """One signed (and in safe mode encrypted) text message per (openid, text)."""
    out = []
    for openid, content in senders:
        msg_id = next(_MSG_IDS)
        query, body = server.request(
            text_xml(openid, content, to=ACCOUNT, msg_id=msg_id), nonce=_nonce()
        )
        url = URL(f"{base}/wechat?{urlencode(query)}", encoded=True)
        out.append(Req(url, body.encode(), query, openid, f"wx:{msg_id}"))
    return out


def strangers(n: int, tag: str, users: int) -> list[tuple[str, str]]:
    """The `text` scenario: "你好" from unbound openids (the welcome text answers), at least
    `users` of them per phase, so that nobody sends more than MAX_PER_USER."""
    users = max(users, math.ceil(n / MAX_PER_USER))
    return [(f"oBench{tag}{i % users:07d}", "你好") for i in range(n)]


class Litigants:
    """The `ask` scenario: the seeded litigants, every one in the ask step of their own case.
    Messages go round the pool in order, so one person's messages are `len(pool)` messages
    apart (never two in flight at once unless the server is seconds behind) and everyone
    sends about the same number over the whole run."""

    def __init__(self, openids: Sequence[str]) -> None:
        self.openids = list(openids)
        self.turn = 0
        self.sent: Counter[str] = Counter()

    def next(self, n: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n):
            openid = self.openids[self.turn % len(self.openids)]
            self.turn += 1
            self.sent[openid] += 1
            out.append(
                (openid, f"请问我的案子什么时候开庭？需要准备哪些材料？（第{self.sent[openid]}问）")
            )
        return out


def planned_messages(args: argparse.Namespace) -> int:
    """Every message of one target's run: warm-ups, the closed loop and the open loops."""
    opens = sum(min(args.warmup, 100) + max(1, round(r * args.rate_duration)) for r in args.rate)
    return args.warmup + args.requests + opens


def litigant_count(args: argparse.Namespace, backend: str) -> int:
    """How many litigants to seed: --users, raised so that nobody sends more than
    MAX_PER_USER over the whole run (SQLite: 2 of them enter the ask step)."""
    per_user = MAX_PER_USER - (ENTER_MESSAGES if backend == "sqlite" else 0)
    return max(args.users, math.ceil(planned_messages(args) / per_user))


_NONCES: set[str] = set()


def _nonce() -> str:
    """A random 10-digit nonce like WeChat's, never repeated in this run. Random ones can
    collide: 3,000 requests built within one second share a (timestamp, nonce) about once
    in 2,000 runs, and the server's replay check then (rightly) refuses the second one."""
    for _ in range(100):
        nonce = str(secrets.randbelow(10**10))
        if nonce not in _NONCES:
            _NONCES.add(nonce)
            return nonce
    raise RuntimeError("cannot find an unused nonce")


# -- the client ---------------------------------------------------------------------


async def one(session: aiohttp.ClientSession, req: Req, due: float | None = None) -> Result:
    started = time.perf_counter()
    origin = due if due is not None else started
    try:
        async with session.post(req.url, data=req.body, headers=HEADERS) as resp:
            raw = await resp.read()
            status: int | str = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Result(type(exc).__name__, time.perf_counter() - origin, None, started - origin)
    return Result(status, time.perf_counter() - origin, raw, started - origin)


async def closed_loop(
    session: aiohttp.ClientSession, reqs: Sequence[Req], concurrency: int, timeout_s: float
) -> tuple[list[Result | None], float]:
    """`concurrency` tasks, each sending its next request when its last one is answered."""
    results: list[Result | None] = [None] * len(reqs)
    order = iter(range(len(reqs)))

    async def worker() -> None:
        for i in order:
            results[i] = await one(session, reqs[i])

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return results, time.perf_counter() - t0


async def open_loop(
    session: aiohttp.ClientSession, reqs: Sequence[Req], rate: float, timeout_s: float
) -> tuple[list[Result | None], float]:
    """Request i starts at t0 + i/rate whether or not earlier ones were answered."""
    return await common.open_loop(
        lambda i, due: one(session, reqs[i], due=due), len(reqs), rate, timeout_s
    )


def session_for(connections: int, request_timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=request_timeout),
    )


async def drive_closed(
    warm: Sequence[Req],
    reqs: Sequence[Req],
    concurrency: int,
    args: argparse.Namespace,
    mark: Callable[[], tuple[float | None, float | None]],
) -> tuple[list[Result | None], float, float, tuple[float | None, float | None]]:
    """Warm up, then the timed closed loop:
    (results, wall s, client CPU s, (server CPU s, whole machine's busy CPU s))."""
    async with session_for(concurrency, args.request_timeout) as session:
        await closed_loop(session, warm, min(concurrency, 50), args.phase_timeout)
        cpu0, marks0 = common.self_cpu_s(), mark()
        results, wall = await closed_loop(session, reqs, concurrency, args.phase_timeout)
        return results, wall, common.self_cpu_s() - cpu0, _deltas(mark(), marks0)


async def drive_open(
    warm: Sequence[Req],
    reqs: Sequence[Req],
    rate: float,
    args: argparse.Namespace,
    mark: Callable[[], tuple[float | None, float | None]],
) -> tuple[list[Result | None], float, float, tuple[float | None, float | None]]:
    async with session_for(args.rate_connections, args.request_timeout) as session:
        await closed_loop(session, warm, min(args.concurrency, 50), args.phase_timeout)
        cpu0, marks0 = common.self_cpu_s(), mark()
        results, wall = await open_loop(session, reqs, rate, args.phase_timeout)
        return results, wall, common.self_cpu_s() - cpu0, _deltas(mark(), marks0)


# -- results --------------------------------------------------------------------------


def summarize(phase: Phase, results: Sequence[Result | None], wall: float, late_s: float) -> None:
    phase.wall_s = wall
    kinds: Counter[str] = Counter()
    latencies = []
    for r in results:
        if r is None:
            kinds["not finished"] += 1
        elif r.status != 200:
            kinds[str(r.status)] += 1
        else:
            latencies.append(r.latency)
        if r is not None:
            phase.over_5s += r.latency > WECHAT_PATIENCE_S
            phase.late += r.lag > late_s
            phase.max_lag_ms = max(phase.max_lag_ms, r.lag * 1000)
    latencies.sort()
    phase.ok = len(latencies)
    phase.errors = sum(kinds.values())
    phase.error_kinds = dict(kinds)
    if latencies:
        phase.p50_ms = common.pct(latencies, 50) * 1000
        phase.p90_ms = common.pct(latencies, 90) * 1000
        phase.p99_ms = common.pct(latencies, 99) * 1000
        phase.max_ms = latencies[-1] * 1000


def check_replies(
    phase: Phase,
    server: WeChatServer,
    reqs: Sequence[Req],
    results: Sequence[Result | None],
    every: int,
    tickets: dict[str, set[int]] | None = None,
) -> None:
    """Decode (and in safe mode decrypt) the replies. `text` scenario (tickets is None): each
    must be the welcome text to the sender. `ask`: each must say the question opened a ticket
    (ASK_RECEIVED) or joined one (ASK_ADDED); the ticket numbers are collected per sender in
    `tickets`, where each sender must end up with exactly one."""
    bad: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for i in range(0, len(reqs), max(1, every)):
        r = results[i]
        if r is None or r.status != 200 or r.raw is None:
            continue
        phase.checked += 1
        try:
            reply = server.read_reply(r.raw.decode(), reqs[i].query)
        except Exception as exc:
            bad[f"undecodable ({type(exc).__name__})"] += 1
            continue
        if reply is None:
            bad["success/empty (no passive reply)"] += 1
        elif reply.get("MsgType") != "text" or reply.get("ToUserName") != reqs[i].openid:
            bad["not a text reply to the sender"] += 1
        elif reply.get("Content") == texts.SLOW_DOWN:
            bad["rate-limited (SLOW_DOWN)"] += 1
        elif reply.get("Content") == texts.BUSY:
            bad["handler failed (BUSY)"] += 1
        elif tickets is None:
            if reply.get("Content") != texts.WELCOME:
                bad["unexpected text"] += 1
        else:
            content = reply.get("Content") or ""
            kind = (
                "new ticket"
                if content.startswith(ASK_NEW)
                else "joined ticket"
                if content.startswith(ASK_JOINED)
                else None
            )
            prefix = {"new ticket": ASK_NEW, "joined ticket": ASK_JOINED}.get(kind or "", "")
            number = re.match(r"(\d+)", content[len(prefix) :]) if kind else None
            if number is None:
                bad[f"not a ticket reply: {content[:24]!r}"] += 1
                continue
            good[kind] += 1
            tickets.setdefault(reqs[i].openid, set()).add(int(number.group(1)))
    phase.bad_replies = sum(bad.values())
    phase.bad_kinds = dict(bad)
    phase.reply_kinds = dict(good)


STORED_SQL = "SELECT direction, msg_key FROM message"


def stored_messages(db_url: str) -> tuple[dict[str, int], set[str]]:
    """Rows in `message` by direction, and the de-duplication keys of the inbound ones."""
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1]
        conn = sqlite3.connect(path, timeout=30)
        try:
            rows = conn.execute(STORED_SQL).fetchall()
        finally:
            conn.close()
    else:

        async def pg() -> list[Any]:
            import asyncpg

            conn = await asyncpg.connect(db_url.replace("+asyncpg", ""), timeout=10)
            try:
                return [tuple(r) for r in await conn.fetch(STORED_SQL, timeout=60)]
            finally:
                await conn.close(timeout=5)

        rows = asyncio.run(pg())
    counts = Counter(direction for direction, _ in rows)
    return dict(counts), {key for direction, key in rows if direction == "in" and key}


def log_findings(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    # The project's format is "<time> LEVEL name: message"; gunicorn's "[time] [pid] [LEVEL] …".
    errors = [
        ln
        for ln in lines
        if any(f in ln for f in (" ERROR ", " CRITICAL ", "[ERROR]", "[CRITICAL]"))
    ]
    warnings = [ln for ln in lines if " WARNING " in ln or "[WARNING]" in ln]
    first: list[str] = []
    for ln in errors + warnings:
        msg = ln.split(": ", 1)[-1][:160]
        if msg not in first:
            first.append(msg)
    return {
        "errors": len(errors),
        "warnings": len(warnings),
        "tracebacks": sum("Traceback" in ln for ln in lines),
        "first": first[:5],
    }


# -- one target -----------------------------------------------------------------------


@dataclass
class Target:
    name: str  # sqlite | pg | peer | bare aiohttp
    mode: str  # plain | safe
    workers: int = 1  # `mst serve --workers K` (pg only when K > 1); peer: `gunicorn -w K`

    @property
    def label(self) -> str:
        return f"{self.name}-{self.mode}" + (f"-w{self.workers}" if self.workers > 1 else "")


def run_target(
    target: Target, port: int, mst: str, tmp: Path, args: argparse.Namespace
) -> tuple[list[Phase], dict[str, Any]]:
    safe = target.mode == "safe"
    key = common.aes_key() if safe else None
    wechat = WeChatServer(token=TOKEN, app_id=APP_ID, aes_key=key)
    # One folder per target (the bare baseline runs once per mode: name it by both).
    work = tmp / "-".join(target.label.split())
    work.mkdir(exist_ok=True)
    info: dict[str, Any] = {
        "target": target.name,
        "mode": target.mode,
        "workers": target.workers,
        "scenario": args.scenario if target.name != "bare aiohttp" else "bare",
    }
    db_url: str | None = None
    world: seed.World | None = None
    ask = args.scenario == "ask" and target.name != "bare aiohttp"

    if target.name == "bare aiohttp":
        cmd = [sys.executable, "-m", "bench.bare_server", "--port", str(port)]
        env = common.child_env()
        cwd = common.REPO
    else:
        if target.name == "sqlite":
            db_url, redis_url = f"sqlite+aiosqlite:///{work}/bench.db", None
        else:  # pg, and the peer (the same database, made and seeded the same way)
            common.reset_pg(common.PG_URL)
            common.flush_redis(common.REDIS_URL)
            db_url, redis_url = common.PG_URL, common.REDIS_URL
        env = common.child_env(
            DATABASE_URL=db_url,
            REDIS_URL=redis_url,
            WECHAT_TOKEN=TOKEN,
            WECHAT_APP_ID=APP_ID,
            WECHAT_AES_KEY=key,
            MST_DATA_DIR=str(work),
            MST_JOBS_IN_PROCESS="0",
        )
        # cwd is the temp dir: `mst` reads a `.env` from its cwd, and the repo's must not leak in.
        cwd = work
        info["migrate_s"], _ = common.run([mst, "migrate"], env=env, cwd=cwd, timeout=180)
        if ask:
            # Seeded after migrate and before serve: nothing else writes meanwhile.
            t0 = time.perf_counter()
            world = seed.seed_database(db_url, litigant_count(args, target.name))
            if redis_url is not None and target.name != "peer":  # the peer has no Redis
                seed.seed_redis(redis_url, world)
            info["seed_s"] = time.perf_counter() - t0
            info["litigants"] = len(world.litigants)
        cmd = [mst, "serve", "--port", str(port)]
        if target.workers > 1:
            cmd += ["--workers", str(target.workers)]
        if target.name == "peer":
            # bench.peer is not installed with the project: found from the repository.
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(common.REPO), env.get("PYTHONPATH")])
            )
            cmd = [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(target.workers),
                "-b",
                f"127.0.0.1:{port}",
                # gunicorn's control socket defaults to one path in $HOME: this run's own.
                "--control-socket",
                str(work / "gunicorn.ctl"),
                "bench.peer:app",
            ]

    server = common.start_server(target.label, cmd, env=env, cwd=cwd, port=port, log_dir=tmp)
    phases: list[Phase] = []
    answered: list[str] = []  # keys of the messages that got a 200
    sent = 0
    # ask: who sent questions (warm-ups included), who got a ticket reply, which ticket numbers
    asked: set[str] = set()
    tickets_seen: dict[str, set[int]] = {}
    try:
        t0 = time.perf_counter()
        info["health"] = health = server.wait_healthy(args.start_timeout)
        expected = {
            "sqlite": ("sqlite", "in-process"),
            "pg": ("postgresql", "redis"),
            "peer": ("postgresql", "none"),
        }
        if (
            target.name in expected
            and (
                health.get("database_kind"),
                health.get("redis_mode"),
            )
            != expected[target.name]
        ):
            raise RuntimeError(f"the server is not on the expected backend: /healthz said {health}")
        if target.workers > 1 or target.name == "peer":  # gunicorn forks its worker(s)
            # Every worker must be up, not just the first to answer /healthz.
            deadline = time.monotonic() + args.start_timeout
            while len(server.pids()) < target.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # the last one to fork may still be opening its pools
            info["pids"] = len(server.pids())
        info["start_s"] = time.perf_counter() - t0
        info["rss_idle_mb"] = server.rss_mb()
        tag = {"sqlite": "S", "pg": "P", "peer": "W"}.get(target.name, "B") + target.mode[0].upper()
        litigants = Litigants([lit.openid for lit in world.litigants]) if world else None

        def senders(n: int, phase_tag: str) -> list[tuple[str, str]]:
            if litigants is None:
                return strangers(n, phase_tag, args.users)
            out = litigants.next(n)
            asked.update(openid for openid, _ in out)
            return out

        if world is not None and target.name == "sqlite":
            # The server's Redis lives inside it: litigants walk into the ask step themselves.
            info["enter_s"], info["enter_failed"] = enter_ask_step(wechat, server.base, world, args)
            if info["enter_failed"]:
                raise RuntimeError(
                    f"{info['enter_failed']} litigants could not enter the ask step: "
                    + server.log_tail(10)
                )

        def marks() -> tuple[float | None, float | None]:
            return server.cpu_s(), common.machine_cpu_s()

        def finish(
            phase: Phase, reqs: list[Req], results: list[Result | None], wall: float
        ) -> None:
            summarize(phase, results, wall, args.late_ms / 1000)
            phase.workers = target.workers
            phase.rss_mb = server.rss_mb()
            if target.name != "bare aiohttp":
                check_replies(
                    phase, wechat, reqs, results, args.check_every, tickets_seen if ask else None
                )
            answered.extend(
                q.key for q, r in zip(reqs, results, strict=True) if r and r.status == 200
            )
            phases.append(phase)

        # Closed loop.
        warm = build(wechat, server.base, senders(args.warmup, tag + "w"))
        reqs = build(wechat, server.base, senders(args.requests, tag + "c"))
        sent += len(warm) + len(reqs)
        results, wall, phase_cpu, cpu_marks = asyncio.run(
            drive_closed(warm, reqs, args.concurrency, args, marks)
        )
        phase = Phase(target.name, target.mode, "closed", len(reqs), concurrency=args.concurrency)
        phase.client_cpu_s, (phase.server_cpu_s, phase.machine_cpu_s) = phase_cpu, cpu_marks
        finish(phase, reqs, results, wall)

        # Open loops at fixed arrival rates.
        for k, rate in enumerate(args.rate):
            info.setdefault("drain_s", []).append(drain(server, args.drain_timeout))
            n = max(1, round(rate * args.rate_duration))
            warm = build(wechat, server.base, senders(min(args.warmup, 100), f"{tag}v{k}"))
            reqs = build(wechat, server.base, senders(n, f"{tag}r{k}"))
            sent += len(warm) + len(reqs)
            results, wall, phase_cpu, cpu_marks = asyncio.run(
                drive_open(warm, reqs, rate, args, marks)
            )
            phase = Phase(target.name, target.mode, "open", n, rate=rate)
            phase.client_cpu_s, (phase.server_cpu_s, phase.machine_cpu_s) = phase_cpu, cpu_marks
            finish(phase, reqs, results, wall)
        info["drain_s"] = info.get("drain_s", []) + [drain(server, args.drain_timeout)]
        info["rss_peak_mb"] = server.peak_rss_mb()
        if litigants is not None:
            info["max_per_litigant"] = max(litigants.sent.values(), default=0)
    finally:
        leftovers = server.stop()
        if leftovers:
            info["killed_leftovers"] = leftovers
    info["log"] = log_findings(server.log_text())
    if target.name == "peer":
        # Two appends that locked the same last row of a chain: the second is run again.
        info["peer_retries"] = server.log_text().count(PEER_RETRY)
    info["sent"] = sent
    if db_url is not None:
        try:
            counts, keys = stored_messages(db_url)
            info["stored"] = counts
            # Warm-up requests are not in `answered` for the closed loop's warm-up; only
            # timed requests that got a 200 are checked: each must be in the database.
            info["answered_not_stored"] = sum(1 for key in answered if key not in keys)
        except Exception as exc:  # reporting only
            info["stored"] = f"cannot count: {exc}"
    if world is not None:
        late = sum("answered success" in ln for ln in server.log_text().splitlines())
        info["ask_check"] = ask_check(db_url or "", asked, tickets_seen, late)
    return phases, info


def ask_check(
    db_url: str, asked: set[str], tickets_seen: dict[str, set[int]], late_answers: int
) -> dict[str, Any]:
    """After an `ask` run: one ticket per litigant who asked, one judge notice per question.

    - every litigant holds at most one ticket (tickets == distinct ticket holders);
    - tickets == litigants who sent questions (warm-ups included), or at least those who
      got a ticket reply when some requests never reached the server;
    - every reply a litigant got names the same ticket;
    - the judge has one outbox row per question stored against a ticket, and there are some;
    - every other outbox row is a late answer to a litigant: one per "answered success" the
      server logged (its handler passed 4 s, so the answer goes out as a customer-service
      message instead).
    """
    try:
        got: dict[str, Any] = dict(seed.counts(db_url))
    except Exception as exc:  # reporting only
        return {"ok": False, "error": f"cannot count: {exc}"}
    replied = len(tickets_seen)
    got["litigants_asked"] = len(asked)
    got["litigants_replied"] = replied
    got["litigants_with_2+_ticket_numbers"] = sum(len(v) > 1 for v in tickets_seen.values())
    got["ok"] = (
        got["tickets"] == got["ticket_users"]
        and replied <= got["tickets"] <= len(asked)
        and got["litigants_with_2+_ticket_numbers"] == 0
        and got["ticket_kinds"] == 0
        and got["outbox_to_judge"] == got["questions"] > 0
        and got["outbox"] - got["outbox_to_judge"] == late_answers
    )
    got["late_answers_logged"] = late_answers
    return got


def enter_ask_step(
    wechat: WeChatServer, base: str, world: seed.World, args: argparse.Namespace
) -> tuple[float, int]:
    """SQLite `ask`: each litigant types their case code (the bot finds their binding and
    shows the menu), then "1" (the ask prompt). Unmeasured; one litigant's two messages in
    order, `--concurrency` litigants at a time. Returns (seconds, litigants who failed)."""

    async def run() -> int:
        failed = 0
        gate = asyncio.Semaphore(args.concurrency)

        async def walk(lit: seed.Litigant, session: aiohttp.ClientSession) -> bool:
            async with gate:
                code, one_ = build(wechat, base, [(lit.openid, lit.token), (lit.openid, "1")])
                first = await one(session, code)
                if first.status != 200:
                    return False
                second = await one(session, one_)
            if second.status != 200 or second.raw is None:
                return False
            reply = wechat.read_reply(second.raw.decode(), one_.query)
            return bool(reply) and reply.get("Content") == texts.ASK_PROMPT

        async with session_for(args.concurrency, args.request_timeout) as session:
            tasks = [asyncio.create_task(walk(lit, session)) for lit in world.litigants]
            done, pending = await asyncio.wait(tasks, timeout=args.phase_timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for t in done:
                failed += 0 if (not t.exception() and t.result()) else 1
            failed += len(pending)
        return failed

    t0 = time.perf_counter()
    failed = asyncio.run(run())
    return time.perf_counter() - t0, failed


def drain(server: common.Server, timeout_s: float) -> float:
    """Wait until the server is idle (under 5% of a core for 0.5 s): work left behind by
    requests the client gave up on must not be billed to the next phase."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        before = server.cpu_s()
        time.sleep(0.5)
        after = server.cpu_s()
        if before is None or after is None or after - before < 0.025:
            break
    return time.perf_counter() - t0


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _deltas(
    after: tuple[float | None, float | None], before: tuple[float | None, float | None]
) -> tuple[float | None, float | None]:
    return _delta(after[0], before[0]), _delta(after[1], before[1])


# -- main ---------------------------------------------------------------------------


def _workers(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from exc
    if not counts or any(k < 1 for k in counts):
        raise argparse.ArgumentTypeError("worker counts must be 1 or more")
    return counts


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from exc
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.callback", description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=("sqlite", "pg", "both"), default="both")
    p.add_argument("--mode", choices=("plain", "safe", "both"), default="both")
    p.add_argument(
        "--scenario",
        choices=("text", "ask"),
        default="text",
        help="text: '你好' from unbound users (welcome text); ask: questions from verified "
        "litigants in the ask step (tickets, audit, judge notices in the outbox)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=[1],
        help="`mst serve --workers K`, or a list (1,2): one target each; K > 1 needs pg",
    )
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--users",
        type=int,
        default=2000,
        help="text: distinct openids per phase; ask: litigants (cases) seeded for the run "
        "(raised so nobody sends over 20; the server allows 30/min)",
    )
    p.add_argument("--port-base", type=int, default=18100)
    p.add_argument(
        "--rate",
        type=_rates,
        default=[],
        help="also run open loops at these arrival rates, requests/s (e.g. 500 or 50,500)",
    )
    p.add_argument("--rate-duration", type=float, default=10, help="seconds of the open loop")
    p.add_argument("--rate-connections", type=int, default=256, help="client connection cap")
    p.add_argument("--late-ms", type=float, default=10, help="a start this late counts as late")
    p.add_argument("--check-every", type=int, default=1, help="decode every k-th reply")
    p.add_argument("--request-timeout", type=float, default=10)
    p.add_argument("--phase-timeout", type=float, default=120, help="cap on one phase")
    p.add_argument("--start-timeout", type=float, default=60)
    p.add_argument("--drain-timeout", type=float, default=30, help="cap on waiting for idle")
    p.add_argument("--no-baseline", action="store_true", help="skip the bare aiohttp baseline")
    p.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run bench.peer (WeRoBot under gunicorn sync workers, SQLAlchemy ORM on "
        "psycopg2) on pg with the same worker counts, and print project ÷ peer; on by "
        f"default for --scenario ask on pg (needs {PEER_INSTALL})",
    )
    p.add_argument("--mst", help="path to the mst command (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (server logs, SQLite)")
    args = p.parse_args(argv)
    for name in ("concurrency", "requests", "warmup", "users", "rate_connections"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.rate_duration <= 0:
        p.error("--rate-duration must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    mst = common.mst_path(args.mst)
    backends = ["sqlite", "pg"] if args.backend == "both" else [args.backend]
    modes = ["plain", "safe"] if args.mode == "both" else [args.mode]
    targets = [
        Target(b, m, w)
        for b in backends
        for m in modes
        for w in args.workers
        if w == 1 or b == "pg"  # several processes share state through Redis: pg only
    ]
    if any(w > 1 for w in args.workers) and "sqlite" in backends:
        print("  (--workers > 1 needs REDIS_URL: sqlite runs with 1 worker only)")
    peer = args.scenario == "ask" if args.peer is None else args.peer
    if peer and "pg" not in backends:
        if args.peer:
            print("  (the peer runs on PostgreSQL only: no peer targets without --backend pg)")
        peer = False
    missing = [m for m in PEER_MODULES if importlib.util.find_spec(m) is None] if peer else []
    if missing:
        print(
            f"  peer skipped: {', '.join(missing)} not installed. The peer's packages are the "
            f"`bench` extra: {PEER_INSTALL}"
        )
    elif peer:
        targets += [Target("peer", m, w) for m in modes for w in args.workers]
    if not args.no_baseline:
        targets += [Target("bare aiohttp", m) for m in modes]

    cores = os.cpu_count()
    print(
        f"bench.callback: scenario {args.scenario}, {len(targets)} targets, "
        f"{args.requests} requests at concurrency "
        f"{args.concurrency}"
        + (
            f", open loops at {_rate_list(args.rate)}/s for {args.rate_duration:g} s"
            if args.rate
            else ""
        )
        + f"; {cores} cores, Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
        + f"; code {common.code_version()}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="mst-bench-"))
    phases: list[Phase] = []
    infos: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        for k, target in enumerate(targets):
            t0 = time.perf_counter()
            print(f"  {target.label} ...", end=" ", flush=True)
            try:
                got, info = run_target(target, args.port_base + k, mst, tmp, args)
            except Exception as exc:
                print(f"FAILED: {exc}", flush=True)
                infos.append(
                    {
                        "target": target.name,
                        "mode": target.mode,
                        "workers": target.workers,
                        "failed": str(exc),
                    }
                )
                continue
            phases += got
            infos.append(info)
            print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    report(phases, infos, args, cores, time.perf_counter() - t_start)
    path = common.save_results(
        "callback",
        {
            "code": common.code_version(),
            "args": vars(args),
            "phases": [asdict(p) for p in phases],
            "servers": infos,
            "project_vs_peer": peer_ratios(phases),
        },
    )
    print(f"\nraw results: {path.relative_to(common.REPO)}")
    # Overload in an open loop is a measurement, not a failure; these are failures:
    if any((p.errors or p.bad_replies) for p in phases if p.kind == "closed") or any(
        "failed" in i
        or i.get("answered_not_stored")
        or ("ask_check" in i and not i["ask_check"].get("ok"))
        for i in infos
    ):
        sys.exit(1)


def report(
    phases: list[Phase],
    infos: list[dict[str, Any]],
    args: argparse.Namespace,
    cores: int | None,
    total_s: float,
) -> None:
    def cpu_ms(p: Phase, v: float | None) -> float | None:
        return None if v is None or not p.ok else v / p.ok * 1000

    closed = [p for p in phases if p.kind == "closed"]
    what = {
        "text": "'你好' from unbound users, answered with the welcome text",
        "ask": "questions from verified litigants in the ask step: each opens or joins "
        "their ticket and notifies the judge through the outbox",
    }[args.scenario]
    print(f"\nScenario {args.scenario}: {what} (bare aiohttp: a fixed reply)")
    if any(p.target == "peer" for p in phases):
        print(
            "peer: bench.peer, the same job as an afternoon's WeRoBot app: gunicorn with K sync "
            "workers, synchronous SQLAlchemy ORM on psycopg2, the same schema and seeded world"
        )
    print("\nClosed loop (each client task sends its next request when the last is answered)")
    print(
        common.table(
            [
                "backend",
                "mode",
                "workers",
                "requests",
                "conc",
                "req/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "bad replies",
                "RSS MB",
                "srv CPU ms/req",
                "cli CPU ms/req",
                "box busy cores",
            ],
            [
                [
                    p.target,
                    p.mode,
                    p.workers,
                    p.requests,
                    p.concurrency,
                    p.throughput,
                    p.p50_ms,
                    p.p99_ms,
                    p.max_ms,
                    p.errors,
                    p.bad_replies if p.checked else None,
                    p.rss_mb,
                    cpu_ms(p, p.server_cpu_s),
                    cpu_ms(p, p.client_cpu_s),
                    p.busy_cores,
                ]
                for p in closed
            ],
        )
    )
    opened = [p for p in phases if p.kind == "open"]
    if opened:
        print(
            f"\nOpen loop at {_rate_list(args.rate)} requests/s for {args.rate_duration:g} s "
            "(requests start on schedule whatever the answers; latency from each request's "
            f"scheduled start; late = started > {args.late_ms:g} ms after its slot; "
            f">5 s = WeChat would have given up and retried)"
        )
        print(
            common.table(
                [
                    "backend",
                    "mode",
                    "workers",
                    "requests",
                    "target/s",
                    "done/s",
                    "p50 ms",
                    "p90 ms",
                    "p99 ms",
                    "max ms",
                    "late",
                    ">5 s",
                    "errors",
                    "bad replies",
                    "RSS MB",
                    "srv CPU ms/req",
                    "box busy cores",
                ],
                [
                    [
                        p.target,
                        p.mode,
                        p.workers,
                        p.requests,
                        p.rate,
                        p.throughput,
                        p.p50_ms,
                        p.p90_ms,
                        p.p99_ms,
                        p.max_ms,
                        p.late,
                        p.over_5s,
                        p.errors,
                        p.bad_replies if p.checked else None,
                        p.rss_mb,
                        cpu_ms(p, p.server_cpu_s),
                        p.busy_cores,
                    ]
                    for p in opened
                ],
            )
        )

    print("\nNotes")
    for p in phases:
        name = f"{p.target}/{p.mode}" + (f"/w{p.workers}" if p.workers > 1 else "")
        kind = p.kind + (f" {p.rate:g}/s" if p.rate else "")
        for what, kinds in (
            ("errors", p.error_kinds),
            ("bad replies", p.bad_kinds),
            ("replies", p.reply_kinds),
        ):
            if kinds:
                print(f"  {name} {kind}: {what}: {kinds}")
    for info in infos:
        name = f"{info['target']}/{info['mode']}" + (
            f"/w{info['workers']}" if info.get("workers", 1) > 1 else ""
        )
        if "failed" in info:
            print(f"  {name}: FAILED: {info['failed'][:300]}")
            continue
        bits = [
            f"started in {info.get('start_s', 0):.1f} s",
            f"idle RSS {info.get('rss_idle_mb') or 0:.0f} MB",
        ]
        if info.get("rss_peak_mb"):
            bits.append(f"peak RSS {info['rss_peak_mb']:.0f} MB")
        if "litigants" in info:
            bits.append(
                f"{info['litigants']} litigants seeded in {info.get('seed_s', 0):.1f} s"
                + (
                    f", entered the ask step in {info['enter_s']:.1f} s"
                    if "enter_s" in info
                    else ""
                )
                + f", at most {info.get('max_per_litigant', 0)} questions each"
            )
        if info.get("workers", 1) > 1:
            bits.append(f"{info.get('pids', '?')} processes (RSS and CPU summed over them)")
        if "stored" in info:
            bits.append(f"message rows {info['stored']} for {info['sent']} sent")
        if "answered_not_stored" in info:
            bits.append(f"answered 200 but not in the database: {info['answered_not_stored']}")
        if info.get("drain_s") and max(info["drain_s"]) > 1:
            bits.append(f"busy after the client stopped: {max(info['drain_s']):.0f} s")
        if info.get("killed_leftovers"):
            bits.append(
                f"processes left after the server stopped, killed: {info['killed_leftovers']}"
            )
        if "peer_retries" in info:
            bits.append(f"transactions run again (audit chain taken): {info['peer_retries']}")
        log = info.get("log", {})
        bits.append(f"server log: {log.get('errors', 0)} errors, {log.get('warnings', 0)} warnings")
        print(f"  {name}: " + ", ".join(bits))
        for line in log.get("first", []):
            print(f"      {line}")
        if "ask_check" in info:
            c = info["ask_check"]
            if "error" in c:
                print(f"      ticket check: FAILED ({c['error']})")
            else:
                print(
                    f"      ticket check: {'ok' if c['ok'] else 'FAILED'}: {c['tickets']} tickets "
                    f"held by {c['ticket_users']} litigants; {c['litigants_asked']} litigants "
                    f"asked, {c['litigants_replied']} got ticket replies, "
                    f"{c['litigants_with_2+_ticket_numbers']} were told two ticket numbers; "
                    f"{c['questions']} questions stored on tickets, {c['outbox_to_judge']} "
                    f"outbox notices to the judge, {c['outbox'] - c['outbox_to_judge']} "
                    f"late answers to litigants in the outbox for "
                    f"{c.get('late_answers_logged', 0)} 'answered success' in the log"
                )
    ratios = peer_ratios(phases)
    if ratios:
        print(
            "\nProject ÷ peer (mst serve on pg ÷ bench.peer, same worker count, mode, client and "
            "load; for msg/s above 1 is the project ahead, for p99 and CPU below 1 is)"
        )
        print(
            common.table(
                ["figure", "mode", "workers", "project", "peer", "project ÷ peer", "ahead"],
                [
                    [
                        r["figure"],
                        r["mode"],
                        r["workers"],
                        r["project"],
                        r["peer"],
                        r["ratio"],
                        r["ahead"],
                    ]
                    for r in ratios
                ],
            )
        )
    total_client = sum(p.client_cpu_s for p in phases)
    total_wall = sum(p.wall_s for p in phases)
    share = total_client / total_wall * 100 if total_wall else 0
    print(
        f"\n  This machine has {cores} cores, and the client shares them with the server: the "
        "client (this process, one asyncio loop with aiohttp), the server (one process with "
        "one event loop per worker, plus aiosqlite's threads on SQLite), and on pg PostgreSQL "
        "and Redis too. "
        f"Over the timed phases the client used {total_client:.1f} CPU-s in {total_wall:.1f} s "
        f"({share:.0f}% of one core; see cli CPU ms/req). 'box busy cores' is every process's "
        "CPU on the machine over the phase / wall time: near 2.0 the box was saturated, and "
        "anything above server + client + database is someone else's work. The bare aiohttp "
        "rows show what this client and box can measure at most; a dedicated server machine "
        "would do better than these figures."
    )
    print(f"  Full run: {total_s:.0f} s.")


def peer_ratios(phases: Sequence[Phase]) -> list[dict[str, Any]]:
    """Project (the pg target) against the peer, phase by phase at the same mode, worker
    count and load: closed-loop msg/s and server CPU ms per message, p99 at each rate."""

    def per_msg(p: Phase) -> float | None:
        return None if p.server_cpu_s is None or not p.ok else p.server_cpu_s / p.ok * 1000

    out: list[dict[str, Any]] = []
    for peer in phases:
        if peer.target != "peer":
            continue
        project = next(
            (
                p
                for p in phases
                if p.target == "pg"
                and (p.mode, p.workers, p.kind, p.rate)
                == (peer.mode, peer.workers, peer.kind, peer.rate)
            ),
            None,
        )
        if project is None:
            continue
        figures: list[tuple[str, float | None, float | None, bool]] = (
            [
                ("closed msg/s", project.throughput, peer.throughput, True),
                ("srv CPU ms/msg (closed)", per_msg(project), per_msg(peer), False),
            ]
            if peer.kind == "closed"
            else [(f"p99 ms at {peer.rate:g}/s", project.p99_ms, peer.p99_ms, False)]
        )
        for figure, ours, theirs, higher_better in figures:
            ratio = (
                ours / theirs
                if ours is not None and theirs and not math.isnan(ours) and not math.isnan(theirs)
                else None
            )
            ahead = (
                "-"
                if ratio is None or ratio == 1
                else "project"
                if (ratio > 1) == higher_better
                else "peer"
            )
            out.append(
                {
                    "mode": peer.mode,
                    "workers": peer.workers,
                    "figure": figure,
                    "project": ours,
                    "peer": theirs,
                    "ratio": ratio,
                    "ahead": ahead,
                }
            )
    return out


def _rate_list(rates: list[float]) -> str:
    return ", ".join(f"{r:g}" for r in rates)


if __name__ == "__main__":
    main()
