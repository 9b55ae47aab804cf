"""Notices in words: the rules put a `Notice` (bot.core.notice) in the outbox, and here it
becomes what its reader gets — the template message's title line and the full text, all
from handlers.texts, times in the court's time zone. Senders and pages read an outbox row
through `letter_text`, which reads rows of plain text (a flow's own words) as well."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bot.core import notice
from bot.core.clock import say_time
from bot.core.notice import Notice, Param, Unreadable, moment
from handlers import texts

Params = Mapping[str, Param]


def letter_text(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(title, text) of one outbox row's payload: a notice put into words, or the text a
    flow wrote. The title is the one line a template message leads with. Raises
    `Unreadable` for a notice this version cannot word (a sender tries it again later)."""
    found = Notice.of(payload)
    if found is not None:
        title, text = words(found)
    else:
        title, text = str(payload.get("notice") or ""), str(payload.get("text", ""))
    if payload.get("about_case"):
        text = texts.ABOUT_CASE.format(case_number=payload.get("case_number", "")) + text
    return title or texts.NEW_MESSAGE, text


def words(found: Notice) -> tuple[str, str]:
    """(title, text) of a notice; the title is "" where it has none of its own."""
    try:
        return _WORDS[found.kind](found.params)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, Unreadable):
            raise
        raise Unreadable(f"notice {found.kind!r}: {exc!r}") from exc


# -- params as words ----------------------------------------------------------------------


def _s(params: Params, key: str) -> str:
    value = params[key]
    if isinstance(value, str | int):
        return str(value)
    raise Unreadable(f"{key}: {value!r}")


def _opt(params: Params, key: str) -> str | None:
    return None if params.get(key) is None else _s(params, key)


def _int(params: Params, key: str) -> int:
    value = params[key]
    if isinstance(value, int):
        return value
    raise Unreadable(f"{key}: {value!r}")


def _time(params: Params, key: str) -> str:
    return say_time(moment(params[key]))


def _kind(params: Params) -> str:
    return texts.kind_name(_s(params, "kind"))


# -- tickets ------------------------------------------------------------------------------


def _staff_item(params: Params, head: str) -> str:
    """What staff are told of an item: its head line, the case, who said what."""
    role, name = _opt(params, "party_role"), _opt(params, "party_name")
    who = f"{role}{name or ''}" if role is not None else texts.SOMEONE
    return texts.STAFF_ITEM.format(
        head=head,
        case_number=_s(params, "case_number"),
        who=who,
        text=_s(params, "text"),
        ticket=_s(params, "ticket"),
    )


def _new_for_staff(params: Params) -> tuple[str, str]:
    head = texts.STAFF_ITEM_NEW.format(kind=_kind(params), ticket=_s(params, "ticket"))
    return "", _staff_item(params, head)


def _added_for_staff(params: Params) -> tuple[str, str]:
    return "", _staff_item(params, texts.STAFF_ITEM_ADDED.format(ticket=_s(params, "ticket")))


def _moved_for_staff(params: Params) -> tuple[str, str]:
    head = texts.STAFF_ITEM_MOVED.format(kind=_kind(params), ticket=_s(params, "ticket"))
    reason = texts.move_reason(_s(params, "reason"), _opt(params, "note"))
    why = texts.STAFF_ITEM_MOVED_WHY.format(reason=reason)
    return "", why + _staff_item(params, head)


def _moved_for_party(params: Params) -> tuple[str, str]:
    ticket = _s(params, "ticket")
    holder = texts.say_holder(
        _opt(params, "holder_name"), _opt(params, "holder_role"), _opt(params, "inbox")
    )
    text = texts.ITEM_MOVED.format(kind=_kind(params), ticket=ticket, holder=holder)
    if params.get("due") is not None:
        text += texts.ITEM_MOVED_DUE.format(due=_time(params, "due"))
    else:
        text += texts.ITEM_MOVED_END
    return texts.ITEM_MOVED_TITLE.format(ticket=ticket), text


def _answered(params: Params) -> tuple[str, str]:
    ticket = _s(params, "ticket")
    text = texts.ANSWERED.format(
        title=texts.title_of(_opt(params, "staff_role")),
        name=_s(params, "staff_name"),
        ticket=ticket,
        text=_s(params, "text"),
    )
    return texts.ANSWERED_TITLE.format(ticket=ticket), text


def _closed(params: Params) -> tuple[str, str]:
    ticket = _s(params, "ticket")
    text = texts.RATE_ASK_AFTER_CLOSE.format(kind=_kind(params), ticket=ticket)
    return texts.CLOSED_TITLE.format(ticket=ticket), text


def _warned(params: Params) -> tuple[str, str]:
    return "", texts.STAFF_WARNED.format(
        ticket=_s(params, "ticket"),
        case_number=_s(params, "case_number"),
        due=_time(params, "due"),
    )


def _digest(params: Params) -> tuple[str, str]:
    items = params["items"]
    if isinstance(items, str | int) or items is None:
        raise Unreadable(f"items: {items!r}")
    lines = []
    for item in items:
        line = texts.STAFF_DIGEST_LINE.format(
            ticket=_s(item, "ticket"),
            case_number=_s(item, "case_number"),
            status=texts.status_name(_s(item, "status")),
        )
        if item.get("due") is not None:
            line += texts.STAFF_DIGEST_DUE.format(due=_time(item, "due"))
        lines.append(line)
    return "", texts.STAFF_DIGEST.format(
        name=_s(params, "name"),
        count=_int(params, "count"),
        due_today=_int(params, "due_today"),
        lines="\n".join(lines),
    )


# -- mediation ----------------------------------------------------------------------------


def _mediation(template: str) -> Callable[[Params], tuple[str, str]]:
    """A booking's news to the parties or to the mediator and judge: each param as its
    template names it, times in words."""

    def render(params: Params) -> tuple[str, str]:
        who = _opt(params, "party_role")
        return texts.MEDIATION_TITLE, template.format(
            when=_time(params, "when"),
            was=_time(params, "was") if "was" in params else "",
            name=_opt(params, "mediator") or "",
            link=_opt(params, "link") or "",
            case_number=_opt(params, "case_number") or "",
            who=texts.SOMEONE if who is None else who,
        )

    return render


def _reminder(params: Params) -> tuple[str, str]:
    return texts.REMINDER_TITLE, texts.REMINDER.format(
        day=texts.REMINDER_DAYS[_s(params, "day")],
        when=_time(params, "when"),
        case_number=_s(params, "case_number"),
        link=_s(params, "link"),
    )


# -- enforcement --------------------------------------------------------------------------


def _progress(params: Params) -> tuple[str, str]:
    amount = params.get("amount_cents")
    line = texts.event_line(
        _s(params, "event"),
        moment(params["at"]),
        _int(params, "amount_cents") if amount is not None else None,
        _opt(params, "note"),
    )
    return texts.PROGRESS_NEWS_TITLE, texts.PROGRESS_NEWS.format(
        case_number=_s(params, "case_number"), event=line
    )


_WORDS: dict[str, Callable[[Params], tuple[str, str]]] = {
    notice.TICKET_NEW_FOR_STAFF: _new_for_staff,
    notice.TICKET_ADDED_FOR_STAFF: _added_for_staff,
    notice.TICKET_MOVED_FOR_STAFF: _moved_for_staff,
    notice.TICKET_MOVED_FOR_PARTY: _moved_for_party,
    notice.TICKET_ANSWERED: _answered,
    notice.TICKET_CLOSED: _closed,
    notice.TICKET_WARNED: _warned,
    notice.STAFF_DIGEST: _digest,
    notice.MEDIATION_BOOKED_FOR_PARTY: _mediation(texts.MEDIATION_BOOKED),
    notice.MEDIATION_BOOKED_FOR_STAFF: _mediation(texts.MEDIATION_BOOKED_STAFF),
    notice.MEDIATION_MOVED_FOR_PARTY: _mediation(texts.MEDIATION_MOVED),
    notice.MEDIATION_MOVED_FOR_STAFF: _mediation(texts.MEDIATION_MOVED_STAFF),
    notice.MEDIATION_CANCELLED_FOR_PARTY: _mediation(texts.MEDIATION_CANCELLED),
    notice.MEDIATION_CANCELLED_FOR_STAFF: _mediation(texts.MEDIATION_CANCELLED_STAFF),
    notice.MEDIATION_WITHDRAWN_FOR_PARTY: _mediation(texts.MEDIATION_WITHDRAWN),
    notice.MEDIATION_WITHDRAWN_FOR_STAFF: _mediation(texts.MEDIATION_WITHDRAWN_STAFF),
    notice.MEDIATION_REMINDER: _reminder,
    notice.ENFORCEMENT_PROGRESS: _progress,
}
