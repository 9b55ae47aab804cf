"""The main menu of a verified litigant: numbers (also full-width and Chinese numerals),
words that name a choice, or custom-menu keys; `0` back home, `切换` to change case,
`我的诉求` to see what they raised. Any other sentence is never dropped: it is kept and the
person is asked whether it is a question for the judge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.context import Context
from handlers import ask, complain, enforcement, mediation, rating, texts
from handlers.home import home, menu_text, my_tickets, switch_list, switch_to
from storage.models import Binding, Case, Court

# Number and custom-menu click key for each choice (CONTRACT.md).
CHOICES = {"1": "ASK", "2": "COMPLAIN", "3": "BOOK", "4": "PROGRESS", "5": "RATE", "0": "MENU"}
KEYS = set(CHOICES.values())


NUMERALS = {"零": "0", "〇": "0", "一": "1", "二": "2", "三": "3", "四": "4", "五": "5"}
# Words that name a choice, as people write them.
WORDS = {
    "ASK": ("咨询", "咨询法官", "问法官", "提问", "我要咨询", "我要问法官"),
    "COMPLAIN": ("投诉", "举报", "投诉举报", "我要投诉", "我要举报"),
    "BOOK": ("调解", "预约", "预约调解", "远程调解", "我要调解"),
    "PROGRESS": ("执行", "进度", "执行进度", "查进度", "查询进度"),
    "RATE": ("评价", "评价服务", "打分"),
    "MENU": ("菜单", "主菜单", "返回", "返回菜单"),
}
HELP = ("人工", "帮助", "客服", "转人工", "人工服务", "找人")
SWITCH_WORDS = ("切换", "切换案件")
MINE_WORDS = ("我的诉求", "诉求", "查询")
# Steps whose next text is the person's own words (an item's content).
FREE_TEXT_STEPS = ("ask", "complain", "progress")
OWN_WORDS_SUBSTEPS = (None, "text", "more", "lead")  # not those that ask for a number
_BY_WORD = {word: key for key, words in WORDS.items() for word in words}
_TRAILING = "。.!！?？~～ "


def choice_of(text: str) -> str | None:
    """The menu choice a text names, if it names one: 1, １, 一, ASK, 咨询 all say 咨询."""
    text = text.strip().rstrip(_TRAILING)
    if text.upper() in KEYS:
        return text.upper()
    return CHOICES.get(NUMERALS.get(text, text)) or _BY_WORD.get(text)


Flow = Callable[[Context, Case, Binding], Awaitable[str]]


# The registry: what STARTS each menu choice, and what takes the next message in each step.
STARTS: dict[str, Flow] = {
    "ASK": ask.start,
    "COMPLAIN": complain.start,
    "BOOK": mediation.start,
    "PROGRESS": enforcement.start,
    "RATE": rating.start,
}
STEPS: dict[str, Flow] = {
    "ask": ask.receive,
    "complain": complain.receive,
    "book": mediation.receive,
    "progress": enforcement.receive,
    "rate": rating.receive,
}


async def handle(ctx: Context, case: Case, binding: Binding) -> str | None:
    text = ctx.inbound.plain
    step = ctx.state.get("step")
    choice = choice_of(text) if ctx.inbound.kind != "image" else None
    if choice == "MENU":
        home(ctx)
        return await menu_text(ctx)
    if step == "confirm_ask" and choice == "ASK" and text.rstrip(_TRAILING) in ("1", "一", "是"):
        return await ask_kept(ctx, case, binding)
    # Where a step takes free text (a question, a complaint, a lead), a text that is only a
    # command still means the command: it never becomes part of the item.
    command = (
        choice in STARTS
        or text in SWITCH_WORDS
        or text in MINE_WORDS
        or text.rstrip(_TRAILING) in HELP
    )
    if command and step in FREE_TEXT_STEPS and ctx.state.get("sub") in OWN_WORDS_SUBSTEPS:
        step = None
    if step in STEPS and (ctx.inbound.kind != "click" or choice is None):
        return await STEPS[step](ctx, case, binding)
    if step == "switch" and text.isdigit():
        return await switch_to(ctx, int(text))
    kept = ctx.state.get("kept") if step == "confirm_ask" else None
    home(ctx)
    if choice in STARTS:
        return await STARTS[choice](ctx, case, binding)
    if text in SWITCH_WORDS:
        return await switch_list(ctx)
    if text in MINE_WORDS:
        return await my_tickets(ctx, case)
    if text.rstrip(_TRAILING) in HELP:
        court = await ctx.session.get(Court, case.court_id)
        return texts.HOW_TO_REACH_A_PERSON.format(desk=texts.desk(court)) + await menu_text(ctx)
    said = ctx.inbound.text.strip()
    # Words (not a stray number) are something the person said: kept, never dropped.
    if ctx.inbound.kind in ("text", "voice") and any(ch.isalpha() for ch in said):
        return keep_for_asking(ctx, said, kept)
    return await menu_text(ctx)


def keep_for_asking(ctx: Context, said: str, kept: dict[str, Any] | None) -> str:
    """A sentence that is no choice: kept (with any kept before it) until the person says
    whether it is a question for the judge."""
    lines = [*(kept or {}).get("lines", []), said]
    ids = [*(kept or {}).get("message_ids", []), ctx.message_id]
    ctx.state.update(step="confirm_ask", kept={"lines": lines, "message_ids": ids})
    return texts.CONFIRM_ASK.format(said=texts.gist("\n".join(lines), 60))


async def ask_kept(ctx: Context, case: Case, binding: Binding) -> str:
    """On 1: what they wrote becomes their question to the judge."""
    kept = ctx.state.get("kept") or {}
    ids = [i for i in kept.get("message_ids", []) if i]
    ctx.state.update(step="ask", ticket_id=None, kept=None)
    return await ask.ask_with(ctx, case, binding, "\n".join(kept.get("lines", [])), ids)
