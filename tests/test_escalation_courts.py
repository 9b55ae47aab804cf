"""The morning digest, court by court: each court's staff get it on that court's own working
days (its holiday file in MST_RULES_FILE, `Deadlines.for_court`), after 8:00 the court's
time, once a day per court. A frozen clock, never a sleep."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.core.clock import CHINA_TZ, set_clock
from bot.dialog.deps import Deps
from bot.rules import deadlines, escalation
from storage import state
from storage.models import Case, Court, Outbox, Staff, Ticket

TC, JX = "衡水市桃城区人民法院", "景县人民法院"
TC_WX, JX_WX = "oJudgeTaoCheng00000000000001", "wx:jingxian:oJudgeJingXian000000000001"


class Clock:
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=CHINA_TZ)

    def at(self, *parts: int, tz: Any = CHINA_TZ) -> None:
        self.moment = datetime(*parts, tzinfo=tz)  # type: ignore[misc]


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock()
    set_clock(lambda: c.moment.astimezone(UTC))
    yield c
    set_clock(None)


async def _court_with_an_open_item(deps: Deps, name: str, judge_address: str) -> int:
    async with deps.db.transaction() as s:
        court = Court(name=name)
        s.add(court)
        await s.flush()
        judge = Staff(
            username=f"judge-{court.id}",
            name="法官",
            court_id=court.id or 0,
            roles="judge",
            openid=judge_address,
        )
        s.add(judge)
        await s.flush()
        case = Case(
            court_id=court.id or 0,
            case_number=f"(2026)冀110{court.id}民初1号",
            case_type="民事",
            cause="合同纠纷",
            judge_id=judge.id,
        )
        s.add(case)
        await s.flush()
        s.add(
            Ticket(
                case_id=case.id or 0,
                court_id=court.id or 0,
                kind="question",
                openid="oLitigant",
                assignee_id=judge.id,
            )
        )
        return court.id or 0


def _rules(tmp_path: Path) -> deadlines.Deadlines:
    """景县's own holiday file: Tuesday 24 November off, Saturday 28 November worked."""
    (tmp_path / "jingxian-holidays.json").write_text(
        json.dumps({"off": ["2026-11-24"], "work": ["2026-11-28"]}), encoding="utf-8"
    )
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"courts": {JX: {"holidays": "jingxian-holidays.json"}}}, ensure_ascii=False),
        encoding="utf-8",
    )
    return deadlines.load(rules_file=rules)


async def _told(deps: Deps) -> list[str]:
    async with deps.db.sessions() as s:
        return [
            o.recipient for o in (await s.execute(select(Outbox).order_by(Outbox.id))).scalars()
        ]


async def test_each_court_gets_its_digest_on_its_own_working_days(
    deps: Deps, clock: Clock, tmp_path: Path
) -> None:
    tc = await _court_with_an_open_item(deps, TC, TC_WX)
    jx = await _court_with_an_open_item(deps, JX, JX_WX)
    working = _rules(tmp_path)

    async def digest() -> int:
        return await escalation.morning_digest(deps.db, deps.redis, working)

    # 07:59 China time (23:59 UTC the day before): not yet, for anyone.
    clock.at(2026, 11, 23, 23, 59, tz=UTC)
    assert await digest() == 0
    # 08:05 China time on Tuesday: 景县's holiday, 桃城's working day.
    clock.at(2026, 11, 24, 0, 5, tz=UTC)
    assert await digest() == 1
    assert await _told(deps) == [TC_WX]
    assert await digest() == 0  # once a day
    assert await deps.redis.get(f"{state.PREFIX}digest:{tc}:2026-11-24") is not None
    assert await deps.redis.get(f"{state.PREFIX}digest:{jx}:2026-11-24") is None
    # Wednesday: both courts, each once.
    clock.at(2026, 11, 25, 8, 0)
    assert await digest() == 2 and await digest() == 0
    assert await _told(deps) == [TC_WX, TC_WX, JX_WX]
    # Saturday: 景县's make-up working day only.
    clock.at(2026, 11, 28, 9, 30)
    assert await digest() == 1
    assert (await _told(deps))[-1] == JX_WX
    # Sunday: nobody.
    clock.at(2026, 11, 29, 9, 30)
    assert await digest() == 0


async def test_one_courts_digest_sent_does_not_stop_anothers(
    deps: Deps, clock: Clock, tmp_path: Path
) -> None:
    tc = await _court_with_an_open_item(deps, TC, TC_WX)
    await _court_with_an_open_item(deps, JX, JX_WX)
    working = _rules(tmp_path)
    clock.at(2026, 11, 25, 8, 30)
    # 桃城's was sent already today (another process): 景县's still goes.
    await deps.redis.set(f"{state.PREFIX}digest:{tc}:2026-11-25", "1")
    assert await escalation.morning_digest(deps.db, deps.redis, working) == 1
    assert await _told(deps) == [JX_WX]
