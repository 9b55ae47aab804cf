"""Scaling on this machine, as far as its cores allow: 1 → 2 web processes, 1 → 2 workers,
and the capacity model those figures give for a province.

    python -m bench.scale [--web 1,2] [--workers 1,2] [--requests 3000] [--concurrency 50]
                          [--rate 100] [--rate-duration 10] [--rows 3000]
                          [--courts 100] [--open-cases 20000] [--skip-web] [--skip-workers]

**Web**: for each K in --web, `mst serve --workers K` on PostgreSQL (database `test_scale_bench`,
its `public` schema dropped and made again) and Redis (db 6, flushed) in safe mode, driven by
bench.callback's `ask` scenario: seeded litigants in the ask step send signed, encrypted
questions; each opens or joins their ticket (audit event, a notice to the judge in the
outbox), checked against the database after. A closed loop (--concurrency clients, each
sending its next question when the last is answered) gives msg/s; an open loop at the fixed
--rate gives p99 with no coordinated omission.

**Workers**: for each K in --workers, --rows notices in the outbox of a fresh database, then
K `mst worker` processes deliver them to the fake WeChat API (bot.fakes.wechat.api, in a
process of its own); rows delivered per second between 10 % and 90 % of them sent, and
whether the fake received each exactly once.

**Capacity**: CPU per message and per delivery, as measured, turned into the cores a
province needs at its busiest hour (the assumptions are arguments and are printed).

Only these are touched: PostgreSQL database `test_scale_bench` on 127.0.0.1:5432 and Redis
db 6 on 127.0.0.1:6379; servers are stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import callback, common

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test_scale_bench"
REDIS_URL = "redis://127.0.0.1:6379/6"
SECRET = "bench-app-secret"


# -- web processes -------------------------------------------------------------------------


@dataclass
class WebRow:
    processes: int
    closed_msg_s: float
    closed_p50_ms: float
    closed_p99_ms: float
    rate: float
    open_done_s: float
    open_p50_ms: float
    open_p99_ms: float
    open_over_5s: int
    errors: int
    bad: int
    srv_cpu_ms: float | None  # server processes' CPU per answered message, closed loop
    cli_cpu_ms: float  # the bench client's
    box_cores: float | None  # the whole machine's busy cores during the closed loop
    box_cpu_ms: float | None  # the whole machine's CPU per answered message, closed loop
    checks: dict[str, Any] = field(default_factory=dict)


def run_web(k: int, args: argparse.Namespace, mst: str, tmp: Path, port: int) -> WebRow:
    # bench.callback's pg target, on this benchmark's own database and Redis db.
    common.PG_URL, common.REDIS_URL = PG_URL, REDIS_URL
    cargs = callback.parse_args(
        [
            "--scenario",
            "ask",
            "--backend",
            "pg",
            "--mode",
            "safe",
            "--concurrency",
            str(args.concurrency),
            "--requests",
            str(args.requests),
            "--warmup",
            str(args.warmup),
            "--rate",
            str(args.rate),
            "--rate-duration",
            str(args.rate_duration),
        ]
    )
    phases, info = callback.run_target(
        callback.Target("pg", "safe", workers=k), port, mst, tmp, cargs
    )
    closed = next(p for p in phases if p.kind == "closed")
    opened = next(p for p in phases if p.kind == "open")
    per = 1000 / closed.ok if closed.ok else float("nan")
    return WebRow(
        processes=k,
        closed_msg_s=closed.throughput,
        closed_p50_ms=closed.p50_ms,
        closed_p99_ms=closed.p99_ms,
        rate=args.rate,
        open_done_s=opened.throughput,
        open_p50_ms=opened.p50_ms,
        open_p99_ms=opened.p99_ms,
        open_over_5s=opened.over_5s,
        errors=closed.errors + opened.errors,
        bad=closed.bad_replies + opened.bad_replies,
        srv_cpu_ms=None if closed.server_cpu_s is None else closed.server_cpu_s * per,
        cli_cpu_ms=closed.client_cpu_s * per,
        box_cores=closed.busy_cores,
        box_cpu_ms=None if closed.machine_cpu_s is None else closed.machine_cpu_s * per,
        checks={
            "answered_not_stored": info.get("answered_not_stored"),
            "ask_check": (info.get("ask_check") or {}).get("ok"),
            "pids": info.get("pids", 1),
        },
    )


# -- workers ---------------------------------------------------------------------------------


@dataclass
class WorkerRow:
    workers: int
    rows: int
    delivered: int
    received: int  # what the fake WeChat API got (each row once: == rows)
    rows_s: float  # between 10 % and 90 % sent
    wall_s: float  # from the workers' start to the last row sent (start-up included)
    cpu_ms: float | None  # the workers' CPU per row, between 10 % and 90 %
    box_cores: float | None


async def _seed_outbox(url: str, n: int) -> None:
    from bot.outbox import queue
    from storage import db as database

    db = database.connect(url)
    try:
        for start in range(0, n, 500):
            async with db.transaction() as s:
                for i in range(start, min(n, start + 500)):
                    await queue.tell(s, f"oScale{i:020d}", f"您的咨询 #{i} 已有答复，请查看。")
    finally:
        await db.dispose()


async def _sent(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'"))
    finally:
        await conn.close()


def _received(api: str) -> int:
    with urllib.request.urlopen(f"{api}/_fake/sent?after=1000000000", timeout=10) as resp:
        return int(json.loads(resp.read())["next"])


def run_workers(k: int, args: argparse.Namespace, mst: str, tmp: Path, port: int) -> WorkerRow:
    common.reset_pg(PG_URL)
    common.flush_redis(REDIS_URL)
    work = tmp / f"workers-{k}"
    work.mkdir()
    api_base = f"http://127.0.0.1:{port}"
    env = common.child_env(
        DATABASE_URL=PG_URL,
        REDIS_URL=REDIS_URL,
        WECHAT_API_BASE=api_base,
        WECHAT_APP_ID=callback.APP_ID,
        WECHAT_APP_SECRET=SECRET,
        WECHAT_TOKEN=callback.TOKEN,
        MST_DATA_DIR=str(work),
        MST_JOBS_IN_PROCESS="0",
    )
    common.run([mst, "migrate"], env=env, cwd=work, timeout=180)
    asyncio.run(_seed_outbox(PG_URL, args.rows))
    fake = common.start_server(
        f"fake-api-{k}",
        [sys.executable, "-m", "bench.scale", "--serve-fake-api", str(port)],
        env=common.child_env(),
        cwd=common.REPO,
        port=port,
        log_dir=tmp,
    )
    workers: list[common.Server] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _received(api_base)
                break
            except OSError:
                if time.monotonic() > deadline or fake.proc.poll() is not None:
                    raise RuntimeError(
                        "the fake WeChat API did not start:\n" + fake.log_tail()
                    ) from None
                time.sleep(0.1)
        t0 = time.perf_counter()
        for i in range(k):
            workers.append(
                common.start_server(
                    f"worker-{k}-{i}", [mst, "worker"], env=env, cwd=work, port=0, log_dir=tmp
                )
            )
        marks: list[tuple[float, int, float | None, float | None]] = []
        limit = time.monotonic() + args.worker_timeout
        while True:
            sent = asyncio.run(_sent(PG_URL))
            cpu = common._sum(w.cpu_s() for w in workers)
            marks.append((time.perf_counter() - t0, sent, cpu, common.machine_cpu_s()))
            if sent >= args.rows or time.monotonic() > limit:
                break
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exited:\n{w.log_tail()}")
            time.sleep(0.25)
        received = _received(api_base)
    finally:
        for w in workers:
            w.stop()
        fake.stop()
    low = next(m for m in marks if m[1] >= 0.1 * args.rows)
    high = next((m for m in marks if m[1] >= 0.9 * args.rows), marks[-1])
    span = high[0] - low[0]
    rows = high[1] - low[1]
    cpu = (
        None if high[2] is None or low[2] is None or not rows else (high[2] - low[2]) * 1000 / rows
    )
    box = None if high[3] is None or low[3] is None or not span else (high[3] - low[3]) / span
    return WorkerRow(
        workers=k,
        rows=args.rows,
        delivered=marks[-1][1],
        received=received,
        rows_s=rows / span if span > 0 else float("nan"),
        wall_s=marks[-1][0],
        cpu_ms=cpu,
        box_cores=box,
    )


def serve_fake_api(port: int) -> None:
    from aiohttp import web

    from bot.fakes.wechat.api import FakeWeChat, create_app

    web.run_app(
        create_app(FakeWeChat(app_id=callback.APP_ID, app_secret=SECRET)),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )


# -- the capacity model --------------------------------------------------------------------


@dataclass
class Model:
    courts: int
    open_cases: int  # per court
    write_share: float  # of open cases that write on the busiest day
    peak_share: float  # of that day's writes that fall in the peak hours
    peak_hours: float
    inbound_per_write: int  # callbacks the server handles per case-write
    outbound_per_write: int  # notices the workers deliver per case-write
    burst: float  # the busiest minute against the peak hours' average
    web_cpu_ms: float  # server CPU per callback, measured
    db_cpu_ms: float  # PostgreSQL + Redis CPU per callback, measured (an upper bound)
    worker_cpu_ms: float  # worker CPU per delivered notice, measured
    target_use: float = 0.5  # how busy a core may be at the busiest minute

    def lines(self) -> list[str]:
        cases = self.courts * self.open_cases
        writes = cases * self.write_share
        peak = writes * self.peak_share
        per_s = peak / (self.peak_hours * 3600)
        inbound = per_s * self.inbound_per_write
        outbound = per_s * self.outbound_per_write
        web = inbound * self.burst * self.web_cpu_ms / 1000
        dbc = inbound * self.burst * self.db_cpu_ms / 1000
        wrk = outbound * self.burst * self.worker_cpu_ms / 1000
        total = web + dbc + wrk
        return [
            f"open cases        {self.courts} courts × {self.open_cases:,} = {cases:,}",
            f"busiest day       {self.write_share:.0%} of them write = {writes:,.0f} case-writes",
            f"peak {self.peak_hours:g} hours     {self.peak_share:.0%} of those = {peak:,.0f}"
            f" → {peak:,.0f} / {self.peak_hours * 3600:,.0f} s = {per_s:.2f} case-writes/s",
            f"callbacks         × {self.inbound_per_write} per case-write = {inbound:.1f}/s;"
            f" busiest minute × {self.burst:g} = {inbound * self.burst:.1f}/s",
            f"deliveries        × {self.outbound_per_write} per case-write = {outbound:.1f}/s;"
            f" busiest minute × {self.burst:g} = {outbound * self.burst:.1f}/s",
            f"web cores         {inbound * self.burst:.1f}/s × {self.web_cpu_ms:.1f} ms = {web:.2f}",
            f"PostgreSQL+Redis  {inbound * self.burst:.1f}/s × {self.db_cpu_ms:.1f} ms = {dbc:.2f}",
            f"worker cores      {outbound * self.burst:.1f}/s × {self.worker_cpu_ms:.1f} ms = {wrk:.2f}",
            f"total             {total:.2f} cores busy at the busiest minute; kept under"
            f" {self.target_use:.0%} busy: {math.ceil(total / self.target_use)} core(s),"
            " on each of two hosts so that either one carries the province alone",
        ]


# -- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--web", type=callback._workers, default=[1, 2], help="web process counts")
    p.add_argument("--workers", type=callback._workers, default=[1, 2], help="worker counts")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--rate", type=float, default=100, help="the open loop's fixed rate, msg/s")
    p.add_argument("--rate-duration", type=float, default=10)
    p.add_argument("--rows", type=int, default=3000, help="outbox rows for the workers")
    p.add_argument("--worker-timeout", type=float, default=300)
    p.add_argument("--port-base", type=int, default=18300)
    p.add_argument("--skip-web", action="store_true")
    p.add_argument("--skip-workers", action="store_true")
    p.add_argument("--courts", type=int, default=100)
    p.add_argument("--open-cases", type=int, default=20000, help="open cases per court")
    p.add_argument("--write-share", type=float, default=0.03)
    p.add_argument("--peak-share", type=float, default=0.5)
    p.add_argument("--peak-hours", type=float, default=2)
    p.add_argument("--inbound-per-write", type=int, default=3)
    p.add_argument("--outbound-per-write", type=int, default=2)
    p.add_argument("--burst", type=float, default=3)
    p.add_argument("--mst", help="path to the mst command (default: the venv's)")
    p.add_argument("--serve-fake-api", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_fake_api:
        serve_fake_api(args.serve_fake_api)
        return
    mst = common.mst_path(args.mst)
    tmp = Path(tempfile.mkdtemp(prefix="mst-scale-"))
    print(f"bench.scale: {common.code_version()}, {os.cpu_count()} cores, in {tmp}")
    web_rows: list[WebRow] = []
    worker_rows: list[WorkerRow] = []
    port = args.port_base
    if not args.skip_web:
        for k in args.web:
            web_rows.append(run_web(k, args, mst, tmp, port))
            port += 1
        print("\nweb: `mst serve --workers K`, ask scenario, PostgreSQL + Redis, safe mode")
        print(
            common.table(
                [
                    "processes",
                    "msg/s closed",
                    "p50 ms",
                    "p99 ms",
                    f"p99 ms @{args.rate:g}/s",
                    f"done/s @{args.rate:g}/s",
                    ">5 s",
                    "errors",
                    "bad",
                    "srv CPU ms/msg",
                    "box CPU ms/msg",
                    "box cores",
                ],
                [
                    [
                        r.processes,
                        r.closed_msg_s,
                        r.closed_p50_ms,
                        r.closed_p99_ms,
                        r.open_p99_ms,
                        r.open_done_s,
                        r.open_over_5s,
                        r.errors,
                        r.bad,
                        r.srv_cpu_ms,
                        r.box_cpu_ms,
                        r.box_cores,
                    ]
                    for r in web_rows
                ],
            )
        )
        for r in web_rows:
            print(
                f"  {r.processes} process(es): checks {r.checks}, client CPU {r.cli_cpu_ms:.1f} ms/msg"
            )
    if not args.skip_workers:
        for k in args.workers:
            worker_rows.append(run_workers(k, args, mst, tmp, port))
            port += 1
        print("\nworkers: `mst worker` × K delivering outbox rows to the fake WeChat API")
        print(
            common.table(
                [
                    "workers",
                    "rows",
                    "delivered",
                    "API got",
                    "rows/s 10–90 %",
                    "wall s",
                    "CPU ms/row",
                    "box cores",
                ],
                [
                    [
                        r.workers,
                        r.rows,
                        r.delivered,
                        r.received,
                        r.rows_s,
                        r.wall_s,
                        r.cpu_ms,
                        r.box_cores,
                    ]
                    for r in worker_rows
                ],
            )
        )
    if web_rows and worker_rows:
        one = web_rows[0]
        web_ms = one.srv_cpu_ms or float("nan")
        # What the box spent per message beyond our server and our client: PostgreSQL and
        # Redis (and whatever else ran meanwhile: an upper bound).
        other_ms = max(0.0, (one.box_cpu_ms or 0) - web_ms - one.cli_cpu_ms)
        worker_ms = (
            min(r.cpu_ms for r in worker_rows if r.cpu_ms)
            if any(r.cpu_ms for r in worker_rows)
            else float("nan")
        )
        print(
            f"\nper core, measured here: {1000 / web_ms:,.0f} callbacks/s per core of web process"
            f" ({web_ms:.1f} ms CPU each), PostgreSQL+Redis {other_ms:.1f} ms each (upper bound),"
            f" {1000 / worker_ms:,.0f} deliveries/s per core of worker ({worker_ms:.1f} ms each)"
        )
        model = Model(
            courts=args.courts,
            open_cases=args.open_cases,
            write_share=args.write_share,
            peak_share=args.peak_share,
            peak_hours=args.peak_hours,
            inbound_per_write=args.inbound_per_write,
            outbound_per_write=args.outbound_per_write,
            burst=args.burst,
            web_cpu_ms=web_ms,
            db_cpu_ms=other_ms,
            worker_cpu_ms=worker_ms,
        )
        print("\ncapacity model (assumptions are arguments: --courts, --open-cases, …)")
        for line in model.lines():
            print("  " + line)
    with contextlib.suppress(OSError):
        common.save_results(
            "scale",
            {"web": [r.__dict__ for r in web_rows], "workers": [r.__dict__ for r in worker_rows]},
        )


if __name__ == "__main__":
    main()
