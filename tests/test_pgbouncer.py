"""PostgreSQL behind a real PgBouncer in transaction mode (tests/pgbouncer.py: Debian's
`pgbouncer`, two server connections for many client connections, so transactions of
different clients really take turns on the same server connection).

With `?pooler=pgbouncer` on DATABASE_URL a court's day runs through it: litigants verify
and ask at the same time, the judge answers, the outbox delivers both ways, and `mst audit
verify --full` (through PgBouncer too) finds the record whole. Without the flag the same
day fails on asyncpg's prepared statements, which is why the flag exists.

The database is always one of the test's own on 127.0.0.1:5432 (made and dropped here), so
these tests run the same in both halves of the suite; Redis is the half's own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from bot.app.config import ConfigError, Settings, load_settings
from bot.dialog.deps import Deps
from bot.fakes.wechat.callbacks import event_xml
from handlers import texts
from qr import codes
from storage import db as database
from storage.models import AuditEvent, Case, Message, Outbox, Party, Ticket
from tests.conftest import open_world
from tests.pgbouncer import PgBouncer, own_database
from tests.world import JUDGE_WX, World, bind_judge, mst_in_process

LITIGANTS = 6  # asking at once: more clients than PgBouncer's two server connections


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    b = PgBouncer(pool_size=2)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def bouncer_database() -> AsyncIterator[str]:
    async with own_database() as name:
        yield name


@pytest.fixture
def settings(settings: Settings, bouncer: PgBouncer, bouncer_database: str) -> Settings:
    """The suite's settings with the database behind PgBouncer, the flag on."""
    return replace(settings, database_url=bouncer.url(bouncer_database))


async def _more_cases(deps: Deps, court_id: int, judge_id: int, n: int) -> list[tuple[str, str]]:
    """n more cases of the same judge, one party each: (case code token, phone digits)."""
    out = []
    async with deps.db.transaction() as s:
        for i in range(n):
            case = Case(
                court_id=court_id,
                case_number=f"(2026)冀1102民初{2000 + i}号",
                case_type="民事",
                cause="买卖合同纠纷",
                judge_id=judge_id,
            )
            s.add(case)
            await s.flush()
            digits = f"{3000 + i}"
            s.add(
                Party(
                    case_id=case.id,
                    role="原告",
                    name=f"赵{i}某",
                    phone_tail=digits,
                    phone_masked=f"138****{digits}",
                    phone_hash=f"h{i}",
                )
            )
            code = await codes.issue(s, case, actor="test")
            out.append((code.token, digits))
    return out


async def court_day(w: World) -> None:
    """Litigants of several cases verify and ask at once; the judge answers every one; the
    answers reach them. Raises (an assertion or the database's error) when any step fails."""
    await bind_judge(w)
    async with w.deps.db.sessions() as s:
        case = await s.get(Case, w.case["case_id"])
        assert case is not None
        court_id, judge_id = case.court_id, case.judge_id
    assert judge_id is not None
    people = [(w.case["token"], "1234"), (w.case["token"], "5678")]
    people += await _more_cases(w.deps, court_id, judge_id, LITIGANTS - 2)
    openids = [f"oBouncer{i:018d}" for i in range(len(people))]

    async def litigant(openid: str, token: str, digits: str) -> int:
        greeting = await w.send(event_xml(openid, "SCAN", token))
        assert texts.ASK_DIGITS in greeting, greeting
        assert "验证成功" in await w.say(openid, digits)
        assert await w.say(openid, "1") == texts.ASK_PROMPT
        reply = await w.say(openid, f"{openid[-2:]}号当事人：请问什么时候开庭？")
        found = re.search(r"#(\d+)", reply)
        assert found, reply
        return int(found.group(1))

    tickets = await asyncio.gather(
        *(litigant(o, token, digits) for o, (token, digits) in zip(openids, people, strict=True))
    )
    assert len(set(tickets)) == len(openids)
    await w.deliver()
    assert len(w.inbox(JUDGE_WX)) == len(openids)
    for number in tickets:
        answered = await w.say(JUDGE_WX, f"#{number} 下周一上午九点开庭。")
        assert answered == texts.STAFF_ANSWERED.format(ticket=number)
    await w.deliver()
    for openid, number in zip(openids, tickets, strict=True):
        assert w.inbox(openid) == [f"法官张伟回复 #{number}：下周一上午九点开庭。"]


async def test_a_court_day_runs_through_pgbouncer(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
    bouncer: PgBouncer,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert settings.database_url.endswith("?pooler=pgbouncer")
    assert deps.db.engine.url.port == bouncer.port and "pooler" not in str(deps.db.engine.url)
    async with open_world(aiohttp_client, aiohttp_server, settings, deps, sample_case) as w:
        await court_day(w)

    async def count(query: Any) -> int:
        async with deps.db.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(query)) or 0)

    assert await count(Ticket) == LITIGANTS
    assert await count(select(Outbox).where(Outbox.status != "sent").subquery()) == 0
    assert await count(Message) > 4 * LITIGANTS
    assert await count(AuditEvent) > 4 * LITIGANTS

    # Client connections really shared server connections: more of ours than of its.
    clients = [c for c in bouncer.show("CLIENTS") if c["database"] != "pgbouncer"]
    servers = bouncer.show("SERVERS")
    assert len(servers) <= 2 < len(clients), (len(servers), len(clients))

    # The whole record checks out, read through PgBouncer by the command an operator runs.
    assert cli_env["DATABASE_URL"] == settings.database_url
    run = await mst_in_process(cli_env, tmp_path, "audit", "verify", "--full")
    assert run.code == 0, run.out + run.err
    assert "prepared statement" not in bouncer.log_text()


async def test_without_the_flag_the_same_day_fails(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
    bouncer: PgBouncer,
    bouncer_database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The schema and the sample case were made with the flag; the day then runs on an
    engine without it, as a PgBouncer deployment without the setting would."""
    flagged = deps.db
    deps.db = database.connect(bouncer.url(bouncer_database, pooler=False))
    seen: list[str] = []  # every error the database driver raised, as it said it

    @event.listens_for(deps.db.engine.sync_engine, "handle_error")
    def keep(context: Any) -> None:
        seen.append(f"{type(context.original_exception).__name__}: {context.original_exception}")

    failure: BaseException | None = None
    try:
        async with open_world(aiohttp_client, aiohttp_server, settings, deps, sample_case) as w:
            try:
                await court_day(w)
            except Exception as exc:  # what breaks first: the database error or a reply
                failure = exc
    finally:
        await deps.db.dispose()
        deps.db = flagged
    assert failure is not None, "the day ran without the flag: the test proves nothing"
    assert seen and all(PREPARED.search(said) for said in seen), seen


PREPARED = re.compile(
    r"prepared statement \"?(__asyncpg_stmt_[0-9a-f]+__)?\"? (does not|already) exist"
)


# -- the setting ---------------------------------------------------------------------------


def test_the_pooler_flag_is_read_and_checked(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://mst:p%40ss@10.0.0.5:6432/mst?pooler=pgbouncer&ssl=require"
    plain, pooler = database.split_pooler(url)
    assert pooler == "pgbouncer"
    assert plain == "postgresql+asyncpg://mst:p%40ss@10.0.0.5:6432/mst?ssl=require"
    assert database.split_pooler("postgresql+asyncpg://mst@h/mst") == (
        "postgresql+asyncpg://mst@h/mst",
        None,
    )
    args = database.pooler_connect_args("pgbouncer")
    assert args["statement_cache_size"] == 0 and args["prepared_statement_cache_size"] == 0
    names = {args["prepared_statement_name_func"]() for _ in range(100)}
    assert len(names) == 100 and all(n.startswith("__mst_") for n in names)
    assert database.pooler_connect_args(None) == {}

    env = {"MST_DATA_DIR": str(tmp_path)}
    got = load_settings(
        {**env, "DATABASE_URL": "postgres://mst@h/mst?pooler=pgbouncer"}, env_file=None
    )
    assert got.database_url == "postgresql+asyncpg://mst@h/mst?pooler=pgbouncer"
    for bad, says in (
        ("postgresql://mst@h/mst?pooler=pgpool", "pooler must be one of pgbouncer"),
        ("sqlite:///x.db?pooler=pgbouncer", "PostgreSQL URLs only"),
    ):
        with pytest.raises(ConfigError, match="DATABASE_URL") as err:
            load_settings({**env, "DATABASE_URL": bad}, env_file=None)
        assert says in str(err.value)
