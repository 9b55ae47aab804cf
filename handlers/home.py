"""The menu's own screens: the menu itself, back home, the cases to switch between, and
what the person raised. Every flow ends here; none of it starts a flow (handlers.menu does)."""

from __future__ import annotations

from bot.core.reply import Choice, Reply
from bot.rules import desk, tickets
from handlers import texts
from handlers.context import Context
from storage.models import Case


async def menu_text(ctx: Context) -> Reply:
    found = await tickets.active_case(ctx.session, ctx.inbound.user, ctx.state.get("case_id"))
    if found is None:
        return Reply(texts.WELCOME)
    several = len(await tickets.cases_of(ctx.session, ctx.inbound.user)) > 1
    return Reply(
        texts.MENU_LEAD.format(case_number=found[0].case_number),
        texts.MENU_CHOICES + ((texts.MENU_SWITCH,) if several else ()),
    )


def home(ctx: Context) -> None:
    """Back to the menu: forget the step and anything it was collecting."""
    keep = {k: ctx.state[k] for k in ("case_id",) if k in ctx.state}
    ctx.state.clear()
    ctx.state.update(keep)


async def switch_list(ctx: Context) -> Reply:
    cases = await tickets.cases_of(ctx.session, ctx.inbound.user)
    choices = tuple(
        Choice(str(i), f"{c.case_number}{'（当前）' if c.id == ctx.state.get('case_id') else ''}")
        for i, c in enumerate(cases, start=1)
    )
    ctx.state["step"] = "switch"
    return Reply(texts.SWITCH_LIST_LEAD, choices, footer=texts.SWITCH_LIST_FOOTER)


async def switch_to(ctx: Context, number: int) -> Reply:
    cases = await tickets.cases_of(ctx.session, ctx.inbound.user)
    ctx.state["step"] = None
    if not 1 <= number <= len(cases):
        return await switch_list(ctx)
    chosen = cases[number - 1]
    ctx.state.update(case_id=chosen.id, ticket_id=None)
    switched = Reply(
        texts.SWITCHED.format(case_number=chosen.case_number), item=f"case:{chosen.id}"
    )
    return switched + await menu_text(ctx)


async def my_tickets(ctx: Context, case: Case) -> Reply:
    mine = await tickets.for_user(ctx.session, ctx.inbound.user, case.id or 0)
    if not mine:
        return texts.NO_TICKETS + await menu_text(ctx)
    helped = await desk.helpers(ctx.session, mine)
    lines = "\n".join(
        f"#{t.id} {texts.kind_name(t.kind)}：{texts.status_name(t.status)}"
        + (f"，{texts.due_words(t)}前答复" if t.status == "open" else "")
        + (
            f"（{texts.SUBMITTED_BY_STAFF.format(name=helped[t.id or 0])}）"
            if t.id in helped
            else ""
        )
        for t in mine
    )
    return texts.MY_TICKETS.format(lines=lines) + await menu_text(ctx)
