"""The dashboard's figures at a court's scale: PostgreSQL database `test_dash` (only that
one; its `public` schema is dropped and made again) filled with N tickets and M messages
over five years by plain `INSERT ... SELECT generate_series`, then
bot.rules.dashboard.compute called in-process for a month, a quarter and a year, and the
year for one team (its items by the team holding them, its scans by the team of the case's
judge), 5 runs each (min / median printed).

    python -m bench.dashboard            # 1,000,000 tickets, 10,000,000 messages
    python -m bench.dashboard --quick    # 50,000 / 500,000
    python -m bench.dashboard --reuse    # time again without refilling
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime

import asyncpg

from bench import common
from bot.rules import dashboard
from bot.rules.deadlines import Deadlines
from storage import db as database

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test_dash"
RAW = URL.replace("postgresql+asyncpg", "postgresql")
YEARS = 5
START = datetime(2022, 1, 1, tzinfo=UTC)
SPAN_S = YEARS * 365 * 86400


def migrate() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = URL
    # mst keeps files (a signing key) in its data directory: a temporary one, not the repo.
    with tempfile.TemporaryDirectory() as data:
        env["MST_DATA_DIR"] = data
        subprocess.run(["mst", "migrate"], env=env, cwd=data, check=True, timeout=600)


async def fill(tickets: int, messages: int) -> None:
    conn = await asyncpg.connect(RAW)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    migrate()
    conn = await asyncpg.connect(RAW)
    cases = max(1, tickets // 10)
    t0 = time.monotonic()
    try:
        await common.fill_courts(conn, cases)
        await common.fill_tickets(conn, tickets, cases, START, SPAN_S)
        await conn.execute(
            """INSERT INTO audit_event (chain, seq, prev_hash, hash, actor, action, subject,
                case_id, at, payload)
            SELECT 'bench', g, '', md5(g::text), 'u' || (g % 50000), 'code.scanned', '',
                   1 + g % $2, $3::timestamptz + (g::float8 / $1 * $4) * interval '1 second', '{}'
            FROM generate_series(1, $1) g""",
            tickets,
            cases,
            START,
            SPAN_S,
        )
        await conn.execute(
            """INSERT INTO message (direction, channel, openid, msg_type, content, case_id,
                ticket_id, created_at)
            SELECT CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END, 'wechat', 'u' || (g % 50000),
                   'text', '请问开庭时间', 1 + (g % $2), 1 + (g % $3),
                   $4::timestamptz + (g::float8 / $1 * $5) * interval '1 second'
            FROM generate_series(1, $1) g""",
            messages,
            cases,
            tickets,
            START,
            SPAN_S,
        )
        for seq in ("court", "staff", "case", "ticket"):
            await conn.execute(f"SELECT setval('{seq}_id_seq', (SELECT max(id) FROM \"{seq}\"))")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    print(f"filled {tickets:,} tickets, {messages:,} messages in {time.monotonic() - t0:.0f} s")


async def timings() -> None:
    db = database.connect(URL)
    deadlines = Deadlines()
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    periods = {
        "month": (date(2026, 6, 1), date(2026, 6, 30), None),
        "quarter": (date(2026, 4, 1), date(2026, 6, 30), None),
        "year": (date(2025, 7, 1), date(2026, 6, 30), None),
        "year, 第1庭": (date(2025, 7, 1), date(2026, 6, 30), "第1庭"),
    }
    try:
        for name, (first, last, team) in periods.items():
            since, until = dashboard.period_of(first, last)
            f = dashboard.Filter(1, since, until, team=team)
            runs = []
            board = None
            for _ in range(5):
                t0 = time.perf_counter()
                async with db.sessions() as session:
                    board = await dashboard.compute(session, f, deadlines, moment)
                runs.append(time.perf_counter() - t0)
            assert board is not None
            print(
                f"{name:10s} items {board.total.items:>7,}  visitors {board.total.visitors:>6,}  "
                f"min {min(runs):.3f} s  median {statistics.median(runs):.3f} s"
            )
    finally:
        await db.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50,000 tickets, 500,000 messages")
    parser.add_argument("--reuse", action="store_true", help="time the data already there")
    parser.add_argument("--tickets", type=int)
    parser.add_argument("--messages", type=int)
    args = parser.parse_args()
    tickets = args.tickets or (50_000 if args.quick else 1_000_000)
    messages = args.messages or (500_000 if args.quick else 10_000_000)
    if not args.reuse:
        asyncio.run(fill(tickets, messages))
    asyncio.run(timings())
    return 0


if __name__ == "__main__":
    sys.exit(main())
