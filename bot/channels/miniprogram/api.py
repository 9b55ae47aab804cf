"""The mini-program's JSON API, /api/mp/v1 (CONTRACT.md). Each route is one small function;
`ROUTES` lists them with their request and answer types, which both check the traffic and
make the OpenAPI document.

Errors are JSON, `{"error": code, "message": 中文}`: 401 no session or an expired or
revoked one; 404 for "no such thing" and "not yours" alike (nothing leaks whether it
exists); 422 a request that does not fit its type; 429 too fast, with Retry-After. WeChat's
own refusals at sign-in (40029 a bad code, 45011 too frequent, 40226 a high-risk account)
become the same kind of clear error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.channels.miniprogram import schemas as s
from bot.channels.wechat.api import TransientError, WeChatAPI, WeChatError
from bot.core.addresses import MINIPROGRAM
from bot.core.clock import now
from bot.core.notice import Unreadable
from bot.core.reply import Reply
from bot.dialog import forms
from bot.dialog.deps import DEPS, Deps
from bot.rules import app_sessions, bindings, portal, receipts, tickets
from bot.rules.importer import phone_hash
from handlers import texts
from handlers.notices import letter_text
from qr import codes
from storage import state
from storage.models import AppSession, Staff, Subscription

log = logging.getLogger(__name__)

PREFIX = "/api/mp/v1"
RATE_PER_MINUTE = 120  # requests a signed-in person may make (reads and writes together)
# Sign-ins from one address a minute: a flood's brake, not a person's limit (behind a
# court's proxy every phone shares one address; WeChat limits each user itself: 45011).
LOGIN_PER_MINUTE = 600
LONGEST_WAIT_S = 25  # /events holds a request at most this long (under proxies' 30 s)

Model = TypeVar("Model", bound=BaseModel)


class Fail(Exception):
    def __init__(self, status: int, error: str, message: str, retry_after: int | None = None):
        super().__init__(error)
        self.status, self.error, self.message, self.retry_after = (
            status,
            error,
            message,
            retry_after,
        )


NOT_FOUND = Fail(404, "not_found", "没有找到。")


def _fail_response(exc: Fail) -> web.Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    body = s.Error(error=exc.error, message=exc.message).model_dump()
    return web.json_response(body, status=exc.status, headers=headers)


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


async def body_of(request: web.Request, model: type[Model]) -> Model:
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Fail(422, "invalid", "请求的格式不对。") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        raise Fail(422, "invalid", f"填写的内容不完整或不正确（{where}）。") from None


def _int(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not (value.isascii() and value.isdigit() and len(value) <= 9):
        raise NOT_FOUND
    return int(value)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def signed_in(request: web.Request) -> AppSession:
    """The request's live session (401 otherwise), within its rate (429 otherwise)."""
    deps: Deps = request.app[DEPS]
    async with deps.db.sessions() as session:
        found = await app_sessions.find(session, _bearer(request))
    if found is None:
        raise Fail(401, "unauthorized", "请重新登录。")
    if await state.bump(deps.redis, f"app:{found.user}", 60) > RATE_PER_MINUTE:
        raise Fail(429, "too_fast", texts.SLOW_DOWN, retry_after=60)
    return found


def mp_api(deps: Deps) -> WeChatAPI:
    sender = deps.senders.get(MINIPROGRAM)
    api = getattr(sender, "api", None)
    if not deps.settings.miniprogram.enabled or not isinstance(api, WeChatAPI):
        raise Fail(404, "not_configured", "本院还没有开通小程序。")
    return api


# -- what goes out, as the types say ---------------------------------------------------------


def case_out(view: portal.CaseView) -> s.CaseOut:
    judge = view.judge
    return s.CaseOut(
        id=view.case.id or 0,
        case_number=view.case.case_number,
        case_type=view.case.case_type,
        cause=view.case.cause,
        court=s.CourtOut(
            name=view.court.name,
            phone=view.court.phone,
            address=view.court.address,
            hours=view.court.hours,
        ),
        judge=s.Judge(name=judge.name, title=texts.staff_title(judge)) if judge else None,
        role=view.party.role if view.party else None,
        verified_by=view.method,
    )


def item_out(view: portal.ItemView) -> s.ItemOut:
    t = view.ticket
    return s.ItemOut(
        id=t.id or 0,
        case_id=t.case_id,
        case_number=view.case.case_number,
        kind=t.kind,
        kind_name=texts.kind_name(t.kind),
        status=t.status,
        status_name=texts.status_name(t.status),
        holder=texts.holder_words(t, view.holder),
        due_at=t.due_at,
        created_at=t.created_at,
        submitted_by=texts.SUBMITTED_BY_STAFF.format(name=view.helper) if view.helper else None,
    )


# -- signing in ------------------------------------------------------------------------------

SIGN_IN_REFUSED = {
    40029: (401, "bad_code", "登录已失效，请重新打开小程序。"),
    40163: (401, "bad_code", "登录已失效，请重新打开小程序。"),
    45011: (429, "too_fast", "登录太频繁了，请稍等一分钟再试。"),
    40226: (403, "account_restricted", "您的微信账号暂时不能登录，请到诉讼服务中心办理。"),
}


async def login(request: web.Request) -> web.Response:
    deps: Deps = request.app[DEPS]
    api = mp_api(deps)
    given = await body_of(request, s.LoginIn)
    source = request.remote or "-"
    if await state.bump(deps.redis, f"app-login:{source}", 60) > LOGIN_PER_MINUTE:
        raise Fail(429, "too_fast", "登录太频繁了，请稍等一分钟再试。", retry_after=60)
    try:
        found = await api.code_to_session(given.code)
    except WeChatError as exc:
        status, error, words = SIGN_IN_REFUSED.get(
            exc.errcode, (502, "wechat_error", "微信登录暂时不可用，请稍后再试。")
        )
        log.info("mini-program sign-in refused by WeChat: %s", exc.errcode)
        raise Fail(status, error, words, retry_after=60 if status == 429 else None) from None
    except TransientError:
        raise Fail(503, "wechat_busy", "微信登录暂时不可用，请稍后再试。", retry_after=5) from None
    openid, unionid = found["openid"], found.get("unionid") or None
    async with deps.db.transaction() as session:
        user = await app_sessions.user_for_miniprogram(session, openid, unionid)
        token, row = await app_sessions.start(
            session,
            user=user,
            channel=MINIPROGRAM,
            openid=openid,
            unionid=unionid,
            session_key=found.get("session_key"),
            days=deps.settings.miniprogram.session_days,
        )
        mine = len(await portal.cases(session, user))
    return answer(s.LoginOut(token=token, expires_at=row.expires_at, cases=mine))


async def logout(request: web.Request) -> web.Response:
    await signed_in(request)
    async with request.app[DEPS].db.transaction() as session:
        await app_sessions.end(session, _bearer(request) or "")
    return web.Response(status=204)


# -- acting: the chat's flows, as app actions (handlers.actions) ------------------------------


async def act(
    deps: Deps, user: str, action: str, fields: dict[str, int | str], text: str = ""
) -> Reply:
    """Run an app action through the dialog (bot.dialog.forms). 404 when it is not theirs
    to do; 429 when too fast; 503 when the flow failed (it is kept and runs again)."""
    reply = await forms.submit(
        deps, channel=MINIPROGRAM, user=user, action=action, fields=fields, text=text
    )
    if reply is None:
        raise NOT_FOUND
    if reply.text == texts.SLOW_DOWN:
        raise Fail(429, "too_fast", texts.SLOW_DOWN, retry_after=60)
    if reply.text == texts.BUSY:
        raise Fail(503, "busy", texts.BUSY, retry_after=5)
    return reply


def action_out(reply: Reply) -> s.ActionOut:
    link = next((link.url for link in reply.links if "/v/" in link.url), None)
    # The flow's words without the chat's numbered choices: the app has its own buttons.
    return s.ActionOut(
        message=reply.text.strip(), ticket_id=forms.ticket_of(reply), receipt_url=link
    )


async def verify(request: web.Request) -> web.Response:
    me = await signed_in(request)
    deps: Deps = request.app[DEPS]
    given = await body_of(request, s.VerifyIn)
    if (given.digits is None) == (given.phone_code is None):
        raise Fail(422, "invalid", "请填写手机号后四位，或授权使用微信绑定的手机号（二选一）。")
    async with deps.db.transaction() as session:
        lookup = await codes.by_token(session, given.scan)
        if lookup.status in ("unknown", "mistyped"):
            typed = await codes.by_typed_text(session, given.scan)
            lookup = typed if typed is not None else lookup
        if lookup.status == "revoked" and lookup.court is not None:
            raise Fail(
                410, "code_revoked", texts.CODE_REVOKED.format(call=texts.call(lookup.court))
            )
        if lookup.status != "ok" or lookup.case is None:
            raise Fail(404, "not_found", texts.CODE_UNKNOWN)
        case_id = lookup.case.id or 0
        await bindings.record_scan(session, me.user, lookup, via=MINIPROGRAM)
    if given.phone_code is not None:
        try:
            phone = await mp_api(deps).phone_number(given.phone_code)
        except WeChatError:
            raise Fail(
                422, "bad_phone_code", "没有取到微信绑定的手机号，请改用手机号后四位核验。"
            ) from None
        except TransientError:
            raise Fail(503, "wechat_busy", "微信暂时不可用，请稍后再试。", retry_after=5) from None
        reply = await act(
            deps,
            me.user,
            "verify_phone",
            {"case": case_id, "phone_hash": phone_hash(deps.settings.secret_key, phone)},
        )
    else:
        reply = await act(deps, me.user, "verify", {"case": case_id}, given.digits or "")
    async with deps.db.sessions() as session:
        view = await portal.case(session, me.user, case_id)
    words = reply.text.strip()
    return answer(
        s.VerifyOut(verified=view is not None, message=words, case=case_out(view) if view else None)
    )


async def open_item(request: web.Request) -> web.Response:
    me = await signed_in(request)
    given = await body_of(request, s.OpenIn)
    fields: dict[str, int | str] = {"case": given.case_id, "kind": given.kind}
    if given.kind == "complaint":
        fields["about"] = given.about or "other"
    reply = await act(request.app[DEPS], me.user, "open", fields, given.text)
    return answer(action_out(reply), status=201 if forms.ticket_of(reply) else 200)


async def add_to_item(request: web.Request) -> web.Response:
    me = await signed_in(request)
    ticket_id = _int(request, "id")
    given = await body_of(request, s.AddIn)
    # Whose item it is, and its case, the action finds (not found: 404), in its own
    # transaction: no look-up of it here first.
    fields: dict[str, int | str] = {"ticket": ticket_id}
    return answer(action_out(await act(request.app[DEPS], me.user, "add", fields, given.text)))


async def rate(request: web.Request) -> web.Response:
    me = await signed_in(request)
    given = await body_of(request, s.RateIn)
    fields: dict[str, int | str] = {"case": given.case_id, "score": given.score}
    if given.ticket_id is not None:
        fields["ticket"] = given.ticket_id
    reply = await act(request.app[DEPS], me.user, "rate", fields, given.comment)
    return answer(action_out(reply))


# -- reading: bot.rules.portal, scoped to the person ----------------------------------------


async def my_cases(request: web.Request) -> web.Response:
    me = await signed_in(request)
    async with request.app[DEPS].db.sessions() as session:
        views = await portal.cases(session, me.user)
    return answer(s.CasesOut(cases=[case_out(v) for v in views]))


async def one_case(request: web.Request) -> web.Response:
    me = await signed_in(request)
    deps: Deps = request.app[DEPS]
    async with deps.db.sessions() as session:
        found = await portal.facts(session, me.user, _int(request, "id"))
    if found is None:
        raise NOT_FOUND
    booking = None
    if found.booking is not None:
        booked, slot = found.booking
        async with deps.db.sessions() as session:
            mediator = await session.get(Staff, slot.mediator_id)
        booking = s.BookingOut(
            id=booked.id or 0,
            start_at=slot.start_at,
            end_at=slot.end_at,
            mediator=mediator.name if mediator else None,
            room_url=deps.rules.rooms.link(slot, booked),
        )
    return answer(
        s.CaseDetail(
            case=case_out(found.view),
            enforcement=[
                s.EnforcementLine(
                    kind=e.kind,
                    at=e.happened_at,
                    text=texts.event_line(e.kind, e.happened_at, e.amount_cents, e.note),
                )
                for e in found.events
            ],
            received=texts.yuan(found.received_cents),
            paid=texts.yuan(found.paid_cents),
            booking=booking,
        )
    )


async def mediators(request: web.Request) -> web.Response:
    me = await signed_in(request)
    async with request.app[DEPS].db.sessions() as session:
        found = await portal.mediators(session, me.user, _int(request, "id"))
    if found is None:
        raise NOT_FOUND
    return answer(
        s.MediatorsOut(
            mediators=[
                s.MediatorOut(
                    id=c.mediator.id or 0,
                    name=c.mediator.name,
                    speciality=c.mediator.speciality,
                    next_free=c.next_free,
                )
                for c in found
            ]
        )
    )


async def slots(request: web.Request) -> web.Response:
    me = await signed_in(request)
    async with request.app[DEPS].db.sessions() as session:
        found = await portal.free_slots(
            session, me.user, _int(request, "id"), _int(request, "mediator")
        )
    if found is None:
        raise NOT_FOUND
    return answer(
        s.SlotsOut(
            slots=[s.SlotOut(id=x.id or 0, start_at=x.start_at, end_at=x.end_at) for x in found]
        )
    )


async def book(request: web.Request) -> web.Response:
    """Book a free slot (or move the booking there): the chat's own confirm step."""
    me = await signed_in(request)
    given = await body_of(request, s.BookIn)
    fields: dict[str, int | str] = {"case": _int(request, "id"), "slot": given.slot_id}
    return answer(action_out(await act(request.app[DEPS], me.user, "book", fields)))


async def cancel_booking(request: web.Request) -> web.Response:
    me = await signed_in(request)
    fields: dict[str, int | str] = {"case": _int(request, "id")}
    return answer(action_out(await act(request.app[DEPS], me.user, "cancel", fields, "取消")))


async def my_items(request: web.Request) -> web.Response:
    me = await signed_in(request)
    case_id = request.query.get("case_id")
    if case_id is not None and not (case_id.isascii() and case_id.isdigit()):
        raise Fail(422, "invalid", "案件编号不对。")
    async with request.app[DEPS].db.sessions() as session:
        views = await portal.items(session, me.user, int(case_id) if case_id else None)
    return answer(s.ItemsOut(items=[item_out(v) for v in views]))


async def one_item(request: web.Request) -> web.Response:
    me = await signed_in(request)
    async with request.app[DEPS].db.sessions() as session:
        view = await portal.item(session, me.user, _int(request, "id"))
        if view is None:
            raise NOT_FOUND
        said = await portal.thread(session, view)
    return answer(
        s.ItemDetail(
            item=item_out(view),
            thread=[
                s.SaidOut(
                    at=x.at,
                    mine=x.mine,
                    who="我"
                    if x.mine
                    else texts.say_holder(
                        x.staff.name if x.staff else None,
                        tickets.title_role(x.staff) if x.staff else None,
                        None,
                    ),
                    text=x.text or "（已依法删除）",
                )
                for x in said
            ],
        )
    )


async def receipt(request: web.Request) -> web.Response:
    me = await signed_in(request)
    deps: Deps = request.app[DEPS]
    key = request.match_info["receipt"].lower()
    async with deps.db.sessions() as session:
        found = await receipts.check(session, key) if len(key) == receipts.SHOWN else None
        mine = (
            await portal.item(session, me.user, found.ticket_id)
            if found is not None and found.ticket_id
            else None
        )
        logged = await receipts.logged(session, found.event_id) if mine and found else None
    if found is None or mine is None:
        raise NOT_FOUND
    return answer(
        s.ReceiptOut(
            kind=texts.kind_name(found.kind),
            case_number=found.case_number,
            at=found.at,
            intact=found.intact,
            in_log=logged is not None and logged.proof is not None,
            url=receipts.url(deps.settings.public_base_url, key),
        )
    )


async def events(request: web.Request) -> web.Response:
    """What the court told them since `since` (a cursor), oldest first. With `wait` (up to
    25 s) and nothing new, the request is held until something comes or the wait ends."""
    me = await signed_in(request)
    deps: Deps = request.app[DEPS]
    try:
        since = int(request.query.get("since", "0"))
        wait = min(float(request.query.get("wait", "0")), LONGEST_WAIT_S)
    except ValueError:
        raise Fail(422, "invalid", "since 和 wait 要填数字。") from None
    if since < 0 or wait < 0:
        raise Fail(422, "invalid", "since 和 wait 要填数字。")
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        async with deps.db.sessions() as session:
            told = await portal.told(session, me.user, since)
        if told or asyncio.get_running_loop().time() >= deadline:
            break
        # Held on the server: a row may come from any process, so look again shortly.
        await asyncio.sleep(min(1.0, max(0.0, deadline - asyncio.get_running_loop().time())))
    out = []
    for t in told:
        try:
            _, words = letter_text(t.payload)
        except Unreadable:
            continue  # worded by a newer version: that one serves it
        out.append(
            s.EventOut(
                id=t.id,
                at=t.at,
                text=words,
                case_number=t.payload.get("case_number"),
                ticket_id=t.ticket_id,
            )
        )
    return answer(s.EventsOut(events=out, cursor=told[-1].id if told else since))


async def subscribe(request: web.Request) -> web.Response:
    """The templates the person accepted in wx.requestSubscribeMessage: one grant each, used
    by the next notice (bot.channels.miniprogram.sender)."""
    me = await signed_in(request)
    deps: Deps = request.app[DEPS]
    given = await body_of(request, s.SubscribeIn)
    ours = deps.settings.miniprogram.subscribe_template_id
    granted = [t for t in given.template_ids if t == ours]
    async with deps.db.transaction() as session:
        for template_id in granted:
            session.add(Subscription(user=me.user, template_id=template_id, granted_at=now()))
    return answer(s.SubscribeOut(granted=len(granted)), status=201)


# -- the routes, and the OpenAPI document made from them --------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.Response]]
    summary: str
    body: type[BaseModel] | None = None
    out: type[BaseModel] | None = None
    status: int = 200
    signed_in: bool = True


ROUTES = (
    Route("POST", "/login", login, "sign in with wx.login()'s code", s.LoginIn, s.LoginOut, 200, False),
    Route("POST", "/logout", logout, "sign out: the token is refused from now on", status=204),
    Route("POST", "/verify", verify, "prove to be a party of a scanned case", s.VerifyIn, s.VerifyOut),
    Route("GET", "/cases", my_cases, "my cases", out=s.CasesOut),
    Route("GET", "/cases/{id}", one_case, "a case's public facts, enforcement, booking", out=s.CaseDetail),
    Route("GET", "/cases/{id}/mediators", mediators, "the case's court's mediators", out=s.MediatorsOut),
    Route("GET", "/cases/{id}/mediators/{mediator}/slots", slots, "a mediator's free times", out=s.SlotsOut),
    Route("POST", "/cases/{id}/booking", book, "book a mediation, or move it", s.BookIn, s.ActionOut),
    Route("DELETE", "/cases/{id}/booking", cancel_booking, "cancel my mediation", out=s.ActionOut),
    Route("GET", "/items", my_items, "my items (?case_id=)", out=s.ItemsOut),
    Route("POST", "/items", open_item, "ask, complain or give an asset lead", s.OpenIn, s.ActionOut, 201),
    Route("GET", "/items/{id}", one_item, "an item and all that was said on it", out=s.ItemDetail),
    Route("POST", "/items/{id}/messages", add_to_item, "add to an item", s.AddIn, s.ActionOut),
    Route("POST", "/ratings", rate, "rate an item, or the court's service", s.RateIn, s.ActionOut),
    Route("GET", "/receipts/{receipt}", receipt, "check one of my receipts", out=s.ReceiptOut),
    Route("GET", "/events", events, "what the court told me since a cursor (?since=&wait=)", out=s.EventsOut),
    Route("POST", "/subscriptions", subscribe, "one-time subscribe-message grants", s.SubscribeIn, s.SubscribeOut, 201),
)  # fmt: skip


def _json_errors(route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            return await route.handler(request)
        except Fail as exc:
            return _fail_response(exc)

    handler.__name__ = route.handler.__name__
    return handler


def openapi() -> dict[str, Any]:
    """OpenAPI 3.1 from ROUTES and their pydantic types."""
    schemas: dict[str, Any] = {
        "Error": s.Error.model_json_schema(ref_template="#/components/schemas/{model}")
    }
    paths: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in found.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = found
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for route in ROUTES:
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
        params = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in route.path.split("/")
            if part.startswith("{")
        ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        ok: dict[str, Any] = {"description": "ok"}
        if route.out is not None:
            ok["content"] = {"application/json": {"schema": ref(route.out)}}
        responses: dict[str, Any] = {str(route.status): ok}
        for status, why in (
            (401, "no session"),
            (404, "not found"),
            (422, "invalid"),
            (429, "too fast"),
        ):
            if status != 401 or route.signed_in:
                responses[str(status)] = {"description": why, **error}
        op["responses"] = responses
        if route.signed_in:
            op["security"] = [{"session": []}]
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "码上通 mini-program API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"session": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi())


def setup(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, PREFIX + route.path, _json_errors(route))
    app.router.add_get(PREFIX + "/openapi.json", openapi_json)
