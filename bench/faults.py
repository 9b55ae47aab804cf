"""Faults under load: what a bad day does to messages, notices and the record.

    python -m bench.faults [--rate 40] [--users 200] [--phases redis,pg,web,worker,...]

Everything runs on this machine and is its own: a PostgreSQL cluster made with initdb and a
redis-server, both on free ports under a temp dir (the machine's services are never
touched), the fake WeChat API (in this process, recording what the server sends), `mst
serve` and `mst worker`. Seeded litigants in the ask step send questions at a steady rate,
each retried the way WeChat retries (three tries in all, 5 s apart, a try counting as
failed on a non-200 or no answer within 5 s). Then, in turn:

    redis    kill -9, restarted 10 s later (persistence off: it comes back empty)
    pg       immediate stop, started again 10 s later
    web      `mst serve` killed with -9, started again 3 s later
    worker   `mst worker` killed with -9, started again 5 s later
    wx5xx / wx40001 / wx45015 / wx45009   WeChat's API answers that for 30 s

After each phase (messages first sent in it, notices for them) it prints: acknowledged but
not stored (must be 0), never acknowledged within three tries, duplicate messages and
tickets (must be 0), notices undelivered once things settle (must be 0), notices delivered
twice, when the 503s stopped after the fault ended, the /healthz timeline, and
`mst audit verify`. It stops by itself; load and waits are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bench import common, seed
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from bot.fakes.wechat.callbacks import WeChatServer, text_xml
from handlers.notices import letter_text

TOKEN = "faulttoken"
APP_ID = "wxfa0175c0de000001"
SECRET = "fault-secret"
PATIENCE_S = 5.0  # WeChat waits 5 s for an answer...
TRIES = 3  # ...and tries three times in all
PG_BIN = Path("/usr/lib/postgresql")
QUESTION = re.compile(r"第\d+问：开庭需要带什么材料？")
LINK = re.compile(r"/m/(\d+)\?")
_MSG_IDS = itertools.count(time.time_ns() // 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if (s.connect_ex(("127.0.0.1", port)) == 0) == up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} within {timeout} s")


# -- the services this run owns --------------------------------------------------------


class Postgres:
    """A throwaway cluster: initdb under the run's temp dir, run as the postgres user
    (PostgreSQL refuses root), on a free port, trust auth on loopback only."""

    def __init__(self, root: Path) -> None:
        versions = sorted(PG_BIN.glob("*/bin/initdb"))
        if not versions:
            raise SystemExit(
                "bench.faults: PostgreSQL's initdb was not found under /usr/lib/postgresql"
            )
        self.bin = versions[-1].parent
        self.dir = root / "pg"
        self.port = free_port()
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres")
        os.chmod(root, 0o755)
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"
        )

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.dir),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop")


class Redis:
    def __init__(self, root: Path) -> None:
        self.port, self.dir, self.proc = free_port(), root, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SystemExit("bench.faults: redis-server is needed")
        self.proc = subprocess.Popen(  # type: ignore[assignment]
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, True)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # type: ignore[attr-defined]
            self.proc.wait()  # type: ignore[attr-defined]
            self.proc = None


class Process:
    """`mst serve` or `mst worker` in its own process group, killed and started again."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], root: Path, port: int = 0):
        self.name, self.cmd, self.env, self.root, self.port = name, cmd, env, root, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.root / f"{self.name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.port:
            wait_port(self.port, True, 60)

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


# -- the load -----------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    openid: str
    text: str
    first_at: float
    acked: bool = False
    tries: list[tuple[float, int | str]] = field(default_factory=list)


@dataclass
class Load:
    base: str
    wechat: WeChatServer
    openids: list[str]
    rate: float
    t0: float = field(default_factory=time.monotonic)
    sent: list[Sent] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, http: aiohttp.ClientSession) -> None:
        turn = itertools.count()
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self.stopping:
            n = next(turn)
            openid = self.openids[n % len(self.openids)]
            msg = Sent(f"wx:{next(_MSG_IDS)}", openid, f"第{n}问：开庭需要带什么材料？", self.now())
            self.sent.append(msg)
            task = asyncio.create_task(self.deliver(http, msg))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def deliver(self, http: aiohttp.ClientSession, msg: Sent) -> None:
        """WeChat's way: three tries, each given 5 s, each a fresh signature."""
        msg_id = int(msg.key.split(":")[1])
        xml = text_xml(msg.openid, msg.text, msg_id=msg_id)
        for _ in range(TRIES):
            started = time.monotonic()
            query, body = self.wechat.request(xml, nonce=str(secrets.randbelow(10**10)))
            status: int | str
            try:
                async with http.post(
                    f"{self.base}/wechat?{urlencode(query)}",
                    data=body.encode(),
                    timeout=aiohttp.ClientTimeout(total=PATIENCE_S),
                ) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                status = type(exc).__name__
            msg.tries.append((self.now(), status))
            if status == 200:
                msg.acked = True
                return
            await asyncio.sleep(max(0.0, started + PATIENCE_S - time.monotonic()))


async def poll_health(base: str, load: Load, timeline: list[tuple[float, str]]) -> None:
    async with aiohttp.ClientSession() as http:
        while not load.stopping:
            try:
                async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    body = await r.json()
                    what = "ok" if r.status == 200 else "503:" + ",".join(body.get("problems", []))
            except Exception as exc:
                what = f"down:{type(exc).__name__}"
            if not timeline or timeline[-1][1] != what:
                timeline.append((load.now(), what))
            await asyncio.sleep(1)


# -- the record ---------------------------------------------------------------------------


async def db_facts(pg_url: str, keys: list[str], texts: list[str]) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        stored = {
            r["msg_key"]
            for r in await conn.fetch("SELECT msg_key FROM message WHERE msg_key = ANY($1)", keys)
        }
        dup_texts = await conn.fetchval(
            "SELECT count(*) FROM (SELECT content FROM message WHERE direction = 'in' "
            "AND content = ANY($1) GROUP BY content HAVING count(*) > 1) d",
            texts,
        )
        dup_tickets = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT openid) FROM ticket WHERE status <> 'closed'"
        )
        waiting = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
            "AND payload LIKE '%问：开庭%'"
        )
        failed = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'failed'")
        return {
            "stored": stored,
            "dup_messages": int(dup_texts),
            "dup_tickets": int(dup_tickets),
            "waiting": int(waiting),
            "failed": int(failed),
        }
    finally:
        await conn.close()


async def notice_rows(pg_url: str, texts: list[str]) -> dict[str, list[int]]:
    """The outbox rows (notices to the judge) that carry each question's text."""
    import asyncpg

    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT id, payload FROM outbox WHERE payload LIKE '%问：开庭%'")
    finally:
        await conn.close()
    wanted = set(texts)
    out: dict[str, list[int]] = {}
    for row in rows:
        for q in QUESTION.findall(letter_text(json.loads(row["payload"]))[1]):
            if q in wanted:
                out.setdefault(q, []).append(int(row["id"]))
    return out


async def settle(pg_url: str, before: datetime, within_s: float) -> float:
    """Wait (bounded) until nothing from before `before` is waiting — a notice not yet
    sent, a flow still owed a run (bot.dialog.dispatch.resume_stranded) — and return how long it
    took (the load goes on meanwhile, so newer ones are always waiting)."""
    import asyncpg

    started = time.monotonic()
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        # Owed flows first (their run queues new notices), then every notice queued so far.
        for query in (
            "SELECT count(*) FROM pending_flow WHERE created_at <= $1",
            "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending') "
            "AND created_at <= $1",
        ):
            while time.monotonic() - started < within_s:
                if await conn.fetchval(query, before) == 0:
                    break
                await asyncio.sleep(1)
            before = datetime.now(UTC)
    finally:
        await conn.close()
    return time.monotonic() - started


# -- the phases -----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    inject: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]
    hold_s: float


def build_phases(
    pg: Postgres, redis: Redis, web_p: Process, worker: Process, fake: FakeWeChat
) -> dict[str, Phase]:
    async def off(fn: Callable[[], None]) -> None:
        await asyncio.to_thread(fn)

    custom, template = "/cgi-bin/message/custom/send", "/cgi-bin/message/template/send"

    def wx(code: int, paths: tuple[str, ...] = (custom, template)) -> Phase:
        async def inject() -> None:
            for path in paths:
                fake.fail(path, code, times=1_000_000)

        async def heal() -> None:
            fake.clear_failures()

        return Phase(f"wx{code if code > 0 else '5xx'}", inject, heal, 30)

    phases = [
        Phase("redis", lambda: off(redis.kill), lambda: off(redis.start), 10),
        Phase("pg", lambda: off(pg.stop), lambda: off(pg.start), 10),
        Phase("web", lambda: off(web_p.kill), lambda: off(web_p.start), 3),
        Phase("worker", lambda: off(worker.kill), lambda: off(worker.start), 5),
        wx(-500),
        wx(40001),
        wx(45015, (custom,)),  # the 48-hour window: templates still go
        wx(45009),
    ]
    return {p.name: p for p in phases}


def verify(env: dict[str, str], root: Path) -> str:
    proc = subprocess.run(
        [common.mst_path(), "audit", "verify"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return (
        "intact"
        if proc.returncode == 0
        else f"FAILED: {(proc.stdout + proc.stderr).strip()[-200:]}"
    )


async def main_async(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="mst-faults-"))
    print(f"bench.faults: working in {root}")
    pg = Postgres(root)
    pg.start()
    redis = Redis(root)
    redis.start()
    fake = FakeWeChat(app_id=APP_ID, app_secret=SECRET)
    runner = web.AppRunner(fake_app(fake))
    await runner.setup()
    api_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", api_port).start()
    env = common.child_env(
        DATABASE_URL=pg.url,
        REDIS_URL=redis.url,
        WECHAT_TOKEN=TOKEN,
        WECHAT_APP_ID=APP_ID,
        WECHAT_APP_SECRET=SECRET,
        WECHAT_API_BASE=f"http://127.0.0.1:{api_port}",
        MST_JOBS_IN_PROCESS="0",
        MST_DATA_DIR=str(root),
        MST_SECRET_KEY="f" * 48,
    )
    mst = common.mst_path()
    await asyncio.to_thread(
        subprocess.run, [mst, "migrate"], env=env, cwd=root, check=True, capture_output=True
    )
    world = await asyncio.to_thread(seed.seed_database, pg.url, args.users)
    await asyncio.to_thread(seed.seed_redis, redis.url, world)
    web_port = free_port()
    web_p = Process(
        "web",
        [mst, "serve", "--port", str(web_port), "--workers", str(args.workers)],
        env,
        root,
        web_port,
    )
    worker = Process("worker", [mst, "worker"], env, root)
    web_p.start()
    worker.start()
    base = f"http://127.0.0.1:{web_port}"
    phases = build_phases(pg, redis, web_p, worker, fake)
    chosen = [phases[n] for n in args.phases.split(",")]
    load = Load(
        base,
        WeChatServer(token=TOKEN, app_id=APP_ID),
        [lit.openid for lit in world.litigants],
        args.rate,
    )
    health: list[tuple[float, str]] = []
    rows = []
    details: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            driver = asyncio.create_task(load.run(http))
            watcher = asyncio.create_task(poll_health(base, load, health))
            await asyncio.sleep(5)  # steady before the first fault
            for phase in chosen:
                start = load.now()
                await asyncio.sleep(2)
                injected = load.now()
                await phase.inject()
                await asyncio.sleep(phase.hold_s)
                await phase.heal()
                healed = load.now()
                await asyncio.sleep(args.after)
                end = load.now()
                end_wall = datetime.now(UTC)
                mine = [m for m in load.sent if start <= m.first_at < end]
                # Their tries are over (3 × 5 s); then the notices get their chance.
                await asyncio.sleep(TRIES * PATIENCE_S)
                settled = await settle(pg.url, end_wall, args.settle)
                facts = await db_facts(pg.url, [m.key for m in mine], [m.text for m in mine])
                acked = [m for m in mine if m.acked]
                refusals = [t for m in load.sent for t, s in m.tries if s != 200 and t >= healed]
                recovered = (max(refusals) - healed) if refusals else 0.0
                # Each question's text is unique: count the sends that carried its notice,
                # as a customer-service text or as a template linking to its row.
                rows_of = await notice_rows(pg.url, [m.text for m in mine])
                carried = Counter(q for sent in fake.sent for q in QUESTION.findall(sent.text))
                linked = Counter(
                    int(r)
                    for sent in fake.sent
                    for r in LINK.findall(str(sent.payload.get("url", "")))
                )
                delivered = {
                    m.text: carried[m.text] + sum(linked[r] for r in rows_of.get(m.text, []))
                    for m in mine
                }
                twice = sum(1 for m in mine if delivered[m.text] > 1)
                undelivered = sum(1 for m in acked if delivered[m.text] == 0)
                details[phase.name] = {
                    "never_acked": [(m.key, m.tries) for m in mine if not m.acked],
                    "undelivered": [m.key for m in acked if delivered[m.text] == 0],
                }
                before = [w for t, w in health if t < start][-1:] or ["?"]
                timeline = " → ".join(
                    [f"before: {before[0]}"]
                    + [f"{t - injected:+.0f}s {w}" for t, w in health if start <= t <= end + 30]
                )
                rows.append(
                    [
                        phase.name,
                        len(mine),
                        sum(1 for m in acked if m.key not in facts["stored"]),
                        len(mine) - len(acked),
                        facts["dup_messages"],
                        facts["dup_tickets"],
                        undelivered,
                        twice,
                        f"{recovered:.1f}",
                        f"{settled:.0f}",
                        await asyncio.to_thread(verify, env, root),
                        timeline,
                    ]
                )
                print(f"  {phase.name}: done ({len(mine)} messages)", flush=True)
            load.stopping = True
            await driver
            await asyncio.gather(*list(load.tasks), return_exceptions=True)
            watcher.cancel()
    finally:
        load.stopping = True
        web_p.stop()
        worker.stop()
        redis.kill()
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop("fast")
        await runner.cleanup()
    headers = [
        "fault",
        "messages",
        "acked, not stored",
        "never acked",
        "dup messages",
        "dup tickets",
        "notices undelivered",
        "delivered twice",
        "503s stop after heal (s)",
        "notices settled in (s)",
        "audit verify",
        "healthz (from injection)",
    ]
    print()
    print(common.table(headers[:-1], [r[:-1] for r in rows]))
    print()
    for r in rows:
        print(f"{r[0]} healthz: {r[-1]}")
    out = common.save_results(
        "faults",
        {
            "headers": headers,
            "rows": rows,
            "rate": args.rate,
            "users": args.users,
            "details": details,
        },
    )
    print(f"\nsaved {out}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=40.0, help="messages per second")
    p.add_argument("--users", type=int, default=200, help="seeded litigants")
    p.add_argument(
        "--phases",
        default="redis,pg,web,worker,wx5xx,wx40001,wx45015,wx45009",
        help="which faults, in order",
    )
    p.add_argument("--after", type=float, default=10.0, help="load after each heal (s)")
    p.add_argument("--settle", type=float, default=150.0, help="bound on waiting for notices (s)")
    p.add_argument("--workers", type=int, default=1, help="web processes (mst serve --workers)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = p.parse_args(argv)
    if os.geteuid() != 0 and shutil.which("runuser") is None:
        raise SystemExit("bench.faults: needs root (runuser) to run its own PostgreSQL cluster")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
