"""The H5 pages' routes (see the package's docstring for what they are).

Safe by default: every page is rendered with autoescape on; every response under `/q/` and
`/h5` carries a Content-Security-Policy that allows only our own files (no inline script or
style: the CSS is a file served here), `nosniff`, and no referrer (a code's URL is its
key); every form carries a CSRF token (an HMAC of the session's token) checked on POST; the
session cookie is `Secure; HttpOnly; SameSite=Lax`. What is not theirs is "not found".

After a POST the browser is sent (303) to the page that shows the result; the flow's words
wait in Redis for a few minutes under a random key scoped to the session (`?said=`), so a
reload shows them again and no one else can read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from redis.exceptions import RedisError

from bot.channels import pages as shared
from bot.channels.h5 import words
from bot.channels.wechat.api import TransientError, WeChatAPI, WeChatError
from bot.core.addresses import H5, MINIPROGRAM, WECHAT, wechat_account
from bot.core.clock import now, say_time, to_court
from bot.core.reply import Reply
from bot.dialog import forms
from bot.dialog.deps import DEPS, Deps
from bot.dialog.dispatch import Duplicate
from bot.rules import app_sessions, bindings, portal, tickets
from handlers import actions, texts
from qr import codes
from qr import tokens as qr_tokens
from storage import state
from storage.models import AppSession, Case, Court, Ticket

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = web.AppKey("h5_templates", jinja2.Environment)
COOKIE = "mst_h5"
STATE_COOKIE = "mst_h5_state"  # ties an OAuth round trip to the browser that began it
OAUTH_PATH = "/h5/oauth"
CSP = shared.CSP
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
STATE_TTL_S = 600  # an OAuth round trip takes seconds; a stale one starts again
SAID_TTL_S = 600
RATE_PER_MINUTE = 120  # pages a signed-in person may open (reads and writes together)
LOGIN_PER_MINUTE = 20  # OAuth returns from one address, before WeChat's own limit
SCAN_MEMORY_S = 3600  # a scan is recorded once an hour per person and code, not per reload
SCHEME_TTL_S = 7 * 24 * 3600  # WeChat's scheme lives 30 days; ours is asked for weekly
SCHEME_WAIT_S = 3.0  # the public page never waits longer than this for WeChat
TEXT_MAX = 2000
# WeChat's `state` is at most 128 bytes of [A-Za-z0-9]: hex of expiry, signature, path.
STATE_MAX = 128
_EXPIRY_HEX, _SIG_HEX = 8, 32
# Where a sign-in may return to: our own pages only (never an open redirect). These are
# matched whole (fullmatch: a `$` would let a trailing newline through).
_BACK = re.compile(r"/(q/[A-Za-z0-9_-]{32}|h5(/[a-z0-9_]+)*/?)")
_SAID_KEY = re.compile(r"[A-Za-z0-9_-]{8,32}")
_ID = re.compile(r"[1-9][0-9]{0,8}")  # ids are 32-bit integers in PostgreSQL
_DIGITS = re.compile(r"[0-9]{4}")


# -- signing: the OAuth state and the forms' CSRF token ---------------------------------------


def _mac(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def _state_parts(expiry: str, nonce: str, back: str, account: str | None) -> tuple[str, ...]:
    # The default account's state is signed as it always was; a court's own account's
    # adds its slug, so a state made for one account is worthless at another's return.
    parts = ("h5-state", expiry, nonce, back)
    return parts if account is None else (*parts, f"account:{account}")


def sign_state(
    secret: str, back: str, nonce: str, expires: int, *, account: str | None = None
) -> str:
    """The OAuth `state`: where to return, until when, for the browser holding `nonce`,
    through which account (`account`: a court's own, by slug; None: the default one). The
    account is in the signature, not in the state (128 bytes hold no more than the path):
    it travels in the return address, `/h5/oauth/<slug>`."""
    expiry = f"{expires:0{_EXPIRY_HEX}x}"
    path = back.encode().hex()
    return expiry + _mac(secret, *_state_parts(expiry, nonce, back, account))[:_SIG_HEX] + path


def check_state(
    secret: str, state_value: str, nonce: str, at: int, *, account: str | None = None
) -> str | None:
    """The path a valid, live `state` names (None: tampered, expired, another browser's,
    or made for another account than `account`)."""
    head = _EXPIRY_HEX + _SIG_HEX
    if not (head < len(state_value) <= STATE_MAX) or not nonce:
        return None
    if re.fullmatch(r"[0-9a-f]+", state_value) is None or len(state_value) % 2:
        return None
    expiry, sig, path_hex = (
        state_value[:_EXPIRY_HEX],
        state_value[_EXPIRY_HEX:head],
        state_value[head:],
    )
    try:
        back = bytes.fromhex(path_hex).decode()
    except UnicodeDecodeError:
        return None
    good = _mac(secret, *_state_parts(expiry, nonce, back, account))[:_SIG_HEX]
    if not hmac.compare_digest(sig, good) or int(expiry, 16) < at or not _BACK.fullmatch(back):
        return None
    return back


def csrf_token(secret: str, session_token: str) -> str:
    return _mac(secret, "h5-csrf", session_token)[:32]


# -- the request's person ------------------------------------------------------------------


@dataclass(frozen=True)
class Me:
    token: str  # the cookie's value: only here, never stored
    row: AppSession

    @property
    def user(self) -> str:
        return self.row.user


def in_wechat(request: web.Request) -> bool:
    return "MicroMessenger" in request.headers.get("User-Agent", "")


def _deps(request: web.Request) -> Deps:
    return request.app[DEPS]


def official_api(deps: Deps, account: str | None = None) -> WeChatAPI | None:
    """The Official Account's API client (its app id is what web authorisation names):
    the default account's, or (`account`: a slug of MST_COURTS_FILE) that court's own."""
    sender = deps.senders.get(WECHAT)
    if account is None:
        api = getattr(sender, "api", None)
    else:
        api = getattr(getattr(sender, "courts", {}).get(account), "api", None)
    return api if isinstance(api, WeChatAPI) else None


def account_of_court(deps: Deps, court: str) -> str | None:
    """The slug of the account that serves `court` (bot.rules.accounts); None: the default."""
    return deps.rules.accounts.of_court(court).slug


def _known_account(request: web.Request, slug: str) -> str:
    """`slug` when it is a court's own account here; else the "no such court" page (404)."""
    if slug not in {c.slug for c in _deps(request).settings.courts}:
        raise refusal(request, web.HTTPNotFound, words.NO_SUCH_COURT_TITLE, words.NO_SUCH_COURT)
    return slug


@dataclass(frozen=True)
class Via:
    """The account a page signs people in through (`slug` None: the default one)."""

    slug: str | None


def via_query(request: web.Request) -> Via | None:
    """`?court=<slug>`: the court account's entry to the pages (its menu's link); None
    without it (any session will do). A slug no court has: the 404 page."""
    slug = request.query.get("court")
    return None if slug is None else Via(_known_account(request, slug))


async def _via_page(request: web.Request) -> str | None:
    """Whom to sign in through on a page opened without a session: the account of the
    court of the case or item it names (a court's own, else the default)."""
    deps = _deps(request)
    if not deps.settings.courts:
        return None
    info = request.match_info
    async with deps.db.sessions() as session:
        case: Case | None = None
        if _ID.fullmatch(info.get("case_id", "")):
            case = await session.get(Case, int(info["case_id"]))
        elif _ID.fullmatch(info.get("ticket_id", "")):
            ticket = await session.get(Ticket, int(info["ticket_id"]))
            case = await session.get(Case, ticket.case_id) if ticket is not None else None
        court = await session.get(Court, case.court_id) if case is not None else None
    return None if court is None else account_of_court(deps, court.name)


def account_of_session(me: Me) -> str | None:
    """The account a session was signed in through (its user: bot.core.addresses)."""
    return wechat_account(me.user)


async def _session(request: web.Request) -> Me | None:
    token = request.cookies.get(COOKIE, "")
    if not token:
        return None
    async with _deps(request).db.sessions() as session:
        row = await app_sessions.find(session, token)
    return Me(token, row) if row is not None and row.channel == H5 else None


async def _within_rate(request: web.Request, me: Me) -> None:
    deps = _deps(request)
    try:
        count = await state.bump(deps.redis, f"h5:{me.user}", 60)
    except RedisError:
        return  # no count without Redis; the dialog still limits what is written
    if count > RATE_PER_MINUTE:
        raise refusal(request, web.HTTPTooManyRequests, words.TOO_FAST_TITLE, words.TOO_FAST)


async def signed_in(request: web.Request, via: Via | None = None) -> Me:
    """The person reading this page. No session: in WeChat, off to web authorisation (and
    back here); elsewhere, a page that says to open it in WeChat. `via`: the page is the
    entry of this account (a court's code, `?court=`): a session of another account is
    signed in afresh through this one (silently, in WeChat), never taken for its user."""
    me = await _session(request)
    if me is not None and via is not None and account_of_session(me) != via.slug:
        me = None
    if me is None:
        slug = via.slug if via is not None else await _via_page(request)
        if in_wechat(request) and official_api(_deps(request), slug) is not None:
            raise _to_authorize(request, request.path, slug)
        raise refusal(request, web.HTTPForbidden, words.OPEN_IN_WECHAT_TITLE, words.OPEN_IN_WECHAT)
    await _within_rate(request, me)
    return me


@dataclass(frozen=True)
class Posted:
    me: Me
    form: Mapping[str, str]


async def posted(request: web.Request) -> Posted:
    """A form sent by its own page: a live session and the CSRF token made for it. Anything
    else is refused (403) before a word of it is read into the dialog: nothing is stored.
    Never a redirect to sign in: a form may only go to our own address (form-action)."""
    me = await _session(request)
    raw: MultiDictProxy[Any] = await request.post()
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    given = form.get("csrf", "")
    secret = _deps(request).settings.secret_key
    if me is None or not hmac.compare_digest(given.encode(), csrf_token(secret, me.token).encode()):
        raise refusal(request, web.HTTPForbidden, words.EXPIRED_TITLE, words.EXPIRED)
    await _within_rate(request, me)
    return Posted(me, form)


def _to_authorize(request: web.Request, back: str, account: str | None = None) -> web.HTTPFound:
    """Off to web authorisation with `account`'s app id (a court's own, else the default),
    returning to that account's `/h5/oauth[/<slug>]`."""
    deps = _deps(request)
    api = official_api(deps, account)
    assert api is not None  # callers check
    if not _BACK.fullmatch(back) or len(back.encode()) * 2 + _EXPIRY_HEX + _SIG_HEX > STATE_MAX:
        back = "/h5/"
    nonce = secrets.token_hex(16)
    expires = int(now().timestamp()) + STATE_TTL_S
    signed = sign_state(deps.settings.secret_key, back, nonce, expires, account=account)
    redirect_uri = deps.settings.public_base_url.rstrip("/") + OAUTH_PATH
    if account is not None:
        redirect_uri += f"/{account}"
    found = web.HTTPFound(
        api.oauth_authorize_url(deps.settings.miniprogram.open_base, redirect_uri, signed),
        headers=PRIVATE,
    )
    found.set_cookie(
        STATE_COOKIE,
        nonce,
        max_age=STATE_TTL_S,
        path=OAUTH_PATH,
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    return found


# -- rendering -----------------------------------------------------------------------------


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(
        template, request, _context(context), app_key=TEMPLATES, status=status
    )
    response.headers.update(PRIVATE)
    return response


def _context(context: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "w": words,
        "css": STYLE_URL,
        "court": None,
        "said": None,
        "title": "",
    }
    return {**base, **context}


def refusal(
    request: web.Request,
    kind: type[web.HTTPException],
    title: str,
    text: str,
    *,
    link: tuple[str, str] | None = None,
    court: Court | None = None,
) -> web.HTTPException:
    """A page that says plainly what went wrong and what to do, as an exception to raise."""
    body = aiohttp_jinja2.render_string(
        "notice.html",
        request,
        _context({"title": title, "text": text, "link": link, "court": court}),
        app_key=TEMPLATES,
    )
    return kind(text=body, content_type="text/html", headers=PRIVATE)


def not_found(request: web.Request) -> web.HTTPException:
    return refusal(request, web.HTTPNotFound, words.NOT_FOUND_TITLE, words.NOT_FOUND)


def _id(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not _ID.fullmatch(value):
        raise not_found(request)
    return int(value)


# -- what a flow answered, carried across the redirect -------------------------------------

# Lines of a chat answer that only make sense in the chat ("发送 0 返回菜单"); the receipt's
# address is shown as a button instead of a line.
_CHAT_ONLY = ("发送 0", "回复数字", "请回复", "回执：", "（点开可以核对法院的记录）")


def page_lines(reply: Reply) -> list[str]:
    """A flow's answer as a page shows it: its first paragraph (the rest is the chat's menu),
    without the chat's own instructions."""
    first = reply.text.strip().split("\n\n", 1)[0]
    return [
        line.strip()
        for line in first.splitlines()
        if line.strip() and not any(mark in line for mark in _CHAT_ONLY)
    ]


def _said_key(me: Me, key: str) -> str:
    return f"{state.PREFIX}h5:said:{me.row.token_sha256[:32]}:{key}"


async def keep_said(deps: Deps, me: Me, lines: list[str], links: list[dict[str, str]]) -> str:
    """Keep what to show after the redirect; the query that finds it ("" without Redis)."""
    key = secrets.token_urlsafe(12)
    body = json.dumps({"lines": lines, "links": links}, ensure_ascii=False)
    try:
        await deps.redis.set(_said_key(me, key), body, ex=SAID_TTL_S)
    except RedisError as exc:
        log.warning("h5: the answer could not be kept for its page: %s", exc)
        return ""
    return f"?said={key}"


async def said_for(request: web.Request, me: Me) -> dict[str, Any] | None:
    key = request.query.get("said", "")
    if not _SAID_KEY.fullmatch(key):
        return None
    try:
        raw = await _deps(request).redis.get(_said_key(me, key))
    except RedisError:
        return None
    found: dict[str, Any] | None = json.loads(raw) if raw else None
    return found


async def said_reply(deps: Deps, me: Me, reply: Reply) -> str:
    links = [
        {"label": words.RECEIPT if link.label == texts.RECEIPT else link.label, "url": link.url}
        for link in reply.links
        if link.url.startswith(("https://", "http://"))
    ]
    return await keep_said(deps, me, page_lines(reply), links)


async def said_words(deps: Deps, me: Me, *lines: str) -> str:
    return await keep_said(deps, me, [line for text in lines for line in text.splitlines()], [])


async def act(
    request: web.Request,
    p: Posted,
    action: str,
    fields: dict[str, int | str],
    text: str = "",
) -> Reply:
    """Run a form through the chat's own flow (bot.dialog.forms). A form sent twice (a
    double tap) is answered once: its hidden `once` is the message's de-duplication key."""
    once = p.form.get("once", "")
    key = f"h5:{p.me.row.token_sha256[:16]}:{once}" if _SAID_KEY.fullmatch(once) else None
    try:
        reply = await forms.submit(
            _deps(request),
            channel=H5,
            user=p.me.user,
            action=action,
            fields=fields,
            text=text,
            key=key,
        )
    except Duplicate:
        return Reply(words.ALREADY_SENT)
    if reply is None:
        raise not_found(request)
    return reply


def see(path: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(path, headers=PRIVATE)


def _then(path: str, said: str) -> str:
    """`path` with the `?said=` query joined on (to a query it may have already)."""
    return path + (said.replace("?", "&", 1) if "?" in path else said)


def _form_fields(me: Me, secret: str) -> dict[str, str]:
    """What every form carries: the CSRF token, and a fresh key for this one sending."""
    return {"csrf": csrf_token(secret, me.token), "once": secrets.token_urlsafe(12)}


def _text(p: Posted, name: str = "text") -> str:
    return p.form.get(name, "").replace("\r\n", "\n").strip()


# -- the scan: /q/<token> --------------------------------------------------------------------


async def _lookup(request: web.Request) -> codes.Lookup:
    """The code's case, or the 410 / 404 page (the same as before the H5 pages)."""
    async with _deps(request).db.sessions() as session:
        lookup = await codes.by_token(session, request.match_info["token"])
    if lookup.status == "revoked":
        raise refusal(
            request,
            web.HTTPGone,
            words.REVOKED_TITLE,
            words.REVOKED.format(call=texts.call(lookup.court)),
        )
    if lookup.status != "ok" or lookup.case is None or lookup.court is None or lookup.code is None:
        raise refusal(request, web.HTTPNotFound, words.CASE_NOT_FOUND_TITLE, words.CASE_NOT_FOUND)
    return lookup


async def landing(request: web.Request) -> web.StreamResponse:
    """A scan. Outside WeChat: the public page. In WeChat: sign in (web authorisation) if
    need be, then the case's home when they are verified for it, else the verify form."""
    lookup = await _lookup(request)
    deps = _deps(request)
    assert lookup.court is not None
    # Signed in through the account that serves the code's court: its own, or the default.
    account = account_of_court(deps, lookup.court.name)
    if not in_wechat(request) or official_api(deps, account) is None:
        return await _public(request, lookup)
    me = await signed_in(request, Via(account))
    assert lookup.case is not None and lookup.court is not None and lookup.code is not None
    case_id = lookup.case.id or 0
    async with deps.db.sessions() as session:
        view = await portal.case(session, me.user, case_id)
    if view is not None:
        raise see(f"/h5/c/{case_id}")
    await _record_scan(deps, me, lookup)
    return render(
        request,
        "verify.html",
        title=words.VERIFY_TITLE,
        court=lookup.court,
        case=lookup.case,
        said=await said_for(request, me),
        form=_form_fields(me, deps.settings.secret_key),
        ask=texts.ASK_DIGITS,
    )


async def _record_scan(deps: Deps, me: Me, lookup: codes.Lookup) -> None:
    """The scan in the record (the chat's own event), once an hour, not on every reload."""
    code_id = lookup.code.id if lookup.code else 0
    try:
        first = await deps.redis.set(
            f"{state.PREFIX}h5:scanned:{me.user}:{code_id}", "1", ex=SCAN_MEMORY_S, nx=True
        )
    except RedisError:
        first = True
    if first:
        async with deps.db.transaction() as session:
            await bindings.record_scan(session, me.user, lookup, via=H5)


async def verify(request: web.Request) -> web.StreamResponse:
    """The verify form: the chat's own step with the digits (same tries, same lockout)."""
    p = await posted(request)
    lookup = await _lookup(request)
    assert lookup.case is not None
    deps = _deps(request)
    case_id = lookup.case.id or 0
    async with deps.db.sessions() as session:
        if await portal.case(session, p.me.user, case_id) is not None:
            raise see(f"/h5/c/{case_id}")  # verified already (a second tab, a resend)
    digits = _text(p, "digits")
    if _DIGITS.fullmatch(digits):
        lines = page_lines(await act(request, p, "verify", {"case": case_id}, digits))
    else:
        lines = [texts.DIGITS_ONLY_LEAD]  # the chat's words; not a try, as in the chat
    async with deps.db.sessions() as session:
        view = await portal.case(session, p.me.user, case_id)
    said = await keep_said(deps, p.me, lines, [])
    raise see((f"/h5/c/{case_id}" if view is not None else request.path) + said)


async def _public(request: web.Request, lookup: codes.Lookup) -> web.Response:
    """Outside WeChat: only what the printed code already says (court, case number, cause),
    how to go on, and the court's desk. Nothing that needs a verified person."""
    deps = _deps(request)
    assert lookup.code is not None and lookup.court is not None
    settings = deps.settings
    own = next((c for c in settings.courts if c.court == lookup.court.name), None)
    return render(
        request,
        "public.html",
        title=f"{lookup.court.name} {lookup.case.case_number if lookup.case else ''}",
        court=lookup.court,
        case=lookup.case,
        short_code=qr_tokens.pretty(lookup.code.short_code),
        # A court with its own account names that one (its QR image: only the default's
        # is served, at /account-qr).
        account_name=(own.wechat if own else settings.wechat).account_name,
        account_qr=own is None and settings.wechat.account_qr is not None,
        scheme=await _scheme(deps, lookup.code.short_code),
        desk=texts.desk(lookup.court),
    )


async def _scheme(deps: Deps, short_code: str) -> str | None:
    """A URL Scheme into the mini-program on this case (kept a week: WeChat's lives 30
    days and it is asked for per code, not per visit). None when the mini-program is off
    or WeChat does not answer in time: the page then has no button, never an error."""
    if not deps.settings.miniprogram.enabled:
        return None
    api = getattr(deps.senders.get(MINIPROGRAM), "api", None)
    if not isinstance(api, WeChatAPI):
        return None
    key = f"{state.PREFIX}h5:scheme:{short_code}"
    try:
        kept = await deps.redis.get(key)
        if kept:
            return str(kept)
    except RedisError:
        pass
    try:
        scheme = await asyncio.wait_for(
            api.generate_scheme(path=deps.settings.miniprogram.page, query=f"scene={short_code}"),
            SCHEME_WAIT_S,
        )
    except (WeChatError, TransientError, TimeoutError) as exc:
        log.info("h5: no mini-program scheme for a code page: %s", exc)
        return None
    if not scheme.startswith("weixin://"):
        return None
    with contextlib.suppress(RedisError):
        await deps.redis.set(key, scheme, ex=SCHEME_TTL_S)
    return scheme


# -- web authorisation's return: /h5/oauth ---------------------------------------------------


async def oauth(request: web.Request) -> web.StreamResponse:
    """WeChat sends the browser back with a one-time code: the openid, a session, the cookie,
    and back to the page that sent them. A bad or used code: a page to try again (400)."""
    deps = _deps(request)
    # `/h5/oauth/<slug>`: a court's own account's return; `/h5/oauth`: the default's.
    slug = request.match_info.get("slug")
    account = None if slug is None else _known_account(request, slug)
    at = int(now().timestamp())
    back = check_state(
        deps.settings.secret_key,
        request.query.get("state", ""),
        request.cookies.get(STATE_COOKIE, ""),
        at,
        account=account,
    )
    if back is None:
        raise refusal(request, web.HTTPBadRequest, words.LINK_BAD_TITLE, words.LINK_BAD)
    again = (words.TRY_AGAIN, back)
    api = official_api(deps, account)
    code = request.query.get("code", "")
    if api is None or not code or len(code) > 256:
        raise refusal(
            request,
            web.HTTPBadRequest,
            words.SIGN_IN_FAILED_TITLE,
            words.SIGN_IN_FAILED,
            link=again,
        )
    source = request.remote or "-"
    try:
        too_fast = await state.bump(deps.redis, f"h5-login:{source}", 60) > LOGIN_PER_MINUTE
    except RedisError:
        too_fast = False
    if too_fast:
        raise refusal(
            request, web.HTTPTooManyRequests, words.TOO_FAST_TITLE, words.TOO_FAST, link=again
        )
    try:
        found = await api.oauth_openid(code)
    except WeChatError as exc:
        log.info("h5 sign-in refused by WeChat: %s", exc.errcode)
        raise refusal(
            request,
            web.HTTPBadRequest,
            words.SIGN_IN_FAILED_TITLE,
            words.SIGN_IN_FAILED,
            link=again,
        ) from None
    except TransientError as exc:
        log.warning("h5 sign-in: WeChat did not answer: %s", exc)
        raise refusal(
            request,
            web.HTTPServiceUnavailable,
            words.SIGN_IN_FAILED_TITLE,
            words.WECHAT_BUSY,
            link=again,
        ) from None
    openid, unionid = found["openid"], found.get("unionid") or None
    days = deps.settings.miniprogram.session_days
    async with deps.db.transaction() as session:
        user = await app_sessions.user_for_official_account(session, openid, unionid, account)
        token, _ = await app_sessions.start(
            session, user=user, channel=H5, openid=openid, unionid=unionid, days=days
        )
    # The state cookie stays until it expires: a reload of WeChat's redirect (a used code)
    # then still gets the page with the way back, not "link expired".
    done = web.HTTPFound(back, headers=PRIVATE)
    done.set_cookie(
        COOKIE,
        token,
        max_age=days * 24 * 3600,
        path="/",
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    raise done


# -- a verified person's pages -------------------------------------------------------------


async def my_cases(request: web.Request) -> web.StreamResponse:
    """`/h5/`; `/h5/?court=<slug>`: a court's own account's entry (its menu links here)."""
    me = await signed_in(request, via_query(request))
    async with _deps(request).db.sessions() as session:
        views = await portal.cases(session, me.user)
    if len(views) == 1:
        raise see(f"/h5/c/{views[0].case.id}")
    return render(
        request, "cases.html", title=words.MY_CASES, views=views, said=await said_for(request, me)
    )


async def _case(request: web.Request, me: Me) -> portal.CaseView:
    async with _deps(request).db.sessions() as session:
        view = await portal.case(session, me.user, _id(request, "case_id"))
    if view is None:
        raise not_found(request)
    return view


async def case_home(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    case_id = _id(request, "case_id")
    async with _deps(request).db.sessions() as session:
        found = await portal.facts(session, me.user, case_id)
    if found is None:
        raise not_found(request)
    view = found.view
    booked = (
        words.BOOKED.format(
            when=f"{to_court(found.booking[1].start_at).year}年"
            f"{say_time(found.booking[1].start_at)}"
        )
        if found.booking is not None
        else None
    )
    judge = f"{texts.staff_title(view.judge)}{view.judge.name}" if view.judge is not None else None
    return render(
        request,
        "case.html",
        title=view.case.case_number,
        court=view.court,
        view=view,
        judge=judge,
        booked=booked,
        said=await said_for(request, me),
    )


async def items_page(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    view = await _case(request, me)
    async with _deps(request).db.sessions() as session:
        mine = await portal.items(session, me.user, view.case.id)
    lines = [
        {
            "id": i.ticket.id,
            "kind": texts.kind_name(i.ticket.kind),
            "status": texts.status_name(i.ticket.status),
            "at": say_time(i.ticket.created_at),
        }
        for i in mine
    ]
    return render(
        request,
        "items.html",
        title=words.MINE,
        court=view.court,
        view=view,
        lines=lines,
        nothing=texts.NO_TICKETS.strip(),
        said=await said_for(request, me),
    )


async def _item(request: web.Request, me: Me) -> portal.ItemView:
    async with _deps(request).db.sessions() as session:
        view = await portal.item(session, me.user, _id(request, "ticket_id"))
    if view is None:
        raise not_found(request)
    return view


async def item_page(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    view = await _item(request, me)
    async with _deps(request).db.sessions() as session:
        said = await portal.thread(session, view)
        court = await session.get(Court, view.case.court_id)
    thread = [
        {
            "mine": x.mine,
            "who": words.ME
            if x.mine
            else texts.say_holder(
                x.staff.name if x.staff else None,
                tickets.title_role(x.staff) if x.staff else None,
                None,
            ),
            "at": say_time(x.at),
            "text": x.text or texts.ERASED,
        }
        for x in said
    ]
    t = view.ticket
    return render(
        request,
        "item.html",
        title=f"#{t.id} {texts.kind_name(t.kind)}",
        court=court,
        item=t,
        kind=texts.kind_name(t.kind),
        status_name=texts.status_name(t.status),
        holder=texts.holder_words(t, view.holder),
        due=words.DUE_BY.format(due=texts.due_words(t)) if t.status == "open" else None,
        helper=texts.SUBMITTED_BY_STAFF.format(name=view.helper) if view.helper else None,
        thread=thread,
        form=_form_fields(me, _deps(request).settings.secret_key),
        said=await said_for(request, me),
        closed=texts.APP_ITEM_CLOSED.format(ticket=t.id) if t.status == "closed" else None,
        limit=TEXT_MAX,
    )


async def add_to_item(request: web.Request) -> web.StreamResponse:
    p = await posted(request)
    view = await _item(request, p.me)
    deps = _deps(request)
    ticket_id = view.ticket.id or 0
    text = _text(p)
    here = f"/h5/i/{ticket_id}"
    if not text or len(text) > TEXT_MAX:
        raise see(here + await said_words(deps, p.me, _not_sent(text)))
    reply = await act(request, p, "add", {"case": view.ticket.case_id, "ticket": ticket_id}, text)
    raise see(here + await said_reply(deps, p.me, reply))


def _not_sent(text: str) -> str:
    return words.WRITE_FIRST if not text else words.TOO_LONG.format(limit=TEXT_MAX)


_NEW_PROMPTS = {
    "question": texts.ASK_PROMPT_LEAD,
    "complaint": texts.COMPLAIN_PROMPT.split("\n")[0],  # the rest is the chat's "send 0"
    "asset_lead": texts.LEAD_PROMPT_LEAD.replace("也可以直接发照片。", "").replace("\n", ""),
}


def _about_choices() -> list[tuple[str, str]]:
    """A complaint's subject, as the chat offers it: (the action's value, the chat's label)."""
    by_key = {key: value for value, key in actions.ABOUT.items()}  # "1" -> staff
    return [(by_key[c.key], c.label) for c in texts.COMPLAIN_ABOUT_CHOICES if c.key in by_key]


async def new_item(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    kind = request.match_info["kind"]
    if kind not in actions.KINDS:
        raise not_found(request)
    view = await _case(request, me)
    return render(
        request,
        "new.html",
        title=words.NEW_TITLES[kind],
        court=view.court,
        view=view,
        kind=kind,
        prompt=_NEW_PROMPTS[kind],
        about=_about_choices() if kind == "complaint" else [],
        form=_form_fields(me, _deps(request).settings.secret_key),
        said=await said_for(request, me),
        limit=TEXT_MAX,
    )


async def open_item(request: web.Request) -> web.StreamResponse:
    p = await posted(request)
    kind = request.match_info["kind"]
    if kind not in actions.KINDS:
        raise not_found(request)
    view = await _case(request, p.me)
    deps = _deps(request)
    case_id = view.case.id or 0
    here = request.path
    text = _text(p)
    if not text or len(text) > TEXT_MAX:
        raise see(here + await said_words(deps, p.me, _not_sent(text)))
    fields: dict[str, int | str] = {"case": case_id, "kind": kind}
    if kind == "complaint":
        about = p.form.get("about", "other")
        fields["about"] = about if about in actions.ABOUT else "other"
    reply = await act(request, p, "open", fields, text)
    ticket_id = forms.ticket_of(reply)
    if ticket_id is not None:
        raise see(f"/h5/i/{ticket_id}" + await said_reply(deps, p.me, reply))
    if reply.text == words.ALREADY_SENT:  # a double tap: the first one went through
        raise see(f"/h5/c/{case_id}/items" + await said_reply(deps, p.me, reply))
    raise see(here + await said_reply(deps, p.me, reply))


async def progress(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    case_id = _id(request, "case_id")
    async with _deps(request).db.sessions() as session:
        found = await portal.facts(session, me.user, case_id)
    if found is None:
        raise not_found(request)
    lines = [texts.event_line(e.kind, e.happened_at, e.amount_cents, e.note) for e in found.events]
    return render(
        request,
        "progress.html",
        title=words.PROGRESS,
        court=found.view.court,
        view=found.view,
        lines=lines,
        received=words.RECEIVED.format(amount=texts.yuan(found.received_cents)),
        paid=words.PAID.format(amount=texts.yuan(found.paid_cents)),
    )


async def _rated_item(request: web.Request, me: Me, case_id: int, raw: str) -> int | None:
    """The item `?ticket=` names, when it is theirs on this case (else the 404 page)."""
    if not raw:
        return None
    if not _ID.fullmatch(raw):
        raise not_found(request)
    async with _deps(request).db.sessions() as session:
        view = await portal.item(session, me.user, int(raw))
    if view is None or view.ticket.case_id != case_id:
        raise not_found(request)
    return int(raw)


async def rate_page(request: web.Request) -> web.StreamResponse:
    me = await signed_in(request)
    view = await _case(request, me)
    case_id = view.case.id or 0
    ticket_id = await _rated_item(request, me, case_id, request.query.get("ticket", ""))
    what = words.RATE_WHAT_SERVICE if ticket_id is None else f"#{ticket_id}"
    return render(
        request,
        "rate.html",
        title=words.RATE_TITLE,
        court=view.court,
        view=view,
        ticket_id=ticket_id,
        lead=words.RATE_LEAD.format(what=what),
        scores=[(c.key, c.label) for c in texts.SCORE_CHOICES],
        form=_form_fields(me, _deps(request).settings.secret_key),
        said=await said_for(request, me),
        limit=TEXT_MAX,
    )


async def rate(request: web.Request) -> web.StreamResponse:
    p = await posted(request)
    view = await _case(request, p.me)
    deps = _deps(request)
    case_id = view.case.id or 0
    ticket_id = await _rated_item(request, p.me, case_id, p.form.get("ticket", ""))
    again = request.path + (f"?ticket={ticket_id}" if ticket_id else "")
    score = p.form.get("score", "")
    comment = _text(p, "comment")
    if score not in ("1", "2", "3") or len(comment) > TEXT_MAX:
        problem = words.PICK_A_SCORE if score not in ("1", "2", "3") else _not_sent(comment)
        raise see(_then(again, await said_words(deps, p.me, problem)))
    fields: dict[str, int | str] = {"case": case_id, "score": int(score)}
    if ticket_id is not None:
        fields["ticket"] = ticket_id
    reply = await act(request, p, "rate", fields, comment)
    home = f"/h5/i/{ticket_id}" if ticket_id is not None else f"/h5/c/{case_id}"
    raise see(home + await said_reply(deps, p.me, reply))


# -- the style sheet, and the headers every page carries --------------------------------------

STYLE = shared.StyleSheet.load(HERE / "static" / "h5.css", "/h5/static/h5.css")
STYLE_URL = STYLE.url
# Every response of these pages (refusals and redirects too) is locked down.
_secure_headers = shared.locked_down(
    lambda path: path.startswith(("/q/", "/h5")), referrer="no-referrer"
)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
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
    app.on_response_prepare.append(_secure_headers)
    routes: list[tuple[str, str, Handler]] = [
        # GET /q/{token} is bot.app.pages' route (CONTRACT.md), which hands it to `landing`.
        ("POST", "/q/{token}", verify),
        ("GET", OAUTH_PATH, oauth),
        ("GET", OAUTH_PATH + "/{slug}", oauth),  # a court's own account's (MST_COURTS_FILE)
        ("GET", STYLE.path, STYLE.serve),
        ("GET", "/h5", my_cases),
        ("GET", "/h5/", my_cases),
        ("GET", "/h5/c/{case_id}", case_home),
        ("GET", "/h5/c/{case_id}/items", items_page),
        ("GET", "/h5/c/{case_id}/progress", progress),
        ("GET", "/h5/c/{case_id}/new/{kind}", new_item),
        ("POST", "/h5/c/{case_id}/new/{kind}", open_item),
        ("GET", "/h5/c/{case_id}/rate", rate_page),
        ("POST", "/h5/c/{case_id}/rate", rate),
        ("GET", "/h5/i/{ticket_id}", item_page),
        ("POST", "/h5/i/{ticket_id}", add_to_item),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
