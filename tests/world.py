"""The harness the tests share: a WeChat user's side of the server (World: say, send,
deliver, inbox), the people in it, and the `mst` console script run as an operator runs it.
The fixtures that build them (world, frozen_clock, cli_env) are in conftest.py."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.app import jobs
from bot.dialog.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.callbacks import WeChatServer, event_xml, text_xml
from bot.rules.staff import issue_bind_code
from handlers import texts
from storage.models import Staff

SECRET = "app-secret"
LITIGANT = "oLitigant00000000000000001"
JUDGE_WX = "oJudge000000000000000000001"
OTHER_WX = "oOtherJudge0000000000000001"


@dataclass
class World:
    client: TestClient
    deps: Deps
    fake: FakeWeChat
    wechat: WeChatServer
    case: dict[str, Any]

    async def say(self, openid: str, text: str, *, msg_id: int | None = None) -> str:
        return await self.send(text_xml(openid, text, msg_id=msg_id))

    async def send(self, xml: str) -> str:
        query, body = self.wechat.request(xml)
        resp = await self.client.post("/wechat", params=query, data=body.encode())
        assert resp.status == 200, await resp.text()
        reply = self.wechat.read_reply(await resp.text(), query)
        return "" if reply is None else str(reply["Content"])

    async def deliver(self) -> int:
        return await jobs.deliver_outbox(self.deps)

    async def delivered_to(self, openid: str) -> list[str]:
        """Wait for an answer still on its way behind a `success` (its commit sets
        deps.wakeup), deliver it, and return what the person has received."""
        while not self.inbox(openid):
            await asyncio.wait_for(self.deps.wakeup.wait(), 30)
            self.deps.wakeup.clear()
            await self.deliver()
        return self.inbox(openid)

    def inbox(self, openid: str) -> list[str]:
        return [s.text for s in self.fake.sent_to(openid)]


async def bind_judge(w: World, username: str = "zhangwei", openid: str = JUDGE_WX) -> None:
    async with w.deps.db.transaction() as s:
        member = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
        code = await issue_bind_code(s, member, actor="test")
    assert "绑定成功" in await w.say(openid, code)


async def verify_litigant(w: World, openid: str = LITIGANT, digits: str = "1234") -> None:
    greeting = await w.send(event_xml(openid, "SCAN", w.case["token"]))
    assert greeting.startswith("您好！您扫描的是：") and texts.ASK_DIGITS in greeting
    assert "验证成功" in await w.say(openid, digits)


async def ask(w: World, question: str, openid: str = LITIGANT) -> int:
    assert await w.say(openid, "1") == texts.ASK_PROMPT
    reply = await w.say(openid, question)
    match = re.search(r"#(\d+)", reply)
    assert match, reply
    return int(match.group(1))


# -- the console script -----------------------------------------------------------------

MST = Path(sys.executable).parent / "mst"


PUBLIC = "https://mst.court.example/hs"  # not the fixture's: proves the CLI reads its env


CONFIG_PREFIXES = (
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_BASE_URL",
    "WECHAT_",
    "WECOM_",
    "MP_",
    "MST_",
)


@dataclass
class Run:
    code: int
    out: str
    err: str


async def mst(env: dict[str, str], cwd: Path, *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        str(MST),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def mst_in_process(env: dict[str, str], cwd: Path, *args: str) -> Run:
    """`mst ARGS` as the console script runs them, without starting a process: the same
    `bot.cli.main(ARGS)`, in a thread of its own, with exactly `env` as the environment and
    `cwd` as the working directory; the real clock and the default time zone (until its
    settings set one), as a fresh process has; its stdout and stderr (log lines and
    warnings too) captured, and the code the process would exit with (SystemExit's; an
    uncaught exception: its traceback on stderr and 1). What it sets process-wide (the
    environment, the directory, the time zone, logging) is put back afterwards.

    For what a command prints and does. The installed script itself, a real process's
    exit, environment handling, signals and the long-running commands: `mst` above."""
    from bot.cli import main
    from bot.core import clock
    from storage import clock as moment

    loop = asyncio.get_running_loop()
    ours = threading.get_ident()  # the test's side: its clock stays as the test set it
    test_now = moment._now
    out, err = io.StringIO(), io.StringIO()
    finished: asyncio.Future[int] = loop.create_future()

    def command() -> None:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = _Own(out, stdout, ours)
        sys.stderr = _Own(err, stderr, ours)
        code = 1
        try:
            with warnings.catch_warnings():
                # A process's own filters (not pytest's), shown on its stderr.
                warnings.resetwarnings()
                for action, category in _PROCESS_WARNING_FILTERS:
                    warnings.filterwarnings(action, category=category)
                warnings.showwarning = _show_warning
                code = _exit_code(main, list(args))
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            loop.call_soon_threadsafe(finished.set_result, code)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name).level for name in ("alembic.runtime.plugins",)}
    zone = str(clock.court_tz())
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    clock.set_timezone(clock.DEFAULT_TIMEZONE)
    clock.set_clock(lambda: test_now() if threading.get_ident() == ours else datetime.now(UTC))
    try:
        threading.Thread(target=command, name=f"mst {' '.join(args)}", daemon=True).start()
        code = await asyncio.wait_for(asyncio.shield(finished), timeout=60)
    finally:
        clock.set_clock(test_now)
        clock.set_timezone(zone)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in loggers.items():
            logging.getLogger(name).setLevel(was)
    return Run(code, out.getvalue(), err.getvalue())


# Python's own default filters (`python -W` unset): what a run of `mst` would print.
_PROCESS_WARNING_FILTERS: list[tuple[Any, type[Warning]]] = [
    ("default", Warning),
    ("ignore", DeprecationWarning),
    ("ignore", PendingDeprecationWarning),
    ("ignore", ImportWarning),
    ("ignore", ResourceWarning),
]


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _exit_code(main: Callable[[list[str]], None], argv: list[str]) -> int:
    """What a process running `main(argv)` would exit with, as Python exits."""
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return 0


class _Own(io.TextIOBase):
    """sys.stdout or sys.stderr while a command runs: what its threads write is its own;
    what the test's thread writes goes on where it went before."""

    def __init__(self, own: io.StringIO, before: TextIO, test_thread: int) -> None:
        self._own, self._before, self._test = own, before, test_thread

    def _target(self) -> TextIO:
        return self._before if threading.get_ident() == self._test else self._own

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False
