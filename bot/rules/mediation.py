"""Remote mediation (共享法庭, 点单式调解): mediators' slots, bookings that never exceed a
slot's capacity, reminders, cancel and reschedule until a cut-off, no-shows; the admin's
listing and removal of slots; the signed links to a booking's room page."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import notice
from bot.core.clock import court_tz, now
from bot.core.notice import Notice, Param, iso
from bot.outbox import queue as outbox
from bot.rules import access
from qr.tokens import looks_like_token
from storage import audit
from storage.models import Binding, Booking, Case, Court, MediationSlot, Party, Staff

BOOKING_HORIZON = timedelta(days=14)
CUT_OFF = timedelta(hours=2)  # no booking, cancelling or rescheduling closer to the start
DAY_BEFORE = timedelta(hours=24)
HOUR_BEFORE = timedelta(hours=1)


@dataclass(frozen=True)
class Choice:
    mediator: Staff
    next_free: datetime | None


# -- signed room links -------------------------------------------------------------------
# A token is 32 URL-safe characters: a 128-bit tag (HMAC of the booking id under a key
# derived from MST_SECRET_KEY) and the id hidden under a mask derived from that tag.
# Nothing in it can be counted or guessed; a changed character fails the tag.
_ROOM_TAG_BYTES = 16
_ROOM_ID_BYTES = 8


def _room_mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


@dataclass(frozen=True)
class Rooms:
    """Signs and reads the links to mediation rooms. Built once at start-up from the
    secret key (`from_secret`) and handed to whoever writes or opens a link."""

    key: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Rooms:
        return cls(hmac.new(secret.encode(), b"mst room link", hashlib.sha256).digest())

    def token(self, booking_id: int) -> str:
        tag = _room_mac(self.key, b"booking:%d" % booking_id)[:_ROOM_TAG_BYTES]
        mask = _room_mac(self.key, b"mask:" + tag)[:_ROOM_ID_BYTES]
        hidden = bytes(
            a ^ b for a, b in zip(booking_id.to_bytes(_ROOM_ID_BYTES, "big"), mask, strict=True)
        )
        return base64.urlsafe_b64encode(tag + hidden).decode()

    def booking_id_of(self, token: str) -> int | None:
        """The booking a token names, or None for anything not signed with this key."""
        if not looks_like_token(token):
            return None
        raw = base64.urlsafe_b64decode(token)
        tag, hidden = raw[:_ROOM_TAG_BYTES], raw[_ROOM_TAG_BYTES:]
        mask = _room_mac(self.key, b"mask:" + tag)[:_ROOM_ID_BYTES]
        booking_id = int.from_bytes(bytes(a ^ b for a, b in zip(hidden, mask, strict=True)), "big")
        expected = _room_mac(self.key, b"booking:%d" % booking_id)[:_ROOM_TAG_BYTES]
        return booking_id if hmac.compare_digest(expected, tag) else None

    def link(self, slot: MediationSlot, booking: Booking) -> str:
        """The slot's room URL (`mst slots add --room`) for this booking. `{token}` becomes
        the booking's signed token, for this server's own room page (`/room/{token}`);
        `{slot}` and `{booking}` become the ids, for a court video platform that wants them."""
        link = slot.room_url.replace("{booking}", str(booking.id)).replace("{slot}", str(slot.id))
        if "{token}" in link:
            link = link.replace("{token}", self.token(booking.id or 0))
        return link


@dataclass(frozen=True)
class Room:
    """What a booking's room page shows."""

    booking: Booking
    slot: MediationSlot
    case: Case
    court: Court
    mediator: Staff


async def room_for_token(session: AsyncSession, token: str, rooms: Rooms) -> Room | None:
    booking_id = rooms.booking_id_of(token)
    if booking_id is None:
        return None
    row = (
        await session.execute(
            select(Booking, MediationSlot, Case, Court, Staff)
            .join(MediationSlot, col(MediationSlot.id) == col(Booking.slot_id))
            .join(Case, col(Case.id) == col(Booking.case_id))
            .join(Court, col(Court.id) == col(Case.court_id))
            .join(Staff, col(Staff.id) == col(MediationSlot.mediator_id))
            .where(col(Booking.id) == booking_id)
        )
    ).first()
    return Room(*row) if row else None


def _free(moment: datetime) -> ColumnElement[bool]:
    return and_(
        col(MediationSlot.booked) < col(MediationSlot.capacity),
        col(MediationSlot.start_at) > moment + CUT_OFF,
        col(MediationSlot.start_at) <= moment + BOOKING_HORIZON,
    )


async def mediators(session: AsyncSession, court_id: int) -> list[Choice]:
    """The court's mediators with their next free time, soonest first (none free: last)."""
    moment = now()
    staff = [
        s
        for s in (
            await session.execute(
                select(Staff)
                .where(
                    col(Staff.court_id) == court_id,
                    col(Staff.active),
                    col(Staff.roles).contains("mediator"),
                )
                .order_by(col(Staff.id))
            )
        ).scalars()
        if s.has_role("mediator")
    ]
    nexts: dict[int | None, datetime] = dict(
        (
            await session.execute(
                select(col(MediationSlot.mediator_id), func.min(col(MediationSlot.start_at)))
                .where(_free(moment), col(MediationSlot.mediator_id).in_([s.id for s in staff]))
                .group_by(col(MediationSlot.mediator_id))
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
        .where(col(MediationSlot.mediator_id) == mediator_id, _free(now()))
        .order_by(col(MediationSlot.start_at))
        .limit(limit)
    )
    return list(rows.scalars())


async def current_booking(
    session: AsyncSession, openid: str, case_id: int
) -> tuple[Booking, MediationSlot] | None:
    row = (
        await session.execute(
            select(Booking, MediationSlot)
            .join(MediationSlot, col(MediationSlot.id) == col(Booking.slot_id))
            .where(
                col(Booking.openid) == openid,
                col(Booking.case_id) == case_id,
                col(Booking.status) == "booked",
                col(MediationSlot.start_at) > now(),
            )
            .order_by(col(MediationSlot.start_at))
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def book(
    session: AsyncSession,
    slot_id: int,
    case: Case,
    binding: Binding,
    *,
    rooms: Rooms,
    replacing: Booking | None = None,
) -> Booking | None:
    """Take one place in the slot, or None when it was just taken (or too close to start).
    `replacing`: the person's current booking, given back once the new place is theirs
    (a reschedule: the others are told once, of the move).

    The guarded UPDATE is the whole concurrency story: the database lets only `capacity`
    of any number of simultaneous bookers through, on SQLite and PostgreSQL alike."""
    moment = now()
    taken = await session.execute(
        update(MediationSlot)
        .where(
            col(MediationSlot.id) == slot_id,
            col(MediationSlot.booked) < col(MediationSlot.capacity),
            col(MediationSlot.start_at) > moment + CUT_OFF,
        )
        .values(booked=col(MediationSlot.booked) + 1)
    )
    if cast(CursorResult[Any], taken).rowcount != 1:
        return None
    booking = Booking(
        slot_id=slot_id, case_id=case.id or 0, party_id=binding.party_id, openid=binding.openid
    )
    session.add(booking)
    await session.flush()
    slot = await session.get(MediationSlot, slot_id)
    assert slot is not None
    before = None
    if replacing is not None:
        before = await session.get(MediationSlot, replacing.slot_id)
        await cancel(session, replacing, case, reason="rescheduled", tell=False)
    # The booker has the reply in the chat: the push is for everyone else.
    await _tell_everyone(
        session, case, slot, booking, "booked", skip=binding.openid, before=before, rooms=rooms
    )
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


async def cancel(
    session: AsyncSession,
    booking: Booking,
    case: Case,
    *,
    reason: str,
    by: str | None = None,
    tell: bool = True,
) -> bool:
    """Give the place back; False when it is too close to the start to cancel.
    `by`: the court's side cancelling (e.g. "admin" removing the slot); None: the party,
    who has the reply in the chat and gets no push. `tell`: False within a reschedule."""
    slot = await session.get(MediationSlot, booking.slot_id)
    if slot is None or booking.status != "booked" or not may_change(slot):
        return False
    booking.status = "cancelled"
    booking.cancelled_at = now()
    session.add(booking)
    await session.execute(
        update(MediationSlot)
        .where(col(MediationSlot.id) == slot.id)
        .values(booked=col(MediationSlot.booked) - 1)
    )
    if tell:
        await _tell_everyone(
            session,
            case,
            slot,
            booking,
            "cancelled" if by is None else "withdrawn",
            skip=booking.openid if by is None else None,
        )
    await audit.append(
        session,
        actor=by or booking.openid,
        action="mediation.cancelled",
        subject=f"booking:{booking.id}",
        case_id=case.id,
        payload={"reason": reason},
    )
    return True


async def _tell_everyone(
    session: AsyncSession,
    case: Case,
    slot: MediationSlot,
    booking: Booking,
    what: str,
    *,
    skip: str | None = None,
    before: MediationSlot | None = None,
    rooms: Rooms | None = None,
) -> None:
    """Both sides of the case (everyone bound to it but `skip`), the mediator, and the
    case's judge. `before`: the slot a reschedule moved from."""
    mediator = await session.get(Staff, slot.mediator_id)
    party = await session.get(Party, booking.party_id)
    when = iso(slot.start_at)
    name = mediator.name if mediator else ""
    to_parties: dict[str, Param]
    to_staff: dict[str, Param] = {"case_number": case.case_number, "when": when}
    if what == "booked" and before is not None:
        link = rooms.link(slot, booking) if rooms else ""
        to_parties = {"when": when, "mediator": name, "was": iso(before.start_at), "link": link}
        to_staff["was"] = iso(before.start_at)
        kinds = (notice.MEDIATION_MOVED_FOR_PARTY, notice.MEDIATION_MOVED_FOR_STAFF)
    elif what == "booked":
        link = rooms.link(slot, booking) if rooms else ""
        to_parties = {"when": when, "mediator": name, "link": link}
        to_staff["party_role"] = party.role if party else None
        kinds = (notice.MEDIATION_BOOKED_FOR_PARTY, notice.MEDIATION_BOOKED_FOR_STAFF)
    elif what == "withdrawn":  # the court cancelled it, not the party
        to_parties = {"when": when, "mediator": name}
        kinds = (notice.MEDIATION_WITHDRAWN_FOR_PARTY, notice.MEDIATION_WITHDRAWN_FOR_STAFF)
    else:
        to_parties = {"when": when}
        kinds = (notice.MEDIATION_CANCELLED_FOR_PARTY, notice.MEDIATION_CANCELLED_FOR_STAFF)
    for_parties, for_staff = Notice(kinds[0], to_parties), Notice(kinds[1], to_staff)
    followers = (
        await session.execute(
            select(col(Binding.openid)).where(col(Binding.case_id) == case.id).distinct()
        )
    ).scalars()
    recipients = [(openid, for_parties) for openid in followers if openid != skip]
    judge = await session.get(Staff, case.judge_id) if case.judge_id else None
    for staff in (mediator, judge):
        if staff is not None and (address := access.address_of(staff)):
            recipients.append((address, for_staff))
    for openid, said in dict(recipients).items():
        await outbox.tell(session, openid, said, case=case)


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


async def send_reminders(session: AsyncSession, rooms: Rooms) -> int:
    """The day before and one hour before, with the room link. Each sent once."""
    moment = now()
    sent = 0
    for field, window, day in (
        ("reminded_day_at", DAY_BEFORE, None),  # today or tomorrow, by the court's calendar
        ("reminded_hour_at", HOUR_BEFORE, "hour"),
    ):
        column = getattr(Booking, field)
        rows = await session.execute(
            select(Booking, MediationSlot, Case)
            .join(MediationSlot, col(MediationSlot.id) == col(Booking.slot_id))
            .join(Case, col(Case.id) == col(Booking.case_id))
            .where(
                col(Booking.status) == "booked",
                column.is_(None),
                col(MediationSlot.start_at) > moment,
                col(MediationSlot.start_at) <= moment + window,
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
                Notice(
                    notice.MEDIATION_REMINDER,
                    {
                        "day": day or _day(slot.start_at, moment),
                        "when": iso(slot.start_at),
                        "case_number": case.case_number,
                        "link": rooms.link(slot, booking),
                    },
                ),
                case=case,
            )
            setattr(booking, field, moment)
            session.add(booking)
            sent += 1
    return sent


def _day(start: datetime, moment: datetime) -> str:
    """A booking made on the day is reminded as today's, not tomorrow's."""
    same_day = start.astimezone(court_tz()).date() == moment.astimezone(court_tz()).date()
    return "today" if same_day else "tomorrow"


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
    """Create slots, skipping any that already exist for this mediator at that time
    (a removed slot kept for its bookings' record is offered again)."""
    existing = {
        slot.start_at: slot
        for slot in (
            await session.execute(
                select(MediationSlot).where(
                    col(MediationSlot.mediator_id) == mediator.id,
                    col(MediationSlot.start_at).in_(starts),
                )
            )
        ).scalars()
    }
    added = 0
    for start in starts:
        old = existing.get(start)
        if old is not None:
            if old.capacity == 0:  # removed earlier (see remove_slot): offered again
                old.end_at = start + timedelta(minutes=minutes)
                old.capacity, old.room_url = capacity, room_url
                session.add(old)
                added += 1
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


# -- the admin's view: list and remove slots (mst slots list|remove) ---------------------


@dataclass(frozen=True)
class Taken:
    """One live booking of a slot: for the admin, never with the party's full name."""

    booking: Booking
    party: Party | None
    case: Case


@dataclass(frozen=True)
class SlotView:
    slot: MediationSlot
    mediator: Staff
    court: Court
    taken: list[Taken]


def _slot_filters(
    slot_id: int | None,
    mediator_id: int | None,
    court_id: int | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    # capacity 0: removed, kept for its bookings' record
    where: list[ColumnElement[bool]] = [col(MediationSlot.capacity) > 0]
    if slot_id is not None:
        where.append(col(MediationSlot.id) == slot_id)
    if mediator_id is not None:
        where.append(col(MediationSlot.mediator_id) == mediator_id)
    if court_id is not None:
        where.append(col(Staff.court_id) == court_id)
    if since is not None:
        where.append(col(MediationSlot.start_at) >= since)
    if until is not None:
        where.append(col(MediationSlot.start_at) < until)
    return where


async def list_slots(
    session: AsyncSession,
    *,
    slot_id: int | None = None,
    mediator_id: int | None = None,
    court_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[SlotView]:
    """Slots starting in [since, until), soonest first, with who holds their places."""
    where = _slot_filters(slot_id, mediator_id, court_id, since, until)
    rows = (
        await session.execute(
            select(MediationSlot, Staff, Court)
            .join(Staff, col(Staff.id) == col(MediationSlot.mediator_id))
            .join(Court, col(Court.id) == col(Staff.court_id))
            .where(*where)
            .order_by(col(MediationSlot.start_at), col(Staff.username), col(MediationSlot.id))
        )
    ).all()
    taken: dict[int, list[Taken]] = {}
    for booking, party, case in (
        await session.execute(
            select(Booking, Party, Case)
            .join(MediationSlot, col(MediationSlot.id) == col(Booking.slot_id))
            .join(Staff, col(Staff.id) == col(MediationSlot.mediator_id))
            .join(Case, col(Case.id) == col(Booking.case_id))
            .outerjoin(Party, col(Party.id) == col(Booking.party_id))
            .where(col(Booking.status) == "booked", *where)
            .order_by(col(Booking.id))
        )
    ).all():
        taken.setdefault(booking.slot_id, []).append(Taken(booking, party, case))
    return [
        SlotView(slot, staff, court, taken.get(slot.id or 0, [])) for slot, staff, court in rows
    ]


class SlotChanged(Exception):
    """The slot was booked while it was being removed: roll back and look again."""


@dataclass
class Removal:
    slot_id: int
    # removed | booked (refused: bookings, no force) | too_late (under the cut-off) |
    # not_found | changed (booked while being removed: nothing done; see SlotChanged)
    result: str
    view: SlotView | None = None
    cancelled: tuple[Taken, ...] = ()


async def remove_slot(
    session: AsyncSession, slot_id: int, *, force: bool = False, actor: str = "admin"
) -> Removal:
    """Take a slot away. A slot with live bookings is refused unless `force`, which cancels
    each booking through `cancel` (the parties, the mediator and the judge are told, as
    when a party cancels), and only until the cut-off. A slot no booking ever referred to
    is deleted; one with past or cancelled bookings is kept for their record with
    capacity 0, which nothing can book, list or remind."""
    views = await list_slots(session, slot_id=slot_id)
    if not views:
        return Removal(slot_id, "not_found")
    view = views[0]
    slot = view.slot
    if view.taken and not force:
        return Removal(slot_id, "booked", view)
    if view.taken and not may_change(slot):
        return Removal(slot_id, "too_late", view)
    for taken in view.taken:
        if not await cancel(
            session, taken.booking, taken.case, reason="the court removed the slot", by=actor
        ):
            raise SlotChanged(slot_id)
    history = (
        await session.execute(
            select(col(Booking.id)).where(col(Booking.slot_id) == slot_id).limit(1)
        )
    ).first()
    unbooked = and_(col(MediationSlot.id) == slot_id, col(MediationSlot.booked) == 0)
    if history is None:
        gone = await session.execute(delete(MediationSlot).where(unbooked))
    else:
        gone = await session.execute(update(MediationSlot).where(unbooked).values(capacity=0))
    if cast(CursorResult[Any], gone).rowcount != 1:
        raise SlotChanged(slot_id)  # booked a moment ago
    await audit.append(
        session,
        actor=actor,
        action="mediation.slot_removed",
        subject=f"slot:{slot_id}",
        payload={
            "mediator": view.mediator.username,
            "start_at": view.slot.start_at.isoformat(),
            "cancelled_bookings": [t.booking.id for t in view.taken],
            "kept_for_record": history is not None,
        },
    )
    return Removal(slot_id, "removed", view, tuple(view.taken))
