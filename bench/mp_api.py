"""The mini-program's JSON API (/api/mp/v1) under an open-loop load: one `mst serve`
process on PostgreSQL + Redis, against the fake WeChat running in this process.

    python -m bench.mp_api [--rate 200] [--seconds 20] [--warmup 3] [--users 300]
                           [--mix 0.2] [--phases reads,adds,mixed] [--quick]
                           [--port 18390] [--keep]

The target (the issue): p99 of "my items" (GET /api/mp/v1/items) and "add a message"
(POST /api/mp/v1/items/{id}/messages) under 50 ms at 200 requests/s, one process.

1. `test_c` (its `public` schema dropped and created again) and Redis db 12 (flushed),
   `mst migrate`, then bench.seed: one court, one judge with an openid (every message
   added queues a notice to them in the outbox), and one case per app user, each with a
   party whose phone tail is read back from the database, and a case code.
2. The fake WeChat (bot.fakes.wechat.api) serves on 127.0.0.1 in this process;
   `mst serve` gets WECHAT_API_BASE pointing at it, MP_APP_ID/MP_APP_SECRET set to the
   fake's demo mini-program, MST_JOBS_IN_PROCESS=0 (jobs are not measured), its cwd a
   temp dir (no `.env` leaks in).
3. Unmeasured: every app user signs in (POST /login with a code from the fake), verifies
   for their case (POST /verify with the code's token and the phone's last four digits)
   and asks one question (POST /items), so "my items" has one item and "add a message" a
   target. The API allows 20 sign-ins a minute from one address: the sign-ins come from
   several loopback addresses (127.0.0.2, 127.0.0.3, ...), 16 users each, as people
   behind different addresses would.
4. Measured, each phase an open loop: requests start at fixed 1/rate intervals whatever
   the answers; latency is counted from each request's scheduled start to the last byte
   of its answer, so a server that falls behind shows its queueing. Each phase first runs
   `--warmup` seconds at the same rate (unmeasured), then `--seconds` timed. Phases:
   reads (GET /items), adds (POST .../messages), mixed (a share `--mix` of adds).
   Requests go round the users in order, and the run has enough users that no one passes
   the API's 120 requests a minute or the chat's 30 messages a minute (both read from the
   code; --users is raised if needed, and the output says so). While a phase runs, the
   client's own cyclic GC is off (its pauses would otherwise show as server latency).
5. Checked: every answer's status (200 expected; anything else is an error), every read
   lists exactly the user's one item, every add names the user's item; at the end, every
   add that got a 200 is in the `message` table on its ticket (nothing accepted is lost).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import common, seed
from bot.channels.miniprogram import api as mp
from bot.core.settings import (
    DEMO_MP_APP_ID,
    DEMO_MP_APP_SECRET,
    DEMO_WECHAT_APP_ID,
    DEMO_WECHAT_APP_SECRET,
    Settings,
)
from bot.fakes.wechat.api import FakeWeChat, create_app
from handlers import texts

TARGET_P99_MS = 50.0
API = mp.PREFIX
USERS_PER_ADDRESS = 16  # sign-ins per loopback address (the API allows LOGIN_PER_MINUTE)
SETUP_CONCURRENCY = 16
# Per user, over the whole run (a fixed 60 s window from the first request can hold all of
# it): the chat's flows allow user_rate_per_minute messages (verify and open are two of
# them), the API RATE_PER_MINUTE requests. Kept a few under each.
CHAT_LIMIT = Settings().user_rate_per_minute
APP_LIMIT = mp.RATE_PER_MINUTE
SETUP_ACTIONS = 2  # verify, open: both chat messages and API requests
MARGIN_CHAT = 3
MARGIN_APP = 10
NOISY_CORES = 0.25  # other work on the box past this: the figures are not clean
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Exit)\b")
MARKER = re.compile(r"\[mp-(\w+)-(\d+)\]")


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhasePlan:
    name: str  # reads | adds | mixed
    add_share: float  # 0: all reads, 1: all adds

    def counts(self, rate: float, seconds: float) -> tuple[int, int]:
        """(reads, adds) of `seconds` at `rate`, by the same draw the phase makes."""
        n = max(1, round(rate * seconds))
        adds = sum(1 for a in _kinds(n, self.add_share, seed_=0) if a)
        return n - adds, adds


def _kinds(n: int, share: float, seed_: int) -> list[bool]:
    """Which of n requests are adds: none, all, or a fixed-seed draw with that share."""
    if share <= 0:
        return [False] * n
    if share >= 1:
        return [True] * n
    rng = random.Random(seed_)
    return [rng.random() < share for _ in range(n)]


def phases_of(args: argparse.Namespace) -> list[PhasePlan]:
    known = {"reads": 0.0, "adds": 1.0, "mixed": args.mix}
    return [PhasePlan(name, known[name]) for name in args.phases]


def users_needed(args: argparse.Namespace, plans: Sequence[PhasePlan]) -> tuple[int, int, int]:
    """(users, adds per user, API requests per user) for the whole run, with --users raised
    so that nobody passes the chat's or the API's per-minute limit."""
    reads = adds = 0
    for plan in plans:
        for seconds in (args.warmup, args.seconds):
            if seconds > 0:
                r, a = plan.counts(args.rate, seconds)
                reads, adds = reads + r, adds + a
    # Reads and adds each go round the users: one user makes at most ceil(reads / users)
    # reads and ceil(adds / users) adds.
    users = args.users
    while (
        math.ceil(adds / users) + SETUP_ACTIONS > CHAT_LIMIT - MARGIN_CHAT
        or math.ceil(reads / users) + math.ceil(adds / users) + SETUP_ACTIONS
        > APP_LIMIT - MARGIN_APP
    ):
        users += 1
    return (
        users,
        math.ceil(adds / users) + SETUP_ACTIONS,
        math.ceil(reads / users) + math.ceil(adds / users) + SETUP_ACTIONS,
    )


# -- requests and results ------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    openid: str
    token: str
    case_id: int
    ticket_id: int


@dataclass(frozen=True)
class Req:
    kind: str  # read | add
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    user: int  # index into the users
    marker: str = ""  # adds: the tag in the text, found again in the database


@dataclass
class Res:
    status: int | str  # HTTP status, or the exception's name
    latency: float  # seconds from the scheduled start to the last byte
    lag: float  # how late the request actually started
    body: bytes | None
    at: float = 0.0  # its slot: seconds from the phase's start


def build(
    base: str, users: Sequence[User], phase: str, plan: PhasePlan, n: int, turn: Counter[str]
) -> list[Req]:
    """n requests, adds where the draw says so; reads and adds each go round the users."""
    out = []
    for i, is_add in enumerate(_kinds(n, plan.add_share, seed_=0)):
        kind = "add" if is_add else "read"
        k = turn[kind] % len(users)
        turn[kind] += 1
        user = users[k]
        auth = {"Authorization": f"Bearer {user.token}"}
        if is_add:
            marker = f"[mp-{phase}-{i}]"
            text = f"补充一下：合同原件下周一送到立案庭。{marker}"
            out.append(
                Req(
                    "add",
                    "POST",
                    f"{base}{API}/items/{user.ticket_id}/messages",
                    {**auth, "Content-Type": "application/json"},
                    json.dumps({"text": text}, ensure_ascii=False).encode(),
                    k,
                    marker,
                )
            )
        else:
            out.append(Req("read", "GET", f"{base}{API}/items", auth, None, k))
    return out


async def send(session: aiohttp.ClientSession, req: Req, due: float) -> Res:
    started = time.perf_counter()
    try:
        async with session.request(req.method, req.url, data=req.body, headers=req.headers) as resp:
            body = await resp.read()
            return Res(resp.status, time.perf_counter() - due, started - due, body)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Res(type(exc).__name__, time.perf_counter() - due, started - due, None)


async def open_loop(
    session: aiohttp.ClientSession, reqs: Sequence[Req], rate: float, timeout_s: float
) -> tuple[list[Res | None], float]:
    """Request i starts at t0 + i/rate whether or not earlier ones were answered (as
    bench.callback.open_loop). (results, wall s: first scheduled start to last answer).

    The client's own cyclic GC is off meanwhile: a full collection here (this process
    holds the project's modules, the fake WeChat and every request) stops the client for
    tens of milliseconds, which the answers arriving then would be charged with."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return await _open_loop(session, reqs, rate, timeout_s)
    finally:
        gc.enable()
        gc.unfreeze()


async def _open_loop(
    session: aiohttp.ClientSession, reqs: Sequence[Req], rate: float, timeout_s: float
) -> tuple[list[Res | None], float]:
    results, wall = await common.open_loop(
        lambda i, due: send(session, reqs[i], due), len(reqs), rate, timeout_s
    )
    for k, r in enumerate(results):
        if r is not None:
            r.at = k / rate
    return results, wall


# -- figures -------------------------------------------------------------------------------


@dataclass
class Figures:
    phase: str
    kind: str  # read | add | all
    requests: int
    rate: float  # the target rate of this kind
    wall_s: float = 0.0
    started_at: float = 0.0  # wall-clock time (epoch s) of the timed part's start
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    bad_replies: int = 0
    bad_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    late: int = 0  # started over 10 ms after its slot: the client fell behind
    max_lag_ms: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float | None = None
    services_cpu_s: float | None = None  # PostgreSQL's and Redis's processes on this box
    machine_cpu_s: float | None = None
    samples: list[str] = field(default_factory=list)
    # Answers over the target, by the second of the phase their slot was in: a stall shows
    # as a few seconds with many, queueing as many seconds with some.
    slow_by_second: dict[int, int] = field(default_factory=dict)

    @property
    def done_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def meets(self) -> bool:
        return self.errors == 0 and self.bad_replies == 0 and self.p99_ms < TARGET_P99_MS

    def per_req_ms(self, cpu_s: float | None) -> float | None:
        return None if cpu_s is None or not self.requests else cpu_s / self.requests * 1000

    @property
    def busy_cores(self) -> float | None:
        if self.machine_cpu_s is None or not self.wall_s:
            return None
        return self.machine_cpu_s / self.wall_s

    @property
    def other_cores(self) -> float | None:
        """The box's busy cores not spent by the server, the client, PostgreSQL or Redis:
        someone else's work (or the kernel's) competing with the measurement."""
        parts = (self.machine_cpu_s, self.server_cpu_s, self.client_cpu_s, self.services_cpu_s)
        if any(p is None for p in parts) or not self.wall_s:
            return None
        box, srv, cli, svc = (p or 0.0 for p in parts)
        return max(0.0, box - srv - cli - svc) / self.wall_s


def figures(
    phase: str,
    kind: str,
    rate: float,
    wall: float,
    pairs: Sequence[tuple[Req, Res | None]],
    users: Sequence[User],
) -> Figures:
    fig = Figures(phase, kind, len(pairs), rate, wall_s=wall)
    errors: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    latencies = []
    slow: Counter[int] = Counter()
    for req, res in pairs:
        if res is None:
            errors["not finished"] += 1
            continue
        fig.late += res.lag > 0.010
        fig.max_lag_ms = max(fig.max_lag_ms, res.lag * 1000)
        if res.status != 200:
            errors[str(res.status)] += 1
            if len(fig.samples) < 3:
                fig.samples.append(f"{req.method} {req.url}: {res.status} {res.body!r:.200}")
            continue
        latencies.append(res.latency)
        if res.latency * 1000 > TARGET_P99_MS:
            slow[int(res.at)] += 1
        why = check_answer(req, res, users[req.user])
        if why:
            bad[why] += 1
            if len(fig.samples) < 3:
                fig.samples.append(f"{req.method} {req.url}: {why}: {res.body!r:.200}")
    latencies.sort()
    fig.ok = len(latencies)
    fig.errors = sum(errors.values())
    fig.error_kinds = dict(errors)
    fig.bad_replies = sum(bad.values())
    fig.bad_kinds = dict(bad)
    fig.slow_by_second = dict(sorted(slow.items()))
    if latencies:
        fig.p50_ms = common.pct(latencies, 50) * 1000
        fig.p90_ms = common.pct(latencies, 90) * 1000
        fig.p99_ms = common.pct(latencies, 99) * 1000
        fig.max_ms = latencies[-1] * 1000
    return fig


def check_answer(req: Req, res: Res, user: User) -> str | None:
    """None when the answer is what this user should get; else what is wrong with it."""
    try:
        said = json.loads(res.body or b"")
    except ValueError:
        return "not JSON"
    if req.kind == "read":
        items = said.get("items") if isinstance(said, dict) else None
        if not isinstance(items, list) or [i.get("id") for i in items] != [user.ticket_id]:
            return "not exactly the user's one item"
        return None
    if not isinstance(said, dict) or said.get("ticket_id") != user.ticket_id:
        return "not about the user's item"
    if said.get("message") != texts.APP_ADDED.format(ticket=user.ticket_id):
        return f"unexpected words: {str(said.get('message'))[:30]!r}"
    return None


# -- the database --------------------------------------------------------------------------


async def _query(sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    from storage import db as database

    db = database.connect(common.PG_URL)
    try:
        async with db.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]
    finally:
        await db.dispose()


def phone_tails() -> dict[int, str]:
    """case id -> the phone tail of its (one) party, as seeded."""
    return {int(c): str(t) for c, t in asyncio.run(_query("SELECT case_id, phone_tail FROM party"))}


ADDS_SQL = "SELECT content, ticket_id FROM message WHERE direction = 'in' AND msg_type = 'app.add'"


def stored_check(
    accepted: dict[str, int], attempted: int, rows: Sequence[tuple[Any, ...]]
) -> dict[str, Any]:
    """Every add answered 200 (marker -> its ticket) must be stored, on that ticket."""
    stored: dict[str, int | None] = {}
    for content, ticket_id in rows:
        found = MARKER.search(content or "")
        if found:
            stored[found.group(0)] = ticket_id
    lost = [m for m in accepted if m not in stored]
    misfiled = [m for m, t in accepted.items() if m in stored and stored[m] != t]
    return {
        "attempted": attempted,
        "accepted": len(accepted),
        "stored": len(stored),
        "lost": len(lost),
        "misfiled": len(misfiled),
        "stored_not_accepted": len(set(stored) - set(accepted)),
        "examples_lost": lost[:5],
        "ok": not lost and not misfiled,
    }


# -- the run -------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    users_asked: int
    users: int
    adds_per_user: int
    requests_per_user: int
    phases: list[Figures] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


async def start_fake() -> tuple[FakeWeChat, web.AppRunner, str]:
    fake = FakeWeChat(app_id=DEMO_WECHAT_APP_ID, app_secret=DEMO_WECHAT_APP_SECRET)
    runner = web.AppRunner(create_app(fake), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return fake, runner, f"http://127.0.0.1:{port}"


async def sign_up(
    base: str,
    fake: FakeWeChat,
    litigants: Sequence[seed.Litigant],
    tails: dict[int, str],
    timeout_s: float,
) -> tuple[list[User], Counter[str]]:
    """Each app user signs in (from their group's loopback address), verifies for their
    case and asks one question. Returns the users who did all three, and what failed."""
    failed: Counter[str] = Counter()
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    groups = [
        litigants[i : i + USERS_PER_ADDRESS] for i in range(0, len(litigants), USERS_PER_ADDRESS)
    ]

    async def one(session: aiohttp.ClientSession, k: int, lit: seed.Litigant) -> User | None:
        openid = f"oMPbench{k:07d}"
        async with gate:
            step = "login"
            try:
                async with session.post(
                    f"{base}{API}/login", json={"code": fake.login_code(openid)}
                ) as resp:
                    said = await resp.json()
                    if resp.status != 200:
                        failed[f"login {resp.status} {said.get('error')}"] += 1
                        return None
                auth = {"Authorization": f"Bearer {said['token']}"}
                step = "verify"
                proof = {"scan": lit.token, "digits": tails[lit.case_id]}
                async with session.post(f"{base}{API}/verify", json=proof, headers=auth) as resp:
                    said = await resp.json()
                    if resp.status != 200 or not said.get("verified"):
                        failed[f"verify {resp.status} {str(said.get('message'))[:40]}"] += 1
                        return None
                step = "open"
                ask = {"case_id": lit.case_id, "kind": "question", "text": "请问什么时候开庭？"}
                async with session.post(f"{base}{API}/items", json=ask, headers=auth) as resp:
                    said = await resp.json()
                    if resp.status != 201 or not said.get("ticket_id"):
                        failed[f"open {resp.status} {str(said.get('message'))[:40]}"] += 1
                        return None
                return User(openid, auth["Authorization"][7:], lit.case_id, int(said["ticket_id"]))
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                failed[f"{step}: {type(exc).__name__}"] += 1
                return None

    async def group(n: int, members: Sequence[seed.Litigant]) -> list[User | None]:
        address = f"127.0.0.{2 + n}"
        connector = aiohttp.TCPConnector(limit=SETUP_CONCURRENCY, local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            return await asyncio.gather(
                *(one(session, n * USERS_PER_ADDRESS + j, lit) for j, lit in enumerate(members))
            )

    if len(groups) > 250:
        raise RuntimeError("too many users for the addresses 127.0.0.2-127.0.0.251")
    done = await asyncio.wait_for(
        asyncio.gather(*(group(n, g) for n, g in enumerate(groups))), timeout_s
    )
    return [u for g in done for u in g if u is not None], failed


def free_port(first: int, tries: int = 10) -> int:
    """The first of `tries` ports from `first` that binds: the last run's connections can
    hold its port in TIME_WAIT for a minute (common.start_server's probe then refuses it;
    the server itself would bind)."""
    for port in range(first, first + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"ports {first}-{first + tries - 1} on 127.0.0.1 are all in use; --port")


SERVICES = ("postgres", "redis-server")


def services_cpu_s() -> float | None:
    """CPU seconds of the PostgreSQL and Redis processes visible here (all their users'
    work, not only ours; a backend that exits between two readings drops out)."""
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if name in SERVICES:
            cpu = common.proc_cpu_s(int(entry.name))
            if cpu is not None:
                total, seen = total + cpu, True
    return total if seen else None


def drain(server: common.Server, timeout_s: float) -> float:
    """Wait until the server is idle (under 5% of a core for 0.5 s), so work left behind
    by one phase is not billed to the next."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        before = server.cpu_s()
        time.sleep(0.5)
        after = server.cpu_s()
        if before is None or after is None or after - before < 0.025:
            break
    return time.perf_counter() - t0


async def measure(
    run: Run, server: common.Server, users: Sequence[User], accepted: dict[str, int]
) -> int:
    """The timed phases. Fills run.phases and `accepted` (add marker -> ticket for every
    add answered 200, warm-ups included); returns how many adds were sent."""
    args = run.args
    turn: Counter[str] = Counter()
    attempted = 0
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for plan in phases_of(args):
            run.info.setdefault("drain_s", []).append(
                round(await asyncio.to_thread(drain, server, args.drain_timeout), 1)
            )
            print(f"  {plan.name} ...", end=" ", flush=True)
            t_phase = time.perf_counter()
            n_warm = max(0, round(args.rate * args.warmup))
            warm = build(server.base, users, plan.name + "w", plan, n_warm, turn)
            n = max(1, round(args.rate * args.seconds))
            reqs = build(server.base, users, plan.name, plan, n, turn)
            if warm:
                results, _ = await open_loop(session, warm, args.rate, args.phase_timeout)
                note_accepted(warm, results, users, accepted)
                attempted += sum(r.kind == "add" for r in warm)
            cpu0, srv0, box0 = common.self_cpu_s(), server.cpu_s(), common.machine_cpu_s()
            svc0, started = services_cpu_s(), time.time()
            results, wall = await open_loop(session, reqs, args.rate, args.phase_timeout)
            cpu1, srv1, box1 = common.self_cpu_s(), server.cpu_s(), common.machine_cpu_s()
            svc1 = services_cpu_s()
            note_accepted(reqs, results, users, accepted)
            attempted += sum(r.kind == "add" for r in reqs)

            pairs = list(zip(reqs, results, strict=True))
            kinds = sorted({r.kind for r in reqs}, reverse=True)  # read, add
            rows = [
                figures(
                    plan.name,
                    kind,
                    args.rate * sum(r.kind == kind for r in reqs) / n,
                    wall,
                    [(q, s) for q, s in pairs if q.kind == kind],
                    users,
                )
                for kind in kinds
            ]
            if len(kinds) > 1:
                rows.append(figures(plan.name, "all", args.rate, wall, pairs, users))
            # CPU is for the whole phase: on its one row, or on the mixed phase's "all" row.
            total = rows[-1]
            total.server_cpu_s = _delta(srv1, srv0)
            total.client_cpu_s = cpu1 - cpu0
            total.machine_cpu_s = _delta(box1, box0)
            total.services_cpu_s = _delta(svc1, svc0)
            for row in rows:
                row.started_at = started
            run.phases += rows
            print(
                f"p99 {total.p99_ms:.1f} ms, {total.errors} errors "
                f"({time.perf_counter() - t_phase:.0f} s)",
                flush=True,
            )
    run.info.setdefault("drain_s", []).append(
        round(await asyncio.to_thread(drain, server, args.drain_timeout), 1)
    )
    return attempted


def note_accepted(
    reqs: Sequence[Req], results: Sequence[Res | None], users: Sequence[User], out: dict[str, int]
) -> None:
    for req, res in zip(reqs, results, strict=True):
        if req.kind == "add" and res is not None and res.status == 200:
            out[req.marker] = users[req.user].ticket_id


async def serve_and_measure(run: Run, mst: str, tmp: Path, litigants: list[seed.Litigant]) -> None:
    args = run.args
    tails = await asyncio.to_thread(phone_tails)
    fake, fake_runner, fake_base = await start_fake()
    env = common.child_env(
        DATABASE_URL=common.PG_URL,
        REDIS_URL=common.REDIS_URL,
        WECHAT_APP_ID=DEMO_WECHAT_APP_ID,
        WECHAT_APP_SECRET=DEMO_WECHAT_APP_SECRET,
        WECHAT_API_BASE=fake_base,
        MP_APP_ID=DEMO_MP_APP_ID,
        MP_APP_SECRET=DEMO_MP_APP_SECRET,
        MST_DATA_DIR=str(tmp),
        MST_JOBS_IN_PROCESS="0",
    )
    server: common.Server | None = None
    try:
        port = free_port(args.port)
        server = common.start_server(
            "mst-serve-mp",
            [mst, "serve", "--port", str(port)],
            env=env,
            cwd=tmp,
            port=port,
            log_dir=tmp,
        )
        t0 = time.perf_counter()
        health = await asyncio.to_thread(server.wait_healthy, args.start_timeout)
        if (health.get("database_kind"), health.get("redis_mode")) != ("postgresql", "redis"):
            raise RuntimeError(f"not on PostgreSQL + Redis: /healthz said {health}")
        run.info["start_s"] = round(time.perf_counter() - t0, 1)
        run.info["server_pid"] = server.proc.pid
        print(f"  `mst serve` pid {server.proc.pid} on port {port}", flush=True)
        run.info["rss_idle_mb"] = server.rss_mb()

        t0 = time.perf_counter()
        users, failed = await sign_up(server.base, fake, litigants, tails, args.phase_timeout)
        run.info["setup_s"] = round(time.perf_counter() - t0, 1)
        run.info["setup_failed"] = dict(failed)
        if failed or len(users) != len(litigants):
            raise RuntimeError(
                f"{len(litigants) - len(users)} of {len(litigants)} users could not sign in, "
                f"verify and ask: {dict(failed)}\n{server.log_tail(10)}"
            )
        print(f"  {len(users)} users signed in, verified, asked in {run.info['setup_s']} s")

        accepted: dict[str, int] = {}
        attempted = await measure(run, server, users, accepted)
        run.info["rss_peak_mb"] = server.peak_rss_mb()
        rows = await _query(ADDS_SQL)
        run.info["stored_check"] = stored_check(accepted, attempted, rows)
    finally:
        if server is not None:
            leftovers = await asyncio.to_thread(server.stop)
            if leftovers:
                run.info["killed_leftovers"] = leftovers
            run.info["log"] = log_findings(server.log_text())
        await fake_runner.cleanup()


def log_findings(text: str) -> dict[str, Any]:
    """Errors and warnings in the server's log, and the exceptions its tracebacks end with."""
    lines = text.splitlines()
    errors = [ln for ln in lines if " ERROR " in ln or " CRITICAL " in ln]
    warnings = [ln for ln in lines if " WARNING " in ln]
    first: list[str] = []
    for ln in errors + warnings:
        msg = ln.split(": ", 1)[-1][:160]
        if msg not in first:
            first.append(msg)
    raised = Counter(
        ln[:160] for ln in lines if EXCEPTION_LINE.match(ln) and not ln.startswith("Traceback")
    )
    return {
        "errors": len(errors),
        "warnings": len(warnings),
        "first": first[:5],
        "exceptions": dict(raised.most_common(5)),
    }


def _spread(by_second: dict[int, int]) -> str:
    """Where in the phase the slow answers were: a stall or steady queueing."""
    if len(by_second) > 10:
        return f"their slots in {len(by_second)} different seconds of the phase"
    spread = ", ".join(f"{s}: {c}" for s, c in by_second.items())
    return f"by the second of the phase their slots were in: {{{spread}}}"


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


# -- output --------------------------------------------------------------------------------


def report(run: Run, cores: int | None, total_s: float) -> None:
    args = run.args
    print(
        f"\nOpen loop, each phase {args.warmup:g} s warm-up (unmeasured) then {args.seconds:g} s "
        f"timed at {args.rate:g} requests/s; latency from each request's scheduled start to "
        "the last byte of its answer; percentiles over the answers with status 200; errors = "
        "any other status or no answer; bad = a 200 whose body is not what that user should "
        "get; late = started > 10 ms after its slot (the client fell behind)"
    )
    print(
        common.table(
            [
                "phase",
                "kind",
                "requests",
                "target/s",
                "done/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "errors",
                "bad",
                "late",
                f"p99<{TARGET_P99_MS:g}",
                "srv CPU ms/req",
                "pg+redis ms/req",
                "cli CPU ms/req",
                "box busy cores",
                "other cores",
            ],
            [
                [
                    f.phase,
                    f.kind,
                    f.requests,
                    f.rate,
                    f.done_per_s,
                    f.p50_ms,
                    f.p90_ms,
                    f.p99_ms,
                    f.max_ms,
                    f.errors,
                    f.bad_replies,
                    f.late,
                    "yes" if f.meets else "NO",
                    f.per_req_ms(f.server_cpu_s),
                    f.per_req_ms(f.services_cpu_s),
                    f.per_req_ms(f.client_cpu_s),
                    f.busy_cores,
                    f.other_cores,
                ]
                for f in run.phases
            ],
        )
    )
    print("\nNotes")
    for f in run.phases:
        for what, kinds in (("errors", f.error_kinds), ("bad answers", f.bad_kinds)):
            if kinds:
                print(f"  {f.phase}/{f.kind}: {what}: {kinds}")
        for sample in f.samples:
            print(f"      {sample}")
        if f.slow_by_second and (f.kind == "all" or f.phase != "mixed"):
            print(
                f"  {f.phase}: {sum(f.slow_by_second.values())} answers over "
                f"{TARGET_P99_MS:g} ms; {_spread(f.slow_by_second)}"
            )
    info = run.info
    if run.users != run.users_asked:
        print(
            f"  --users {run.users_asked} raised to {run.users}, so that nobody passes the "
            f"limits over the whole run"
        )
    print(
        f"  {run.users} app users, one case and one open question each; over the whole run "
        f"each made at most {run.requests_per_user} API requests (limit {APP_LIMIT}/min) "
        f"and {run.adds_per_user} chat messages (limit {CHAT_LIMIT}/min), setup included. "
        "The limits are the code's own: nothing was raised."
    )
    server_bits = [
        f"started in {info.get('start_s', 0)} s",
        f"setup (sign in, verify, ask) {info.get('setup_s', 0)} s",
        f"idle RSS {info.get('rss_idle_mb') or 0:.0f} MB",
        f"peak RSS {info.get('rss_peak_mb') or 0:.0f} MB",
    ]
    drains = info.get("drain_s") or [0]
    if max(drains) > 1:
        server_bits.append(f"busy after a phase for up to {max(drains):.0f} s")
    log = info.get("log", {})
    server_bits.append(f"log: {log.get('errors', 0)} errors, {log.get('warnings', 0)} warnings")
    print("  server (one `mst serve` process): " + ", ".join(server_bits))
    for line in log.get("first", []):
        print(f"      {line}")
    for line, count in log.get("exceptions", {}).items():
        print(f"      {count} x {line}")
    check = info.get("stored_check")
    if check:
        print(
            f"  stored check: {'ok' if check['ok'] else 'FAILED'}: {check['attempted']} adds sent "
            f"(warm-ups included), {check['accepted']} answered 200, {check['stored']} in the "
            f"message table; answered 200 but not stored: {check['lost']}, stored on another "
            f"item: {check['misfiled']}, stored without a 200: {check['stored_not_accepted']}"
        )
    srv = [f for f in run.phases if f.server_cpu_s is not None]
    if srv:
        per = ", ".join(f"{f.phase} {f.per_req_ms(f.server_cpu_s) or 0:.2f} ms" for f in srv)
        most = max((f.per_req_ms(f.server_cpu_s) or 0) for f in srv)
        print(
            f"  server CPU per request (user+system of the `mst serve` process; PostgreSQL and "
            f"Redis not included): {per}"
            + (
                f"; at the dearest, one core serves about {1000 / most:,.0f} requests/s"
                if most
                else ""
            )
        )
    print(
        f"  machine: {cores} cores, Python {platform.python_version()}, aiohttp "
        f"{aiohttp.__version__}; the client (this process, with the fake WeChat), the server, "
        "PostgreSQL and Redis all share them. 'box busy cores': every process's CPU over the "
        "phase / wall time; 'other cores': what of it was none of those four (someone else's "
        "work competing with the measurement: near 0 for a clean run). pg+redis counts every "
        "PostgreSQL and Redis process here, whoever uses them."
    )
    for f in run.phases:
        other = f.other_cores
        if other is not None and other > NOISY_CORES:
            print(
                f"  NOTE {f.phase}: {other:.2f} cores of other work on the box during the phase: "
                "its latencies are not the server's alone; run again on a quiet machine"
            )
    print(f"  code {common.code_version()}; full run {total_s:.0f} s")


# -- main ----------------------------------------------------------------------------------


PHASES = ("reads", "adds", "mixed")


def _phases(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names or any(n not in PHASES for n in names):
        raise argparse.ArgumentTypeError(f"phases are some of {', '.join(PHASES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.mp_api", description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=200, help="requests/s in each phase")
    p.add_argument("--seconds", type=float, default=20, help="timed seconds per phase")
    p.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each")
    p.add_argument("--users", type=int, default=300, help="app users (raised if needed)")
    p.add_argument("--mix", type=float, default=0.2, help="share of adds in the mixed phase")
    p.add_argument(
        "--phases",
        type=_phases,
        default=list(PHASES),
        help="which phases, in order (default reads,adds,mixed)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 s phases, 60 users")
    p.add_argument("--port", type=int, default=18390)
    p.add_argument("--connections", type=int, default=256, help="client connection cap")
    p.add_argument("--request-timeout", type=float, default=10)
    p.add_argument("--phase-timeout", type=float, default=60, help="cap past a phase's end")
    p.add_argument("--start-timeout", type=float, default=60)
    p.add_argument("--drain-timeout", type=float, default=30)
    p.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--mst", help="path to the mst command (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (the server log)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.users = min(args.seconds, 3), min(args.warmup, 1), 60
    if args.rate <= 0 or args.seconds <= 0 or args.warmup < 0 or args.users < 1:
        p.error("--rate, --seconds and --users must be positive, --warmup not negative")
    if not 0 < args.mix < 1:
        p.error("--mix must be between 0 and 1")
    return args


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            print("  (uvloop not installed: the client runs on asyncio's loop)")
    return asyncio.new_event_loop


def run_async(
    factory: Callable[[], asyncio.AbstractEventLoop], coro: Coroutine[Any, Any, None]
) -> None:
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    mst = common.mst_path(args.mst)
    plans = phases_of(args)
    users, adds_each, requests_each = users_needed(args, plans)
    run = Run(args, args.users, users, adds_each, requests_each)
    cores = os.cpu_count()
    print(
        f"bench.mp_api: {', '.join(p.name for p in plans)} at {args.rate:g} requests/s, "
        f"{args.warmup:g} + {args.seconds:g} s each, {users} app users; one `mst serve` on "
        f"PostgreSQL + Redis; {cores} cores; code {common.code_version()}",
        flush=True,
    )
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="mst-bench-mp-"))
    try:
        common.reset_pg(common.PG_URL)
        common.flush_redis(common.REDIS_URL)
        env = common.child_env(
            DATABASE_URL=common.PG_URL, REDIS_URL=common.REDIS_URL, MST_DATA_DIR=str(tmp)
        )
        run.info["migrate_s"], _ = common.run([mst, "migrate"], env=env, cwd=tmp, timeout=180)
        t0 = time.perf_counter()
        world = seed.seed_database(common.PG_URL, users)
        run.info["seed_s"] = round(time.perf_counter() - t0, 1)
        print(
            f"  migrated in {run.info['migrate_s']:.1f} s, seeded {users} cases in "
            f"{run.info['seed_s']} s",
            flush=True,
        )
        run_async(loop_factory(args.client_loop), serve_and_measure(run, mst, tmp, world.litigants))
    except Exception as exc:
        run.info["failed"] = f"{type(exc).__name__}: {exc}"
        print(f"\nFAILED: {run.info['failed']}", flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    if run.phases:
        report(run, cores, time.perf_counter() - t_start)
    path = common.save_results(
        "mp_api",
        {
            "code": common.code_version(),
            "args": vars(args),
            "cores": cores,
            "users": run.users,
            "phases": [asdict(f) | {"meets_target": f.meets} for f in run.phases],
            "info": run.info,
        },
    )
    print(f"\nraw results: {path.relative_to(common.REPO)}")
    check = run.info.get("stored_check", {})
    if "failed" in run.info or not check.get("ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
