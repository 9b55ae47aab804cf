"""The staff web console: `/console`. Signing in, the inbox, an item, the service desk.

Server-rendered (aiohttp-jinja2, its own template environment), no JavaScript, no CDN.
Every response under /console carries a Content-Security-Policy that allows only our own
files (the CSS is a file served here), `nosniff`, and `no-store`. Every form carries a
token (bot.channels.webconsole.auth); a form without the right one is refused (403) before
anything is read into the rules.

What a staff member sees and may do comes from bot.rules.access alone, through the same
calls as the chat's 待办 and `#n` (handlers.judge): `access.visible` for listings,
`may_see` / `may_act` / `may_transfer` for an item. An item they may not see is "not
found", exactly as one that does not exist. Answers, closing, claims, transfers and
escalations are the chat's own rules (tickets.answer, tickets.close, escalation.claim,
escalation.transfer, escalation.escalate_now), so the litigant hears of them through the
same outbox, and the record names the staff member.

The address a sign-in is counted and recorded under is the peer's, or, when the peer is one
of our own reverse proxies (MST_CONSOLE_TRUSTED_PROXIES), the client its X-Forwarded-For
names (`client_address`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from redis.exceptions import RedisError
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.channels import pages as shared
from bot.channels.webconsole import auth, words
from bot.core.clock import now, say_time
from bot.core.masking import mask_name
from bot.core.settings import ConsoleSettings
from bot.core.text import gist
from bot.dialog.deps import DEPS, Deps
from bot.rules import access, escalation, history, media, staff_auth, tickets
from bot.rules import desk as desk_rules
from bot.rules import staff as staff_accounts
from handlers import texts
from handlers.complain import ABOUT
from storage import audit, state
from storage.models import Case, Court, Message, Party, Staff, Ticket

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = web.AppKey("webconsole_templates", jinja2.Environment)
READY = web.AppKey("webconsole_ready", bool)
# argon2 takes 64 MiB and a quarter of a second a password: a few at a time, in threads.
HASHING = web.AppKey("webconsole_hashing", asyncio.Semaphore)
HASHING_AT_ONCE = 2
CSP = shared.CSP
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
TEXT_MAX = 2000
REASON_MAX = 200
LIST_MAX = 200  # items on one page of the inbox
PAGES_MAX = 10_000  # a page number past this is taken as the first (no huge OFFSET)
GIST = 40  # characters of an item's opening words in the inbox
SOON = timedelta(hours=4)  # in working time: the inbox's "due soon" colour
_ID = re.compile(r"[1-9][0-9]{0,8}")  # ids are 32-bit integers in PostgreSQL
STYLE = shared.StyleSheet.load(HERE / "static" / "console.css", "/console/static/console.css")
STYLE_URL = STYLE.url
# A complaint's subject, in the chat's own words for it.
ABOUTS = {ABOUT[c.key]: c.label for c in texts.COMPLAIN_ABOUT_CHOICES if c.key in ABOUT}
# What a page after a redirect may say: fixed words named in the query, nothing a user wrote.
NOTES = {
    "signed_out": words.SIGNED_OUT,
    "ended": words.SESSION_ENDED,
    "password_set": words.PASSWORD_SET,
    "code_expired": words.CODE_EXPIRED,
}


def _deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        found = ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket names an IPv4 peer as ::ffff:a.b.c.d: the same address.
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def client_address(remote: str | None, forwarded: Sequence[str], console: ConsoleSettings) -> str:
    """The address a request came from, for the lockout and the record: the peer's own, or,
    when the peer is a trusted proxy, the last address in X-Forwarded-For that is not one
    of ours (read from the right: each of our proxies appends the address it was reached
    from, while anything to the left of that is whatever the client wrote). An entry that is
    not an address stops the walk at the proxy that passed it on."""
    peer = _ip(remote or "")
    if peer is None or not console.trusts(peer):
        return remote or "-"
    hops = [h for line in forwarded for h in line.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        found = _ip(hop)
        if found is None:
            break
        client = found
        if not console.trusts(found):
            break
    return str(client)


def _address(request: web.Request) -> str:
    return client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        _deps(request).settings.console,
    )


# -- the request's staff member ----------------------------------------------------------------


@dataclass(frozen=True)
class Me:
    token: str  # the cookie's value: only here, never stored
    staff: Staff
    viewer: access.Viewer
    court: Court | None

    @property
    def desk(self) -> bool:
        return desk_rules.may_help(self.staff)  # who works the service desk: bot.rules.desk


async def _me(request: web.Request, session: AsyncSession) -> Me | None:
    token = request.cookies.get(auth.COOKIE, "")

    async def staff_of(staff_id: int) -> Staff | None:
        return await session.get(Staff, staff_id)

    found = await auth.find(_deps(request).redis, token, staff_of)
    if found is None:
        return None
    staff = found[1]
    court = await session.get(Court, staff.court_id)
    return Me(token, staff, await access.viewer(session, staff), court)


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    ended = "?m=ended" if request.cookies.get(auth.COOKIE) else ""
    found = web.HTTPSeeOther(f"/console/login{ended}", headers=PRIVATE)
    if ended:
        auth.clear_cookie(found, auth.COOKIE)
    return found


async def _form(request: web.Request) -> dict[str, str]:
    raw: MultiDictProxy[Any] = await request.post()
    return {k: v for k, v in raw.items() if isinstance(v, str)}


async def _session_form(request: web.Request) -> dict[str, str]:
    """A form sent from a page of the live session: its token must be the session's. Else
    403 and nothing is read further (nothing changes)."""
    form = await _form(request)
    token = request.cookies.get(auth.COOKIE, "")
    if not auth.form_token_ok(_deps(request).settings.secret_key, token, form.get("csrf", "")):
        raise expired(request)
    return form


def _pre_form_ok(request: web.Request, form: Mapping[str, str]) -> bool:
    pre = request.cookies.get(auth.PRE_COOKIE, "")
    return auth.form_token_ok(
        _deps(request).settings.secret_key, pre, form.get("csrf", ""), purpose="pre"
    )


# -- rendering -----------------------------------------------------------------------------


def _context(context: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "w": words,
        "css": STYLE_URL,
        "me": None,
        "csrf": "",
        "said": None,
        "title": "",
        "nav": "",
    }
    return {**base, **context}


def _me_context(request: web.Request, me: Me) -> dict[str, Any]:
    secret = _deps(request).settings.secret_key
    return {"me": me, "csrf": auth.form_token(secret, me.token)}


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, _context(context), app_key=TEMPLATES, status=status
    )
    response.headers.update(PRIVATE)
    return response


def refusal(
    request: web.Request,
    kind: type[web.HTTPException],
    title: str,
    text: str,
    *,
    link: tuple[str, str] | None = None,
) -> web.HTTPException:
    """A page that says plainly what went wrong and what to do, as an exception to raise."""
    body = aiohttp_jinja2.render_string(
        "notice.html",
        request,
        _context({"title": title, "text": text, "link": link}),
        app_key=TEMPLATES,
    )
    return kind(text=body, content_type="text/html", headers=PRIVATE)


def not_found(request: web.Request) -> web.HTTPException:
    """The one answer for an item that does not exist and one the reader may not see."""
    return refusal(
        request,
        web.HTTPNotFound,
        words.NOT_FOUND_TITLE,
        words.NOT_FOUND,
        link=(words.BACK_INBOX, "/console"),
    )


def expired(request: web.Request) -> web.HTTPException:
    return refusal(
        request,
        web.HTTPForbidden,
        words.FORM_EXPIRED_TITLE,
        words.FORM_EXPIRED,
        link=(words.BACK_INBOX, "/console"),
    )


def see(path: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(path, headers=PRIVATE)


def _number(request: web.Request) -> int:
    value = request.match_info["number"]
    if not _ID.fullmatch(value):
        raise not_found(request)
    return int(value)


# -- signing in ----------------------------------------------------------------------------


def _pre_token(request: web.Request) -> tuple[str, bool]:
    """The browser's sign-in form cookie, or a new one (True: to be set)."""
    pre = request.cookies.get(auth.PRE_COOKIE, "")
    if 20 <= len(pre) <= 100:
        return pre, False
    return auth.new_pre_token(), True


def _login_page(
    request: web.Request, *, said: str | None = None, status: int = 200, username: str = ""
) -> web.Response:
    pre, fresh = _pre_token(request)
    secret = _deps(request).settings.secret_key
    response = render(
        request,
        "login.html",
        status=status,
        title=words.LOGIN_TITLE,
        pre_csrf=auth.form_token(secret, pre, purpose="pre"),
        said=said,
        username=username,
        # WeCom's sign-in (bot.channels.webconsole.wecom_signin), when the court has WeCom.
        wecom_login=texts.WECOM_LOGIN_BUTTON if _deps(request).settings.wecom else None,
    )
    if fresh:
        auth.set_cookie(response, auth.PRE_COOKIE, pre, auth.PRE_TTL)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    if request.cookies.get(auth.COOKIE):
        async with deps.db.sessions() as session:
            if await _me(request, session) is not None:
                raise see("/console")
    return _login_page(request, said=NOTES.get(request.query.get("m", "")))


async def _check_password(request: web.Request, staff: Staff | None, password: str) -> bool:
    async with request.app[HASHING]:
        return await asyncio.to_thread(staff_auth.password_ok, staff, password)


async def _failed(
    session: AsyncSession,
    staff: Staff | None,
    username: str,
    address: str,
    tries: staff_auth.Tries,
    reason: str,
) -> bool:
    """A wrong password or code: counted, and recorded without what was typed. An unknown
    name is not written down either (people type their password there by mistake). True:
    this try used up the last one."""
    await staff_auth.record_failure(session, username, address)
    locked = staff_auth.Tries(tries.account + 1, tries.address + 1).blocked()
    await audit.append(
        session,
        actor=f"staff:{staff.username}" if staff else "console",
        action="console.sign_in_failed",
        subject=f"staff:{staff.username}" if staff else "",
        payload={"reason": reason, "address": address, "locked": locked},
    )
    return locked


async def _signed_in(
    request: web.Request,
    session: AsyncSession,
    staff: Staff,
    *,
    second_factor: bool,
    via: str | None = None,
) -> web.HTTPSeeOther:
    """The sign-in succeeded: a session, its cookie, the record (`via`: not a password)."""
    staff.signed_in_at = now()
    session.add(staff)
    payload: dict[str, Any] = {"address": _address(request), "second_factor": second_factor}
    if via is not None:
        payload["via"] = via
    await audit.append(
        session,
        actor=f"staff:{staff.username}",
        action="console.signed_in",
        subject=f"staff:{staff.username}",
        payload=payload,
    )
    token = await auth.start(_deps(request).redis, staff)
    found = see("/console")
    auth.set_cookie(found, auth.COOKIE, token)
    return found


async def signed_in_by(
    request: web.Request, session: AsyncSession, staff: Staff, via: str
) -> web.HTTPSeeOther:
    """A sign-in another channel vouched for (WeCom's: bot.channels.webconsole.wecom_signin): the
    session, cookie and record a password's makes; raise it after the commit."""
    return await _signed_in(request, session, staff, second_factor=False, via=via)


def address_of(request: web.Request) -> str:
    """The address a sign-in is recorded under (see `client_address`)."""
    return _address(request)


async def login(request: web.Request) -> web.StreamResponse:
    """Name and password; then, when the account has TOTP on, the code (`login_code`).
    One password is checked per account name at a time; locked accounts and addresses are
    refused before their password is looked at. A refusal while locked is not written to
    the audit log (that it locked is): a guesser could otherwise fill the log."""
    form = await _form(request)
    if not _pre_form_ok(request, form):
        raise expired(request)
    deps = _deps(request)
    username = form.get("username", "").strip()[:64]
    password = form.get("password", "")
    address = _address(request)
    if not username or not password:
        return _login_page(request, said=words.LOGIN_FAILED, status=401, username=username)
    lock = f"console-sign-in:{auth.digest(username)}"
    async with state.try_lock(deps.redis, lock, timeout_s=10) as got:
        if not got:
            return _login_page(request, said=words.BUSY, status=429, username=username)
        async with deps.db.sessions() as session:
            staff = await staff_accounts.by_username(session, username)
            tries = await staff_auth.tries(
                session, username, address, since=staff.signed_in_at if staff else None
            )
        if tries.blocked():
            return _login_page(request, said=words.LOCKED, status=429, username=username)
        right = await _check_password(request, staff, password)
        async with deps.db.transaction() as session:
            if not right or staff is None:
                reason = "wrong_password" if staff else "unknown_user"
                locked = await _failed(session, staff, username, address, tries, reason)
                said = words.LOCKED if locked else words.LOGIN_FAILED
                return _login_page(request, said=said, status=401, username=username)
            staff = await session.get_one(Staff, staff.id)
            if staff.totp_secret:
                pending = await auth.start_pending(deps.redis, staff)
                found = see("/console/login/code")
                auth.set_cookie(found, auth.PENDING_COOKIE, pending, auth.PENDING_TTL)
            else:
                found = await _signed_in(request, session, staff, second_factor=False)
    raise found  # after the commit: raised inside the transaction it would roll back


def _code_page(request: web.Request, *, said: str | None = None, status: int = 200) -> web.Response:
    pre, fresh = _pre_token(request)
    response = render(
        request,
        "code.html",
        status=status,
        title=words.CODE_TITLE,
        pre_csrf=auth.form_token(_deps(request).settings.secret_key, pre, purpose="pre"),
        said=said,
    )
    if fresh:
        auth.set_cookie(response, auth.PRE_COOKIE, pre, auth.PRE_TTL)
    return response


async def login_code_page(request: web.Request) -> web.StreamResponse:
    pending = request.cookies.get(auth.PENDING_COOKIE, "")
    if await auth.pending(_deps(request).redis, pending) is None:
        raise see("/console/login?m=code_expired")
    return _code_page(request)


async def login_code(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if not _pre_form_ok(request, form):
        raise expired(request)
    deps = _deps(request)
    pending = request.cookies.get(auth.PENDING_COOKIE, "")
    staff_id = await auth.pending(deps.redis, pending)
    if staff_id is None:
        raise see("/console/login?m=code_expired")
    code = form.get("code", "").strip()
    address = _address(request)
    async with deps.db.transaction() as session:
        staff = await session.get(Staff, staff_id)
        if staff is None or not staff.active or not staff.totp_secret:
            await auth.end_pending(deps.redis, pending)
            raise see("/console/login?m=code_expired")
        tries = await staff_auth.tries(session, staff.username, address, since=staff.signed_in_at)
        if tries.blocked():
            await auth.end_pending(deps.redis, pending)
            return _login_page(request, said=words.LOCKED, status=429)
        secret_key = deps.settings.secret_key
        if staff_auth.seal_totp(staff, secret_key):  # one kept in clear before: sealed now
            session.add(staff)
        if not staff_auth.totp_ok(staff, code, secret_key=secret_key) or await auth.code_used(
            deps.redis, staff_id, code
        ):
            if await _failed(session, staff, staff.username, address, tries, "wrong_code"):
                await auth.end_pending(deps.redis, pending)
                return _login_page(request, said=words.LOCKED, status=401)
            return _code_page(request, said=words.CODE_WRONG, status=401)
        await auth.end_pending(deps.redis, pending)
        found = await _signed_in(request, session, staff, second_factor=True)
        auth.clear_cookie(found, auth.PENDING_COOKIE)
    raise found  # after the commit


async def logout(request: web.Request) -> web.StreamResponse:
    await _session_form(request)
    deps = _deps(request)
    async with deps.db.transaction() as session:
        me = await _me(request, session)
        if me is not None:
            await auth.end(deps.redis, me.token)
            await audit.append(
                session,
                actor=f"staff:{me.staff.username}",
                action="console.signed_out",
                subject=f"staff:{me.staff.username}",
                payload={"address": _address(request)},
            )
    found = see("/console/login?m=signed_out")
    auth.clear_cookie(found, auth.COOKIE)
    raise found


# -- the set-up link -------------------------------------------------------------------------


def _setup_page(
    request: web.Request, staff: Staff, *, said: str | None = None, status: int = 200
) -> web.Response:
    pre, fresh = _pre_token(request)
    response = render(
        request,
        "setup.html",
        status=status,
        title=words.SETUP_TITLE,
        pre_csrf=auth.form_token(_deps(request).settings.secret_key, pre, purpose="pre"),
        said=said,
        who=words.SETUP_FOR.format(name=staff.name, username=staff.username),
        minimum=staff_auth.PASSWORD_MIN,
    )
    if fresh:
        auth.set_cookie(response, auth.PRE_COOKIE, pre, auth.PRE_TTL)
    return response


def _setup_gone(request: web.Request) -> web.HTTPException:
    return refusal(
        request,
        web.HTTPNotFound,
        words.SETUP_BAD_TITLE,
        words.SETUP_BAD,
        link=(words.LOGIN_BUTTON, "/console/login"),
    )


async def setup_page(request: web.Request) -> web.StreamResponse:
    async with _deps(request).db.sessions() as session:
        staff = await staff_auth.by_setup_token(session, request.match_info["token"])
    if staff is None:
        raise _setup_gone(request)
    return _setup_page(request, staff)


async def setup_password(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    if not _pre_form_ok(request, form):
        raise expired(request)
    deps = _deps(request)
    token = request.match_info["token"]
    async with deps.db.sessions() as session:
        staff = await staff_auth.by_setup_token(session, token)
    if staff is None:
        raise _setup_gone(request)
    password = form.get("password", "")
    if password != form.get("again", ""):
        return _setup_page(request, staff, said=words.PASSWORD_ERRORS["mismatch"], status=400)
    try:
        staff_auth.check_new(password, staff.username)
    except staff_auth.PasswordError as exc:
        return _setup_page(request, staff, said=words.PASSWORD_ERRORS[exc.code], status=400)
    async with request.app[HASHING]:
        hashed = await asyncio.to_thread(staff_auth.hash_password, password)
    async with deps.db.transaction() as session:
        staff = await staff_auth.by_setup_token(session, token)  # still unused: one use only
        if staff is None:
            raise _setup_gone(request)
        await staff_auth.set_password(session, staff, hashed, actor=f"staff:{staff.username}")
    raise see("/console/login?m=password_set")


# -- the inbox -------------------------------------------------------------------------------


def views_for(staff: Staff) -> list[str]:
    """The inbox's ranges a staff member's roles give them."""
    shown = ["all", "mine"]
    if any(staff.has_role(r) for r in access.INBOX_ROLES):
        shown.append("unclaimed")
    if any(staff.has_role(r) for r in access.COMPLAINT_INBOXES):
        shown.append("complaints")
    if staff.has_role("leader") and staff.team:
        shown.append("team")
    return shown


def _due(deps: Deps, t: Ticket) -> tuple[str, str]:
    """The first reply's deadline as the inbox shows it, and its colour: overdue, soon, ''."""
    if t.first_reply_at is not None:
        return words.REPLIED, ""
    if t.holder_due_at is None or t.status == "closed":
        return words.NO_DUE, ""
    moment = now()
    said = say_time(t.holder_due_at)
    if t.holder_due_at <= moment:
        return said, "overdue"
    if t.holder_due_at - moment > timedelta(days=14):
        return said, ""  # far off: no need to count the working hours to it
    minutes = deps.rules.deadlines.working_minutes_between(moment, t.holder_due_at)
    return said, "soon" if minutes <= SOON.total_seconds() // 60 else ""


def _holder(t: Ticket, people: Mapping[int | None, Staff]) -> str:
    holder = people.get(t.assignee_id) if t.assignee_id else None
    if holder is not None:
        return f"{texts.staff_title(holder)}{holder.name}"
    team = t.team or tickets.TEAM_NAMES.get(t.inbox or "", "")
    return f"{team}（{words.RELATIONS['unclaimed']}）" if t.inbox else team


def _relation(me: Me, t: Ticket) -> str:
    how = access.relation(me.viewer, t) or ""
    return "unclaimed" if how == "inbox" and t.assignee_id is None else how


async def _people(session: AsyncSession, ids: set[int | None]) -> dict[int | None, Staff]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = (await session.execute(select(Staff).where(col(Staff.id).in_(wanted)))).scalars()
    return {s.id: s for s in rows}


async def _first_words(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    """Each item's opening words (the litigant's first message filed under it), one query
    for the whole list."""
    if not ids:
        return {}
    first = (
        select(func.min(col(Message.id)))
        .where(col(Message.ticket_id).in_(ids), col(Message.direction) == "in")
        .group_by(col(Message.ticket_id))
    )
    rows = await session.execute(
        select(col(Message.ticket_id), col(Message.content), col(Message.msg_type)).where(
            col(Message.id).in_(first)
        )
    )
    return {
        ticket_id: gist(content or texts.unsaid(kind), GIST)
        for ticket_id, content, kind in rows.all()
        if ticket_id is not None
    }


async def _parties(session: AsyncSession, ids: set[int | None]) -> dict[int | None, Party]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = (await session.execute(select(Party).where(col(Party.id).in_(wanted)))).scalars()
    return {p.id: p for p in rows}


def _party_words(party: Party | None) -> str:
    return f"{party.role}{mask_name(party.name)}" if party else texts.A_PARTY


async def inbox_rows(
    session: AsyncSession,
    deps: Deps,
    me: Me,
    *,
    status: str,
    view: str,
    query: str,
    page: int = 1,
) -> tuple[list[dict[str, Any]], bool]:
    """One page (LIST_MAX items) of what the inbox lists, by when their first reply is due
    (those owed one first), and whether a further page follows. Only ever within
    access.visible. Pages are counted by offset: an item that moves between two pages'
    reads may show twice or be skipped, which the next read puts right."""
    where: list[Any] = [access.visible(me.viewer)]
    if status == "todo":
        where.append(col(Ticket.status) != "closed")
    elif status in ("open", "answered", "closed"):
        where.append(col(Ticket.status) == status)
    mine = {me.viewer.id} | me.viewer.supports
    if view == "mine":
        where.append(col(Ticket.assignee_id).in_(mine))
    elif view == "unclaimed":
        where += [col(Ticket.assignee_id).is_(None), col(Ticket.inbox).is_not(None)]
    elif view == "complaints":
        where.append(col(Ticket.kind) == "complaint")
    elif view == "team":
        where += [col(Ticket.inbox).is_(None), col(Ticket.team) == me.staff.team]
    number = query.removeprefix("#").removeprefix("＃").strip()
    if _ID.fullmatch(number) and query.startswith(("#", "＃")):
        where.append(col(Ticket.id) == int(number))
    elif _ID.fullmatch(number):
        where.append(
            (col(Ticket.id) == int(number))
            | col(Case.case_number).contains(number, autoescape=True)
        )
    elif query:
        where.append(col(Case.case_number).contains(query, autoescape=True))
    rows = (
        await session.execute(
            select(Ticket, Case)
            .join(Case, col(Case.id) == col(Ticket.case_id))
            .where(*where)
            .order_by(
                case((col(Ticket.status) == "closed", 1), else_=0),
                case((col(Ticket.first_reply_at).is_(None), 0), else_=1),
                case((col(Ticket.holder_due_at).is_(None), 1), else_=0),
                col(Ticket.holder_due_at),
                col(Ticket.id),
            )
            .offset((page - 1) * LIST_MAX)
            .limit(LIST_MAX + 1)
        )
    ).all()
    more = len(rows) > LIST_MAX
    found = [(t, c) for t, c in rows[:LIST_MAX]]
    people = await _people(session, {t.assignee_id for t, _ in found})
    parties = await _parties(session, {t.party_id for t, _ in found})
    said = await _first_words(session, [t.id for t, _ in found if t.id is not None])
    listed = []
    for t, c in found:
        due, colour = _due(deps, t)
        relation = _relation(me, t)
        listed.append(
            {
                "id": t.id,
                "kind": texts.kind_name(t.kind),
                "case_number": c.case_number,
                "said": said.get(t.id or 0, ""),
                "party": _party_words(parties.get(t.party_id)),
                "status": t.status,
                "status_name": texts.status_name(t.status),
                "holder": _holder(t, people),
                "due": due,
                "colour": colour,
                "relation": words.RELATIONS.get(relation, ""),
                "claim": access.may_act(me.viewer, t, "claim") and t.status != "closed",
            }
        )
    return listed, more


def _page(request: web.Request) -> int:
    raw = request.query.get("page", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= PAGES_MAX else 1


def _pager(view: str, status: str, query: str, page: int, more: bool, shown: int) -> dict[str, Any]:
    """The links to the pages either side, keeping the range, status and search."""

    def link(n: int) -> str:
        params = {"view": view, "status": status, **({"q": query} if query else {})}
        return "/console?" + urlencode({**params, **({"page": str(n)} if n > 1 else {})})

    first = (page - 1) * LIST_MAX + 1
    where = words.PAGE.format(page=page, first=first, last=first + shown - 1)
    return {
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if more else None,
        "where": where if shown else "",
    }


async def inbox(request: web.Request) -> web.StreamResponse:
    deps = _deps(request)
    status = request.query.get("status", "todo")
    status = status if status in words.STATUSES else "todo"
    query = request.query.get("q", "").strip()[:64]
    page = _page(request)
    async with deps.db.sessions() as session:
        me = await _me(request, session)
        if me is None:
            raise _to_login(request)
        views = views_for(me.staff)
        view = request.query.get("view", "all")
        view = view if view in views else "all"
        rows, more = await inbox_rows(
            session, deps, me, status=status, view=view, query=query, page=page
        )
    pager = _pager(view, status, query, page, more, len(rows))
    return render(
        request,
        "inbox.html",
        title=words.INBOX_TITLE,
        nav="inbox",
        said=await auth.take_flash(deps.redis, me.token),
        rows=rows,
        pager=pager if page > 1 or more else None,
        views=[(v, words.VIEWS[v]) for v in views],
        view=view,
        statuses=list(words.STATUSES.items()),
        chosen=status,
        query=query,
        **_me_context(request, me),
    )


# -- an item ---------------------------------------------------------------------------------


async def _visible_ticket(session: AsyncSession, me: Me, number: int, verb: str) -> Ticket | None:
    """The item if the staff member may see it; a hidden one's look is recorded, as the
    chat records a `#n` it refuses."""
    ticket = await session.get(Ticket, number)
    if ticket is not None and not access.may_see(me.viewer, ticket):
        await _hidden(session, me, ticket, verb)
        return None
    return ticket


async def _hidden(session: AsyncSession, me: Me, ticket: Ticket, verb: str) -> None:
    await access.record_refusal(session, me.staff, ticket, verb=verb, reason="not theirs to see")


def _step_words(step: history.Step, litigant: str) -> dict[str, str]:
    if step.actor.startswith("staff:"):
        by = f"{step.by.name}（{step.by.username}）" if step.by else step.actor[6:]
    else:
        by = words.ACTORS.get(step.actor, litigant)
    to = ""
    if step.to is not None:
        to = (step.to.staff.name if step.to.staff else step.to.team) or ""
        if step.to.level:  # escalated: how far up (0, the first holder's level, goes unsaid)
            to += f"（{words.LEVEL_N.format(level=step.to.level)}）"
    what = words.HISTORY_WORDS.get(step.action, step.action)
    if step.action == "ticket.escalated" and step.reason == escalation.REQUESTED:
        what = words.ESCALATED_BY_HAND  # raised by a person, not by a deadline
    reason = step.reason or ""
    if step.action in history.MOVES and step.reason is not None:
        reason = texts.move_reason(step.reason, step.note)
    return {
        "at": say_time(step.at),
        "what": what,
        "by": by,
        "to": to,
        "reason": "" if reason == what else reason,
    }


async def transfer_targets(session: AsyncSession, me: Me, ticket: Ticket) -> list[Staff]:
    """The court's staff `access.may_transfer` lets this staff member hand the item to."""
    if not access.may_act(me.viewer, ticket, "transfer"):
        return []
    rows = (
        await session.execute(
            select(Staff)
            .where(col(Staff.court_id) == me.staff.court_id, col(Staff.active))
            .order_by(col(Staff.team), col(Staff.name), col(Staff.id))
        )
    ).scalars()
    return [
        s for s in rows if access.may_transfer(me.viewer, ticket, await access.viewer(session, s))
    ]


async def item_view(session: AsyncSession, deps: Deps, me: Me, ticket: Ticket) -> dict[str, Any]:
    """Everything the item's page shows: facts, thread, history, and the forms the rules
    allow this staff member."""
    case_row = await session.get_one(Case, ticket.case_id)
    parties = list(
        (
            await session.execute(
                select(Party).where(col(Party.case_id) == case_row.id).order_by(col(Party.id))
            )
        ).scalars()
    )
    raised_by = next((p for p in parties if p.id == ticket.party_id), None)
    litigant = _party_words(raised_by)
    people = await _people(
        session, {ticket.assignee_id, ticket.subject_staff_id, case_row.judge_id}
    )
    judge = people.get(case_row.judge_id)
    thread = []
    said = await tickets.thread(session, ticket)
    # A voice without words reads "语音留言（12秒）" once its audio is kept (bot.rules.media).
    lengths = await media.seconds_of(
        session, [m.id for m in said if m.id and m.msg_type == "voice" and not m.content]
    )
    for m in said:
        if m.direction == "in":
            link = None
            if m.media_id and m.id and m.msg_type in media.KINDS:
                label = words.SEE_PHOTO if m.msg_type == "image" else words.HEAR_VOICE
                link = (label, deps.rules.media.link(m.id))
            text = m.content or texts.unsaid(m.msg_type)
            if m.msg_type == "voice" and not m.content and m.media_id and m.id:
                text = texts.voice_note(lengths.get(m.id))
            thread.append(
                {
                    "who": litigant,
                    "at": say_time(m.created_at),
                    "text": text,
                    "link": link,
                    "court": False,
                }
            )
            continue
        staff = await session.get(Staff, m.staff_id) if m.staff_id else None
        thread.append(
            {
                "who": f"{texts.staff_title(staff)}{staff.name}" if staff else texts.THE_COURT,
                "at": say_time(m.created_at),
                # The answer as the staff member wrote it; an erased one says so.
                "text": m.content.split("：", 1)[-1] if m.content else texts.ERASED,
                "link": None,
                "court": True,
            }
        )
    steps = [_step_words(s, litigant) for s in await history.of_ticket(session, ticket)]
    due, colour = _due(deps, ticket)
    open_ = ticket.status != "closed"
    if ticket.first_reply_at is not None:
        due_line = words.REPLIED_AT.format(at=say_time(ticket.first_reply_at))
    else:
        due_line = f"{words.DUE}：{due}" if open_ and ticket.holder_due_at else ""
    subject = people.get(ticket.subject_staff_id) if ticket.subject_staff_id else None
    facts = [
        (words.KIND, texts.kind_name(ticket.kind)),
        (words.STATUS, texts.status_name(ticket.status)),
        (words.RAISED_BY, litigant),
        (words.HOLDER, _holder(ticket, people)),
        (words.CREATED, say_time(ticket.created_at)),
    ]
    if ticket.kind == "complaint" and ticket.about:
        facts.append((words.ABOUT, ABOUTS.get(ticket.about, ticket.about)))
    if subject is not None:
        facts.append((words.NAMED, f"{texts.staff_title(subject)}{subject.name}"))
    if ticket.due_at:
        facts.append((words.PROMISED, say_time(ticket.due_at)))
    if ticket.first_reply_at:
        facts.append((words.FIRST_REPLY, say_time(ticket.first_reply_at)))
    if ticket.close_due_at and open_:
        facts.append((words.CLOSE_DUE, say_time(ticket.close_due_at)))
    if ticket.level:
        facts.append((words.LEVEL, str(ticket.level)))
    case_facts = [
        (words.CASE_NUMBER, case_row.case_number),
        (words.CASE_TYPE, case_row.case_type),
        (words.CAUSE, case_row.cause or "—"),
        (words.JUDGE, judge.name if judge else "—"),
        (words.PARTIES, "、".join(_party_words(p) for p in parties) or "—"),
    ]
    targets = await transfer_targets(session, me, ticket) if open_ else []
    can_escalate = open_ and escalation.may_escalate(me.viewer, ticket)
    raise_to = (
        await escalation.escalation_target(session, deps.rules.escalation, ticket)
        if can_escalate
        else None
    )
    return {
        "item": ticket,
        "kind": texts.kind_name(ticket.kind),
        "case_number": case_row.case_number,
        "facts": facts,
        "case_facts": case_facts,
        "due_line": due_line,
        "colour": colour,
        "thread": thread,
        "steps": steps,
        "closed": not open_,
        "can_answer": open_ and access.may_act(me.viewer, ticket, "answer"),
        "can_close": open_ and access.may_act(me.viewer, ticket, "close"),
        "can_claim": open_ and access.may_act(me.viewer, ticket, "claim"),
        "can_transfer": open_ and access.may_act(me.viewer, ticket, "transfer"),
        "can_escalate": can_escalate,
        # Where the button would take it; else why there is no button (at the top, or no
        # one up there to take it).
        "escalate_to": _up_words(raise_to) if raise_to and raise_to.up else None,
        "escalate_not": words.ESCALATE_NOT.get(raise_to.why or "", "") if raise_to else "",
        "targets": [(s.username, f"{s.name}（{s.team or texts.staff_title(s)}）") for s in targets],
        "limit": TEXT_MAX,
        "reason_limit": REASON_MAX,
    }


def _up_words(raised: escalation.Raised) -> str:
    assert raised.up is not None
    return f"{raised.team}（{words.LEVEL_N.format(level=raised.up.level)}）"


async def _item_page(
    request: web.Request, number: int, *, said: str | None = None, status: int = 200
) -> web.Response:
    deps = _deps(request)
    async with deps.db.sessions() as session:  # a read: no write transaction held open
        me = await _me(request, session)
        if me is None:
            raise _to_login(request)
        ticket = await session.get(Ticket, number)
        shown = ticket is not None and access.may_see(me.viewer, ticket)
        view = await item_view(session, deps, me, ticket) if ticket and shown else None
    if view is None:
        if ticket is not None:
            async with deps.db.transaction() as session:
                await _hidden(session, me, ticket, "view")
        raise not_found(request)
    if said is None:
        said = await auth.take_flash(deps.redis, me.token)
    return render(
        request,
        "item.html",
        status=status,
        title=f"#{number} {view['kind']}",
        nav="inbox",
        said=said,
        **view,
        **_me_context(request, me),
    )


async def item(request: web.Request) -> web.StreamResponse:
    return await _item_page(request, _number(request))


@dataclass(frozen=True)
class Outcome:
    """What a form on an item came to: 303 done (`said` shown on the item's page after the
    redirect); 400 not sent; 403 refused by the rules; 404 not theirs to see; 409 too late."""

    status: int
    said: str = ""
    then: str | None = None  # where a 303 goes, when not back to the item


VERBS = ("answer", "close", "claim", "transfer", "escalate")


async def _refused(session: AsyncSession, me: Me, ticket: Ticket, verb: str) -> Outcome:
    """Someone who may see the item asked for what their part does not allow: recorded,
    and told in the chat's words (handlers.judge says the same)."""
    how = access.relation(me.viewer, ticket)
    await access.record_refusal(session, me.staff, ticket, verb=verb, reason=how)
    if verb == "claim":
        if ticket.inbox is not None and ticket.assignee_id is not None:
            holder = await session.get(Staff, ticket.assignee_id)
            name = holder.name if holder else "他人"
            return Outcome(403, texts.CLAIM_TAKEN.format(ticket=ticket.id, name=name))
        return Outcome(403, texts.CLAIM_NOT_TEAM.format(ticket=ticket.id))
    return Outcome(403, texts.STAFF_CANNOT.format(ticket=ticket.id))


async def _transfer(
    session: AsyncSession, deps: Deps, me: Me, ticket: Ticket, form: Mapping[str, str]
) -> Outcome:
    if not access.may_act(me.viewer, ticket, "transfer"):
        return await _refused(session, me, ticket, "transfer")
    who = form.get("to", "").strip()[:64]
    target = await staff_accounts.by_username(session, who) if who else None
    if target is None or target.court_id != me.staff.court_id or not target.active:
        # Another court's staff are as unknown as nobody: the rules never cross courts.
        await access.record_refusal(
            session, me.staff, ticket, verb="transfer", reason=f"not to {who}"
        )
        return Outcome(403, texts.TRANSFER_NO_STAFF.format(username=who))
    if not access.may_transfer(me.viewer, ticket, await access.viewer(session, target)):
        await access.record_refusal(
            session, me.staff, ticket, verb="transfer", reason=f"not to {target.username}"
        )
        if ticket.kind == "complaint":
            return Outcome(403, texts.TRANSFER_COMPLAINT.format(ticket=ticket.id, name=target.name))
        return Outcome(403, texts.TRANSFER_NOT_ALLOWED.format(ticket=ticket.id, name=target.name))
    reason = form.get("reason", "").strip()[:REASON_MAX]
    if not await escalation.transfer(
        session, deps.rules.deadlines, me.staff, ticket, target, reason
    ):
        return Outcome(409, texts.CLAIM_TAKEN.format(ticket=ticket.id, name="他人"))
    # Handed on out of their sight (a judge to a colleague): back to the inbox, not to a
    # page that would now say "not found".
    then = None if access.may_see(me.viewer, ticket) else "/console"
    return Outcome(303, texts.TRANSFERRED.format(ticket=ticket.id, name=target.name), then)


async def _escalate(
    session: AsyncSession, deps: Deps, me: Me, ticket: Ticket, form: Mapping[str, str]
) -> Outcome:
    """One level up the court's chain, with the staff member's reason (escalation.escalate_now,
    as the deadline job moves it): recorded, the new inbox told, the litigant told only who
    handles it now."""
    if not escalation.may_escalate(me.viewer, ticket):
        return await _refused(session, me, ticket, "escalate")
    reason = form.get("reason", "").replace("\r\n", "\n").strip()[:REASON_MAX]
    if not reason:
        return Outcome(400, words.ESCALATE_NO_REASON)
    policy = deps.rules.escalation
    raised = await escalation.escalate_now(session, policy, ticket, me.staff, reason)
    if raised.up is None:
        if raised.why == escalation.TAKEN:
            return Outcome(409, texts.CLAIM_TAKEN.format(ticket=ticket.id, name="他人"))
        said = words.ESCALATE_NOT.get(raised.why or "", words.ESCALATE_NOT[escalation.AT_TOP])
        return Outcome(409, said)
    # Raised out of their sight (a judge's item to reception): back to the inbox, as a
    # transfer does, not to a page that would now say "not found".
    then = None if access.may_see(me.viewer, ticket) else "/console"
    return Outcome(303, words.ESCALATED.format(ticket=ticket.id, to=_up_words(raised)), then)


async def _act(
    session: AsyncSession, deps: Deps, me: Me, number: int, verb: str, form: Mapping[str, str]
) -> Outcome:
    ticket = await _visible_ticket(session, me, number, verb)
    if ticket is None:
        return Outcome(404)
    if ticket.status == "closed":
        return Outcome(409, texts.STAFF_ALREADY_CLOSED.format(ticket=number))
    if verb == "transfer":
        return await _transfer(session, deps, me, ticket, form)
    if verb == "escalate":
        return await _escalate(session, deps, me, ticket, form)
    if not access.may_act(me.viewer, ticket, verb):
        return await _refused(session, me, ticket, verb)
    if verb == "claim":
        if not await escalation.claim(session, deps.rules.deadlines, me.staff, ticket):
            return Outcome(409, texts.CLAIM_TAKEN.format(ticket=number, name="他人"))
        return Outcome(303, texts.CLAIMED.format(ticket=number))
    if verb == "close":
        # Its words, and the rating it asks the party for: handlers.notices, handlers.rating.
        await tickets.close(session, staff=me.staff, ticket=ticket)
        return Outcome(303, texts.STAFF_CLOSED.format(ticket=number))
    body = form.get("text", "").replace("\r\n", "\n").strip()
    if not body or len(body) > TEXT_MAX:
        return Outcome(400, words.ANSWER_EMPTY)
    said = texts.ANSWERED.format(
        title=texts.staff_title(me.staff), name=me.staff.name, ticket=number, text=body
    )
    await tickets.answer(session, staff=me.staff, ticket=ticket, text=body, said=said)
    return Outcome(303, texts.STAFF_ANSWERED.format(ticket=number))


async def act(request: web.Request) -> web.StreamResponse:
    """POST /console/items/<n>/<verb>: answer, close, claim, transfer or escalate, as the
    rules allow."""
    verb = request.match_info["verb"]
    number = _number(request)
    if verb not in VERBS:
        raise not_found(request)
    form = await _session_form(request)
    deps = _deps(request)
    async with deps.db.transaction() as session:
        me = await _me(request, session)
        outcome = await _act(session, deps, me, number, verb, form) if me is not None else None
    if me is None or outcome is None:
        raise expired(request)
    if outcome.status == 404:
        raise not_found(request)
    if outcome.status == 303:
        deps.wakeup.set()  # notices were queued: let in-process delivery look now
        await auth.flash(deps.redis, me.token, outcome.said)
        raise see(outcome.then or f"/console/items/{number}")
    return await _item_page(request, number, said=outcome.said, status=outcome.status)


# -- the service desk ------------------------------------------------------------------------


async def desk(request: web.Request) -> web.StreamResponse:
    """Look a case up for a person at the desk: its facts and parties (masked). Only the
    desk's staff (reception, admin), only their own court's cases; each look is recorded."""
    deps = _deps(request)
    asked = request.query.get("case", "").strip()[:64]
    async with deps.db.transaction() as session:
        me = await _me(request, session)
        if me is None:
            raise _to_login(request)
        if not me.desk:
            raise refusal(
                request,
                web.HTTPForbidden,
                words.DESK_ONLY_TITLE,
                words.DESK_ONLY,
                link=(words.BACK_INBOX, "/console"),
            )
        found = None
        judge = None
        parties: list[Party] = []
        if asked:
            found = (
                await session.execute(
                    select(Case).where(
                        col(Case.court_id) == me.staff.court_id, col(Case.case_number) == asked
                    )
                )
            ).scalar_one_or_none()
        if found is not None:
            parties = list(
                (
                    await session.execute(
                        select(Party).where(col(Party.case_id) == found.id).order_by(col(Party.id))
                    )
                ).scalars()
            )
            judge = await session.get(Staff, found.judge_id) if found.judge_id else None
            await audit.append(
                session,
                actor=f"staff:{me.staff.username}",
                action="console.desk_lookup",
                subject=f"case:{found.id}",
                case_id=found.id,
                payload={"address": _address(request)},
            )
    return render(
        request,
        "desk.html",
        title=words.DESK_TITLE,
        nav="desk",
        asked=asked,
        case=found,
        judge=judge.name if judge is not None else "—",
        parties=[
            {"role": p.role, "name": mask_name(p.name), "phone": p.phone_masked} for p in parties
        ],
        none=bool(asked) and found is None,
        **_me_context(request, me),
    )


# -- the app -------------------------------------------------------------------------------


def _console(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


# Every response of the console (refusals and redirects too) is locked down; pages are
# never cached, the style sheet is.
_secure_headers = shared.locked_down(
    _console,
    referrer="same-origin",
    no_store=lambda path: _console(path) and not path.startswith("/console/static/"),
)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(handler: Handler) -> Handler:
    """Without Redis there are no sessions: a plain page saying so, not a traceback."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except RedisError as exc:
            log.warning("console: Redis unavailable: %s", exc)
            raise refusal(
                request, web.HTTPServiceUnavailable, words.UNAVAILABLE_TITLE, words.UNAVAILABLE
            ) from None

    return run


def setup(app: web.Application) -> None:
    """The console's routes, templates and headers on `app`; a second call changes nothing."""
    if app.get(READY):
        return
    app[READY] = True
    aiohttp_jinja2.setup(
        app,
        app_key=TEMPLATES,
        default_helpers=False,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    app[HASHING] = asyncio.Semaphore(HASHING_AT_ONCE)
    app.on_response_prepare.append(_secure_headers)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", STYLE.path, STYLE.serve),
        ("GET", "/console", inbox),
        ("GET", "/console/", inbox),
        ("GET", "/console/login", login_page),
        ("POST", "/console/login", login),
        ("GET", "/console/login/code", login_code_page),
        ("POST", "/console/login/code", login_code),
        ("POST", "/console/logout", logout),
        ("GET", "/console/setup/{token}", setup_page),
        ("POST", "/console/setup/{token}", setup_password),
        ("GET", "/console/items/{number}", item),
        ("POST", "/console/items/{number}/{verb}", act),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _guarded(handler))
