"""The Official Account's custom menu: `mst menu push | show` (the buttons and their words:
bot.channels.wechat.menu)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bot.app.config import Settings


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    m = sub.add_parser("menu", help="the Official Account's custom menu").add_subparsers(
        dest="menu_command", required=True
    )
    s = m.add_parser(
        "push",
        help="create the custom menu at WeChat (/cgi-bin/menu/create) from the contract's "
        "click keys (ASK, COMPLAIN, BOOK, PROGRESS, RATE, MENU), in the court's words; it "
        "replaces the menu the account has, and phones show it within about five minutes",
    )
    s.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help='the court\'s own menu, JSON {"button": [...]} as WeChat takes it (click '
        "buttons with the keys above, view buttons with links); default: the built-in one",
    )
    s.add_argument(
        "--dry-run", action="store_true", help="print the JSON that would be sent; send nothing"
    )
    s.add_argument("--json", action="store_true", help="one JSON object: what was sent")
    _court_option(s)
    s.set_defaults(run=menu_push)
    s = m.add_parser("show", help="the menu the account shows now, read back from WeChat")
    s.add_argument("--json", action="store_true", help="one JSON object: the buttons")
    _court_option(s)
    s.set_defaults(run=menu_show)


def _court_option(s: Any) -> None:
    s.add_argument(
        "--court",
        metavar="SLUG",
        help="a court's own Official Account (its slug in MST_COURTS_FILE); "
        "default: the default account (WECHAT_*)",
    )


def _load(path: Path | None) -> dict[str, Any] | None:
    """The menu to push (the built-in one, or the court's file); None after saying why not."""
    from bot.channels.wechat import menu

    if path is None:
        return menu.DEFAULT
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"mst: cannot read {path}: {exc}", file=sys.stderr)
        return None
    return loaded if isinstance(loaded, dict) else {"button": None}


def _unknown_court(settings: Settings, court: str | None) -> bool:
    """True (after saying so) when --court names no court account of MST_COURTS_FILE."""
    if court is None or court in {c.slug for c in settings.courts}:
        return False
    known = ", ".join(c.slug for c in settings.courts) or "none: MST_COURTS_FILE lists no court"
    print(f"mst: no court account {court!r} (known: {known})", file=sys.stderr)
    return True


async def _api(settings: Settings, court: str | None = None) -> Any:
    """The Official Account's API with the stable token: a command-line process shares no
    token with the running server, and the stable one leaves the server's valid."""
    from bot.app.factory import open_api
    from storage import state

    api = open_api(settings, state.connect(settings.redis_url), court)
    api.stable = True
    return api


async def _close(api: Any) -> None:
    await api.http.close()
    await api.redis.aclose()


async def menu_push(settings: Settings, args: argparse.Namespace) -> int:
    from bot.channels.wechat import menu

    body = await asyncio.to_thread(_load, args.file)
    if body is None:
        return 2
    wrong = menu.problems(body)
    if wrong:  # said in words here, not as WeChat's bare 400xx after the round trip
        print("mst: 菜单不符合微信的要求，没有推送：", file=sys.stderr)
        for line in wrong:
            print(f"  {line}", file=sys.stderr)
        return 2
    buttons = menu.buttons_of(body)
    missing = [k for k in menu.DOES if k not in menu.keys_in(buttons)]
    if _unknown_court(settings, args.court):
        return 2
    if args.dry_run:
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return 0
    api = await _api(settings, args.court)
    try:
        await api.create_menu(body)
    except Exception as exc:  # WeChat refused or unreachable: one line, not a traceback
        print(f"mst: 微信没有接受菜单：{exc}", file=sys.stderr)
        return 1
    finally:
        await _close(api)
    if args.json:
        print(
            json.dumps({"pushed": True, "menu": body, "keys_missing": missing}, ensure_ascii=False)
        )
        return 0
    print("已推送公众号菜单（手机上约五分钟内更新）：")
    for line in menu.lines(buttons):
        print(f"  {line}")
    if missing:
        print(f"注意：菜单上没有 {', '.join(missing)}；这些只能发数字使用。")
    return 0


async def menu_show(settings: Settings, args: argparse.Namespace) -> int:
    from bot.channels.wechat import menu

    if _unknown_court(settings, args.court):
        return 2
    api = await _api(settings, args.court)
    try:
        answer = await api.current_menu()
    except Exception as exc:  # WeChat refused or unreachable: one line, not a traceback
        print(f"mst: 没有读到公众号菜单：{exc}", file=sys.stderr)
        return 1
    finally:
        await _close(api)
    buttons = menu.buttons_of(answer)
    is_open = bool(answer.get("is_menu_open"))
    keys = menu.keys_in(buttons)
    unknown = [k for k in keys if k not in menu.DOES]
    missing = [k for k in menu.DOES if k not in keys]
    if args.json:
        print(
            json.dumps(
                {
                    "is_menu_open": is_open,
                    "button": buttons,
                    "keys_unknown": unknown,
                    "keys_missing": missing,
                },
                ensure_ascii=False,
            )
        )
        return 0
    if not buttons:
        print("公众号现在没有自定义菜单（mst menu push 创建）。")
        return 0
    print("公众号菜单" + ("：" if is_open else "（未开启）："))
    for line in menu.lines(buttons):
        print(f"  {line}")
    if unknown:
        print(f"注意：{', '.join(unknown)} 不是本系统认识的按键；请用 mst menu push 重新推送。")
    if missing:
        print(f"菜单上没有 {', '.join(missing)}；这些只能发数字使用。")
    return 0
