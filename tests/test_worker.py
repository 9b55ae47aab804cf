"""`mst worker` rides out a Redis restart: killed with -9 and started again, Redis comes
back and notices queued meanwhile are delivered by the same worker process.

The test runs its own redis-server on a free port (never the machine's), the real
`mst worker` as a subprocess, and the fake WeChat API that records what is sent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.faults import Redis
from bot.app.config import Settings
from bot.dialog.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from bot.outbox import queue as outbox
from tests.conftest import APP_ID
from tests.world import SECRET

MST = Path(sys.executable).parent / "mst"
USER = "oWorkerUser0000000000001"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    r = Redis(tmp_path)  # bench.faults' own redis-server: a free port, nothing kept on disk
    r.start()
    yield r
    r.kill()


async def until(check: Callable[[], Awaitable[bool]], what: str, within_s: float = 60) -> None:
    """Wait for a condition (not for a time): it is looked at every 0.1 s up to a bound."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"still waiting for: {what}"
        await asyncio.sleep(0.1)


async def test_the_worker_rides_out_a_redis_restart(
    deps: Deps,
    settings: Settings,
    cli_env: dict[str, str],
    tmp_path: Path,
    private_redis: Redis,
    aiohttp_server: Any,
) -> None:
    fake = FakeWeChat(app_id=APP_ID, app_secret=SECRET)
    api = await aiohttp_server(fake_app(fake))
    env = {
        **cli_env,
        "REDIS_URL": private_redis.url,
        "WECHAT_API_BASE": str(api.make_url("")).rstrip("/"),
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_APP_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115, ASYNC230  (closed below)
    worker = subprocess.Popen(  # noqa: ASYNC220  (runs beside the test, stopped below)
        [str(MST), "worker"], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    try:

        async def tell(text: str) -> None:
            async with deps.db.transaction() as s:
                await outbox.tell(s, USER, text)

        async def delivered(text: str) -> bool:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return any(sent.text == text for sent in fake.sent_to(USER))

        await tell("第一条")
        await until(lambda: delivered("第一条"), "the first notice")

        private_redis.kill()  # kill -9, persistence off: Redis comes back empty
        await tell("第二条")  # queued while Redis is down

        async def outage_met() -> bool:  # in the log, or the worker died of it
            return worker.poll() is not None or "Error" in (tmp_path / "worker.log").read_text()

        await until(outage_met, "the worker to meet the outage")
        private_redis.start()
        await until(lambda: delivered("第二条"), "the notice queued during the outage")
        assert worker.poll() is None  # the same process, never exited
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        finally:
            log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()


async def test_the_web_process_jobs_ride_out_a_failing_store(deps: Deps) -> None:
    """The same jobs run on a timer inside `mst serve`: an outage is one failed run."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from bot.app import jobs

    runs: list[str] = []
    second = asyncio.Event()

    async def flaky(_: Deps) -> None:
        runs.append("run")
        if len(runs) == 1:
            raise RedisConnectionError("Redis went away")
        second.set()

    task = asyncio.create_task(jobs.run_forever(deps, flaky, 0.01))
    try:
        await asyncio.wait_for(second.wait(), 30)  # it ran again after the failure
    finally:
        await jobs.stop([task])
    assert len(runs) >= 2
