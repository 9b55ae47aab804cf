"""REDIS_URL=redis+sentinel://…: the web process and `mst worker` find Redis through a real
Redis Sentinel (tests/sentinel.py: our own master, replica and sentinel on free ports) and
follow the master when the sentinel fails over. Runs the same in both halves of the suite:
the Redis here is always the sentinel's, the database the half's own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError

from bot.app.config import ConfigError, Settings, load_settings
from bot.app.worker import redis_settings
from bot.dialog.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from bot.outbox import queue as outbox
from storage import state
from tests.conftest import APP_ID, open_world
from tests.sentinel import SentinelSet
from tests.world import LITIGANT, SECRET, ask, bind_judge, verify_litigant

MST = Path(sys.executable).parent / "mst"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    (tmp_path / "redis").mkdir()
    found = SentinelSet(tmp_path / "redis", replica=True)
    try:
        found.start()
        yield found
    finally:
        found.stop()


@pytest.fixture
def settings(settings: Settings, sentinels: SentinelSet) -> Settings:
    """The suite's settings, with Redis through the sentinel (db 3 on its master)."""
    return replace(settings, redis_url=sentinels.url(3))


@pytest.fixture
async def world_through_sentinel(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[Any]:
    async with open_world(aiohttp_client, aiohttp_server, settings, deps, sample_case) as w:
        yield w


async def test_a_message_is_handled_through_the_sentinel(
    world_through_sentinel: Any, sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    w = world_through_sentinel
    master = sentinels.client(sentinels.master_port, db=3)
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    await w.deliver()
    assert f"#{number}" in w.inbox("oJudge000000000000000000001")[-1]

    # The litigant's turns went through the master the sentinel named, not a stand-in:
    # their conversation and their rate count are there, in the database the URL names.
    conversation = master.get(state.conversation_key(LITIGANT))
    assert conversation is not None and '"step"' in conversation
    assert int(master.get(f"{state.PREFIX}rate:user:{LITIGANT}") or 0) >= 3
    assert not [r for r in caplog.records if "redis unavailable" in r.getMessage()]

    # A turn held now is the master's lock key until it ends.
    async with state.turn(w.deps.redis, LITIGANT, rate_limit=30) as turn:
        assert turn.held and not turn.degraded
        assert master.exists(f"{state.PREFIX}lock:user:{LITIGANT}")
    assert not master.exists(f"{state.PREFIX}lock:user:{LITIGANT}")
    async with state.try_lock(w.deps.redis, "sentinel-test") as got:
        assert got and master.exists(f"{state.PREFIX}lock:sentinel-test")


async def test_the_client_follows_a_failover(deps: Deps, sentinels: SentinelSet) -> None:
    """The master dies; the sentinel promotes the replica; the same client (a web process's
    `deps.redis`) carries on against the new master without being made again."""
    r = deps.redis
    await r.set("mst:before", "1")
    assert await r.wait(1, 10_000) == 1  # on the replica too before the master goes
    replica = sentinels.client(sentinels.replica_port or 0, db=3)
    host, port = await asyncio.to_thread(sentinels.lose_master)
    assert (host, port) == ("127.0.0.1", sentinels.replica_port)
    # The first command after the loss may fail (its connection was to the dead master);
    # the next ones ask the sentinel again and reach the new master.
    deadline = time.monotonic() + 30
    failed = 0
    while True:
        try:
            await r.set("mst:after", "2")
            break
        except RedisError:
            failed += 1
            assert time.monotonic() < deadline, "the client never found the new master"
            await asyncio.sleep(0.2)
    assert failed <= 3, failed
    assert replica.get("mst:after") == "2" and replica.get("mst:before") == "1"
    async with state.try_lock(r, "after-failover") as got:
        assert got and replica.exists(f"{state.PREFIX}lock:after-failover")


async def test_mst_worker_delivers_through_the_sentinel(
    deps: Deps,
    cli_env: dict[str, str],
    tmp_path: Path,
    sentinels: SentinelSet,
    aiohttp_server: Any,
) -> None:
    fake = FakeWeChat(app_id=APP_ID, app_secret=SECRET)
    api = await aiohttp_server(fake_app(fake))
    env = {
        **cli_env,
        "REDIS_URL": sentinels.url(3),
        "WECHAT_API_BASE": str(api.make_url("")).rstrip("/"),
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_APP_SECRET": SECRET,
        "MST_JOBS_IN_PROCESS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    async with deps.db.transaction() as s:
        await outbox.tell(s, "oSentinelUser000000000001", "哨兵转达的通知")
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220  (runs beside the test, stopped below)
            [str(MST), "worker"], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while not fake.sent_to("oSentinelUser000000000001"):
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(30)  # noqa: ASYNC101
    assert [m.text for m in fake.sent_to("oSentinelUser000000000001")] == ["哨兵转达的通知"]
    # arq kept its cron bookkeeping on the master the sentinel named.
    master = sentinels.client(sentinels.master_port, db=3)
    assert any(key.startswith("arq:") for key in master.keys("*")), master.keys("*")
    assert worker.returncode == 0, log_path.read_text()


# -- the setting --------------------------------------------------------------------------


def test_sentinel_urls_are_read_and_checked(tmp_path: Path) -> None:
    url = "redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2"
    address = state.parse_sentinel(url)
    assert address.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (address.master, address.db, address.password) == ("mymaster", 2, "s@cret")
    arq = redis_settings(url)
    assert arq.sentinel and arq.sentinel_master == "mymaster" and arq.database == 2
    assert arq.host == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert redis_settings("redis://127.0.0.1:6379/4").database == 4

    env = {"MST_DATA_DIR": str(tmp_path), "REDIS_URL": url}
    assert load_settings(env, env_file=None).redis_url == url
    for bad, says in (
        ("redis+sentinel://10.0.0.1:26379", "name the master"),
        ("redis+sentinel://10.0.0.1:port/mymaster", "not host:port"),
        ("redis+sentinel://10.0.0.1/mymaster/two", "must be a number"),
        ("redis+sentinel://10.0.0.1/mymaster?ssl=1", "no query"),
        ("sentinel://10.0.0.1/mymaster", "redis+sentinel://"),
    ):
        with pytest.raises(ConfigError, match="REDIS_URL") as err:
            load_settings({**env, "REDIS_URL": bad}, env_file=None)
        assert says in str(err.value), (bad, str(err.value))
