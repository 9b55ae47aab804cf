"""A court's service desk (phone, address, hours): set by its admin on the command line,
told to people wherever the chat sends them to the court (first-day issue, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from bot.app.config import Settings
from handlers import texts
from storage.models import AuditEvent, Court
from tests.conftest import COURT
from tests.world import LITIGANT, World, mst_in_process, verify_litigant

PHONE = "0318-2123456"
ADDRESS = "桃城区人民路1号一楼"
HOURS = "工作日 8:30-12:00 13:30-17:30"


async def test_the_admin_sets_the_desk_and_people_are_told_it(
    world: World,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    w = world
    await verify_litigant(w)
    # Before: the chat sends people to the court without a number or an address.
    before = await w.say(LITIGANT, "人工")
    assert f"{COURT}诉讼服务中心，" in before and "电话" not in before
    listed = await mst_in_process(cli_env, tmp_path, "court", "list", "--json")
    assert listed.code == 0, listed.err
    assert json.loads(listed.out) == [
        {
            "name": COURT,
            "phone": None,
            "address": None,
            "hours": None,
            "missing": ["phone", "address", "hours"],
        }
    ]

    run = await mst_in_process(
        cli_env, tmp_path, "court", "set", COURT, "--phone", PHONE, "--address", ADDRESS,
        "--hours", HOURS,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.out.strip() == f"已更新{COURT}的电话、地址、时间。"
    again = await mst_in_process(
        cli_env, tmp_path, "court", "set", COURT, "--phone", PHONE, "--json"
    )
    assert json.loads(again.out)["changed"] == []  # the same value twice changes nothing

    # The person asking for a person now learns where, when and which number.
    after = await w.say(LITIGANT, "人工")
    assert f"{COURT}诉讼服务中心（{ADDRESS}，{HOURS}，电话 {PHONE}）" in after
    # Cancelling a mediation too late names the number to call instead.
    assert texts.call(Court(name=COURT, phone=PHONE)) == f"拨打法院诉讼服务电话（{PHONE}）"

    async with w.deps.db.sessions() as s:
        events = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "court.desk_set")))
            .scalars()
            .all()
        )
    assert [json.loads(e.payload) for e in events] == [
        {"phone": PHONE, "address": ADDRESS, "hours": HOURS}
    ]


async def test_bad_values_and_unknown_courts_change_nothing(
    world: World,
    cli_env: dict[str, str],
    tmp_path: Path,
    settings: Settings,
) -> None:
    w = world
    bad = await mst_in_process(cli_env, tmp_path, "court", "set", COURT, "--phone", "请打电话")
    assert bad.code == 2 and "电话号码看不懂" in bad.err and "Traceback" not in bad.err
    unknown = await mst_in_process(
        cli_env, tmp_path, "court", "set", "不存在的法院", "--phone", PHONE
    )
    assert unknown.code == 1 and COURT in unknown.err  # it lists the courts it knows
    nothing = await mst_in_process(cli_env, tmp_path, "court", "set", COURT)
    assert nothing.code == 2
    async with w.deps.db.sessions() as s:
        court = (await s.execute(select(Court).where(Court.name == COURT))).scalar_one()
    assert (court.phone, court.address, court.hours) == (None, None, None)
    # An empty value clears what was set.
    await mst_in_process(cli_env, tmp_path, "court", "set", COURT, "--phone", PHONE)
    cleared = await mst_in_process(
        cli_env, tmp_path, "court", "set", COURT, "--phone", "", "--json"
    )
    assert json.loads(cleared.out)["phone"] is None
