"""A notice as data: what happened and to whom it matters, never its words.

The rules decide who is told what (`Notice(kind, params)`) and put it in the outbox; the
words are made where words live (handlers.notices, from handlers.texts) when the notice is
shown or sent. Params are plain JSON: numbers, strings, None, and for a list (the morning
digest's items) a list of such mappings. Times are ISO strings in UTC (`iso`, `moment`);
names are the names themselves, kinds and roles their codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Scalar = str | int | None
Param = Scalar | Sequence[Mapping[str, Scalar]]

# Every kind of notice the rules send, by a stable dotted name (stored in outbox rows:
# a name once used keeps its meaning and its params).
TICKET_NEW_FOR_STAFF = "ticket.new_for_staff"
TICKET_ADDED_FOR_STAFF = "ticket.added_for_staff"
TICKET_MOVED_FOR_STAFF = "ticket.moved_for_staff"
TICKET_MOVED_FOR_PARTY = "ticket.moved_for_party"
TICKET_ANSWERED = "ticket.answered"
TICKET_CLOSED = "ticket.closed"
TICKET_WARNED = "ticket.warned"
STAFF_DIGEST = "staff.digest"
MEDIATION_BOOKED_FOR_PARTY = "mediation.booked_for_party"
MEDIATION_BOOKED_FOR_STAFF = "mediation.booked_for_staff"
MEDIATION_MOVED_FOR_PARTY = "mediation.moved_for_party"
MEDIATION_MOVED_FOR_STAFF = "mediation.moved_for_staff"
MEDIATION_CANCELLED_FOR_PARTY = "mediation.cancelled_for_party"
MEDIATION_CANCELLED_FOR_STAFF = "mediation.cancelled_for_staff"
MEDIATION_WITHDRAWN_FOR_PARTY = "mediation.withdrawn_for_party"
MEDIATION_WITHDRAWN_FOR_STAFF = "mediation.withdrawn_for_staff"
MEDIATION_REMINDER = "mediation.reminder"
ENFORCEMENT_PROGRESS = "enforcement.progress"

KINDS = frozenset(
    {
        TICKET_NEW_FOR_STAFF,
        TICKET_ADDED_FOR_STAFF,
        TICKET_MOVED_FOR_STAFF,
        TICKET_MOVED_FOR_PARTY,
        TICKET_ANSWERED,
        TICKET_CLOSED,
        TICKET_WARNED,
        STAFF_DIGEST,
        MEDIATION_BOOKED_FOR_PARTY,
        MEDIATION_BOOKED_FOR_STAFF,
        MEDIATION_MOVED_FOR_PARTY,
        MEDIATION_MOVED_FOR_STAFF,
        MEDIATION_CANCELLED_FOR_PARTY,
        MEDIATION_CANCELLED_FOR_STAFF,
        MEDIATION_WITHDRAWN_FOR_PARTY,
        MEDIATION_WITHDRAWN_FOR_STAFF,
        MEDIATION_REMINDER,
        ENFORCEMENT_PROGRESS,
    }
)

# An outbox row holding a notice: payload {NOTICE_KIND: kind, PARAMS: {...}, ...}.
NOTICE_KIND = "notice_kind"
PARAMS = "params"


class Unreadable(ValueError):
    """A stored notice this code cannot put into words (a kind it does not know, params
    it cannot read): written by another version. A sender tries it again later."""


@dataclass(frozen=True)
class Notice:
    kind: str
    params: Mapping[str, Param]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise Unreadable(f"unknown notice kind {self.kind!r}")

    def payload(self) -> dict[str, Any]:
        """How an outbox row stores it (plain JSON)."""
        return {
            NOTICE_KIND: self.kind,
            PARAMS: {
                key: [dict(item) for item in value]
                if not isinstance(value, str | int | None)
                else value
                for key, value in self.params.items()
            },
        }

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Notice | None:
        """The notice an outbox row's payload holds; None for a row of plain text."""
        if NOTICE_KIND not in payload:
            return None
        params = payload.get(PARAMS)
        if not isinstance(params, Mapping):
            raise Unreadable(f"notice {payload[NOTICE_KIND]!r} without params")
        return cls(str(payload[NOTICE_KIND]), params)


def iso(moment: datetime | None) -> str | None:
    """A moment as a notice keeps it: ISO 8601 in UTC (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def moment(value: Param) -> datetime:
    """A time a notice kept (`iso`), as an aware datetime."""
    if not isinstance(value, str):
        raise Unreadable(f"not a time: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Unreadable(f"not a time: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
