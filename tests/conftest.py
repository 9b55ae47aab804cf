"""Test fixtures. The suite runs against whatever these point at:

  MST_TEST_DATABASE_URL  unset → a fresh SQLite file per test; or a PostgreSQL URL
                         (each test gets a freshly migrated `public` schema)
  MST_TEST_REDIS_URL     unset → the in-process stand-in; or a Redis URL (flushed per test)

A configured service that cannot be reached fails the test; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, select, text

from bot.app.config import Settings, WeChatSettings
from bot.app.factory import create_app, open_senders
from bot.channels.wechat.api import WeChatAPI
from bot.core import clock
from bot.core.settings import DEMO_MP_APP_ID, DEMO_MP_APP_SECRET
from bot.dialog.dispatch import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from bot.fakes.wechat.callbacks import WeChatServer
from bot.rules import rulebook
from qr import codes
from storage import db as database
from storage import state
from storage.models import Case, Court, Party, Staff
from tests.world import CONFIG_PREFIXES, PUBLIC, SECRET, World

# `pytest -n 2` (scripts/test): each xdist worker after the first gets its own PostgreSQL
# database (the configured one's name + _wN, created from it on first use) and its own
# Redis database (the configured number − N), since every test resets both.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _own_database(url: str | None) -> str | None:
    if url is None or WORKER == 0:
        return url
    base, name = url.rsplit("/", 1)
    own = f"{name}_w{WORKER}"

    async def create() -> None:
        conn = await asyncpg.connect(base.replace("postgresql+asyncpg", "postgresql") + "/" + name)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", own):
                await conn.execute(f'CREATE DATABASE "{own}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"{base}/{own}"


def _own_redis(url: str | None) -> str | None:
    if url is None or WORKER == 0:
        return url
    base, number = url.rsplit("/", 1)
    return f"{base}/{int(number) - WORKER}"


PG_URL = _own_database(os.environ.get("MST_TEST_DATABASE_URL"))
REDIS_URL = _own_redis(os.environ.get("MST_TEST_REDIS_URL"))
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx1234567890abcdef"
TOKEN = "testtoken"


# Every test starts on the same Monday, 10:00 in China, whatever today is: deadlines,
# working days and "today" in texts must not depend on the day the suite runs. The
# clock moves on in real time from there (ordering and waits behave as in life); a
# test that needs exact moments sets its own clock on top of this one.
TEST_EPOCH = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def settled_clock() -> Iterator[datetime]:
    started = time.monotonic()
    clock.set_clock(lambda: TEST_EPOCH + timedelta(seconds=time.monotonic() - started))
    yield TEST_EPOCH
    clock.set_clock(None)
    clock.set_timezone(clock.DEFAULT_TIMEZONE)  # a test that loaded MST_TIMEZONE leaves none behind


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=PG_URL or f"sqlite+aiosqlite:///{tmp_path}/test.db",
        redis_url=REDIS_URL,
        secret_key="s" * 48,
        public_base_url="http://court.example",
        wechat=WeChatSettings(app_id=APP_ID, token=TOKEN),
        data_dir=tmp_path,
        jobs_in_process=False,
    )


@pytest.fixture
def safe_settings(settings: Settings) -> Settings:
    return replace(settings, wechat=replace(settings.wechat, aes_key=AES_KEY))


# The migrations run once per test session (per dialect); every test then gets a copy of
# what they built: SQLite's file copied, PostgreSQL's statements replayed in one go.
_SQLITE_TEMPLATE: list[Path] = []
_PG_SCHEMA: list[tuple[str, Any]] = []


async def fresh_db(url: str) -> database.Database:
    if url.startswith("sqlite") and ":memory:" not in url:
        path = Path(url.split(":///", 1)[1])
        if _SQLITE_TEMPLATE and _copied(_SQLITE_TEMPLATE[0], path):
            return database.connect(url)
    db = database.connect(url)
    if db.dialect == "postgresql":
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            for statement, parameters in _PG_SCHEMA:
                await conn.exec_driver_sql(statement, parameters)
        if _PG_SCHEMA:
            return db
        await _migrate_recording(db, _PG_SCHEMA)
        return db
    await database.migrate(db)
    if url.startswith("sqlite") and ":memory:" not in url and not _SQLITE_TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="mst-schema-")) / "template.db"
        await db.dispose()  # everything on disk before the copy
        shutil.copyfile(path, template)
        _SQLITE_TEMPLATE.append(template)
    return db


def _copied(template: Path, path: Path) -> bool:
    """A new database file from the template; False when `path` already holds one."""
    if path.exists():
        return False
    shutil.copyfile(template, path)
    return True


async def _migrate_recording(db: database.Database, into: list[tuple[str, Any]]) -> None:
    """Run the migrations, keeping every statement they sent (with its parameters)."""
    recorded: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        recorded.append((statement, parameters if parameters else None))

    event.listen(db.engine.sync_engine, "before_cursor_execute", keep)
    try:
        await database.migrate(db)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", keep)
    into.extend(recorded)


@pytest.fixture
async def deps(settings: Settings) -> AsyncIterator[Deps]:
    db = await fresh_db(settings.database_url)
    redis = state.connect(settings.redis_url)
    await redis.flushdb()
    yield Deps(settings=settings, db=db, redis=redis)
    await redis.aclose()
    await db.dispose()


async def _client(aiohttp_client: Any, settings: Settings, deps: Deps) -> TestClient:
    deps.settings = settings
    return await aiohttp_client(create_app(settings, deps))


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, deps: Deps) -> TestClient:
    return await _client(aiohttp_client, settings, deps)


@pytest.fixture
async def safe_client(aiohttp_client: Any, safe_settings: Settings, deps: Deps) -> TestClient:
    return await _client(aiohttp_client, safe_settings, deps)


@pytest.fixture
def wechat() -> WeChatServer:
    return WeChatServer(token=TOKEN, app_id=APP_ID)


@pytest.fixture
def safe_wechat() -> WeChatServer:
    return WeChatServer(token=TOKEN, app_id=APP_ID, aes_key=AES_KEY)


COURT = "衡水市桃城区人民法院"
CASE_NUMBER = "(2026)冀1102民初1234号"


@pytest.fixture
async def sample_case(deps: Deps) -> dict[str, Any]:
    """One court, one judge, one case with two parties and a live code."""
    async with deps.db.transaction() as s:
        court = Court(name=COURT)
        s.add(court)
        await s.flush()
        judge = Staff(
            username="zhangwei", name="张伟", court_id=court.id, roles="judge", team="民一庭"
        )
        s.add(judge)
        await s.flush()
        case = Case(
            court_id=court.id,
            case_number=CASE_NUMBER,
            case_type="民事",
            cause="民间借贷纠纷",
            judge_id=judge.id,
        )
        s.add(case)
        await s.flush()
        s.add(
            Party(
                case_id=case.id,
                role="原告",
                name="王某某",
                phone_tail="1234",
                phone_masked="138****1234",
                phone_hash="x",
            )
        )
        s.add(
            Party(
                case_id=case.id,
                role="被告",
                name="李某",
                phone_tail="5678",
                phone_masked="139****5678",
                phone_hash="y",
            )
        )
        code = await codes.issue(s, case, actor="test")
    return {
        "case_id": case.id,
        "token": code.token,
        "short_code": code.short_code,
        "judge_id": judge.id,
    }


async def count(deps: Deps, model: Any) -> int:
    async with deps.db.sessions() as s:
        return len((await s.execute(select(model))).all())


# -- the shared worlds (tests/world.py) -------------------------------------------------


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    """A clock the test moves by hand: `moment[0] += timedelta(...)`."""
    moment = [datetime(2026, 11, 23, 2, 0, tzinfo=UTC)]  # Monday 10:00 in China
    clock.set_clock(lambda: moment[0])
    yield moment
    clock.set_clock(None)


@asynccontextmanager
async def open_world(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
    **overrides: Any,
) -> AsyncIterator[World]:
    """The server in safe mode, with a fake WeChat API it sends to; `overrides`: settings."""
    fake = FakeWeChat(app_id=APP_ID, app_secret=SECRET)
    server = await aiohttp_server(fake_app(fake))
    s = replace(
        settings,
        wechat=replace(
            settings.wechat,
            aes_key=AES_KEY,
            app_secret=SECRET,
            api_base=str(server.make_url("")).rstrip("/"),
        ),
        # The mini-program and web authorisation: the same fake (open.weixin.qq.com too).
        miniprogram=replace(
            settings.miniprogram,
            app_id=DEMO_MP_APP_ID,
            app_secret=DEMO_MP_APP_SECRET,
            open_base=str(server.make_url("")).rstrip("/"),
        ),
        **overrides,
    )
    deps.settings, deps.rules = s, rulebook.of(s)
    http = aiohttp.ClientSession()
    api = WeChatAPI(
        http=http, redis=deps.redis, base=s.wechat.api_base, app_id=APP_ID, app_secret=SECRET
    )
    deps.senders = open_senders(s, api, deps.db)
    client = await aiohttp_client(create_app(s, deps))
    try:
        yield World(
            client,
            deps,
            fake,
            WeChatServer(token=TOKEN, app_id=APP_ID, aes_key=AES_KEY),
            sample_case,
        )
    finally:
        await http.close()


@pytest.fixture
async def world(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[World]:
    async with open_world(aiohttp_client, aiohttp_server, settings, deps, sample_case) as w:
        yield w


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The host's environment without any of our settings, then the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env.update(
        DATABASE_URL=settings.database_url,
        MST_DATA_DIR=str(tmp_path),
        PUBLIC_BASE_URL=PUBLIC,
    )
    return env


# -- the order tests are handed out in ----------------------------------------------------

# The one test that runs for half a minute (every README line through the installed `mst`,
# one process each, in order) goes first: under `-n 2` (scripts/test) the other worker
# runs the rest beside it, instead of it being handed out late and running on alone.
LONGEST = "tests/test_readme_commands.py::test_every_readme_command_runs_as_printed"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid != LONGEST)  # stable: the rest as collected
