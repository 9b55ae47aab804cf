"""The main menu of a verified litigant: numbers (also full-width and Chinese numerals),
words that name a choice, or custom-menu keys; `0` back home, `切换` to change case,
`我的诉求` to see what they raised. Any other sentence is never dropped: it is kept and the
person is asked whether it is a question for the judge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.core.reply import Reply
from handlers import ask, complain, enforcement, mediation, rating, texts
from handlers.context import Context
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
# Where a step's own-words text is taken: not in the sub-steps that ask for a number.
OWN_WORDS_SUBSTEPS = (None, "text", "more", "lead")
_BY_WORD = {word: key for key, words in WORDS.items() for word in words}
_TRAILING = "。.!！?？~～ "


def choice_of(text: str) -> str | None:
    """The menu choice a text names, if it names one: 1, １, 一, ASK, 咨询 all say 咨询."""
    text = text.strip().rstrip(_TRAILING)
    if text.upper() in KEYS:
        return text.upper()
    return CHOICES.get(NUMERALS.get(text, text)) or _BY_WORD.get(text)


Flow = Callable[[Context, Case, Binding], Awaitable[Reply]]


@dataclass(frozen=True)
class Step:
    """A step of a flow: what takes the person's next message there, and what it accepts."""

    receive: Flow
    # Any text is the flow's to read (a question may look like a case code): only a code
    # that really is one opens its case; nothing is taken for a staff bind code.
    free_text: bool = True
    # Its text is the person's own words, an item's content (in OWN_WORDS_SUBSTEPS): a text
    # that is only a command still means the command, never joins the item.
    own_words: bool = False
    photo_in: tuple[str, ...] = ()  # sub-steps that take a photo (any other is unsupported)


# The registry: what STARTS each menu choice, and which STEPS take the next message.
STARTS: dict[str, Flow] = {
    "ASK": ask.start,
    "COMPLAIN": complain.start,
    "BOOK": mediation.start,
    "PROGRESS": enforcement.start,
    "RATE": rating.start,
}
STEPS: dict[str, Step] = {
    "ask": Step(ask.receive, own_words=True),
    "complain": Step(complain.receive, own_words=True),
    "book": Step(mediation.receive),
    "progress": Step(enforcement.receive, own_words=True, photo_in=("lead",)),
    "rate": Step(rating.receive),
}


def takes_free_text(state: dict[str, Any]) -> bool:
    """Whether the conversation's step reads any text itself (see Step.free_text)."""
    step = STEPS.get(state.get("step") or "")
    return step is not None and step.free_text


def takes_photo(state: dict[str, Any]) -> bool:
    """Whether the conversation's step takes a photo now (an asset lead's)."""
    step = STEPS.get(state.get("step") or "")
    return step is not None and state.get("sub") in step.photo_in


def _own_words(state: dict[str, Any]) -> bool:
    step = STEPS.get(state.get("step") or "")
    return step is not None and step.own_words and state.get("sub") in OWN_WORDS_SUBSTEPS


def takes_own_words(state: dict[str, Any]) -> bool:
    """Whether the step takes the person's own words for an item (a question, a complaint,
    a lead): where a voice message joins the item (handlers.voice)."""
    return _own_words(state)


def is_command(text: str) -> bool:
    """Whether a text (read plain) is only a command: a menu choice or a word for one."""
    return (
        choice_of(text) is not None
        or text in SWITCH_WORDS
        or text in MINE_WORDS
        or text.rstrip(_TRAILING) in HELP
    )


async def handle(ctx: Context, case: Case, binding: Binding) -> Reply | None:
    case, binding = await rating.asked_after_close(ctx, case, binding)  # their item closed?
    text = ctx.inbound.plain
    step = ctx.state.get("step")
    choice = choice_of(text) if ctx.inbound.kind != "image" else None
    if choice == "MENU":
        home(ctx)
        return await menu_text(ctx)
    if step == "confirm_ask" and choice == "ASK" and text.rstrip(_TRAILING) in ("1", "一", "是"):
        return await ask_kept(ctx, case, binding)
    # Where a step takes the person's own words (a question, a complaint, a lead), a text
    # that is only a command still means the command: it never becomes part of the item.
    command = (
        choice in STARTS
        or text in SWITCH_WORDS
        or text in MINE_WORDS
        or text.rstrip(_TRAILING) in HELP
    )
    if command and _own_words(ctx.state):
        step = None
    if step in STEPS and (ctx.inbound.kind != "click" or choice is None):
        return await STEPS[step].receive(ctx, case, binding)
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
        how = texts.HOW_TO_REACH_A_PERSON.format(desk=texts.desk(court))
        return how + await menu_text(ctx)
    said = ctx.inbound.text.strip()
    # Words (not a stray number) are something the person said: kept, never dropped.
    if ctx.inbound.kind in ("text", "voice") and any(ch.isalpha() for ch in said):
        return keep_for_asking(ctx, said, kept)
    return await menu_text(ctx)


def keep_for_asking(ctx: Context, said: str, kept: dict[str, Any] | None) -> Reply:
    """A sentence that is no choice: kept (with any kept before it) until the person says
    whether it is a question for the judge."""
    lines = [*(kept or {}).get("lines", []), said]
    ids = [*(kept or {}).get("message_ids", []), ctx.message_id]
    ctx.state.update(step="confirm_ask", kept={"lines": lines, "message_ids": ids})
    said_gist = texts.gist("\n".join(lines), 60)
    return Reply(texts.CONFIRM_ASK_LEAD.format(said=said_gist), texts.CONFIRM_ASK_CHOICES)


async def ask_kept(ctx: Context, case: Case, binding: Binding) -> Reply:
    """On 1: what they wrote becomes their question to the judge."""
    kept = ctx.state.get("kept") or {}
    ids = [i for i in kept.get("message_ids", []) if i]
    ctx.state.update(step="ask", ticket_id=None, kept=None)
    return await ask.ask_with(ctx, case, binding, "\n".join(kept.get("lines", [])), ids)
