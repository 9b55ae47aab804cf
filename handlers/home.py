"""The menu's own screens: the menu itself, back home, the cases to switch between, and
what the person raised. Every flow ends here; none of it starts a flow (handlers.menu does)."""

from __future__ import annotations

from bot.core.context import Context
from bot.rules import tickets
from handlers import texts
from storage.models import Case


async def menu_text(ctx: Context) -> str:
    found = await tickets.active_case(ctx.session, ctx.inbound.user, ctx.state.get("case_id"))
    if found is None:
        return texts.WELCOME
    several = len(await tickets.cases_of(ctx.session, ctx.inbound.user)) > 1
    return texts.MENU.format(
        case_number=found[0].case_number, switch=texts.MENU_SWITCH if several else ""
    )


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
