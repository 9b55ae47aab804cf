"""Mediators' slots as a court admin runs them (`mst slots add|list|remove`), and the room
page a booking's link opens (`/room/<token>`): signed, so a guessed link shows nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.app import jobs
from bot.core import clock
from bot.core.clock import court_tz
from bot.dialog.deps import Deps
from bot.rules import mediation
from handlers.notices import letter_text
from storage import audit
from storage.models import AuditEvent, Binding, Booking, Case, MediationSlot, Outbox, Party, Staff
from tests.conftest import CASE_NUMBER, COURT
from tests.world import LITIGANT, PUBLIC, World, mst, mst_in_process, verify_litigant

OTHER_PARTY = "oDefendant0000000000000001"


@pytest.fixture
def real_clock() -> Iterator[None]:
    """The `mst` processes run on the real clock: so does this side of the test."""
    clock.set_clock(None)
    yield


def in_days(days: int, hour: int = 9, minute: int = 30) -> datetime:
    """A start `days` days from today, China time."""
    day = (datetime.now(court_tz()) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=court_tz())


def say(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


async def add_mediator(deps: Deps, username: str = "chenjing", name: str = "陈静") -> int:
    async with deps.db.transaction() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        member = Staff(
            username=username, name=name, court_id=judge.court_id, roles="mediator", team="调解中心"
        )
        s.add(member)
        await s.flush()
        return member.id or 0


async def bind(deps: Deps, case_id: int) -> None:
    """Both parties verified for the case (as the chat's phone check would leave them)."""
    async with deps.db.transaction() as s:
        parties = list(
            (
                await s.execute(select(Party).where(Party.case_id == case_id).order_by(Party.id))
            ).scalars()
        )
        for openid, party in ((LITIGANT, parties[0]), (OTHER_PARTY, parties[1])):
            s.add(Binding(openid=openid, case_id=case_id, party_id=party.id, method="phone_tail"))


async def book(deps: Deps, case_id: int, start: datetime) -> Booking:
    async with deps.db.transaction() as s:
        slot = (
            await s.execute(select(MediationSlot).where(MediationSlot.start_at == start))
        ).scalar_one()
        case = await s.get(Case, case_id)
        binding = (await s.execute(select(Binding).where(Binding.openid == LITIGANT))).scalar_one()
        assert case is not None
        booking = await mediation.book(s, slot.id or 0, case, binding, rooms=deps.rules.rooms)
        assert booking is not None
        return booking


async def rows(deps: Deps, model: Any, *where: Any) -> list[Any]:
    async with deps.db.sessions() as s:
        return list((await s.execute(select(model).where(*where).order_by(model.id))).scalars())


async def test_slots_add_takes_the_mediator_as_readme_shows_it_or_positionally(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
    real_clock: None,
) -> None:
    await add_mediator(deps)
    first, second = in_days(3), in_days(4)
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "--mediator", "chenjing", "--start", say(first),
        "--room", "/room/{token}",
    )  # fmt: skip
    assert (run.code, run.out.strip()) == (0, "slots: 1 added, 0 already there"), run.err
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "chenjing", "--start", say(second),
        "--room", "https://video.court.example/r/{slot}",
    )  # fmt: skip
    assert (run.code, run.out.strip()) == (0, "slots: 1 added, 0 already there"), run.err
    [one, two] = await rows(deps, MediationSlot)
    # `/room/{token}` is this server's room page, at PUBLIC_BASE_URL.
    assert one.room_url == PUBLIC + "/room/{token}"
    assert two.room_url == "https://video.court.example/r/{slot}"

    for args, says in (
        (["--start", say(first)], "请给出调解员"),  # neither
        (["chenjing", "--mediator", "wanglei", "--start", say(first)], "不一致"),
        # This server's room page takes a signed token only, never a counted id.
        (["chenjing", "--start", say(first), "--room", "/room/{slot}"], "/room/{token}"),
        (["chenjing", "--start", say(first), "--room", "room-7"], "http(s)"),
    ):
        args = [*args, "--room", "/room/{token}"] if "--room" not in args else args
        run = await mst_in_process(cli_env, tmp_path, "slots", "add", *args)
        assert run.code == 2 and says in run.err and "Traceback" not in run.err, args
    assert len(await rows(deps, MediationSlot)) == 2


async def test_slots_list_in_china_time_with_masked_names_and_never_an_openid(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
    real_clock: None,
) -> None:
    await add_mediator(deps)
    await add_mediator(deps, "wanglei", "王磊")
    await bind(deps, sample_case["case_id"])
    booked_at, free_at, later = in_days(3), in_days(3, 14, 30), in_days(10)
    for who, start in (("chenjing", booked_at), ("wanglei", free_at), ("chenjing", later)):
        run = await mst_in_process(
            cli_env, tmp_path, "slots", "add", who, "--start", say(start), "--room", "/room/{token}"
        )
        assert run.code == 0, run.err
    booking = await book(deps, sample_case["case_id"], booked_at)

    run = await mst_in_process(cli_env, tmp_path, "slots", "list")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("调解时段（") and "共 3 个：空闲 2 个，有预约 1 个" in lines[0]
    when = clock.say_time(booked_at)
    [line] = [ln for ln in lines if when in ln]
    assert "陈静" in line and "已约满" in line and f"原告王**（{CASE_NUMBER}）" in line
    assert "上午9:30" in line and "（60分钟）" in line  # China time, as people read it
    assert any(clock.say_time(free_at) in ln and "王磊" in ln and "空闲" in ln for ln in lines)
    for secret in ("王某某", LITIGANT, "1380000"):
        assert secret not in run.out

    run = await mst_in_process(
        cli_env, tmp_path, "slots", "list", "--json", "--mediator", "chenjing"
    )
    assert run.code == 0, run.err
    listed = json.loads(run.out)
    assert [s["start_at"] for s in listed] == [booked_at.isoformat(), later.isoformat()]
    first = listed[0]
    assert first["start_at"].endswith("+08:00") and first["mediator_name"] == "陈静"
    assert (first["court"], first["capacity"], first["booked"], first["free"]) == (
        COURT,
        1,
        1,
        False,
    )
    assert first["bookings"] == [
        {
            "booking": booking.id,
            "case_number": CASE_NUMBER,
            "party_role": "原告",
            "party_name": "王**",
            "booked_at": first["bookings"][0]["booked_at"],
        }
    ]
    assert LITIGANT not in run.out and "王某某" not in run.out
    assert listed[1]["free"] is True and listed[1]["bookings"] == []

    # --from/--to are China days, --to included; --court by name.
    day = booked_at.date().isoformat()
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "list", "--json", "--from", day, "--to", day, "--court", COURT
    )
    assert [s["mediator"] for s in json.loads(run.out)] == ["chenjing", "wanglei"]
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "list", "--from", later.date().isoformat()
    )
    assert "共 1 个" in run.out
    for args, says in (
        (["--court", "没有的法院"], "没有这个法院"),
        (["--mediator", "nobody"], "nobody"),
    ):
        run = await mst_in_process(cli_env, tmp_path, "slots", "list", *args)
        assert run.code == 1 and says in run.err
    run = await mst_in_process(cli_env, tmp_path, "slots", "list", "--from", "25.11.2026")
    assert run.code == 2 and "日期" in run.err


async def test_remove_a_free_slot_refuse_a_booked_one_and_force_cancels_as_a_party_would(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
    real_clock: None,
) -> None:
    await add_mediator(deps)
    await bind(deps, sample_case["case_id"])
    free_at, booked_at, by_time = in_days(3), in_days(4), in_days(5)
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "--mediator", "chenjing", "--start", say(free_at),
        "--weeks", "1", "--days", ",".join(
            ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[d.weekday()]
            for d in (free_at, booked_at, by_time)
        ), "--room", "/room/{token}",
    )  # fmt: skip
    assert run.out.strip() == "slots: 3 added, 0 already there", run.err
    ids = {s.start_at: s.id for s in await rows(deps, MediationSlot)}
    booking = await book(deps, sample_case["case_id"], booked_at)
    async with deps.db.transaction() as s:  # what the booking queued is not what we test here
        await s.execute(delete(Outbox))

    # A free slot goes, and the change is in the audit log.
    run = await mst_in_process(cli_env, tmp_path, "slots", "remove", str(ids[free_at]))
    assert run.code == 0, run.err
    assert run.out.strip() == f"已删除编号{ids[free_at]}（{clock.say_time(free_at)}，调解员陈静）。"
    assert ids[free_at] not in [s.id for s in await rows(deps, MediationSlot)]
    [removed] = await rows(deps, AuditEvent, AuditEvent.action == "mediation.slot_removed")
    assert (removed.actor, removed.subject) == ("admin", f"slot:{ids[free_at]}")
    # By mediator and start time too; a slot that is not there changes nothing.
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "remove", "--mediator", "chenjing", "--start", say(by_time)
    )
    assert run.code == 0 and "已删除" in run.out, run.err
    run = await mst_in_process(cli_env, tmp_path, "slots", "remove", str(ids[free_at]))
    assert run.code == 1 and "没有编号为" in run.err
    run = await mst_in_process(cli_env, tmp_path, "slots", "remove")
    assert run.code == 2 and "二者选一" in run.err

    # A booked slot is refused, naming whom to tell (the party masked) and how to force it.
    run = await mst_in_process(cli_env, tmp_path, "slots", "remove", str(ids[booked_at]))
    assert run.code == 1 and run.out == ""
    assert "已有预约" in run.err and f"原告王**（{CASE_NUMBER}）" in run.err
    assert "调解员陈静" in run.err and "--force" in run.err and "没有删除" in run.err
    assert "王某某" not in run.err and LITIGANT not in run.err
    [slot] = await rows(deps, MediationSlot, MediationSlot.id == ids[booked_at])
    assert (slot.capacity, slot.booked) == (1, 1)
    assert (await rows(deps, Booking))[0].status == "booked"
    assert await rows(deps, Outbox) == []

    # --force cancels through mediation.cancel: both parties and the judge are told.
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "remove", str(ids[booked_at]), "--force", "--json"
    )
    assert run.code == 0, run.err
    [result] = json.loads(run.out)
    assert (result["result"], result["cancelled_bookings"]) == ("removed", [booking.id])
    [cancelled] = await rows(deps, Booking)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    told = {
        row.recipient: letter_text(json.loads(row.payload))[1] for row in await rows(deps, Outbox)
    }
    assert set(told) == {LITIGANT, OTHER_PARTY}  # the judge has no WeChat bound here
    assert all(clock.say_time(booked_at) in text and "法院取消" in text for text in told.values())
    events = await rows(deps, AuditEvent, AuditEvent.subject == f"booking:{booking.id}")
    assert [(e.action, e.actor) for e in events][-1] == ("mediation.cancelled", "admin")
    # Kept for the booking's record, but nothing can book or list it any more...
    [slot] = await rows(deps, MediationSlot, MediationSlot.id == ids[booked_at])
    assert (slot.capacity, slot.booked) == (0, 0)
    run = await mst_in_process(cli_env, tmp_path, "slots", "list", "--json")
    assert json.loads(run.out) == []
    async with deps.db.sessions() as s:
        assert await mediation.free_slots(s, slot.mediator_id) == []
        assert (await audit.verify(s)).ok
    # ...until the admin offers that time again.
    run = await mst_in_process(
        cli_env, tmp_path, "slots", "add", "chenjing", "--start", say(booked_at), "--room",
        "/room/{token}",
    )  # fmt: skip
    assert run.out.strip() == "slots: 1 added, 0 already there"
    run = await mst_in_process(cli_env, tmp_path, "slots", "list", "--json")
    assert [(s["id"], s["free"]) for s in json.loads(run.out)] == [(ids[booked_at], True)]


async def test_force_does_not_cancel_under_the_cut_off(
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
    real_clock: None,
) -> None:
    """The parties' own rule (no cancelling within 2 hours of the start) holds for the court."""
    await add_mediator(deps)
    await bind(deps, sample_case["case_id"])
    start = (datetime.now(court_tz()) + timedelta(hours=3)).replace(second=0, microsecond=0)
    run = await mst(
        cli_env, tmp_path, "slots", "add", "chenjing", "--start", start.isoformat(),
        "--room", "/room/{token}",
    )  # fmt: skip
    assert run.code == 0, run.err
    await book(deps, sample_case["case_id"], start)
    clock.set_clock(lambda: datetime.now(court_tz()) + timedelta(hours=2))
    [slot] = await rows(deps, MediationSlot)
    async with deps.db.transaction() as s:
        outcome = await mediation.remove_slot(s, slot.id or 0, force=True)
    assert outcome.result == "too_late"
    assert [b.status for b in await rows(deps, Booking)] == ["booked"]
    assert (await rows(deps, MediationSlot))[0].booked == 1


# -- the room page ---------------------------------------------------------------------


async def test_the_link_in_the_booking_reply_opens_the_session_and_a_guessed_one_does_not(
    world: World,
) -> None:
    w = world
    base = w.deps.settings.public_base_url
    await add_mediator(w.deps)
    start = datetime(2026, 11, 25, 9, 30, tzinfo=court_tz())  # Wednesday, two days on
    async with w.deps.db.transaction() as s:
        mediator = (await s.execute(select(Staff).where(Staff.username == "chenjing"))).scalar_one()
        await mediation.add_slots(
            s, mediator, [start], minutes=60, capacity=1, room_url=base + "/room/{token}"
        )
    await verify_litigant(w)
    assert "陈静" in await w.say(LITIGANT, "3")
    assert "上午9:30" in await w.say(LITIGANT, "1")  # the mediator
    await w.say(LITIGANT, "1")  # the time
    done = await w.say(LITIGANT, "1")  # confirmed
    match = re.search(re.escape(base) + r"(/room/[A-Za-z0-9_-]+)", done)
    assert match, done
    path = match.group(1)
    token = path.removeprefix("/room/")
    [booking] = await rows(w.deps, Booking)
    assert len(token) == 32 and token != str(booking.id)

    resp = await w.client.get(path)
    assert resp.status == 200
    page = await resp.text()
    for shown in (COURT, CASE_NUMBER, "2026年11月25日 周三 上午9:30", "北京时间", "陈静", "已预约"):
        assert shown in page, shown
    assert "怎样参加" in page
    for hidden in ("王某某", "李某", LITIGANT, "13800001234"):
        assert hidden not in page
    assert resp.headers["Cache-Control"] == "no-store"
    # The reminder carries the same link (the booker had it in the reply, no echo).
    await w.deliver()
    assert w.inbox(LITIGANT) == []
    clock.set_clock(lambda: start - timedelta(hours=23))
    assert await jobs.mediation_reminders(w.deps) == 1
    await w.deliver()
    assert any(path in text for text in w.inbox(LITIGANT))

    # Counted, changed or foreign links open nothing, and all look alike.
    other_secret = mediation.Rooms.from_secret("another court's secret key!!").token(
        booking.id or 0
    )
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for guess in (
        f"/room/{booking.id}",
        "/room/1",
        f"/room/{flipped}",
        f"/room/{other_secret}",
        f"/room/{token}x",
        "/room/" + "A" * 32,
    ):
        resp = await w.client.get(guess)
        assert resp.status == 404, guess
        body = await resp.text()
        assert CASE_NUMBER not in body and "陈静" not in body
    assert w.deps.rules.rooms.booking_id_of(token) == booking.id

    # Cancelled: the page says so, and how to book again.
    assert "取消" in await w.say(LITIGANT, "3")
    await w.say(LITIGANT, "取消")
    resp = await w.client.get(path)
    assert resp.status == 200 and "已取消" in await resp.text()
    assert "怎样参加" not in await resp.text()


def test_room_tokens_round_trip_and_name_nothing_countable() -> None:
    secret = "s" * 48
    rooms = mediation.Rooms.from_secret(secret)
    tokens = [rooms.token(n) for n in range(1, 200)]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 32 and re.fullmatch(r"[A-Za-z0-9_-]+", t) for t in tokens)
    assert [rooms.booking_id_of(t) for t in tokens] == list(range(1, 200))
    other = mediation.Rooms.from_secret("x" * 48)
    assert all(other.booking_id_of(t) is None for t in tokens)
    # Neighbouring bookings share no prefix a person could count on.
    assert len({t[:8] for t in tokens}) == len(tokens)
