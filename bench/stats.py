"""`mst stats --json` at a court's scale after years: PostgreSQL database `test_hist` (only
that one; its `public` schema dropped and made again) and Redis db 13 (flushed), filled
with N tickets over five years by `INSERT ... SELECT generate_series` (a third rated, as
many service ratings again), and N/10 QR-code scans written with the project's own
append code (storage.audit.append_many, so the chains are real); then `mst stats --json`
run as a subprocess for a month, a quarter, a year (and the year for one team) and
everything, 3 runs each: wall time (min / median) and the command's peak RSS (getrusage of
the children); and bot.rules.stats.compute alone, in-process (the fastest of 3).

    python -m bench.stats                      # 1,000,000 tickets
    python -m bench.stats --tickets 50000      # quicker
    python -m bench.stats --reuse              # time again without refilling
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import asyncpg

from bench import common

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test_hist"
RAW = URL.replace("postgresql+asyncpg", "postgresql")
REDIS = "redis://127.0.0.1:6379/13"
START = datetime(2022, 1, 1, tzinfo=UTC)
SPAN_S = 5 * 365 * 86400
SCAN_CHUNK = 5_000  # scans a transaction


def _env(data: str) -> dict[str, str]:
    return common.child_env(DATABASE_URL=URL, REDIS_URL=REDIS, MST_DATA_DIR=data)


async def _scans(n: int, cases: int) -> None:
    """`n` code.scanned events on the case chains, through storage.audit.append_many."""
    from storage import audit
    from storage import db as database

    db = database.connect(URL)
    try:
        for first in range(0, n, SCAN_CHUNK):
            async with db.transaction() as s:
                await audit.append_many(
                    s,
                    [
                        {
                            "actor": f"u{i % 50_000}",
                            "action": "code.scanned",
                            "subject": f"case:{1 + i % cases}",
                            "case_id": 1 + i % cases,
                            "payload": {"via": "bench"},
                        }
                        for i in range(first, min(n, first + SCAN_CHUNK))
                    ],
                )
    finally:
        await db.dispose()


def prepare() -> None:
    """The database emptied and migrated by `mst migrate`, Redis db 13 flushed."""
    common.reset_pg(URL)
    common.flush_redis(REDIS)
    with tempfile.TemporaryDirectory(prefix="mst-bench-stats-") as data:
        cmd = [common.mst_path(), "migrate"]
        subprocess.run(cmd, env=_env(data), cwd=data, check=True, timeout=600)


async def fill(tickets: int) -> None:
    cases = max(1, tickets // 10)
    t0 = time.monotonic()
    conn = await asyncpg.connect(RAW)
    try:
        await common.fill_courts(conn, cases)
        await common.fill_tickets(conn, tickets, cases, START, SPAN_S)
        await conn.execute(  # of the service in general, as many again
            """INSERT INTO rating (case_id, ticket_id, openid, score, comment, created_at,
                                   updated_at)
            SELECT 1 + g % $2, NULL, 'u' || (g % 50000), 1 + g % 3, '',
                   $3::timestamptz + (g::float8 / $1 * $4) * interval '1 second',
                   $3::timestamptz + (g::float8 / $1 * $4) * interval '1 second'
            FROM generate_series(1, $1) g""",
            tickets // 3,
            cases,
            START,
            SPAN_S,
        )
        for seq in ("court", "staff", "case", "ticket"):
            await conn.execute(f"SELECT setval('{seq}_id_seq', (SELECT max(id) FROM \"{seq}\"))")
    finally:
        await conn.close()
    filled = time.monotonic() - t0
    t1 = time.monotonic()
    await _scans(tickets // 10, cases)
    conn = await asyncpg.connect(RAW)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    print(
        f"filled {tickets:,} tickets in {filled:.0f} s, {tickets // 10:,} scans "
        f"(storage.audit.append_many) in {time.monotonic() - t1:.0f} s"
    )


def _stats(args: list[str], data: str) -> tuple[float, float, dict[str, object]]:
    """`mst stats --json ARGS`: wall seconds, peak RSS MB (the child's), its figures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(
        [common.mst_path(), "stats", "--json", *args],
        env=_env(data),
        cwd=data,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of the children is the largest any of them reached: exact when this one is
    # the largest so far (the first run of each period is printed separately below).
    return wall, max(peak, before) / 1024, json.loads(out)


async def _compute_s(args: list[str], runs: int) -> float:
    """bot.rules.stats.compute alone, in this process (what the command spends in SQL and
    in counting, without starting Python): the fastest of `runs`."""
    from datetime import date, timedelta
    from datetime import time as clock_time

    from bot.core.clock import court_tz
    from bot.rules import stats
    from bot.rules.deadlines import Deadlines
    from storage import db as database

    opts = dict(zip(args[::2], args[1::2], strict=True))

    def day(text: str | None, end: bool = False) -> datetime | None:
        if text is None:
            return None
        d = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return datetime.combine(d, clock_time(0), court_tz())

    scope = stats.Scope(
        since=day(opts.get("--from")), until=day(opts.get("--to"), True), team=opts.get("--team")
    )
    db = database.connect(URL)
    best = float("inf")
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            async with db.sessions() as s:
                await stats.compute(s, scope, Deadlines())
            best = min(best, time.perf_counter() - t0)
    finally:
        await db.dispose()
    return best


def timings(runs: int) -> None:
    periods = {
        "month": ["--from", "2026-06-01", "--to", "2026-06-30"],
        "quarter": ["--from", "2026-04-01", "--to", "2026-06-30"],
        "year": ["--from", "2025-07-01", "--to", "2026-06-30"],
        "year, 第1庭": ["--from", "2025-07-01", "--to", "2026-06-30", "--team", "第1庭"],
        "everything": [],
    }
    with tempfile.TemporaryDirectory(prefix="mst-bench-stats-") as data:
        for name, args in periods.items():
            walls, peaks = [], []
            figures: dict[str, object] = {}
            for _ in range(runs):
                wall, peak, figures = _stats(args, data)
                walls.append(wall)
                peaks.append(peak)
            compute = asyncio.run(_compute_s(args, runs))
            print(
                f"{name:12s} feedback {figures['feedback']:>9,}  ratings {figures['ratings']:>8,}"
                f"  visitors {figures['visitors']:>6,}  command min {min(walls):.2f} s, median "
                f"{statistics.median(walls):.2f} s, peak RSS ≤ {max(peaks):.0f} MB;"
                f"  compute min {compute:.3f} s"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stats", description=__doc__)
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="time the data already there")
    args = parser.parse_args(argv)
    if not args.reuse:
        prepare()
        asyncio.run(fill(args.tickets))
    print(
        f"mst stats --json, {common.code_version()}, {os.cpu_count()} cores (wall: whole command)"
    )
    timings(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
