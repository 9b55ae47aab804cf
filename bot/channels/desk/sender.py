"""What the court tells a party helped at the desk (a `desk:<party>` user).

If the party has bound their own WeChat (or the mini-program) since, the letter is
re-addressed to it, so they hear it on their phone like anyone else. Otherwise it is kept
at the desk (the desk page lists it, with its slip to print) and the staff member who last
helped them is told, in their own WeChat, that an answer is waiting.

The re-addressed copy and the notice are queued in one transaction; if the process stops
before the delivery loop marks this row sent, the row is sent again and the party may hear
it twice: the outbox delivers at least once, never not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core.addresses import DESK, desk_party
from bot.core.masking import mask_name
from bot.outbox import queue as outbox
from bot.outbox.senders import Letter, Refused
from bot.rules import access, desk
from handlers import texts
from storage.db import Database
from storage.models import Outbox, Party, Ticket

FORWARDED = "forwarded"  # re-addressed to the party's own account
KEPT = "desk"  # kept at the desk to print


@dataclass
class DeskSender:
    db: Database
    channel: str = field(default=DESK, init=False)

    async def close(self) -> None:
        return None

    async def send(self, letter: Letter) -> str:
        async with self.db.transaction() as session:
            party = await session.get(Party, desk_party(letter.recipient) or 0)
            row = await session.get(Outbox, letter.id)
            if party is None or row is None:
                raise Refused("no such party at the desk")
            own = await desk.own_wechat(session, party.id or 0)
            if own is not None:
                await outbox.add(
                    session,
                    recipient=own,
                    kind=letter.kind,
                    payload=letter.payload,
                    case_id=row.case_id,
                    ticket_id=row.ticket_id,
                )
                return FORWARDED
            ticket = await session.get(Ticket, row.ticket_id) if row.ticket_id else None
            helper = await desk.last_helper(session, party.id or 0)
            told = access.address_of(helper) if helper is not None else None
            if ticket is not None and told:
                words = texts.DESK_ANSWER_KEPT.format(
                    name=mask_name(party.name), kind=texts.kind_name(ticket.kind), ticket=ticket.id
                )
                await outbox.tell(session, told, words, ticket_id=ticket.id)
            return KEPT
