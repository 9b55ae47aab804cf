"""Putting it into service (issue 19, one court): the Official Account's menu through the
fake WeChat API, backups restored on SQLite and on PostgreSQL and proved whole, a court
moved from SQLite to PostgreSQL with its audit record intact, and the log lines.

The world here always starts on SQLite (what a court starts on), whichever backend the
suite runs on; PostgreSQL is each test's own databases (mst_ops_w<worker>_…) on the
suite's PostgreSQL server (MST_TEST_DATABASE_URL's, or 127.0.0.1:5432), made and dropped
by the test. So both backends are exercised in both runs of the suite."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import text

from bot.app import logs
from bot.app.config import ConfigError, Settings, WeChatSettings, load_settings
from bot.channels.wechat import menu
from bot.core.masking import MaskingFilter
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from handlers.menu import KEYS
from storage import backup as store
from storage import db as database
from tests.conftest import APP_ID, REDIS_URL, TOKEN, WORKER
from tests.world import JUDGE_WX, LITIGANT, World, ask, bind_judge, mst_in_process, verify_litigant

PG_SERVER = (
    os.environ.get("MST_TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
).rsplit("/", 1)[0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """conftest's settings, on SQLite whatever the suite runs on."""
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/test.db",
        redis_url=REDIS_URL,
        secret_key="s" * 48,
        public_base_url="http://court.example",
        wechat=WeChatSettings(app_id=APP_ID, token=TOKEN),
        data_dir=tmp_path,
        jobs_in_process=False,
    )


NewDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture
async def pg_database() -> AsyncIterator[NewDatabase]:
    """`await pg_database("x")`: a new empty PostgreSQL database of this test's own, its
    URL; dropped afterwards."""
    admin = PG_SERVER.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    made: list[str] = []

    async def new(suffix: str) -> str:
        name = f"mst_ops_w{WORKER}_{suffix}"
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        made.append(name)
        return f"{PG_SERVER}/{name}"

    yield new
    conn = await asyncpg.connect(admin)
    try:
        for name in made:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def lived_in(w: World) -> None:
    """A court's first days: a judge bound, a litigant verified, a question asked,
    answered and delivered — cases, tickets, messages, outbox rows, audit events."""
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "请问12月10日开庭吗？")
    await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭。")
    assert await w.delivered_to(LITIGANT)


async def published(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`mst audit publish --json`: the log signed over everything, the head posted."""
    run = await mst_in_process(env, cwd, "audit", "publish", "--json")
    assert run.code == 0, run.err
    said: dict[str, Any] = json.loads(run.out)
    return said


async def verify_full(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    run = await mst_in_process(env, cwd, "audit", "verify", "--full", "--json")
    assert run.code == 0, run.out + run.err
    said: dict[str, Any] = json.loads(run.out)
    assert said["intact"] is True and said["problems"] == []
    return said


async def counts(url: str) -> dict[str, int]:
    db = database.connect(url)
    try:
        return await store.row_counts(db)
    finally:
        await db.dispose()


# -- the Official Account's menu -------------------------------------------------------------


@pytest.fixture
async def wechat_api(
    aiohttp_server: Any, cli_env: dict[str, str]
) -> tuple[FakeWeChat, dict[str, str]]:
    fake = FakeWeChat(app_id=APP_ID, app_secret="real-secret")
    server = await aiohttp_server(fake_app(fake))
    env = cli_env | {
        "WECHAT_APP_ID": fake.app_id,
        "WECHAT_APP_SECRET": fake.app_secret,
        "WECHAT_API_BASE": str(server.make_url("")).rstrip("/"),
    }
    return fake, env


def test_the_built_in_menu_holds_every_contract_key_within_wechats_rules() -> None:
    assert menu.problems(menu.DEFAULT) == []
    keys = menu.keys_in(menu.buttons_of(menu.DEFAULT))
    assert sorted(keys) == sorted(KEYS) and len(keys) == len(set(keys))
    assert set(menu.DOES) == KEYS


async def test_menu_push_and_show_through_the_api(
    wechat_api: tuple[FakeWeChat, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = wechat_api
    dry = await mst_in_process(env, tmp_path, "menu", "push", "--dry-run")
    assert dry.code == 0, dry.err
    assert json.loads(dry.out) == menu.DEFAULT
    assert fake.calls == []  # a dry run asks WeChat nothing

    run = await mst_in_process(env, tmp_path, "menu", "push", "--json")
    assert run.code == 0, run.err
    assert fake.menus == [menu.DEFAULT]  # what WeChat took, exactly
    assert json.loads(run.out) == {"pushed": True, "menu": menu.DEFAULT, "keys_missing": []}
    # The stable token: the running server's token stays valid.
    assert "/cgi-bin/stable_token" in fake.calls and "/cgi-bin/token" not in fake.calls

    shown = await mst_in_process(env, tmp_path, "menu", "show", "--json")
    assert shown.code == 0, shown.err
    said = json.loads(shown.out)
    assert said["is_menu_open"] is True
    assert said["keys_unknown"] == said["keys_missing"] == []
    assert [b["name"] for b in said["button"]] == [b["name"] for b in menu.DEFAULT["button"]]
    assert said["button"][1]["sub_button"] == menu.DEFAULT["button"][1]["sub_button"]

    people = await mst_in_process(env, tmp_path, "menu", "show")
    assert people.code == 0, people.err
    assert people.out.splitlines() == [
        "公众号菜单：",
        "  咨询法官  [ASK] 咨询法官",
        "  诉讼服务",
        "    └ 预约调解  [BOOK] 预约调解",
        "    └ 执行进度  [PROGRESS] 执行进度",
        "    └ 评价服务  [RATE] 评价服务",
        "  更多",
        "    └ 投诉举报  [COMPLAIN] 投诉举报",
        "    └ 返回主菜单  [MENU] 返回主菜单",
    ]


async def test_a_courts_own_menu_is_checked_before_it_is_sent(
    wechat_api: tuple[FakeWeChat, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = wechat_api
    own = {
        "button": [
            {"type": "click", "name": "我要问法官啊", "key": "ASK"},  # 18 bytes: too long
            {"type": "view", "name": "法院官网", "url": "https://court.example/"},
            {"name": "更多", "sub_button": [{"type": "click", "name": "打分", "key": "SCORE"}]},
        ]
    }
    path = tmp_path / "menu.json"
    path.write_text(json.dumps(own, ensure_ascii=False), encoding="utf-8")
    run = await mst_in_process(env, tmp_path, "menu", "push", "--file", str(path))
    assert run.code == 2 and fake.menus == [] and fake.calls == []
    assert "button 1: name '我要问法官啊' is 18 bytes, WeChat takes at most 16" in run.err
    assert "button 3.1: key 'SCORE' is none the chat answers" in run.err
    assert "Traceback" not in run.err

    own["button"][0]["name"] = "问法官"
    own["button"][2]["sub_button"][0]["key"] = "RATE"
    path.write_text(json.dumps(own, ensure_ascii=False), encoding="utf-8")
    run = await mst_in_process(env, tmp_path, "menu", "push", "--file", str(path))
    assert run.code == 0, run.err
    assert fake.menus == [own]
    assert (
        "问法官  [ASK] 咨询法官" in run.out and "法院官网  打开 https://court.example/" in run.out
    )
    assert "注意：菜单上没有 COMPLAIN, BOOK, PROGRESS, MENU" in run.out

    shown = await mst_in_process(env, tmp_path, "menu", "show", "--json")
    assert json.loads(shown.out)["keys_missing"] == ["COMPLAIN", "BOOK", "PROGRESS", "MENU"]


async def test_wechat_refusing_the_menu_is_one_line(
    wechat_api: tuple[FakeWeChat, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = wechat_api
    fake.fail("/cgi-bin/menu/create", 40018)
    run = await mst_in_process(env, tmp_path, "menu", "push")
    assert run.code == 1 and "微信没有接受菜单：40018" in run.err and "Traceback" not in run.err
    assert fake.menus == []
    run = await mst_in_process(env | {"WECHAT_APP_SECRET": "wrong"}, tmp_path, "menu", "show")
    assert run.code == 1 and "没有读到公众号菜单" in run.err and "Traceback" not in run.err
    run = await mst_in_process(env, tmp_path, "menu", "show")
    assert run.code == 0 and "公众号现在没有自定义菜单" in run.out


async def test_the_fake_refuses_menus_as_wechat_does(aiohttp_server: Any) -> None:
    fake = FakeWeChat(app_id=APP_ID, app_secret="real-secret")
    server = await aiohttp_server(fake_app(fake))
    base = str(server.make_url("")).rstrip("/")
    click = {"type": "click", "name": "咨询", "key": "ASK"}

    def sub(**changed: Any) -> dict[str, Any]:
        return {"name": "更多", "sub_button": [{**click, **changed}]}

    cases: list[tuple[Any, int]] = [
        ({"button": []}, 40016),
        ({"button": [click] * 4}, 40016),
        ({"nothing": 1}, 40016),
        ({"button": [{**click, "type": "bogus"}]}, 40017),
        ({"button": [{**click, "name": "咨询法官问问"}]}, 40018),  # 18 bytes
        ({"button": [{**click, "key": "K" * 129}]}, 40019),
        ({"button": [{"type": "view", "name": "官网", "url": ""}]}, 40020),
        ({"button": [{"name": "更多", "sub_button": [click] * 6}]}, 40023),
        ({"button": [sub(type="bogus")]}, 40024),
        ({"button": [sub(name="很" * 21)]}, 40025),  # 63 bytes
        ({"button": [sub(key="")]}, 40026),
        ({"button": [sub(type="view", url="https://x/" + "a" * 1020)]}, 40027),
    ]
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": APP_ID, "secret": "real-secret"},
        ) as resp:
            token = (await resp.json())["access_token"]
        for body, errcode in cases:
            async with http.post(
                f"{base}/cgi-bin/menu/create", params={"access_token": token}, json=body
            ) as resp:
                assert (await resp.json())["errcode"] == errcode, body
        assert fake.menus == []
        # A full menu at the limits is taken: 3 buttons, 5 sub-buttons, 16 and 60 bytes.
        full = {
            "button": [
                {**click, "name": "一二三四五"},
                {"name": "x" * 16, "sub_button": [{**click, "name": "很" * 20}] * 5},
                {**click, "key": "K" * 128},
            ]
        }
        async with http.post(
            f"{base}/cgi-bin/menu/create", params={"access_token": token}, json=full
        ) as resp:
            assert (await resp.json())["errcode"] == 0
        async with http.get(f"{base}/cgi-bin/menu/get", params={"access_token": token}) as resp:
            got = (await resp.json())["menu"]["button"]
        assert got[0]["sub_button"] == [] and len(got[1]["sub_button"]) == 5
    assert fake.menus == [full]
    # Our own check agrees with WeChat's on every count and size.
    for body, _ in cases:
        assert menu.problems(body), body


# -- backups and restore -----------------------------------------------------------------------


async def test_backup_and_restore_on_sqlite(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await lived_in(world)
    posted = await published(cli_env, tmp_path)
    before = await counts(cli_env["DATABASE_URL"])

    out = tmp_path / "backups" / "first"
    run = await mst_in_process(cli_env, tmp_path, "backup", str(out), "--json")
    assert run.code == 0, run.err
    manifest = json.loads(run.out)
    assert manifest["database"] == {"backend": "sqlite", "file": "database.sqlite3",
                                    "revision": manifest["database"]["revision"]}  # fmt: skip
    assert set(manifest["files"]) == {
        "database.sqlite3",
        "head.json",
        "keys/.mst_secret",
        "keys/.mst_signing_key",
    }
    assert manifest["keys"] == {".mst_secret": "file", ".mst_signing_key": "file"}
    for name, f in manifest["files"].items():
        assert store.sha256_file(out / name) == f["sha256"]
        assert (out / name).stat().st_mode & 0o077 == 0  # the keys: the owner's alone
    head = json.loads((out / "head.json").read_text(encoding="utf-8"))
    assert head["head"]["size"] == posted["size"] == manifest["head"]["size"] > 0
    assert head["head"]["root"] == posted["root"] and head["key_id"] == posted["key_id"]
    assert head["published"]["size"] == posted["size"]
    again = await mst_in_process(cli_env, tmp_path, "backup", str(out))
    assert again.code == 2 and "is not empty" in again.err

    # A new server: its own data dir and database, nothing in them yet.
    new = tmp_path / "new"
    new.mkdir()
    env = cli_env | {"DATABASE_URL": f"sqlite+aiosqlite:///{new}/mst.db", "MST_DATA_DIR": str(new)}
    run = await mst_in_process(env, new, "restore", str(out), "--json")
    assert run.code == 0, run.out + run.err
    said = json.loads(run.out)
    assert said["check"]["intact"] is True and said["check"]["problems"] == []
    assert said["check"]["size"] == posted["size"]
    assert sorted(Path(p).name for p in said["keys_written"]) == [".mst_secret", ".mst_signing_key"]
    for name in (".mst_secret", ".mst_signing_key"):
        assert (new / name).read_bytes() == (tmp_path / name).read_bytes()
    assert await counts(env["DATABASE_URL"]) == before
    verified = await verify_full(env, new)
    assert verified["events"] == said["check"]["events"]

    # Never over data.
    run = await mst_in_process(env, new, "restore", str(out))
    assert run.code == 1 and "already holds data" in run.err

    # Another installation's key in the data dir is not overwritten, unless told to.
    other = tmp_path / "other"
    other.mkdir()
    (other / ".mst_secret").write_text("o" * 64 + "\n")
    os.utime(other / ".mst_secret", (1_600_000_000, 1_600_000_000))  # from before this run
    env_other = cli_env | {
        "DATABASE_URL": f"sqlite+aiosqlite:///{other}/mst.db",
        "MST_DATA_DIR": str(other),
    }
    run = await mst_in_process(env_other, other, "restore", str(out))
    assert run.code == 1 and "holds another key than the backup's" in run.err
    assert (other / ".mst_secret").read_text() == "o" * 64 + "\n"
    assert not (other / "mst.db").exists()  # nothing restored
    run = await mst_in_process(env_other, other, "restore", str(out), "--force")
    assert run.code == 0, run.out + run.err
    assert run.out.splitlines()[-1].startswith("审计记录完好：")
    assert (other / ".mst_secret").read_bytes() == (tmp_path / ".mst_secret").read_bytes()

    # A damaged backup restores nothing.
    broken = tmp_path / "backups" / "broken"
    shutil.copytree(out, broken)
    data = bytearray((broken / "database.sqlite3").read_bytes())
    data[-100] ^= 0xFF
    (broken / "database.sqlite3").write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env_fresh = cli_env | {
        "DATABASE_URL": f"sqlite+aiosqlite:///{fresh}/mst.db",
        "MST_DATA_DIR": str(fresh),
    }
    run = await mst_in_process(env_fresh, fresh, "restore", str(broken))
    assert run.code == 1 and "damaged" in run.err and "database.sqlite3" in run.err


async def test_backup_and_restore_on_postgresql(
    world: World, cli_env: dict[str, str], tmp_path: Path, pg_database: NewDatabase
) -> None:
    await lived_in(world)
    posted = await published(cli_env, tmp_path)
    live = await pg_database("live")
    moved = await mst_in_process(cli_env, tmp_path, "migrate-data", "--to", live)
    assert moved.code == 0, moved.out + moved.err
    env = cli_env | {"DATABASE_URL": live}
    before = await counts(live)

    out = tmp_path / "pg-backup"
    run = await mst_in_process(env, tmp_path, "backup", str(out), "--json")
    assert run.code == 0, run.err
    manifest = json.loads(run.out)
    assert manifest["database"]["backend"] == "postgresql"
    assert (out / "database.pgdump").read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert manifest["head"]["size"] == posted["size"]

    # Into a new, empty database on a new server.
    new_url = await pg_database("restored")
    new = tmp_path / "new"
    new.mkdir()
    env_new = cli_env | {"DATABASE_URL": new_url, "MST_DATA_DIR": str(new)}
    run = await mst_in_process(env_new, new, "restore", str(out), "--json")
    assert run.code == 0, run.out + run.err
    said = json.loads(run.out)
    assert said["check"]["intact"] is True and said["check"]["size"] == posted["size"]
    assert await counts(new_url) == before
    await verify_full(env_new, new)
    run = await mst_in_process(env_new, new, "restore", str(out))
    assert run.code == 1 and "already holds data" in run.err

    # Into one `mst migrate` already gave its schema (compose's migrate ran first).
    schema_only = await pg_database("migrated")
    env_schema = env_new | {"DATABASE_URL": schema_only}
    assert (await mst_in_process(env_schema, new, "migrate")).code == 0
    run = await mst_in_process(env_schema, new, "restore", str(out))
    assert run.code == 0, run.out + run.err
    assert await counts(schema_only) == before
    await verify_full(env_schema, new)

    # A SQLite backup is not restored into PostgreSQL: migrate-data moves it.
    sqlite_backup = tmp_path / "sqlite-backup"
    assert (await mst_in_process(cli_env, tmp_path, "backup", str(sqlite_backup))).code == 0
    elsewhere = await pg_database("elsewhere")
    run = await mst_in_process(env_new | {"DATABASE_URL": elsewhere}, new, "restore",
                               str(sqlite_backup))  # fmt: skip
    assert run.code == 2 and "mst migrate-data" in run.err


async def test_backup_says_clearly_when_pg_dump_is_missing(
    cli_env: dict[str, str], tmp_path: Path, pg_database: NewDatabase
) -> None:
    url = await pg_database("nodump")
    env = cli_env | {"DATABASE_URL": url, "PATH": str(tmp_path / "empty")}
    assert (await mst_in_process(env, tmp_path, "migrate")).code == 0
    run = await mst_in_process(env, tmp_path, "backup", str(tmp_path / "b"))
    assert run.code == 1 and "pg_dump not found on PATH" in run.err
    assert "postgresql-client" in run.err and "Traceback" not in run.err
    assert not (tmp_path / "b").exists()  # no half backup left behind


# -- moving up: SQLite → PostgreSQL ------------------------------------------------------------


async def test_migrate_data_from_sqlite_to_postgresql(
    world: World, cli_env: dict[str, str], tmp_path: Path, pg_database: NewDatabase
) -> None:
    await lived_in(world)
    posted = await published(cli_env, tmp_path)
    here = await counts(cli_env["DATABASE_URL"])
    assert here["case"] and here["ticket"] and here["message"] >= 8 and here["audit_event"]

    target = await pg_database("moved")
    # As a hosting panel gives it: postgresql://, without the driver.
    plain = target.replace("postgresql+asyncpg://", "postgresql://")
    run = await mst_in_process(cli_env, tmp_path, "migrate-data", "--to", plain, "--json",
                               "--batch", "3")  # fmt: skip
    assert run.code == 0, run.out + run.err
    said = json.loads(run.out)
    assert said["rows"] == here
    assert said["check"]["intact"] is True and said["check"]["problems"] == []
    assert said["check"]["size"] == posted["size"]
    assert await counts(target) == here

    env = cli_env | {"DATABASE_URL": target}
    verified = await verify_full(env, tmp_path)
    assert verified["messages"]["checked"] >= 8
    # Sequences moved past the copied ids: the next row gets a new one.
    db = database.connect(target)
    try:
        async with db.engine.connect() as conn:
            for table in ("message", "ticket", "audit_event", "published_head"):
                top = (await conn.execute(text(f'SELECT max(id) FROM "{table}"'))).scalar_one()
                nxt = (
                    await conn.execute(
                        text(f"SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id'))")
                    )
                ).scalar_one()
                assert nxt > top, table
    finally:
        await db.dispose()
    # And the court goes on there: a new head posted, the record whole.
    assert (await published(env, tmp_path))["size"] == posted["size"]
    await verify_full(env, tmp_path)

    again = await mst_in_process(cli_env, tmp_path, "migrate-data", "--to", target)
    assert again.code == 1 and "already holds data" in again.err
    wrong = await mst_in_process(cli_env, tmp_path, "migrate-data", "--to", "sqlite:///x.db")
    assert wrong.code == 2 and "PostgreSQL" in wrong.err
    gone = await mst_in_process(
        cli_env, tmp_path, "migrate-data", "--to", f"{PG_SERVER}/mst_ops_no_such_database"
    )
    assert gone.code == 1 and "cannot use" in gone.err and "Traceback" not in gone.err


# -- the log lines ----------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record logged meanwhile (INFO and up), as the JSON lines LOG_FORMAT=json writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_one_json_line_per_request_and_no_personal_data(
    world: World, json_log: io.StringIO
) -> None:
    w = world
    await verify_litigant(w)  # callbacks: WeChat puts the openid in the query string
    await ask(w, "我的电话是13800001234，请回电")
    resp = await w.client.get("/healthz", headers={"X-Request-Id": "nginx-4f2a9c"})
    assert resp.headers["X-Request-Id"] == "nginx-4f2a9c"
    resp = await w.client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    made = resp.headers["X-Request-Id"]
    assert len(made) == 32 and int(made, 16) >= 0  # ours instead
    resp = await w.client.get("/no-such-page/13800001234", params={"openid": LITIGANT})
    assert resp.status == 404 and resp.headers["X-Request-Id"]

    found = lines_of(json_log)
    http = [line for line in found if line.get("event") == "http"]
    callbacks = [line for line in http if line["path"] == "/wechat"]
    assert len(callbacks) >= 4 and {line["method"] for line in callbacks} == {"POST"}
    for line in http:
        assert set(line) >= {"ts", "level", "logger", "msg", "request_id", "method", "path",
                             "route", "status", "latency_ms"}  # fmt: skip
        assert line["logger"] == "mst.http" and "?" not in line["path"]
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
    assert all(line["status"] == 200 and line["route"] == "/wechat" for line in callbacks)
    health = [line for line in http if line["path"] == "/healthz"]
    assert [line["request_id"] for line in health] == ["nginx-4f2a9c", made]
    [missing] = [line for line in http if line["status"] == 404]
    assert missing["path"] == "/no-such-page/138****1234" and missing["route"] is None
    # Nothing in any line logged meanwhile names the person. (The test server's own access
    # log, aiohttp.access, quotes whole URLs: `mst serve` and the demo run without it.)
    everything = "\n".join(json.dumps(line, ensure_ascii=False) for line in found
                            if line["logger"] != "aiohttp.access")  # fmt: skip
    assert LITIGANT not in everything and JUDGE_WX not in everything
    assert "13800001234" not in everything and "openid=" not in everything


async def test_one_json_line_per_job_run(json_log: io.StringIO) -> None:
    async with logs.job_run("deliver_outbox"):
        pass
    with pytest.raises(RuntimeError):
        async with logs.job_run("digest_job"):
            raise RuntimeError("boom")
    assert await logs.timed("anchor_audit", _answer) == 42
    jobs = [line for line in lines_of(json_log) if line.get("event") == "job"]
    assert [(j["job"], j["outcome"], j["level"]) for j in jobs] == [
        ("deliver_outbox", "ok", "info"),
        ("digest_job", "failed", "warning"),
        ("anchor_audit", "ok", "info"),
    ]
    assert all(isinstance(j["duration_ms"], float) and j["logger"] == "mst.jobs" for j in jobs)


async def _answer() -> int:
    return 42


async def test_log_format_setting(cli_env: dict[str, str], tmp_path: Path) -> None:
    base = {"MST_DATA_DIR": str(tmp_path)}
    assert load_settings(base, env_file=None).log_format is None
    assert load_settings(base | {"LOG_FORMAT": "TEXT"}, env_file=None).log_format == "text"
    with pytest.raises(ConfigError, match="^LOG_FORMAT must be json or text"):
        load_settings(base | {"LOG_FORMAT": "xml"}, env_file=None)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.chosen_format(None, Terminal()) == "text"
    assert logs.chosen_format(None, io.StringIO()) == "json"
    assert logs.chosen_format("text", io.StringIO()) == "text"

    # Through the CLI: its stderr here is no terminal, so JSON unless told otherwise.
    fresh = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fresh.db"}
    run = await mst_in_process(cli_env | fresh, tmp_path, "migrate")
    assert run.code == 0, run.err
    said = [json.loads(line) for line in run.err.splitlines()]
    assert said and all(line["logger"].startswith("alembic") for line in said)
    fresh = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/fresh2.db", "LOG_FORMAT": "text"}
    run = await mst_in_process(cli_env | fresh, tmp_path, "migrate")
    assert run.code == 0, run.err
    assert " INFO alembic.runtime.migration: Running upgrade" in run.err
    assert not run.err.lstrip().startswith("{")
