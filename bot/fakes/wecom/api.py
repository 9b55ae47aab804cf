"""A local stand-in for qyapi.weixin.qq.com (and WeCom's sign-in pages), for tests and the
demo, beside the fake WeChat API (`mount` puts it under a prefix of that server).

It speaks WeCom's paths and error codes: gettoken (40013 corp, 40001 secret), message/send
(40014 / 42001 token, 40056 / 301002 agentid, 40008 msgtype, 81013 nobody valid,
`invaliduser` for some), user/get (60111), auth/getuserinfo (40029, a code good once),
the OAuth authorize redirect (inside WeCom's browser) and the QR sign-in page. Like
WeCom, it takes at most 30 messages a minute and 1,000 an hour per member from the app and
silently drops the rest (`dropped`). Its clock is the app's (bot.core.clock), so a test's
frozen clock holds its windows still. `fail(path, errcode)` makes a path answer an error.
"""

from __future__ import annotations

import html
import itertools
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.core.clock import now

MINUTE_CAP = 30
HOUR_CAP = 1000
TEXT_MAX_BYTES = 2048


@dataclass
class Delivered:
    """A message WeCom would show the member."""

    touser: str
    msgtype: str
    payload: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        """What the member reads: the text, or the card's title, description and link."""
        if self.msgtype == "text":
            content = str(self.payload.get("text", {}).get("content", ""))
            return content.encode()[:TEXT_MAX_BYTES].decode("utf-8", errors="ignore")
        card = self.payload.get("textcard", {})
        return "\n".join(
            [str(card.get("title", "")), html.unescape(str(card.get("description", "")))]
        )

    @property
    def url(self) -> str | None:
        url = self.payload.get("textcard", {}).get("url")
        return None if url is None else str(url)


@dataclass
class FakeWeCom:
    corp_id: str
    secret: str
    agent_id: int
    token_ttl_s: int = 7200
    # userid (lower-case) -> name: the corp's members in the app's visible range.
    members: dict[str, str] = field(default_factory=dict)
    delivered: list[Delivered] = field(default_factory=list)
    dropped: list[Delivered] = field(default_factory=list)  # over a member's limits
    tokens_issued: int = 0
    calls: list[str] = field(default_factory=list)
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    _failures: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _sent_at: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _codes: dict[str, str] = field(default_factory=dict)  # code -> userid (once)
    _browser: str | None = None  # who WeCom's browser is signed in as (OAuth)
    _scanner: str | None = None  # who scans the QR sign-in page
    _msgids: Any = field(default_factory=lambda: itertools.count(1))

    # -- control (from tests and the demo) ------------------------------------------------

    def add_member(self, userid: str, name: str = "") -> None:
        self.members[userid.lower()] = name or userid

    def fail(self, path: str, errcode: int, times: int = 1) -> None:
        """The next `times` calls to `path` answer `errcode` (-500: an HTTP 500)."""
        self._failures[path].extend([errcode] * times)

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def delivered_to(self, userid: str) -> list[Delivered]:
        return [d for d in self.delivered if d.touser == userid.lower()]

    def inbox(self, userid: str) -> list[str]:
        return [d.text for d in self.delivered_to(userid)]

    def browser_as(self, userid: str | None) -> None:
        """WeCom's own browser opens our pages signed in as `userid` (None: another browser)."""
        self._browser = None if userid is None else userid

    def scan_as(self, userid: str | None) -> None:
        """The QR on the sign-in page is scanned (and confirmed) by `userid`."""
        self._scanner = userid

    def code_for(self, userid: str) -> str:
        """A one-time sign-in code naming `userid`, as WeCom's redirect would carry."""
        code = secrets.token_urlsafe(32)
        self._codes[code] = userid
        return code

    # -- the API ----------------------------------------------------------------------------

    def _clock(self) -> float:
        return now().timestamp()

    def _injected(self, path: str) -> web.Response | None:
        queue = self._failures.get(path)
        if not queue:
            return None
        code = queue.pop(0)
        if code == -500:
            return web.Response(status=500, text="internal error")
        return web.json_response({"errcode": code, "errmsg": f"injected error {code}"})

    def _bad_token(self, request: web.Request) -> web.Response | None:
        expiry = self._tokens.get(request.query.get("access_token", ""))
        if expiry is None:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if expiry < self._clock():
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    async def gettoken(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/gettoken")
        if (failed := self._injected("/cgi-bin/gettoken")) is not None:
            return failed
        if request.query.get("corpid") != self.corp_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        token = secrets.token_urlsafe(48)
        self._tokens = {token: self._clock() + self.token_ttl_s}  # the old one ends
        self.tokens_issued += 1
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.token_ttl_s}
        )

    async def message_send(self, request: web.Request) -> web.Response:
        path = "/cgi-bin/message/send"
        self.calls.append(path)
        if (failed := self._injected(path)) is not None:
            return failed
        if (bad := self._bad_token(request)) is not None:
            return bad
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"errcode": 40035, "errmsg": "invalid parameter"})
        agent = body.get("agentid")
        if not isinstance(agent, int):
            return web.json_response({"errcode": 40056, "errmsg": "invalid agentid"})
        if agent != self.agent_id:
            return web.json_response(
                {"errcode": 301002, "errmsg": "not allow operate another agent"}
            )
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "textcard") or not isinstance(body.get(msgtype), dict):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if msgtype == "textcard" and not all(
            body["textcard"].get(k) for k in ("title", "description", "url")
        ):
            return web.json_response({"errcode": 40035, "errmsg": "invalid parameter"})
        wanted = [u for u in str(body.get("touser", "")).split("|") if u]
        valid = [u.lower() for u in wanted if u.lower() in self.members]
        invalid = [u.lower() for u in wanted if u.lower() not in self.members]
        if not valid:
            return web.json_response(
                {
                    "errcode": 81013,
                    "errmsg": "user & party & tag all invalid",
                    "invaliduser": "|".join(invalid),
                }
            )
        moment = self._clock()
        for userid in valid:
            message = Delivered(userid, msgtype, body, moment)
            sent = [t for t in self._sent_at[userid] if t > moment - 3600]
            self._sent_at[userid] = sent
            in_minute = sum(1 for t in sent if t > moment - 60)
            if in_minute >= MINUTE_CAP or len(sent) >= HOUR_CAP:
                self.dropped.append(message)  # WeCom drops it and says nothing
                continue
            sent.append(moment)
            self.delivered.append(message)
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": f"msg{next(self._msgids)}"}
        if invalid:
            answer["invaliduser"] = "|".join(invalid)
        return web.json_response(answer)

    async def user_get(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/user/get")
        if (bad := self._bad_token(request)) is not None:
            return bad
        userid = request.query.get("userid", "").lower()
        if userid not in self.members:
            return web.json_response({"errcode": 60111, "errmsg": "userid not found"})
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "userid": userid,
                "name": self.members[userid],
                "status": 1,
            }
        )

    async def getuserinfo(self, request: web.Request) -> web.Response:
        path = "/cgi-bin/auth/getuserinfo"
        self.calls.append(path)
        if (failed := self._injected(path)) is not None:
            return failed
        if (bad := self._bad_token(request)) is not None:
            return bad
        userid = self._codes.pop(request.query.get("code", ""), None)  # good once
        if userid is None:
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"})
        if userid.lower() not in self.members:  # someone outside the corp: an openid
            return web.json_response({"errcode": 0, "errmsg": "ok", "openid": f"o{userid}"})
        return web.json_response({"errcode": 0, "errmsg": "ok", "userid": userid})

    # -- the browser's side ------------------------------------------------------------------

    def _redirect(self, redirect_uri: str, userid: str, state: str) -> web.HTTPFound:
        query = urlencode({"code": self.code_for(userid), "state": state})
        return web.HTTPFound(redirect_uri + ("&" if "?" in redirect_uri else "?") + query)

    async def oauth_authorize(self, request: web.Request) -> web.Response:
        """Inside WeCom's browser: straight back with a code (snsapi_base asks nothing);
        elsewhere WeCom says to open the link in WeCom (a page, status 200)."""
        self.calls.append("/connect/oauth2/authorize")
        q = request.query
        if q.get("appid") != self.corp_id:
            return _page("appid错误")
        if q.get("response_type") != "code" or q.get("scope") != "snsapi_base":
            return _page("参数错误")
        if not q.get("redirect_uri", "").startswith(("http://", "https://")):
            return _page("redirect_uri参数错误")
        if self._browser is None:
            return _page("请在企业微信客户端打开链接")
        raise self._redirect(q["redirect_uri"], self._browser, q.get("state", ""))

    async def sso_login(self, request: web.Request) -> web.Response:
        """WeCom's sign-in page: a QR code to scan with WeCom; once scanned, back with a
        code. Here the scan is `scan_as`."""
        self.calls.append("/wwlogin/sso/login")
        q = request.query
        if q.get("login_type") != "CorpApp" or q.get("appid") != self.corp_id:
            return _page("参数错误")
        if q.get("agentid") != str(self.agent_id):
            return _page("agentid错误")
        if not q.get("redirect_uri", "").startswith(("http://", "https://")):
            return _page("redirect_uri参数错误")
        if self._scanner is None:
            return _page("请使用企业微信扫码登录")
        raise self._redirect(q["redirect_uri"], self._scanner, q.get("state", ""))


def _page(message: str) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html><head><meta charset='utf-8'><title>企业微信</title></head>"
        f"<body><p>{html.escape(message)}</p></body></html>",
        content_type="text/html",
        charset="utf-8",
    )


def create_app(fake: FakeWeCom) -> web.Application:
    app = web.Application()
    app.router.add_get("/cgi-bin/gettoken", fake.gettoken)
    app.router.add_post("/cgi-bin/message/send", fake.message_send)
    app.router.add_get("/cgi-bin/user/get", fake.user_get)
    app.router.add_get("/cgi-bin/auth/getuserinfo", fake.getuserinfo)
    app.router.add_get("/connect/oauth2/authorize", fake.oauth_authorize)
    app.router.add_get("/wwlogin/sso/login", fake.sso_login)
    return app


PREFIX = "/wecom"  # where `mount` puts it on another server


def mount(app: web.Application, fake: FakeWeCom, prefix: str = PREFIX) -> None:
    """Serve the fake WeCom under `prefix` of another app (the fake WeChat API's server),
    so one local server stands in for both: WECOM_API_BASE is then that server + prefix."""
    app.add_subapp(prefix, create_app(fake))
