"""The console's service desk page (`/console/desk`): help a person who is at the desk
(陪诉访导, bot.rules.desk).

Look the case up by its number; choose the party (names masked); see their ID, type the
last four digits of the phone they state, read the consent statement aloud and tick that
they accepted. While the session is open the page acts for that party only: a chat box that
is the chat itself (every flow: ask, add, complain, book, progress, rate) and a form to ask
a question directly; their items with a slip to print; the answers kept at the desk for
people without WeChat. Everything goes through bot.dialog (as the party, recorded as the
assistant's, with the consent); this page never writes a rule's rows itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.channels.webconsole import auth, desk_words, pages, words
from bot.core.clock import say_time
from bot.core.masking import mask_name
from bot.core.reply import as_text
from bot.dialog import dispatch, forms
from bot.dialog.deps import Deps
from bot.rules import desk, portal
from handlers import texts
from storage import audit
from storage.models import Case, DeskSession, Message, Party, Staff

TRANSCRIPT = 12  # the last lines of the party's chat shown on the page


def _refuse_unless_desk(request: web.Request, me: pages.Me) -> None:
    if not desk.may_help(me.staff):
        raise pages.refusal(
            request,
            web.HTTPForbidden,
            desk_words.ONLY_TITLE,
            desk_words.ONLY,
            link=(words.BACK_INBOX, "/console"),
        )


async def _signed_in(request: web.Request, session: AsyncSession) -> pages.Me:
    me = await pages._me(request, session)
    if me is None:
        raise pages._to_login(request)
    _refuse_unless_desk(request, me)
    return me


async def _case(session: AsyncSession, me: pages.Me, number: str) -> Case | None:
    """A case of the staff member's own court, by its number."""
    return (
        await session.execute(
            select(Case).where(
                col(Case.court_id) == me.staff.court_id, col(Case.case_number) == number
            )
        )
    ).scalar_one_or_none()


async def page(request: web.Request) -> web.StreamResponse:
    deps = pages._deps(request)
    asked = request.query.get("case", "").strip()[:64]
    settings = deps.settings
    context: dict[str, Any] = {"asked": asked, "case": None, "parties": [], "none": False}
    async with deps.db.transaction() as session:
        me = await _signed_in(request, session)
        current = await desk.open_for(session, me.staff.id or 0)
        if current is not None:
            context["current"] = await _current(session, current, settings)
        else:
            context["current"] = None
            found = await _case(session, me, asked) if asked else None
            context["none"] = bool(asked) and found is None
            if found is not None:
                judge = await session.get(Staff, found.judge_id) if found.judge_id else None
                context["case"] = found
                context["judge"] = judge.name if judge else "—"
                context["parties"] = [
                    {"id": p.id, "role": p.role, "name": mask_name(p.name), "phone": p.phone_masked}
                    for p in await desk.parties_of(session, found)
                ]
                await audit.append(
                    session,
                    actor=desk.actor_of(me.staff),
                    action="console.desk_lookup",
                    subject=f"case:{found.id}",
                    case_id=found.id,
                    payload={"address": pages._address(request)},
                )
        kept = await desk.kept_at_desk(session, me.staff.court_id)
    context["kept"] = [
        {
            "at": say_time(k.letter.sent_at or k.letter.created_at),
            "party": f"{k.party.role} {mask_name(k.party.name)}",
            "case_number": k.case.case_number,
            "ticket": k.ticket.id if k.ticket else None,
            "slip": desk.slip_link("", settings.secret_key, k.ticket.id or 0) if k.ticket else None,
        }
        for k in kept
    ]
    return pages.render(
        request,
        "desk.html",
        title=desk_words.TITLE,
        nav="desk",
        d=desk_words,
        statement=desk.CONSENT_STATEMENT,
        said=await auth.take_flash(deps.redis, me.token),
        **context,
        **pages._me_context(request, me),
    )


async def _current(session: AsyncSession, current: DeskSession, settings: Any) -> dict[str, Any]:
    """The open session as the page shows it: whom, which case, their items, the chat."""
    party = await session.get_one(Party, current.party_id)
    case = await session.get_one(Case, current.case_id)
    items = await portal.items(session, current.user, case.id)
    lines = (
        await session.execute(
            select(Message)
            .where(col(Message.openid) == current.user)
            .order_by(col(Message.id).desc())
            .limit(TRANSCRIPT)
        )
    ).scalars()
    return {
        "party": f"{party.role} {mask_name(party.name)}",
        "case_number": case.case_number,
        "since": say_time(current.started_at),
        "items": [
            {
                "number": v.ticket.id,
                "kind": texts.kind_name(v.ticket.kind),
                "status": texts.status_name(v.ticket.status),
                "holder": texts.holder_words(v.ticket, v.holder),
                "due": texts.due_words(v.ticket) if v.ticket.status == "open" else "",
                "helper": texts.SUBMITTED_BY_STAFF.format(name=v.helper) if v.helper else "",
                "slip": desk.slip_link("", settings.secret_key, v.ticket.id or 0),
            }
            for v in items
        ],
        "transcript": [
            {"mine": m.direction == "in", "text": m.content or texts.unsaid(m.msg_type)}
            for m in reversed(list(lines))
        ],
    }


async def start(request: web.Request) -> web.StreamResponse:
    deps = pages._deps(request)
    form = await pages._session_form(request)
    try:
        said, back = await _start(request, deps, form)
    except IntegrityError:  # another desk opened for this person at the same moment
        said, back = texts.desk_refused("taken"), f"?case={quote(form.get('case', '')[:64])}"
    await auth.flash(deps.redis, request.cookies.get(auth.COOKIE, ""), said)
    raise pages.see(f"/console/desk{back}")


async def _start(request: web.Request, deps: Deps, form: dict[str, str]) -> tuple[str, str]:
    async with deps.db.transaction() as session:
        me = await _signed_in(request, session)
        case = await _case(session, me, form.get("case", "").strip()[:64])
        party = form.get("party", "")
        if case is None or not party.isdigit():
            raise pages.not_found(request)
        started = await desk.start(
            session,
            me.staff,
            case,
            int(party),
            digits=form.get("digits", "")[:8],
            id_checked=form.get("id_checked") == "1",
            consent=form.get("consent") == "1",
            via="console",
        )
        if started.desk is not None:
            said = desk_words.STARTED
        else:
            said = texts.desk_refused(started.refused or "role", started.helper)
    return said, "" if started.desk is not None else f"?case={quote(case.case_number)}"


async def _act(
    request: web.Request,
    text: str,
    action: str | None = None,
    fields: dict[str, int | str] | None = None,
) -> web.StreamResponse:
    """One turn for the party, in the staff member's open session; its answer is flashed.
    An app form (`action`) is about the session's case."""
    deps = pages._deps(request)
    async with deps.db.transaction() as session:
        me = await _signed_in(request, session)
        current = await desk.open_for(session, me.staff.id or 0)
    if current is None:
        said = desk_words.NOT_OPEN
    else:
        if action is not None:
            fields = {"case": current.case_id, **(fields or {})}
        try:
            reply = await forms.at_desk(
                deps,
                desk=current.id or 0,
                staff=me.staff.username,
                user=current.user,
                text=text,
                action=action,
                fields=fields,
            )
            said = as_text(reply) if reply is not None else desk_words.NOT_THEIRS
        except dispatch.DeskClosed:
            said = texts.DESK_CLOSED
        except dispatch.Duplicate:
            said = desk_words.ALREADY
    deps.wakeup.set()
    await auth.flash(deps.redis, me.token, said)
    raise pages.see("/console/desk")


async def say(request: web.Request) -> web.StreamResponse:
    """A line of the party's chat, said by the assistant for them."""
    form = await pages._session_form(request)
    text = form.get("text", "").strip()[:2000]
    if not text:
        raise pages.see("/console/desk")
    return await _act(request, text)


async def ask(request: web.Request) -> web.StreamResponse:
    """A question for the judge, written down as the person says it."""
    form = await pages._session_form(request)
    text = form.get("text", "").strip()[:2000]
    if not text:
        raise pages.see("/console/desk")
    return await _act(request, text, action="open", fields={"kind": "question"})


async def end(request: web.Request) -> web.StreamResponse:
    deps = pages._deps(request)
    await pages._session_form(request)
    async with deps.db.transaction() as session:
        me = await _signed_in(request, session)
        current = await desk.open_for(session, me.staff.id or 0)
        ended = current is not None and await desk.end(session, current, me.staff)
    await auth.flash(deps.redis, me.token, desk_words.ENDED if ended else desk_words.NOT_OPEN)
    raise pages.see("/console/desk")


ROUTES: list[tuple[str, str, pages.Handler]] = [
    ("GET", "/console/desk", page),
    ("POST", "/console/desk/start", start),
    ("POST", "/console/desk/say", say),
    ("POST", "/console/desk/ask", ask),
    ("POST", "/console/desk/end", end),
]


def setup_desk(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, pages._guarded(handler))
