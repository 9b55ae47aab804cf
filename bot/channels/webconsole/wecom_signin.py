"""Signing in to the staff console with WeCom: `/console/login/wecom`.

Inside WeCom's own browser the page goes to WeCom's OAuth (snsapi_base: silent, the
member is already known there); in any other browser to WeCom's sign-in page, whose QR
code the member scans with WeCom. WeCom comes back to `/console/login/wecom/done` with a
one-time code and our `state`, which must be the one this browser was given (a cookie of
its own): a sign-in started elsewhere cannot land here. The code gives the member's
userid (`/cgi-bin/auth/getuserinfo`); the staff member linked to it gets the console
session a password sign-in makes (bot.channels.webconsole.pages), recorded as via WeCom.
A userid linked to nobody is refused and recorded.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta

from aiohttp import web

from bot.channels.webconsole import auth, pages
from bot.channels.wecom.api import OURS, TransientError, WeComAPI, WeComError
from bot.channels.wecom.sender import WeComSender
from bot.core.addresses import WECOM
from bot.core.settings import WeComSettings
from bot.dialog.deps import DEPS, SETTINGS
from bot.rules import staff as staff_accounts
from handlers import texts
from storage import audit

log = logging.getLogger(__name__)

START = "/console/login/wecom"
DONE = "/console/login/wecom/done"
STATE_COOKIE = "mst_console_wecom"
STATE_TTL = timedelta(minutes=10)
# WeCom's browser names itself in its User-Agent ("wxwork/4.1.x").
WECOM_BROWSER = "wxwork"


def _wecom(request: web.Request) -> WeComSettings:
    wecom = request.app[SETTINGS].wecom
    assert wecom is not None  # the routes are only added when WeCom is configured
    return wecom


def _api(request: web.Request) -> WeComAPI:
    """The process's WeCom client: its sender's (one token for the app, shared)."""
    sender = request.app[DEPS].senders.get(WECOM)
    if not isinstance(sender, WeComSender):
        raise _refused(request, web.HTTPServiceUnavailable, texts.WECOM_LOGIN_UNAVAILABLE)
    return sender.api


def _refused(request: web.Request, kind: type[web.HTTPException], text: str) -> web.HTTPException:
    return pages.refusal(
        request,
        kind,
        texts.WECOM_LOGIN_TITLE,
        text,
        link=(texts.WECOM_LOGIN_BUTTON, START),
    )


async def start(request: web.Request) -> web.StreamResponse:
    """To WeCom: its OAuth inside WeCom's browser, its QR sign-in page elsewhere."""
    settings = request.app[SETTINGS]
    api = _api(request)
    state = secrets.token_urlsafe(24)  # WeCom takes a-z A-Z 0-9 - _ in 128 bytes
    back = settings.public_base_url + DONE
    if WECOM_BROWSER in request.headers.get("User-Agent", "").lower():
        target = api.oauth_url(_wecom(request).open_base, back, state)
    else:
        target = api.sso_url(_wecom(request).login_base, back, state)
    found = web.HTTPFound(target, headers=pages.PRIVATE)
    auth.set_cookie(found, STATE_COOKIE, state, STATE_TTL)
    raise found


async def done(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    api = _api(request)
    state = request.query.get("state", "")
    mine = request.cookies.get(STATE_COOKIE, "")
    if not (mine and state and len(state) <= 128 and hmac.compare_digest(state, mine)):
        # Not started in this browser (or long ago): nothing is asked of WeCom.
        raise _refused(request, web.HTTPForbidden, texts.WECOM_LOGIN_EXPIRED)
    code = request.query.get("code", "")
    if not code or len(code) > 512:  # WeCom's codes are at most 512 bytes
        raise _refused(request, web.HTTPForbidden, texts.WECOM_LOGIN_CANCELLED)
    try:
        who = await api.user_of_code(code)
    except WeComError as exc:
        if exc.errcode in OURS:  # our configuration, not the member's code
            log.error("wecom sign-in: %s (%s)", exc, OURS[exc.errcode])
            raise _refused(
                request, web.HTTPServiceUnavailable, texts.WECOM_LOGIN_UNAVAILABLE
            ) from None
        log.warning("wecom sign-in: code refused (%s)", exc.errcode)
        raise _refused(request, web.HTTPForbidden, texts.WECOM_LOGIN_EXPIRED) from None
    except TransientError as exc:
        log.warning("wecom sign-in: %s", exc)
        raise _refused(request, web.HTTPServiceUnavailable, texts.WECOM_LOGIN_UNAVAILABLE) from None
    userid = who.get("userid", "")
    address = pages.address_of(request)
    async with deps.db.transaction() as session:
        staff = await staff_accounts.by_wecom_userid(session, userid) if userid else None
        if staff is None:
            await audit.append(
                session,
                actor="console",
                action="console.sign_in_failed",
                payload={
                    "reason": "wecom_unknown_user",
                    "via": WECOM,
                    "userid": userid[:64] or None,  # WeCom's, not typed: kept as is
                    "address": address,
                },
            )
            refused: web.HTTPException | None = _refused(
                request, web.HTTPForbidden, texts.WECOM_LOGIN_UNKNOWN
            )
        else:
            refused = None
            found = await pages.signed_in_by(request, session, staff, WECOM)
    if refused is not None:  # after the commit: the refusal is on record
        auth.clear_cookie(refused, STATE_COOKIE)
        raise refused
    auth.clear_cookie(found, STATE_COOKIE)  # a state is good once
    raise found


def setup(app: web.Application) -> None:
    """The routes, when WeCom is configured. The console's own hooks (headers, no-store)
    cover them: they are under /console."""
    if app[SETTINGS].wecom is None:
        return
    app.router.add_get(START, pages._guarded(start))
    app.router.add_get(DONE, pages._guarded(done))
