"""What one litigant question costs inside the server, without HTTP or WeChat's crypto.

    python -m bench.hotpath [--backend pg|sqlite] [--messages 3000] [--concurrency 50]
                            [--profile] [--top 40]

Seeds the `ask` world (bench.seed) into a fresh database, then calls `dialog.handle`, the
function the `/wechat` callback calls, for each question, `--concurrency` at a time, in
this one process. It prints messages/s, CPU ms per message (this process only; PostgreSQL
and Redis are separate), SQL statements per message, and with `--profile` the functions
that took the time (cProfile, cumulative). Use it to see where a change to the dialog's
path moves the cost; `bench.callback` is the end-to-end figure.

pg uses the `test_c` database and Redis db 12, like bench.callback; sqlite a temp file and
the in-process Redis stand-in.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

from bench import common, seed
from bot.app.config import load_settings
from bot.core.events import Inbound
from bot.dialog.deps import Deps
from bot.dialog.dispatch import handle
from storage import db as database
from storage import state


async def _run(args: argparse.Namespace, db_url: str, redis_url: str | None) -> None:
    settings = load_settings(
        {"DATABASE_URL": db_url, "REDIS_URL": redis_url or "", "MST_DATA_DIR": args.dir},
        env_file=None,
    )
    db = database.connect(settings.database_url)
    redis = state.connect(settings.redis_url)
    deps = Deps(settings=settings, db=db, redis=redis)
    statements = [0]
    shown: list[str] = []

    connects = [0]

    @event.listens_for(db.engine.sync_engine, "connect")
    def connected(*_a: object) -> None:
        connects[0] += 1

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def count(_conn: object, _cursor: object, sql: str, *_a: object) -> None:
        statements[0] += 1
        if args.sql and statements[0] <= args.sql:
            shown.append(" ".join(sql.split())[:160])

    try:
        users = max(args.concurrency * 4, (args.messages + args.warmup) // 20 + 1)
        world = await asyncio.to_thread(seed.seed_database, settings.database_url, users)
        for lit in world.litigants:  # the state handlers.ask.start leaves behind
            await state.save_conversation(
                redis, lit.openid, {"case_id": lit.case_id, "step": "ask"}
            )
        serial = iter(range(10**9))

        async def one(k: int) -> None:
            lit = world.litigants[k % len(world.litigants)]
            n = next(serial)
            answer = await handle(
                deps, Inbound("wechat", lit.openid, "text", f"wx:{n}", text=f"问题 {n}：何时开庭？")
            )
            if not answer or "#" not in answer.text:
                raise SystemExit(f"unexpected answer: {answer!r}")

        async def drive(count_: int) -> float:
            queue = iter(range(count_))

            async def worker() -> None:
                for k in queue:
                    await one(k)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            return time.perf_counter() - t0

        await drive(args.warmup)
        if args.sql:  # the statements of one question, on its own
            statements[0] = 0
            await one(0)
            print("\n".join(f"{i:3} {q}" for i, q in enumerate(shown, 1)))
        statements[0] = connects[0] = 0
        profiler = cProfile.Profile() if args.profile else None
        cpu0 = time.process_time()
        if profiler:
            profiler.enable()
        wall = await drive(args.messages)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu0
        print(
            f"{args.backend}: {args.messages} questions, concurrency {args.concurrency}: "
            f"{args.messages / wall:,.0f} msg/s, {1000 * cpu / args.messages:.2f} CPU ms/msg "
            f"(this process), {statements[0] / args.messages:.1f} SQL statements/msg, "
            f"{connects[0]} new database connections"
        )
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
    finally:
        await redis.aclose()
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["pg", "sqlite"], default="pg")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--sql", type=int, default=0, help="print one question's first N statements"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mst-hotpath-") as tmp:
        args.dir = tmp
        if args.backend == "pg":
            common.reset_pg(common.PG_URL)
            common.flush_redis(common.REDIS_URL)
            db_url, redis_url = common.PG_URL, common.REDIS_URL
        else:
            db_url, redis_url = f"sqlite+aiosqlite:///{Path(tmp) / 'hot.db'}", None
        db = database.connect(db_url)
        asyncio.run(_migrate(db))
        os.environ.pop("MST_CLOCK", None)
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(_run(args, db_url, redis_url))
        else:
            asyncio.run(_run(args, db_url, redis_url))


async def _migrate(db: database.Database) -> None:
    try:
        await database.migrate(db)
    finally:
        await db.dispose()


if __name__ == "__main__":
    main()
