"""What a litigant's question costs at the least in one Python process, part by part.

    python -m bench.floor [--messages 2000] [--loop uvloop|asyncio] [--profile tottime|cumulative]

PostgreSQL (`test_c`) and Redis (db 12), seeded like bench.hotpath. Each figure is CPU
time of this process per question:

- wechat: the signature check, decryption, XML in, the reply's XML and encryption
  (bot.channels.wechat.callback's own functions), on messages built as WeChat builds them;
- redis: the replay/de-duplication claim and the user's turn (storage.state), the three
  round trips a question makes;
- sql, driver only: the very statements the project sends for a question (captured from
  `dialog.handle`), replayed on a bare asyncpg connection in one transaction;
- dialog: `dialog.handle` itself (the redis turn, the same SQL through SQLAlchemy, the
  flow), one question at a time.

Every transaction, the dialog's and the replay's, is rolled back rather than committed, so
the database stays as seeded and each replay finds what its capture found (so every
question opens a ticket). Committing costs the database server time, not this process CPU.

wechat + redis + sql is the floor for this work in Python here, whatever the code around
it; dialog - redis - sql is what SQLAlchemy and the flows add. HTTP itself is the bare
aiohttp row of bench.callback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import pstats
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bench import common, seed
from bot.app.config import Settings, load_settings
from bot.channels.wechat import callback as wechat
from bot.core.events import Inbound
from bot.core.reply import Reply
from bot.dialog.deps import Deps
from bot.dialog.dispatch import handle
from bot.fakes.wechat.callbacks import WeChatServer, text_xml
from storage import db as database
from storage import state

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
Statement = tuple[str, Any, bool]  # SQL, parameters, executemany


async def cpu_ms_each(count: int, step: Callable[[int], Awaitable[Any]]) -> float:
    cpu0 = time.process_time()
    for k in range(count):
        await step(k)
    return 1000 * (time.process_time() - cpu0) / count


def wechat_settings(base: Settings) -> Settings:
    from dataclasses import replace

    return replace(
        base,
        wechat=replace(base.wechat, token="bench-token", aes_key=AES_KEY, app_id="wxbench00000001"),
    )


def rolled_back(db: database.Database) -> Callable[[], Any]:
    """Database.transaction, but ending in a rollback."""

    @contextlib.asynccontextmanager
    async def transaction() -> AsyncIterator[AsyncSession]:
        async with db.sessions() as session:
            await session.begin()
            try:
                yield session
            finally:
                await session.rollback()

    return transaction


async def measure(args: argparse.Namespace) -> None:
    settings = wechat_settings(
        load_settings(
            {
                "DATABASE_URL": common.PG_URL,
                "REDIS_URL": common.REDIS_URL,
                "MST_DATA_DIR": args.dir,
            },
            env_file=None,
        )
    )
    db = database.connect(settings.database_url)
    redis = state.connect(settings.redis_url)
    deps = Deps(settings=settings, db=db, redis=redis)
    n = args.messages
    try:
        world = await asyncio.to_thread(seed.seed_database, settings.database_url, n // 10 + 50)
        lits = world.litigants
        for lit in lits:  # asking: the state handlers.ask.start leaves behind
            await state.save_conversation(
                redis, lit.openid, {"case_id": lit.case_id, "step": "ask"}
            )

        # wechat: the channel's own functions on signed, encrypted messages
        server = WeChatServer(token="bench-token", app_id="wxbench00000001", aes_key=AES_KEY)
        posts = [
            server.request(text_xml(lits[k % len(lits)].openid, f"问题 {k}", msg_id=10**9 + k))
            for k in range(n)
        ]
        answer = Reply("已收到您的咨询，编号 #123。\n张法官会在 11月25日 17:00 前答复您。")

        async def channel(k: int) -> None:
            query, body = posts[k]
            _, nonce = wechat.check_request(settings, query)
            _, msg = wechat.to_inbound(wechat.decode(settings, query, body.encode()))
            wechat.render(settings, msg, answer, nonce)

        wechat_ms = await cpu_ms_each(n, channel)

        # redis: admit (replay window + de-duplication claim) and the turn
        async def turn(k: int) -> None:
            lit = lits[k % len(lits)]
            await state.admit(redis, str(k), f"n{k}", f"floor:{k}", 600)
            async with state.turn(redis, lit.openid, rate_limit=10**6, remember=f"floor:{k}") as t:
                t.save, t.answer = t.conversation, answer.text

        redis_ms = await cpu_ms_each(n, turn)

        # dialog: one question at a time; timed with nothing listening, then run again to
        # capture its statements for the replay (a listener and a growing capture would
        # cost the timed pass: the capture keeps every parameter alive for the collector).
        captured: list[list[Statement]] = []

        def capture(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, many: bool) -> None:
            captured[-1].append((sql, params, many))

        serial = iter(range(10**9))
        handled = [0.0]  # CPU seconds inside handle() only

        async def question(k: int) -> None:
            lit, m = lits[k % len(lits)], next(serial)
            cpu0 = time.process_time()
            reply = await handle(
                deps, Inbound("wechat", lit.openid, "text", f"wx:{m}", text=f"问题 {m}：何时开庭？")
            )
            handled[0] += time.process_time() - cpu0
            if not reply or "#" not in reply.text:
                raise SystemExit(f"unexpected answer: {reply!r}")
            # The database was rolled back, Redis was not: the turn left the litigant on a
            # ticket that no longer exists. Back to the state the seed gave them, unmeasured,
            # so every question is a first question on a real world (not a look-up that
            # finds nothing, which a real litigant never makes).
            await state.save_conversation(
                redis, lit.openid, {"case_id": lit.case_id, "step": "ask"}
            )

        async def captured_question(k: int) -> None:
            captured.append([])
            await question(k)

        db.transaction = rolled_back(db)  # type: ignore[method-assign]
        await cpu_ms_each(min(n, 200), question)  # warm-up: caches, prepared statements
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        gc.collect()
        handled[0] = 0.0
        await cpu_ms_each(n, question)
        dialog_ms = 1000 * handled[0] / n
        if profiler is not None:
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats(args.profile)
            stats.print_stats(args.top)
            print("(profiled: the dialog.handle figure below includes cProfile's own cost)")
        event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
        await cpu_ms_each(n, captured_question)
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
        per_question = sum(map(len, captured)) / len(captured)

        # the same statements on asyncpg alone
        conn = await asyncpg.connect(common.PG_URL.replace("postgresql+asyncpg", "postgresql"))
        # Ids returned at capture were rolled back; the replay's own differ. Foreign keys are
        # the database server's work, not this process's: not checked on this connection.
        await conn.execute("SET session_replication_role = replica")

        async def replay(k: int) -> None:
            tx = conn.transaction()
            await tx.start()
            for sql, params, many in captured[k]:
                if many:
                    await conn.executemany(sql, params)
                else:
                    await conn.fetch(sql, *params)
            await tx.rollback()

        await cpu_ms_each(min(n, 200), replay)
        gc.collect()
        sql_ms = await cpu_ms_each(n, replay)
        await conn.close()
    finally:
        await redis.aclose()
        await db.dispose()

    floor = wechat_ms + redis_ms + sql_ms
    print(f"bench.floor: {n} questions, one at a time, loop {args.loop}; CPU ms per question:")
    print(f"  wechat (signature, decrypt, XML, reply, encrypt)   {wechat_ms:6.2f}")
    print(f"  redis (de-duplication claim, turn in and out)      {redis_ms:6.2f}")
    print(f"  sql, driver only ({per_question:.1f} statements, 1 transaction) {sql_ms:6.2f}")
    print(
        f"  floor: the three above                             {floor:6.2f}"
        f"  -> at most {1000 / floor:,.0f} questions/s on one core, before HTTP"
    )
    print(f"  dialog.handle (redis + SQLAlchemy + the flow)      {dialog_ms:6.2f}")
    print(
        f"  of which SQLAlchemy and the flow's own code        {dialog_ms - redis_ms - sql_ms:6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument(
        "--profile",
        choices=["tottime", "cumulative"],
        help="cProfile the dialog.handle phase and print its table, sorted so",
    )
    parser.add_argument("--top", type=int, default=40, help="rows of the --profile table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mst-floor-") as tmp:
        args.dir = tmp
        common.reset_pg(common.PG_URL)
        common.flush_redis(common.REDIS_URL)
        asyncio.run(_migrate())
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(measure(args))
        else:
            asyncio.run(measure(args))


async def _migrate() -> None:
    db = database.connect(common.PG_URL)
    try:
        await database.migrate(db)
    finally:
        await db.dispose()


if __name__ == "__main__":
    main()
