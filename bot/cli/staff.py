"""People and places: `mst away`, `mst staff-code`, `mst staff-password`, `mst court set | list`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.app.config import Settings
from bot.cli.common import _with_db


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    s = sub.add_parser(
        "away", help="mark a staff member away (their items go to reception) or back"
    )
    s.add_argument("username")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--until", help="last day away, e.g. 2026-11-30")
    g.add_argument("--back", action="store_true")
    s.set_defaults(run=away)
    c = sub.add_parser("court", help="the court's service desk people are told of").add_subparsers(
        dest="court_command", required=True
    )
    s = c.add_parser("set", help="phone, address, hours (an empty value clears one)")
    s.add_argument("name", help="the court's full name, as in the imports")
    s.add_argument("--phone", help="诉讼服务电话, e.g. 0318-2123456")
    s.add_argument("--address", help="诉讼服务中心地址")
    s.add_argument("--hours", help="办公时间, e.g. 工作日 8:30-12:00 13:30-17:30")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=court_set)
    s = c.add_parser("list", help="every court and what people are told")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=court_list)
    s = sub.add_parser(
        "staff-code", help="a one-time code a staff member sends to bind their WeChat"
    )
    s.add_argument("username")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=staff_code)
    s = sub.add_parser(
        "staff-password",
        help="a staff member's web console password (asked twice), a one-time set-up link, "
        "or their second factor",
    )
    s.add_argument("username")
    how = s.add_mutually_exclusive_group()
    how.add_argument(
        "--stdin", action="store_true", help="read the password from standard input (scripts)"
    )
    how.add_argument(
        "--link",
        action="store_true",
        help="print a one-time link (24 h) where they choose it themselves",
    )
    second = s.add_mutually_exclusive_group()
    second.add_argument(
        "--totp",
        action="store_true",
        help="turn on a TOTP code at sign-in (a new secret; prints its otpauth URI once). "
        "Alone, the password is left as it is",
    )
    second.add_argument("--no-totp", action="store_true", help="turn the TOTP code off")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=staff_password)


async def away(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date, datetime, time, timedelta

    from bot.core.clock import court_tz
    from bot.rules import escalation, staff

    until = None
    if args.until:
        try:
            last = date.fromisoformat(args.until)
        except ValueError:
            print("mst: --until must be a date like 2026-11-30", file=sys.stderr)
            return 2
        until = datetime.combine(last + timedelta(days=1), time(0), court_tz())

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, args.username)
            if member is None:
                print(f"mst: no staff member {args.username}", file=sys.stderr)
                return 1
            await escalation.set_away(session, member, until, actor="admin")
        print(f"{args.username}: " + (f"away through {args.until}" if until else "back at work"))
        return 0

    return await _with_db(settings, go)


def _court_row(court: Any) -> dict[str, Any]:
    from bot.rules import courts

    return {
        "name": court.name,
        "phone": court.phone,
        "address": court.address,
        "hours": court.hours,
        "missing": courts.missing(court),
    }


_DESK_WORDS = {"phone": "电话", "address": "地址", "hours": "时间"}


async def court_set(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import courts

    values = {f: getattr(args, f) for f in courts.FIELDS if getattr(args, f) is not None}
    if not values:
        print("mst: 请至少给出 --phone、--address、--hours 之一", file=sys.stderr)
        return 2

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            court = await courts.by_name(session, args.name)
            if court is None:
                known = "、".join(c.name for c in await courts.all_courts(session)) or "（还没有）"
                print(f"mst: 没有这个法院：{args.name}\n已有的法院：{known}", file=sys.stderr)
                return 1
            try:
                change = await courts.set_desk(session, court, values, actor="admin")
            except courts.DeskError as exc:
                print(f"mst: {exc}", file=sys.stderr)
                return 2
            row = _court_row(court) | {"changed": sorted(change.changed)}
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        elif change.changed:
            said = "、".join(_DESK_WORDS[f] for f in courts.FIELDS if f in change.changed)
            print(f"已更新{args.name}的{said}。")
        else:
            print(f"{args.name}：没有变化。")
        return 0

    return await _with_db(settings, go)


async def court_list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import courts

    async def go(db: Any) -> int:
        async with db.sessions() as session:
            rows = [_court_row(c) for c in await courts.all_courts(session)]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        if not rows:
            print("还没有法院：导入工作人员或案件时会建立。")
        for row in rows:
            print(row["name"])
            for f in courts.FIELDS:
                print(f"  {_DESK_WORDS[f]}：{row[f] or '（未填写，当事人看不到）'}")
        return 0

    return await _with_db(settings, go)


async def staff_code(settings: Settings, args: argparse.Namespace) -> int:
    from bot.rules import staff

    async def go(db: Any) -> int:
        async with db.transaction() as session:
            member = await staff.by_username(session, args.username)
            if member is None:
                print(f"mst: no staff member {args.username}", file=sys.stderr)
                return 1
            code = await staff.issue_bind_code(session, member, actor="admin")
        if args.json:
            print(json.dumps({"username": member.username, "bind_code": code}))
        else:
            print(
                f"{member.username}: send {code} to the Official Account from your own WeChat (one use)"
            )
        return 0

    return await _with_db(settings, go)


_PASSWORD_WORDS = {
    "too_short": "密码至少需要10位",
    "too_long": "密码太长了（不超过200位）",
    "is_username": "密码不能和用户名相同",
}


def _read_password(from_stdin: bool) -> str | None:
    """The new password: standard input's first line, or asked twice (None: they differ)."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("新密码：")
    if getpass.getpass("再输入一次：") != first:
        return None
    return first


async def staff_password(settings: Settings, args: argparse.Namespace) -> int:
    """`mst staff-password USER`: set the console password (asked twice, or --stdin), or
    print a one-time set-up link (--link); --totp / --no-totp turn the second factor on or
    off (alone: nothing else changes). --json: {"username", "set_at"} (and "link",
    "expires_at", "otpauth" or "totp" for what else was done)."""
    import asyncio

    from bot.core.clock import court_tz
    from bot.rules import staff, staff_auth

    only_totp = (args.totp or args.no_totp) and not (args.stdin or args.link)
    hashed = None
    if not only_totp and not args.link:
        password = _read_password(args.stdin)
        if password is None:
            print("mst: 两次输入的密码不一致，没有更改", file=sys.stderr)
            return 2
        try:
            staff_auth.check_new(password, args.username)
        except staff_auth.PasswordError as exc:
            print(f"mst: {_PASSWORD_WORDS[exc.code]}，没有更改", file=sys.stderr)
            return 2
        hashed = await asyncio.to_thread(staff_auth.hash_password, password)

    async def go(db: Any) -> int:
        out: dict[str, Any] = {"username": args.username}
        async with db.transaction() as session:
            member = await staff.by_username(session, args.username)
            if member is None:
                print(f"mst: 没有工作人员 {args.username}", file=sys.stderr)
                return 1
            if hashed is not None:
                set_at = await staff_auth.set_password(session, member, hashed, actor="admin")
                out["set_at"] = set_at.astimezone(court_tz()).isoformat()
            if args.link:
                token, ends = await staff_auth.issue_setup_link(session, member, actor="admin")
                base = settings.public_base_url.rstrip("/")
                out["link"] = f"{base}/console/setup/{token}"
                out["expires_at"] = ends.astimezone(court_tz()).isoformat()
            if args.totp:
                out["otpauth"] = await staff_auth.enable_totp(
                    session, member, actor="admin", secret_key=settings.secret_key
                )
            if args.no_totp:
                await staff_auth.disable_totp(session, member, actor="admin")
                out["totp"] = False
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
            return 0
        if "set_at" in out:
            print(f"已设置 {args.username} 的工作台密码；此前的登录都已失效。")
        if "link" in out:
            print(f"请把下面的链接交给 {args.username} 本人（24小时内有效，只能用一次）：")
            print(out["link"])
        if "otpauth" in out:
            print("请用验证器（如手机上的身份验证器）扫描或添加下面的密钥，此后登录需要6位动态码：")
            print(out["otpauth"])
            print("这个密钥只显示这一次。")
        if args.no_totp:
            print(f"已关闭 {args.username} 的动态验证码。")
        return 0

    return await _with_db(settings, go)
