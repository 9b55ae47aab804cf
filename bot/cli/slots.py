"""Mediators' bookable times: `mst slots add | list | remove`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from bot.app.config import Settings
from bot.cli.common import _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    sl = sub.add_parser(
        "slots", help="mediators' bookable times: add, list, remove"
    ).add_subparsers(dest="slots_command", required=True)
    s = sl.add_parser("add", help="add a mediator's slots: one, or a weekly pattern")
    s.add_argument("mediator", nargs="?", help="the mediator's username (or --mediator)")
    s.add_argument("--mediator", dest="mediator_option", metavar="USERNAME", help="the same")
    s.add_argument("--start", required=True, help="first start, China time: 2026-11-25T09:30")
    s.add_argument("--weeks", type=int, default=0, help="repeat for N weeks (0: only --start)")
    s.add_argument(
        "--days", default="", help="weekdays of the pattern: mon,wed (default: --start's)"
    )
    s.add_argument("--minutes", type=int, default=60)
    s.add_argument("--capacity", type=int, default=1)
    s.add_argument(
        "--room",
        required=True,
        help="where the parties join: /room/{token} for this server's room page (a signed "
        "link per booking), or the court's video-platform URL ({slot} and {booking} are "
        "filled in with the ids)",
    )
    s.set_defaults(run=slots_add)
    s = sl.add_parser("list", help="slots, their mediator, free or booked (names masked)")
    s.add_argument("--mediator", help="only this mediator's (username)")
    s.add_argument("--from", dest="since", help="first day, China time (default: today)")
    s.add_argument("--to", dest="until", help="last day, included")
    s.add_argument("--court", help="only this court's mediators (court name)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=slots_list)
    s = sl.add_parser(
        "remove", help="remove slots by ID (see `slots list`), or a mediator's at a start time"
    )
    s.add_argument("ids", nargs="*", type=int, metavar="ID")
    s.add_argument("--mediator", help="with --start: the mediator's username")
    s.add_argument("--start", help="with --mediator: the slot's start, China time")
    s.add_argument(
        "--force",
        action="store_true",
        help="a booked slot too: its bookings are cancelled and the parties, the mediator "
        "and the judge are told",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=slots_remove)


WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _slot_mediator(args: argparse.Namespace) -> str | None:
    """`slots add chenjing` and `slots add --mediator chenjing` alike; None after saying why."""
    given: set[str] = {m for m in (args.mediator, args.mediator_option) if m}
    if len(given) == 1:
        return given.pop()
    if given:
        print("mst: 调解员只能给一个：位置参数和 --mediator 不一致", file=sys.stderr)
    else:
        print("mst: 请给出调解员：mst slots add --mediator USERNAME --start ...", file=sys.stderr)
    return None


def _room_template(settings: Settings, room: str) -> str | None:
    """The slot's room URL: `/room/{token}` is this server's room page; None after saying why."""
    from urllib.parse import urlparse

    url = settings.public_base_url + room if room.startswith("/") else room
    own_pages = settings.public_base_url + "/room/"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 300:
        print(
            f"mst: --room 要是 http(s) 网址（300 个字符以内）或 /room/{{token}}：{room}",
            file=sys.stderr,
        )
        return None
    if url.startswith(own_pages) and url != own_pages + "{token}":
        print(
            "mst: 本系统的调解室页面只认签名链接，不认编号：请用 --room /room/{token}",
            file=sys.stderr,
        )
        return None
    return url


async def slots_add(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot.core.clock import court_tz
    from bot.rules import mediation, staff

    username = _slot_mediator(args)
    if username is None:
        return 2
    try:
        first = datetime.fromisoformat(args.start)
        days = {WEEKDAYS[d.strip().lower()[:3]] for d in args.days.split(",") if d.strip()}
    except (ValueError, KeyError):
        print(
            "mst: --start must look like 2026-11-25T09:30 and --days like mon,wed", file=sys.stderr
        )
        return 2
    if args.minutes <= 0 or args.capacity <= 0:
        print("mst: --minutes and --capacity must be positive", file=sys.stderr)
        return 2
    room = _room_template(settings, args.room)
    if room is None:
        return 2
    first = first if first.tzinfo else first.replace(tzinfo=court_tz())
    if args.weeks > 0:
        starts = mediation.weekly_starts(
            first.astimezone(court_tz()).date(),
            first.astimezone(court_tz()).timetz(),
            args.weeks,
            days or {first.weekday()},
        )
    else:
        starts = [first]

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, username)
            if member is None or not member.has_role("mediator"):
                print(
                    f"mst: {username} is not a staff member with the mediator role",
                    file=sys.stderr,
                )
                return 1
            added = await mediation.add_slots(
                session,
                member,
                starts,
                minutes=args.minutes,
                capacity=args.capacity,
                room_url=room,
            )
        print(f"slots: {added} added, {len(starts) - added} already there")
        return 0

    return await _with_db(settings, go)


def _who_booked(taken: Any) -> str:
    """原告王**（(2026)冀1102民初1234号）: the party masked, never an openid."""
    from bot.core.masking import mask_name

    party = taken.party
    who = f"{party.role}{mask_name(party.name)}" if party else "当事人"
    return f"{who}（{taken.case.case_number}）"


def _say_slot(view: Any) -> str:
    """编号3（11月25日 周三 上午9:30，调解员陈静）"""
    from bot.core.clock import say_time

    return f"编号{view.slot.id}（{say_time(view.slot.start_at)}，调解员{view.mediator.name}）"


def _slot_json(view: Any) -> dict[str, Any]:
    from bot.core.clock import court_tz
    from bot.core.masking import mask_name

    slot = view.slot
    return {
        "id": slot.id,
        "mediator": view.mediator.username,
        "mediator_name": view.mediator.name,
        "court": view.court.name,
        "start_at": slot.start_at.astimezone(court_tz()).isoformat(),
        "end_at": slot.end_at.astimezone(court_tz()).isoformat(),
        "minutes": int((slot.end_at - slot.start_at).total_seconds() // 60),
        "capacity": slot.capacity,
        "booked": len(view.taken),
        "free": len(view.taken) < slot.capacity,
        "room_url": slot.room_url,
        "bookings": [
            {
                "booking": t.booking.id,
                "case_number": t.case.case_number,
                "party_role": t.party.role if t.party else None,
                "party_name": mask_name(t.party.name) if t.party else None,
                "booked_at": t.booking.created_at.astimezone(court_tz()).isoformat(),
            }
            for t in view.taken
        ],
    }


async def slots_list(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot.core.clock import court_tz, now, say_time
    from bot.rules import mediation, staff
    from storage.models import Court

    try:
        first = (
            date.fromisoformat(args.since) if args.since else now().astimezone(court_tz()).date()
        )
        last = date.fromisoformat(args.until) if args.until else None
    except ValueError:
        print("mst: --from/--to 要写成日期，例如 2026-11-25", file=sys.stderr)
        return 2
    since = datetime.combine(first, time(0), court_tz())
    until = datetime.combine(last + timedelta(days=1), time(0), court_tz()) if last else None

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            mediator_id = court_id = None
            if args.mediator:
                member = await staff.by_username(session, args.mediator)
                if member is None:
                    print(f"mst: 没有工作人员 {args.mediator}", file=sys.stderr)
                    return 1
                mediator_id = member.id
            if args.court:
                court = (
                    await session.execute(select(Court).where(Court.name == args.court))
                ).scalar_one_or_none()
                if court is None:
                    print(f"mst: 没有这个法院：{args.court}", file=sys.stderr)
                    return 1
                court_id = court.id
            views = await mediation.list_slots(
                session, mediator_id=mediator_id, court_id=court_id, since=since, until=until
            )
        if args.json:
            print(json.dumps([_slot_json(v) for v in views], ensure_ascii=False))
            return 0
        span = f"{first.isoformat()} 起" + (f"至 {last.isoformat()}" if last else "")
        if not views:
            print(f"没有调解时段（{span}）。")
            return 0
        free = sum(1 for v in views if not v.taken)
        print(
            f"调解时段（{span}）共 {len(views)} 个：空闲 {free} 个，有预约 {len(views) - free} 个"
        )
        several_courts = len({v.court.id for v in views}) > 1
        for v in views:
            minutes = int((v.slot.end_at - v.slot.start_at).total_seconds() // 60)
            if not v.taken:
                state = "空闲"
            else:
                full = (
                    "已约满"
                    if len(v.taken) >= v.slot.capacity
                    else f"已约 {len(v.taken)}/{v.slot.capacity}"
                )
                state = full + "：" + "、".join(_who_booked(t) for t in v.taken)
            court = f"  {v.court.name}" if several_courts else ""
            print(
                f"  编号{v.slot.id}  {say_time(v.slot.start_at)}（{minutes}分钟）"
                f"  {v.mediator.name}{court}  {state}"
            )
        return 0

    return await _with_db(settings, go)


async def slots_remove(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from bot.core.clock import court_tz, say_time
    from bot.rules import mediation, staff
    from storage.models import MediationSlot

    by_time = args.mediator is not None or args.start is not None
    if by_time == bool(args.ids) or (by_time and not (args.mediator and args.start)):
        print(
            "mst: 给出时段编号（mst slots remove 3 4），或者调解员和开始时间"
            "（mst slots remove --mediator chenjing --start 2026-11-25T09:30），二者选一",
            file=sys.stderr,
        )
        return 2
    start = None
    if by_time:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            print("mst: --start 要写成 2026-11-25T09:30（北京时间）", file=sys.stderr)
            return 2
        start = start if start.tzinfo else start.replace(tzinfo=court_tz())

    def refused(outcome: Any) -> str:
        view = outcome.view
        if outcome.result == "not_found":
            return f"没有编号为 {outcome.slot_id} 的调解时段（可能已经删除），没有改动。"
        who = "、".join(_who_booked(t) for t in view.taken)
        if outcome.result == "booked":
            return (
                f"{_say_slot(view)}已有预约：{who}，没有删除。\n"
                f"请先告诉调解员{view.mediator.name}和预约的当事人，改约后再删除；"
                "或者加 --force：系统会取消这些预约，并通知当事人、调解员和承办法官。"
            )
        if outcome.result == "too_late":
            return (
                f"{_say_slot(view)}离开始不到2小时或已经开始，预约已不能在系统里取消，没有删除。\n"
                f"请直接打电话告诉调解员{view.mediator.name}和预约的当事人：{who}。"
            )
        return f"{_say_slot(view)}刚刚有人预约，没有删除。请用 mst slots list 重新查看。"

    async def go(db: Any) -> int:
        ids = list(dict.fromkeys(args.ids))  # each once, in the order given
        if by_time:
            async with db.sessions() as session:
                member = await staff.by_username(session, args.mediator)
                found = (
                    await session.execute(
                        select(col(MediationSlot.id)).where(
                            col(MediationSlot.mediator_id) == (member.id if member else -1),
                            col(MediationSlot.start_at) == start,
                            col(MediationSlot.capacity) > 0,
                        )
                    )
                ).scalar_one_or_none()
            if found is None:
                assert start is not None
                print(
                    f"mst: 调解员 {args.mediator} 在 {say_time(start)} 没有调解时段，没有改动。",
                    file=sys.stderr,
                )
                return 1
            ids = [found]
        results = []
        for slot_id in ids:
            try:
                async with db.transaction() as session:
                    outcome = await mediation.remove_slot(
                        session, slot_id, force=args.force, actor="admin"
                    )
            except mediation.SlotChanged:
                outcome = mediation.Removal(slot_id, "changed")
                async with db.sessions() as session:
                    views = await mediation.list_slots(session, slot_id=slot_id)
                outcome.view = views[0] if views else None
                if outcome.view is None:
                    outcome.result = "not_found"
            removed = outcome.result == "removed"
            if removed:
                line = f"已删除{_say_slot(outcome.view)}。"
                if outcome.cancelled:
                    line += (
                        "已取消其中的预约："
                        + "、".join(_who_booked(t) for t in outcome.cancelled)
                        + "，并通知了当事人、调解员和承办法官。"
                    )
            else:
                line = refused(outcome)
            if not args.json:
                print(
                    line if removed else f"mst: {line}", file=sys.stdout if removed else sys.stderr
                )
            results.append(
                {
                    "id": slot_id,
                    "result": outcome.result,
                    "cancelled_bookings": [t.booking.id for t in outcome.cancelled],
                    "message": line,
                }
            )
        if args.json:
            print(json.dumps(results, ensure_ascii=False))
        return 0 if all(r["result"] == "removed" for r in results) else 1

    return await _with_db(settings, go)
