"""The Official Account's custom menu (自定义菜单): the contract's click keys (CONTRACT.md,
handlers.menu.CHOICES) under the court's words, within WeChat's rules.

WeChat's rules for /cgi-bin/menu/create (its docs, 2025): 1 to 3 buttons, each either one
action or 1 to 5 sub-buttons; a button's name at most 16 bytes (UTF-8: 5 Chinese
characters), a sub-button's at most 60 (clients show about 4 and 8 characters, then
"..."); a click key at most 128 bytes; a link at most 1024. WeChat refuses a menu that
breaks one with 40016–40027 and a name for what is wrong; `problems` says so first, in
words, before anything is sent. Clients fetch the new menu within about five minutes (or
at once after unfollowing and following again)."""

from __future__ import annotations

from typing import Any

from handlers import texts
from handlers.menu import CHOICES, KEYS

MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
NAME_BYTES = 16
SUB_NAME_BYTES = 60
KEY_BYTES = 128
URL_BYTES = 1024
# What our menu may hold: a click (a key the dialog knows), or a link (the court's site,
# a page of ours). WeChat knows more kinds (scancode_push, media_id, …) that no flow reads.
CLICK, VIEW = "click", "view"

# What each key starts, in the chat's own words (the numbered menu's labels).
DOES = {CHOICES[c.key]: c.label for c in texts.MENU_CHOICES if c.key in CHOICES} | {
    "MENU": "返回主菜单"
}

# The menu pushed unless the court gives its own (`mst menu push --file`): every key of
# the contract; 咨询法官 on its own, as the one used most.
DEFAULT: dict[str, Any] = {
    "button": [
        {"type": CLICK, "name": "咨询法官", "key": "ASK"},
        {
            "name": "诉讼服务",
            "sub_button": [
                {"type": CLICK, "name": "预约调解", "key": "BOOK"},
                {"type": CLICK, "name": "执行进度", "key": "PROGRESS"},
                {"type": CLICK, "name": "评价服务", "key": "RATE"},
            ],
        },
        {
            "name": "更多",
            "sub_button": [
                {"type": CLICK, "name": "投诉举报", "key": "COMPLAIN"},
                {"type": CLICK, "name": "返回主菜单", "key": "MENU"},
            ],
        },
    ]
}


def _bytes(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def problems(menu: Any) -> list[str]:
    """What WeChat would refuse in `menu`, and click keys no flow answers; [] when fine."""
    if not isinstance(menu, dict) or not isinstance(menu.get("button"), list):
        return ['the menu must be a JSON object {"button": [...]}']
    buttons = menu["button"]
    found: list[str] = []
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        found.append(f"{len(buttons)} buttons: WeChat takes 1 to {MAX_BUTTONS}")
    for i, button in enumerate(buttons, 1):
        if not isinstance(button, dict):
            found.append(f"button {i}: not an object")
            continue
        subs = button.get("sub_button") or []
        found += _name(button, f"button {i}", NAME_BYTES)
        if subs:
            if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB_BUTTONS:
                found.append(f"button {i}: 1 to {MAX_SUB_BUTTONS} sub-buttons")
                continue
            for j, sub in enumerate(subs, 1):
                where = f"button {i}.{j}"
                if not isinstance(sub, dict):
                    found.append(f"{where}: not an object")
                    continue
                found += _name(sub, where, SUB_NAME_BYTES) + _action(sub, where)
                if sub.get("sub_button"):
                    found.append(f"{where}: WeChat menus have two levels only")
        else:
            found += _action(button, f"button {i}")
    return found


def _name(button: dict[str, Any], where: str, limit: int) -> list[str]:
    name = button.get("name")
    if not isinstance(name, str) or not name.strip():
        return [f"{where}: no name"]
    if _bytes(name) > limit:
        return [f"{where}: name {name!r} is {_bytes(name)} bytes, WeChat takes at most {limit}"]
    return []


def _action(button: dict[str, Any], where: str) -> list[str]:
    kind = button.get("type")
    if kind == CLICK:
        key = button.get("key")
        if not isinstance(key, str) or not 1 <= _bytes(key) <= KEY_BYTES:
            return [f"{where}: a click needs a key of 1 to {KEY_BYTES} bytes"]
        if key not in KEYS:
            return [f"{where}: key {key!r} is none the chat answers ({', '.join(sorted(KEYS))})"]
        return []
    if kind == VIEW:
        url = button.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return [f"{where}: a link needs an http(s) url"]
        if _bytes(url) > URL_BYTES:
            return [f"{where}: url over {URL_BYTES} bytes"]
        return []
    return [f"{where}: type {kind!r}: use click (a key) or view (a link)"]


def buttons_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons of what WeChat answered, whichever way it was asked: get_current_selfmenu
    _info (sub-buttons as {"list": [...]}) or menu/get ({"menu": {"button": [...]}}), each
    sub-button list a plain list."""
    holder = answer.get("selfmenu_info") or answer.get("menu") or answer
    shown = []
    for button in holder.get("button") or []:
        subs = button.get("sub_button") or []
        if isinstance(subs, dict):
            subs = subs.get("list") or []
        shown.append({**button, "sub_button": list(subs)})
    return shown


def keys_in(buttons: list[dict[str, Any]]) -> list[str]:
    """The click keys on the menu, in order."""
    found = []
    for button in buttons:
        for b in [button, *button.get("sub_button", [])]:
            if b.get("type") == CLICK and b.get("key"):
                found.append(str(b["key"]))
    return found


def lines(buttons: list[dict[str, Any]]) -> list[str]:
    """The menu as a person reads it: each button, what it does."""

    def does(b: dict[str, Any]) -> str:
        kind = b.get("type")
        if kind == CLICK:
            key = str(b.get("key", ""))
            return f"[{key}] " + (DOES.get(key) or "✘ 这个按键聊天不认识")
        if kind == VIEW:
            return f"打开 {b.get('url', '')}"
        return f"（{kind}）" + str(b.get("value") or b.get("url") or "")

    out = []
    for button in buttons:
        subs = button.get("sub_button") or []
        if subs:
            out.append(f"{button.get('name', '')}")
            out += [f"  └ {s.get('name', '')}  {does(s)}" for s in subs]
        else:
            out.append(f"{button.get('name', '')}  {does(button)}")
    return out
