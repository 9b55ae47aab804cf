"""Remote mediation (共享法庭, 点单式调解): mediators' slots, bookings that never exceed a
slot's capacity, reminders, cancel and reschedule until a cut-off, no-shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import outbox
from bot.clock import court_tz, now, say_time
from storage import audit
from storage.models import Binding, Booking, Case, MediationSlot, Party, Staff

BOOKING_HORIZON = timedelta(days=14)
CUT_OFF = timedelta(hours=2)  # no booking, cancelling or rescheduling closer to the start
DAY_BEFORE = timedelta(hours=24)
HOUR_BEFORE = timedelta(hours=1)


@dataclass(frozen=True)
class Choice:
    mediator: Staff
    next_free: datetime | None


def room_link(slot: MediationSlot, booking: Booking) -> str:
    return slot.room_url.replace("{booking}", str(booking.id)).replace("{slot}", str(slot.id))


def _free(moment: datetime):  # type: ignore[no-untyped-def]
    return and_(
        MediationSlot.booked < MediationSlot.capacity,
        MediationSlot.start_at > moment + CUT_OFF,
        MediationSlot.start_at <= moment + BOOKING_HORIZON,
    )


async def mediators(session: AsyncSession, court_id: int) -> list[Choice]:
    """The court's mediators with their next free time, soonest first (none free: last)."""
    moment = now()
    staff = [
        s
        for s in (
            await session.execute(
                select(Staff)
                .where(Staff.court_id == court_id, Staff.active, Staff.roles.contains("mediator"))
                .order_by(Staff.id)
            )
        ).scalars()
        if s.has_role("mediator")
    ]
    nexts = dict(
        (
            await session.execute(
                select(MediationSlot.mediator_id, func.min(MediationSlot.start_at))
                .where(_free(moment), MediationSlot.mediator_id.in_([s.id for s in staff]))
                .group_by(MediationSlot.mediator_id)
            )
        ).all()
    )
    choices = [Choice(s, nexts.get(s.id)) for s in staff]
    far = datetime.max.replace(tzinfo=court_tz())
    return sorted(choices, key=lambda c: c.next_free or far)


async def free_slots(
    session: AsyncSession, mediator_id: int, limit: int = 9
) -> list[MediationSlot]:
    rows = await session.execute(
        select(MediationSlot)
        .where(MediationSlot.mediator_id == mediator_id, _free(now()))
        .order_by(MediationSlot.start_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def current_booking(
    session: AsyncSession, openid: str, case_id: int
) -> tuple[Booking, MediationSlot] | None:
    row = (
        await session.execute(
            select(Booking, MediationSlot)
            .join(MediationSlot, MediationSlot.id == Booking.slot_id)
            .where(
                Booking.openid == openid,
                Booking.case_id == case_id,
                Booking.status == "booked",
                MediationSlot.start_at > now(),
            )
            .order_by(MediationSlot.start_at)
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def book(session: AsyncSession, slot_id: int, case: Case, binding: Binding) -> Booking | None:
    """Take one place in the slot, or None when it was just taken (or too close to start).

    The guarded UPDATE is the whole concurrency story: the database lets only `capacity`
    of any number of simultaneous bookers through, on SQLite and PostgreSQL alike."""
    moment = now()
    taken = await session.execute(
        update(MediationSlot)
        .where(
            MediationSlot.id == slot_id,
            MediationSlot.booked < MediationSlot.capacity,
            MediationSlot.start_at > moment + CUT_OFF,
        )
        .values(booked=MediationSlot.booked + 1)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    booking = Booking(
        slot_id=slot_id, case_id=case.id or 0, party_id=binding.party_id, openid=binding.openid
    )
    session.add(booking)
    await session.flush()
    slot = await session.get(MediationSlot, slot_id)
    assert slot is not None
    await _tell_everyone(session, case, slot, booking, "booked")
    await audit.append(
        session,
        actor=binding.openid,
        action="mediation.booked",
        subject=f"booking:{booking.id}",
        case_id=case.id,
        payload={
            "slot": slot_id,
            "mediator_id": slot.mediator_id,
            "start_at": slot.start_at.isoformat(),
        },
    )
    return booking


def may_change(slot: MediationSlot) -> bool:
    return slot.start_at > now() + CUT_OFF


async def cancel(session: AsyncSession, booking: Booking, case: Case, *, reason: str) -> bool:
    """Give the place back; False when it is too close to the start to cancel."""
    slot = await session.get(MediationSlot, booking.slot_id)
    if slot is None or booking.status != "booked" or not may_change(slot):
        return False
    booking.status = "cancelled"
    booking.cancelled_at = now()
    session.add(booking)
    await session.execute(
        update(MediationSlot)
        .where(MediationSlot.id == slot.id)
        .values(booked=MediationSlot.booked - 1)
    )
    await _tell_everyone(session, case, slot, booking, "cancelled")
    await audit.append(
        session,
        actor=booking.openid,
        action="mediation.cancelled",
        subject=f"booking:{booking.id}",
        case_id=case.id,
        payload={"reason": reason},
    )
    return True


async def _tell_everyone(
    session: AsyncSession, case: Case, slot: MediationSlot, booking: Booking, what: str
) -> None:
    """Both sides of the case (everyone bound to it), the mediator, and the case's judge."""
    mediator = await session.get(Staff, slot.mediator_id)
    party = await session.get(Party, booking.party_id)
    when = say_time(slot.start_at)
    name = mediator.name if mediator else ""
    if what == "booked":
        to_parties = f"本案已预约远程调解：{when}，调解员{name}。\n到时请点击链接进入调解室：{room_link(slot, booking)}"
        to_staff = (
            f"新的调解预约：{case.case_number}，{when}，由{party.role if party else '当事人'}预约。"
        )
    else:
        to_parties = f"本案 {when} 的远程调解预约已取消。"
        to_staff = f"调解预约已取消：{case.case_number}，{when}。"
    followers = (
        await session.execute(select(Binding.openid).where(Binding.case_id == case.id).distinct())
    ).scalars()
    recipients = [(openid, to_parties) for openid in followers]
    judge = await session.get(Staff, case.judge_id) if case.judge_id else None
    for staff in (mediator, judge):
        if staff is not None and staff.openid:
            recipients.append((staff.openid, to_staff))
    for openid, text in dict(recipients).items():
        await outbox.tell(session, openid, text, case=case, notice="远程调解预约")


async def record_no_show(session: AsyncSession, mediator: Staff, booking_id: int) -> Booking | None:
    booking = await session.get(Booking, booking_id)
    slot = await session.get(MediationSlot, booking.slot_id) if booking else None
    if (
        booking is None
        or booking.status != "booked"  # a cancelled booking is no no-show
        or slot is None
        or slot.mediator_id != mediator.id
        or slot.start_at > now()
    ):
        return None
    booking.status = "no_show"
    session.add(booking)
    await audit.append(
        session,
        actor=f"staff:{mediator.username}",
        action="mediation.no_show",
        subject=f"booking:{booking.id}",
        case_id=booking.case_id,
    )
    return booking


async def send_reminders(session: AsyncSession) -> int:
    """The day before and one hour before, with the room link. Each sent once."""
    moment = now()
    sent = 0
    for field, window, words in (
        ("reminded_day_at", DAY_BEFORE, None),  # 今天 or 明天, by the China calendar
        ("reminded_hour_at", HOUR_BEFORE, "一小时后"),
    ):
        column = getattr(Booking, field)
        rows = await session.execute(
            select(Booking, MediationSlot, Case)
            .join(MediationSlot, MediationSlot.id == Booking.slot_id)
            .join(Case, Case.id == Booking.case_id)
            .where(
                Booking.status == "booked",
                column.is_(None),
                MediationSlot.start_at > moment,
                MediationSlot.start_at <= moment + window,
            )
        )
        for booking, slot, case in rows.all():
            if field == "reminded_day_at" and slot.start_at <= moment + HOUR_BEFORE:
                booking.reminded_day_at = moment  # too late for this one; the hour reminder goes
                session.add(booking)
                continue
            await outbox.tell(
                session,
                booking.openid,
                f"提醒：{words or _day_word(slot.start_at, moment)}（{say_time(slot.start_at)}）有远程调解，案号{case.case_number}。\n"
                f"请提前几分钟点击链接进入：{room_link(slot, booking)}",
                case=case,
                notice="远程调解提醒",
            )
            setattr(booking, field, moment)
            session.add(booking)
            sent += 1
    return sent


def _day_word(start: datetime, moment: datetime) -> str:
    """A booking made on the day is reminded as 今天, not 明天."""
    same_day = start.astimezone(court_tz()).date() == moment.astimezone(court_tz()).date()
    return "今天" if same_day else "明天"


def weekly_starts(first_day: date, at: time, weeks: int, weekdays: set[int]) -> list[datetime]:
    """Start times (China time) on the given weekdays (0=Monday) for `weeks` weeks."""
    days = [first_day + timedelta(days=i) for i in range(weeks * 7)]
    return [datetime.combine(d, at, court_tz()) for d in days if d.weekday() in weekdays]


async def add_slots(
    session: AsyncSession,
    mediator: Staff,
    starts: list[datetime],
    *,
    minutes: int,
    capacity: int,
    room_url: str,
) -> int:
    """Create slots, skipping any that already exist for this mediator at that time."""
    existing = set(
        (
            await session.execute(
                select(MediationSlot.start_at).where(
                    MediationSlot.mediator_id == mediator.id, MediationSlot.start_at.in_(starts)
                )
            )
        ).scalars()
    )
    added = 0
    for start in starts:
        if start in existing:
            continue
        session.add(
            MediationSlot(
                mediator_id=mediator.id or 0,
                start_at=start,
                end_at=start + timedelta(minutes=minutes),
                capacity=capacity,
                room_url=room_url,
            )
        )
        added += 1
    await session.flush()
    if added:
        await audit.append(
            session,
            actor="admin",
            action="mediation.slots_added",
            subject=f"staff:{mediator.username}",
            payload={"count": added, "minutes": minutes, "capacity": capacity},
        )
    return added
