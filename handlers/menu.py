"""The main menu of a verified litigant: numbers or custom-menu keys, `0` back home,
`切换` to change case, `我的诉求` to see what they raised. Anything unexpected: the menu."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot import tickets
from bot.context import Context
from handlers import ask, texts
from storage.models import Binding, Case

# Number and custom-menu click key for each choice (CONTRACT.md).
CHOICES = {"1": "ASK", "2": "COMPLAIN", "3": "BOOK", "4": "PROGRESS", "5": "RATE", "0": "MENU"}
KEYS = set(CHOICES.values())


async def menu_text(ctx: Context) -> str:
    found = await tickets.active_case(ctx.session, ctx.inbound.user, ctx.state.get("case_id"))
    if found is None:
        return texts.WELCOME
    several = len(await tickets.cases_of(ctx.session, ctx.inbound.user)) > 1
    return texts.MENU.format(
        case_number=found[0].case_number, switch=texts.MENU_SWITCH if several else ""
    )


def choice_of(text: str) -> str | None:
    text = text.strip()
    if text.upper() in KEYS:
        return text.upper()
    return CHOICES.get(text)


Flow = Callable[[Context, Case, Binding], Awaitable[str]]


def _flows() -> tuple[dict[str, Flow], dict[str, Flow]]:
    """(what starts each menu choice, what takes the next message in each step)."""
    from handlers import complain, enforcement, mediation, rating

    starts: dict[str, Flow] = {
        "ASK": ask.start,
        "COMPLAIN": complain.start,
        "BOOK": mediation.start,
        "PROGRESS": enforcement.start,
        "RATE": rating.start,
    }
    steps: dict[str, Flow] = {
        "ask": ask.receive,
        "complain": complain.receive,
        "book": mediation.receive,
        "progress": enforcement.receive,
        "rate": rating.receive,
    }
    return starts, steps


async def handle(ctx: Context, case: Case, binding: Binding) -> str | None:
    text = ctx.inbound.text.strip()
    step = ctx.state.get("step")
    choice = choice_of(text) if ctx.inbound.kind != "image" else None
    starts, steps = _flows()
    if choice == "MENU":
        home(ctx)
        return await menu_text(ctx)
    if step in steps and (ctx.inbound.kind != "click" or choice is None):
        return await steps[step](ctx, case, binding)
    if step == "switch" and text.isdigit():
        return await switch_to(ctx, int(text))
    home(ctx)
    if choice in starts:
        return await starts[choice](ctx, case, binding)
    if text in ("切换", "切换案件"):
        return await switch_list(ctx)
    if text in ("我的诉求", "诉求", "查询"):
        return await my_tickets(ctx, case)
    return await menu_text(ctx)


def home(ctx: Context) -> None:
    """Back to the menu: forget the step and anything it was collecting."""
    keep = {k: ctx.state[k] for k in ("case_id",) if k in ctx.state}
    ctx.state.clear()
    ctx.state.update(keep)


async def switch_list(ctx: Context) -> str:
    cases = await tickets.cases_of(ctx.session, ctx.inbound.user)
    lines = "\n".join(
        f"{i} {c.case_number}{'（当前）' if c.id == ctx.state.get('case_id') else ''}"
        for i, c in enumerate(cases, start=1)
    )
    ctx.state["step"] = "switch"
    return texts.SWITCH_LIST.format(lines=lines)


async def switch_to(ctx: Context, number: int) -> str:
    cases = await tickets.cases_of(ctx.session, ctx.inbound.user)
    ctx.state["step"] = None
    if not 1 <= number <= len(cases):
        return await switch_list(ctx)
    ctx.state.update(case_id=cases[number - 1].id, ticket_id=None)
    return texts.SWITCHED.format(case_number=cases[number - 1].case_number) + await menu_text(ctx)


async def my_tickets(ctx: Context, case: Case) -> str:
    mine = await tickets.for_user(ctx.session, ctx.inbound.user, case.id or 0)
    if not mine:
        return texts.NO_TICKETS + await menu_text(ctx)
    lines = "\n".join(
        f"#{t.id} {tickets.KIND_NAMES.get(t.kind, '诉求')}：{tickets.STATUS_NAMES.get(t.status, t.status)}"
        + (f"，{tickets.due_words(t)}前答复" if t.status == "open" else "")
        for t in mine
    )
    return texts.MY_TICKETS.format(lines=lines) + await menu_text(ctx)
