"""Book a remote video mediation (预约远程调解): pick a mediator from a numbered list, then
a free time in the next two weeks, then confirm. Cancel or reschedule until the cut-off."""

from __future__ import annotations

from bot.core.clock import say_time
from bot.core.reply import Choice, Link, Reply
from bot.rules import mediation
from handlers import home, texts
from handlers.context import Context
from storage.models import Binding, Case, Court, MediationSlot, Staff


async def start(ctx: Context, case: Case, binding: Binding, *, prefix: str = "") -> Reply:
    choices = await mediation.mediators(ctx.session, case.court_id)
    if not choices:
        home.home(ctx)
        court = await ctx.session.get(Court, case.court_id)
        return (
            prefix
            + texts.BOOK_NO_MEDIATORS.format(call=texts.call(court))
            + await home.menu_text(ctx)
        )
    current = await mediation.current_booking(ctx.session, ctx.inbound.user, case.id or 0)
    cancel: tuple[Choice, ...] = ()
    item = None
    if current is not None:
        booking, slot = current
        mediator = await ctx.session.get(Staff, slot.mediator_id)
        prefix += texts.BOOK_CURRENT.format(
            when=say_time(slot.start_at), name=mediator.name if mediator else ""
        )
        cancel, item = (texts.BOOK_CANCEL,), f"booking:{booking.id}"
    listed = tuple(
        Choice(
            str(i),
            c.mediator.name
            + (f"（{c.mediator.speciality}）" if c.mediator.speciality else "")
            + (f" 最早可约 {say_time(c.next_free)}" if c.next_free else " 近两周已约满"),
        )
        for i, c in enumerate(choices, start=1)
    )
    ctx.state.update(step="book", sub="mediator", mediators=[c.mediator.id for c in choices])
    return Reply(prefix + texts.BOOK_MEDIATORS_LEAD, (*listed, texts.TO_MENU, *cancel), item=item)


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    text = ctx.inbound.plain
    sub = ctx.state.get("sub")
    if text in ("取消", "取消预约"):
        return await _cancel(ctx, case, binding)
    if sub == "mediator":
        ids = ctx.state.get("mediators", [])
        if not text.isdigit() or not 1 <= int(text) <= len(ids):
            return await start(ctx, case, binding)
        return await _slots(ctx, case, binding, ids[int(text) - 1])
    if sub == "slot":
        ids = ctx.state.get("slots", [])
        if not text.isdigit() or not 1 <= int(text) <= len(ids):
            return await _slots(ctx, case, binding, ctx.state["mediator"])
        slot = await ctx.session.get(MediationSlot, ids[int(text) - 1])
        mediator = await ctx.session.get(Staff, ctx.state["mediator"])
        if slot is None or mediator is None:
            return await start(ctx, case, binding)
        ctx.state.update(sub="confirm", slot=slot.id)
        return Reply(
            texts.BOOK_CONFIRM_LEAD.format(when=say_time(slot.start_at), name=mediator.name),
            texts.BOOK_CONFIRM_CHOICES,
            item=f"slot:{slot.id}",
        )
    if sub == "confirm" and text == "1":
        return await confirm(ctx, case, binding)
    return await start(ctx, case, binding)


async def _slots(
    ctx: Context, case: Case, binding: Binding, mediator_id: int, *, prefix: str = ""
) -> Reply:
    mediator = await ctx.session.get(Staff, mediator_id)
    slots = await mediation.free_slots(ctx.session, mediator_id)
    if mediator is None or not slots:
        return await start(
            ctx,
            case,
            binding,
            prefix=prefix + texts.BOOK_NO_SLOTS.format(name=mediator.name if mediator else ""),
        )
    ctx.state.update(sub="slot", mediator=mediator_id, slots=[s.id for s in slots])
    listed = tuple(Choice(str(i), say_time(s.start_at)) for i, s in enumerate(slots, start=1))
    return Reply(
        prefix + texts.BOOK_SLOTS_LEAD.format(name=mediator.name), (*listed, texts.TO_MENU)
    )


async def confirm(ctx: Context, case: Case, binding: Binding) -> Reply:
    """Book the slot the step holds (`slot`, `mediator`): a new booking, or a move."""
    current = await mediation.current_booking(ctx.session, ctx.inbound.user, case.id or 0)
    if current is not None and not mediation.may_change(current[1]):
        return await _too_late(ctx, case) + await start(ctx, case, binding)
    # The new place first: if it was just taken, the old booking stays as it was.
    booking = await mediation.book(
        ctx.session,
        ctx.state["slot"],
        case,
        binding,
        rooms=ctx.rules.rooms,
        replacing=current[0] if current else None,
    )
    if booking is None:  # just taken: the old booking stays as it was
        return await _slots(ctx, case, binding, ctx.state["mediator"], prefix=texts.BOOK_TAKEN)
    slot = await ctx.session.get(MediationSlot, booking.slot_id)
    mediator = await ctx.session.get(Staff, ctx.state["mediator"])
    home.home(ctx)
    assert slot is not None
    moved = texts.BOOK_MOVED.format(was=say_time(current[1].start_at)) if current else ""
    room = ctx.rules.rooms.link(slot, booking)
    done = texts.BOOK_DONE.format(
        when=say_time(slot.start_at), name=mediator.name if mediator else "", link=room
    )
    return Reply(moved + done, links=(Link(texts.ROOM, room),), item=f"booking:{booking.id}")


async def _cancel(ctx: Context, case: Case, binding: Binding) -> Reply:
    current = await mediation.current_booking(ctx.session, ctx.inbound.user, case.id or 0)
    if current is None:
        return await start(ctx, case, binding)
    if not await mediation.cancel(ctx.session, current[0], case, reason="cancelled by the party"):
        return await _too_late(ctx, case) + await start(ctx, case, binding)
    home.home(ctx)
    cancelled = Reply(texts.BOOK_CANCELLED, item=f"booking:{current[0].id}")
    return cancelled + await home.menu_text(ctx)


async def _too_late(ctx: Context, case: Case) -> str:
    return texts.BOOK_TOO_LATE.format(call=texts.call(await ctx.session.get(Court, case.court_id)))
