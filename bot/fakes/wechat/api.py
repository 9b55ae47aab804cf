"""A local stand-in for api.weixin.qq.com, for tests, the demo and `mst chat`.

It speaks the real paths and error codes, records every message the server sends out,
enforces the customer-service window and quota when told to, and can be told to fail a
path with a given error code. Control endpoints live under `/_fake/`.

Two apps live here, as at WeChat: the Official Account (`app_id`) and the mini-program
(`mp_app_id`), each with its own access token. The mini-program's calls (login, phone
number, subscribe messages, URL Scheme, mini-program codes) want the mini-program's
token; web authorisation (open.weixin.qq.com, served here too) is the Official Account's.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import re
import secrets
import string
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.core.settings import DEMO_MP_APP_ID, DEMO_MP_APP_SECRET

CS_QUOTA = 5  # messages per user message within 48 h
# getwxacodeunlimit's scene: at most 32 of these characters.
SCENE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}")
# A mini-program page path: pages/x/y, no leading slash, no query.
PAGE = re.compile(r"pages(/[A-Za-z0-9_-]+)+")


@dataclass
class _Code:
    """A one-time code (wx.login, getPhoneNumber, web authorisation) and whom it names."""

    value: str  # openid, or the phone number
    unionid: str | None = None
    used: bool = False


@dataclass
class Sent:
    kind: str  # custom | template | subscribe
    touser: str
    payload: dict[str, Any]
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        if self.kind == "custom":
            return str(self.payload.get("text", {}).get("content", ""))
        return " / ".join(str(v.get("value", "")) for v in self.payload.get("data", {}).values())


@dataclass
class FakeWeChat:
    app_id: str
    app_secret: str
    mp_app_id: str = DEMO_MP_APP_ID
    mp_app_secret: str = DEMO_MP_APP_SECRET
    token_ttl_s: int = 7200
    # Off by default; tests switch on what they exercise.
    enforce_window: bool = False
    enforce_quota: bool = False
    # Subscribe messages need a grant (fake.grant) each, as WeChat's one-time ones do.
    subscriptions_checked: bool = True
    sent: list[Sent] = field(default_factory=list)
    tokens_issued: int = 0
    calls: list[str] = field(default_factory=list)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> app, expiry
    _failures: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _closed_windows: set[str] = field(default_factory=set)
    _quota_used: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _msgids: Any = field(default_factory=lambda: itertools.count(1000))
    # Temporary media users sent (MediaId -> bytes, content type), as /cgi-bin/media/get serves.
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    scenes: list[str] = field(default_factory=list)  # scene QR codes asked for
    # The mini-program's side: what was asked for, for tests to look at.
    session_keys: dict[str, str] = field(default_factory=dict)  # openid -> latest session_key
    schemes: list[dict[str, Any]] = field(default_factory=list)  # path, query, days, openlink
    wxa_codes: list[dict[str, Any]] = field(default_factory=list)  # scene, page, width
    _login_codes: dict[str, _Code] = field(default_factory=dict)
    _phone_codes: dict[str, _Code] = field(default_factory=dict)
    _oauth_codes: dict[str, _Code] = field(default_factory=dict)
    _oauth_user: _Code | None = None
    _grants: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    # The custom menu: every body /cgi-bin/menu/create took, the live one last.
    menus: list[dict[str, Any]] = field(default_factory=list)
    # Web authorisation as asked for: (path, its query), the authorize page's and the code's
    # exchange's (the secret included: a test checks which account's was sent).
    oauth_requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    # -- control (from tests, or over /_fake/) ------------------------------------

    def fail(self, path: str, errcode: int, times: int = 1) -> None:
        """The next `times` calls to `path` answer `errcode` (-500 means an HTTP 500)."""
        self._failures[path].extend([errcode] * times)

    def clear_failures(self) -> None:
        """The outage is over: no more injected errors."""
        self._failures.clear()

    def close_window(self, openid: str) -> None:
        self._closed_windows.add(openid)

    def user_wrote(self, openid: str) -> None:
        """The user sent a message: window open again, quota reset."""
        self._closed_windows.discard(openid)
        self._quota_used[openid] = 0

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def sent_to(self, openid: str) -> list[Sent]:
        return [s for s in self.sent if s.touser == openid]

    def login_code(self, openid: str, unionid: str | None = None) -> str:
        """What wx.login gives the mini-program of this user: good once at jscode2session."""
        code = secrets.token_urlsafe(24)
        self._login_codes[code] = _Code(openid, unionid)
        return code

    def phone_code(self, phone: str) -> str:
        """What the getPhoneNumber button gives when the user shares `phone`: good once."""
        code = secrets.token_hex(32)
        self._phone_codes[code] = _Code(phone.replace(" ", "").removeprefix("+86"))
        return code

    def oauth_as(self, openid: str | None, unionid: str | None = None) -> None:
        """The browser that opens the authorize page is inside WeChat, as this user
        (None: a browser outside WeChat)."""
        self._oauth_user = None if openid is None else _Code(openid, unionid)

    def add_media(self, media_id: str, body: bytes, content_type: str = "audio/amr") -> None:
        """A photo or voice a user sent: /cgi-bin/media/get serves it under `media_id`
        (tests send a real AMR-NB recording, tests/data/voice.amr); until `expire_media`."""
        self.media[media_id] = (body, content_type)

    def expire_media(self, media_id: str) -> None:
        """Three days have passed: WeChat answers 40007 for it from now on."""
        self.media.pop(media_id, None)

    def grant(self, openid: str, template_id: str, times: int = 1) -> None:
        """The user tapped 允许 on wx.requestSubscribeMessage: one message each time."""
        self._grants[(openid, template_id)] += times

    # -- the API -----------------------------------------------------------------------

    def _secret_of(self, app_id: str) -> str | None:
        return {self.app_id: self.app_secret, self.mp_app_id: self.mp_app_secret}.get(app_id)

    def _issue_token(self, app_id: str) -> dict[str, Any]:
        token = secrets.token_urlsafe(48)
        # A new token replaces the app's old one (WeChat keeps the old one valid for a short
        # overlap; here it ends at once, so code that fetches per process is caught).
        self._tokens = {t: held for t, held in self._tokens.items() if held[0] != app_id}
        self._tokens[token] = (app_id, time.time() + self.token_ttl_s)
        self.tokens_issued += 1
        return {"access_token": token, "expires_in": self.token_ttl_s}

    def _check_token(
        self, request: web.Request, app_id: str | None = None
    ) -> dict[str, Any] | None:
        """None when the token is live (and, given `app_id`, that app's); else the error."""
        token = request.query.get("access_token", "")
        held = self._tokens.get(token)
        if held is None:
            return {
                "errcode": 40001,
                "errmsg": "invalid credential, access_token is invalid or not latest",
            }
        if held[1] < time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        if app_id is not None and held[0] != app_id:
            return {"errcode": 48001, "errmsg": "api unauthorized"}
        return None

    def _injected(self, path: str) -> web.Response | None:
        queue = self._failures.get(path)
        if not queue:
            return None
        code = queue.pop(0)
        if code == -500:
            return web.Response(status=500, text="internal error")
        return web.json_response({"errcode": code, "errmsg": f"injected error {code}"})

    async def token(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/token")
        if (failed := self._injected("/cgi-bin/token")) is not None:
            return failed
        q = request.query
        if q.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        app_id = q.get("appid", "")
        secret = self._secret_of(app_id)
        if secret is None:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        return web.json_response(self._issue_token(app_id))

    async def stable_token(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/stable_token")
        body = await request.json()
        app_id = str(body.get("appid", ""))
        secret = self._secret_of(app_id)
        if secret is None or body.get("secret") != secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        held = [(t, expiry) for t, (app, expiry) in self._tokens.items() if app == app_id]
        if body.get("force_refresh") or not held:
            return web.json_response(self._issue_token(app_id))
        token, expiry = held[0]
        return web.json_response({"access_token": token, "expires_in": int(expiry - time.time())})

    async def _send(self, request: web.Request, kind: str) -> web.Response:
        path = request.path
        self.calls.append(path)
        if (failed := self._injected(path)) is not None:
            return failed
        # Subscribe messages are the mini-program's; the others the Official Account's.
        app_id = self.mp_app_id if kind == "subscribe" else self.app_id
        if (bad := self._check_token(request, app_id)) is not None:
            return web.json_response(bad)
        try:
            payload = await request.json()
        except ValueError:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        touser = str(payload.get("touser", ""))
        if not touser:
            return web.json_response({"errcode": 40003, "errmsg": "invalid openid"})
        if kind == "custom":
            if self.enforce_window and touser in self._closed_windows:
                return web.json_response({"errcode": 45015, "errmsg": "response out of time limit"})
            if self.enforce_quota and self._quota_used[touser] >= CS_QUOTA:
                return web.json_response(
                    {"errcode": 45047, "errmsg": "out of response count limit"}
                )
            self._quota_used[touser] += 1
        if kind in ("template", "subscribe") and not payload.get("template_id"):
            return web.json_response({"errcode": 40037, "errmsg": "invalid template_id"})
        if kind == "subscribe" and self.subscriptions_checked:
            granted = (touser, str(payload["template_id"]))
            if self._grants.get(granted, 0) < 1:
                return web.json_response(
                    {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
                )
            self._grants[granted] -= 1
        self.sent.append(Sent(kind, touser, payload))
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if kind == "template":
            answer["msgid"] = next(self._msgids)
        return web.json_response(answer)

    async def custom_send(self, request: web.Request) -> web.Response:
        return await self._send(request, "custom")

    async def template_send(self, request: web.Request) -> web.Response:
        return await self._send(request, "template")

    async def subscribe_send(self, request: web.Request) -> web.Response:
        return await self._send(request, "subscribe")

    async def media_get(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/media/get")
        if (failed := self._injected("/cgi-bin/media/get")) is not None:
            return failed
        if (bad := self._check_token(request, self.app_id)) is not None:
            return web.json_response(bad)
        media_id = request.query.get("media_id", "")
        found = self.media.get(media_id)
        if found is None:  # unknown or older than three days
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        body, content_type = found
        # As WeChat: the file, named by its media id, with the type of what was sent.
        extension = {"audio/amr": "amr", "image/jpeg": "jpg"}.get(content_type, "bin")
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{media_id}.{extension}"'},
        )

    async def qrcode_create(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/qrcode/create")
        if (failed := self._injected("/cgi-bin/qrcode/create")) is not None:
            return failed
        if (bad := self._check_token(request, self.app_id)) is not None:
            return web.json_response(bad)
        body = await request.json()
        scene = body.get("action_info", {}).get("scene", {})
        scene_str = str(scene.get("scene_str", scene.get("scene_id", "")))
        if not 1 <= len(scene_str) <= 64:
            return web.json_response({"errcode": 40097, "errmsg": "invalid args"})
        self.scenes.append(scene_str)
        ticket = secrets.token_urlsafe(24)
        return web.json_response(
            {
                "ticket": ticket,
                "expire_seconds": body.get("expire_seconds", 60),
                "url": f"http://weixin.qq.com/q/{ticket}",
            }
        )

    # -- the mini-program ------------------------------------------------------------

    @staticmethod
    def _redeem(codes: dict[str, _Code], code: str) -> _Code | web.Response:
        """The one-time code's holder, or WeChat's refusal: unknown 40029, used 40163."""
        found = codes.get(code)
        if found is None:
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"})
        if found.used:
            return web.json_response({"errcode": 40163, "errmsg": "code been used"})
        found.used = True
        return found

    async def _mp_call(self, request: web.Request) -> dict[str, Any] | web.Response:
        """A token call of the mini-program's: its JSON body, or the refusal to answer."""
        self.calls.append(request.path)
        if (failed := self._injected(request.path)) is not None:
            return failed
        if (bad := self._check_token(request, self.mp_app_id)) is not None:
            return web.json_response(bad)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        if not isinstance(body, dict):
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        return body

    async def jscode2session(self, request: web.Request) -> web.Response:
        path = "/sns/jscode2session"
        self.calls.append(path)
        if (failed := self._injected(path)) is not None:
            return failed
        q = request.query
        if q.get("appid") != self.mp_app_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.mp_app_secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        if q.get("grant_type") != "authorization_code":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        who = self._redeem(self._login_codes, q.get("js_code", ""))
        if isinstance(who, web.Response):
            return who
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.session_keys[who.value] = session_key
        answer = {"openid": who.value, "session_key": session_key}
        if who.unionid:
            answer["unionid"] = who.unionid
        return web.json_response(answer)

    async def phone_number(self, request: web.Request) -> web.Response:
        body = await self._mp_call(request)
        if isinstance(body, web.Response):
            return body
        who = self._redeem(self._phone_codes, str(body.get("code", "")))
        if isinstance(who, web.Response):
            # A phone code used twice is "invalid code" too, at this API.
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"})
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    # Mainland numbers come without the country code here (WeChat's docs).
                    "phoneNumber": who.value,
                    "purePhoneNumber": who.value,
                    "countryCode": "86",
                    "watermark": {"timestamp": int(time.time()), "appid": self.mp_app_id},
                },
            }
        )

    async def generate_scheme(self, request: web.Request) -> web.Response:
        body = await self._mp_call(request)
        if isinstance(body, web.Response):
            return body
        jump = body.get("jump_wxa") or {}
        path, query = str(jump.get("path", "")), str(jump.get("query", ""))
        if path and not PAGE.fullmatch(path):
            return web.json_response({"errcode": 40165, "errmsg": "invalid weapp pagepath"})
        if len(query) > 512:
            return web.json_response({"errcode": 40212, "errmsg": "invalid query"})
        days = body.get("expire_interval")
        expiring = body.get("is_expire") and body.get("expire_type") == 1
        if expiring and not (isinstance(days, int) and 1 <= days <= 30):
            return web.json_response({"errcode": 40097, "errmsg": "invalid args"})
        alphabet = string.ascii_letters + string.digits
        openlink = "weixin://dl/business/?t=" + "".join(secrets.choice(alphabet) for _ in range(12))
        self.schemes.append({"path": path, "query": query, "days": days, "openlink": openlink})
        return web.json_response({"errcode": 0, "errmsg": "ok", "openlink": openlink})

    async def wxa_code_unlimited(self, request: web.Request) -> web.Response:
        body = await self._mp_call(request)
        if isinstance(body, web.Response):
            return body
        scene, page = str(body.get("scene", "")), str(body.get("page", ""))
        if not SCENE.fullmatch(scene):
            return web.json_response({"errcode": 40097, "errmsg": "invalid args"})
        if page and not PAGE.fullmatch(page):  # no page: the mini-program's home page
            return web.json_response({"errcode": 41030, "errmsg": "invalid page"})
        width = body.get("width", 430)
        if not isinstance(width, int):
            return web.json_response({"errcode": 40097, "errmsg": "invalid args"})
        width = min(max(width, 280), 1280)  # WeChat's range
        self.wxa_codes.append({"scene": scene, "page": page, "width": width})
        return web.Response(body=_qr_png(scene, width), content_type="image/png")

    # -- web authorisation (open.weixin.qq.com) -------------------------------------------

    async def oauth_authorize(self, request: web.Request) -> web.Response:
        """WeChat's authorize page: inside WeChat it redirects at once (snsapi_base asks
        nothing), with a one-time code; outside, or with bad parameters, it says so on
        a page (status 200, as WeChat's)."""
        self.calls.append("/connect/oauth2/authorize")
        q = request.query
        self.oauth_requests.append(("/connect/oauth2/authorize", dict(q)))
        redirect_uri = q.get("redirect_uri", "")
        if q.get("appid") != self.app_id:
            return _page("appid错误")
        if not redirect_uri.startswith(("http://", "https://")):
            return _page("redirect_uri参数错误")
        if q.get("response_type") != "code":
            return _page("response_type参数错误")
        if q.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
            return _page("scope参数错误或没有scope权限")
        if self._oauth_user is None:
            return _page("请在微信客户端打开链接")
        code = secrets.token_urlsafe(24)
        self._oauth_codes[code] = _Code(self._oauth_user.value, self._oauth_user.unionid)
        query = urlencode({"code": code, "state": q.get("state", "")})
        raise web.HTTPFound(redirect_uri + ("&" if "?" in redirect_uri else "?") + query)

    async def oauth_access_token(self, request: web.Request) -> web.Response:
        path = "/sns/oauth2/access_token"
        self.calls.append(path)
        self.oauth_requests.append((path, dict(request.query)))
        if (failed := self._injected(path)) is not None:
            return failed
        q = request.query
        if q.get("appid") != self.app_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        if q.get("grant_type") != "authorization_code":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        who = self._redeem(self._oauth_codes, q.get("code", ""))
        if isinstance(who, web.Response):
            return who
        answer = {
            "access_token": secrets.token_urlsafe(48),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(48),
            "openid": who.value,
            "scope": "snsapi_base",
        }
        if who.unionid:
            answer["unionid"] = who.unionid
        return web.json_response(answer)

    # -- the custom menu ----------------------------------------------------------------

    async def menu_create(self, request: web.Request) -> web.Response:
        """As WeChat checks a menu: the first thing wrong, by its code (count 40016, type
        40017, name 40018, key 40019, url 40020; a sub-button's 40023-40027)."""
        self.calls.append("/cgi-bin/menu/create")
        if (failed := self._injected("/cgi-bin/menu/create")) is not None:
            return failed
        if (bad := self._check_token(request, self.app_id)) is not None:
            return web.json_response(bad)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        refused = _menu_refusal(body)
        if refused is not None:
            code, what = refused
            return web.json_response({"errcode": code, "errmsg": what})
        self.menus.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def menu_get(self, request: web.Request) -> web.Response:
        """The menu set through the API, each button with its (maybe empty) sub_button."""
        self.calls.append("/cgi-bin/menu/get")
        if (bad := self._check_token(request, self.app_id)) is not None:
            return web.json_response(bad)
        if not self.menus:
            return web.json_response({"errcode": 46003, "errmsg": "menu no exist"})
        buttons = [
            {**b, "sub_button": [{**s, "sub_button": []} for s in b.get("sub_button", [])]}
            for b in self.menus[-1]["button"]
        ]
        return web.json_response({"menu": {"button": buttons}})

    async def selfmenu_info(self, request: web.Request) -> web.Response:
        """What the account shows: sub-buttons as {"list": [...]}, is_menu_open 0 with none."""
        self.calls.append("/cgi-bin/get_current_selfmenu_info")
        if (failed := self._injected("/cgi-bin/get_current_selfmenu_info")) is not None:
            return failed
        if (bad := self._check_token(request, self.app_id)) is not None:
            return web.json_response(bad)
        if not self.menus:
            return web.json_response({"is_menu_open": 0, "selfmenu_info": {"button": []}})
        buttons = []
        for b in self.menus[-1]["button"]:
            shown = {k: v for k, v in b.items() if k != "sub_button"}
            if b.get("sub_button"):
                shown["sub_button"] = {"list": list(b["sub_button"])}
            buttons.append(shown)
        return web.json_response({"is_menu_open": 1, "selfmenu_info": {"button": buttons}})

    # -- control endpoints --------------------------------------------------------------

    async def ctl_sent(self, request: web.Request) -> web.Response:
        touser = request.query.get("touser")
        after = int(request.query.get("after", "0"))
        items = [
            {"index": i, "kind": s.kind, "touser": s.touser, "text": s.text, "payload": s.payload}
            for i, s in enumerate(self.sent)
            if i >= after and (touser is None or s.touser == touser)
        ]
        return web.json_response({"sent": items, "next": len(self.sent)})

    async def ctl_fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail(str(body["path"]), int(body["errcode"]), int(body.get("times", 1)))
        return web.json_response({"ok": True})

    async def ctl_user_wrote(self, request: web.Request) -> web.Response:
        self.user_wrote(str((await request.json())["openid"]))
        return web.json_response({"ok": True})

    async def ctl_login_code(self, request: web.Request) -> web.Response:
        body = await request.json()
        unionid = body.get("unionid")
        code = self.login_code(str(body["openid"]), None if unionid is None else str(unionid))
        return web.json_response({"code": code})

    async def ctl_phone_code(self, request: web.Request) -> web.Response:
        return web.json_response({"code": self.phone_code(str((await request.json())["phone"]))})

    async def ctl_oauth_as(self, request: web.Request) -> web.Response:
        body = await request.json()
        openid, unionid = body.get("openid"), body.get("unionid")
        self.oauth_as(
            None if openid is None else str(openid), None if unionid is None else str(unionid)
        )
        return web.json_response({"ok": True})

    async def ctl_media(self, request: web.Request) -> web.Response:
        """POST the file's bytes with its Content-Type, `?media_id=…`: a user sent it."""
        media_id = request.query.get("media_id", "")
        if not media_id:
            return web.json_response({"errcode": 40007, "errmsg": "no media_id"}, status=400)
        self.add_media(media_id, await request.read(), request.content_type)
        return web.json_response({"ok": True})

    async def ctl_grant(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.grant(str(body["openid"]), str(body["template_id"]), int(body.get("times", 1)))
        return web.json_response({"ok": True})


# The kinds of button WeChat takes (menu/create's docs).
_MENU_TYPES = frozenset(
    {
        "click",
        "view",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
        "media_id",
        "view_limited",
        "article_id",
        "article_view_limited",
        "miniprogram",
    }
)


def _menu_refusal(body: Any) -> tuple[int, str] | None:
    """WeChat's answer to a menu it will not take, or None: 1-3 buttons, 1-5 sub-buttons,
    names of at most 16 bytes (a sub-button's 60), keys of 1-128, urls of 1-1024 bytes."""
    buttons = body.get("button") if isinstance(body, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016, "invalid button size"

    def size(value: Any) -> int:
        return len(str(value).encode("utf-8")) if value else 0

    def action(b: dict[str, Any], sub: bool) -> tuple[int, str] | None:
        codes = (40024, 40025, 40026, 40027) if sub else (40017, 40018, 40019, 40020)
        prefix = "sub button " if sub else "button "
        if b.get("type") not in _MENU_TYPES:
            return codes[0], f"invalid {prefix}type"
        if not 1 <= size(b.get("name")) <= (60 if sub else 16):
            return codes[1], f"invalid {prefix}name size"
        if b["type"] == "click" and not 1 <= size(b.get("key")) <= 128:
            return codes[2], f"invalid {prefix}key size"
        if b["type"] in ("view", "miniprogram") and not 1 <= size(b.get("url")) <= 1024:
            return codes[3], f"invalid {prefix}url size"
        return None

    for b in buttons:
        if not isinstance(b, dict):
            return 40016, "invalid button size"
        subs = b.get("sub_button") or []
        if not subs:
            if (refused := action(b, False)) is not None:
                return refused
            continue
        if not 1 <= size(b.get("name")) <= 16:
            return 40018, "invalid button name size"
        if not isinstance(subs, list) or not 1 <= len(subs) <= 5:
            return 40023, "invalid sub button size"
        for s in subs:
            if not isinstance(s, dict):
                return 40024, "invalid sub button type"
            if (refused := action(s, True)) is not None:
                return refused
    return None


def _page(message: str) -> web.Response:
    """WeChat's browser-facing error: a page, status 200."""
    text = html.escape(message)
    return web.Response(
        text=f"<!doctype html><html><head><meta charset='utf-8'><title>微信</title></head>"
        f"<body><p>{text}</p></body></html>",
        content_type="text/html",
        charset="utf-8",
    )


def _qr_png(scene: str, width: int) -> bytes:
    """A plain QR of the scene, about `width` px: stands in for WeChat's round code (which
    no library decodes), so tests can read back what was asked for."""
    import qrcode  # only when a code is asked for
    from qrcode.constants import ERROR_CORRECT_M

    code: qrcode.QRCode[Any] = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(scene)
    code.make(fit=True)
    code.box_size = max(2, width // (code.modules_count + 8))
    buf = io.BytesIO()
    code.make_image().save(buf, format="PNG")
    return buf.getvalue()


def create_app(fake: FakeWeChat) -> web.Application:
    app = web.Application()
    app.router.add_get("/cgi-bin/token", fake.token)
    app.router.add_post("/cgi-bin/stable_token", fake.stable_token)
    app.router.add_post("/cgi-bin/message/custom/send", fake.custom_send)
    app.router.add_post("/cgi-bin/message/template/send", fake.template_send)
    app.router.add_post("/cgi-bin/message/subscribe/send", fake.subscribe_send)
    app.router.add_post("/cgi-bin/qrcode/create", fake.qrcode_create)
    app.router.add_get("/cgi-bin/media/get", fake.media_get)
    app.router.add_get("/sns/jscode2session", fake.jscode2session)
    app.router.add_post("/wxa/business/getuserphonenumber", fake.phone_number)
    app.router.add_post("/wxa/generatescheme", fake.generate_scheme)
    app.router.add_post("/wxa/getwxacodeunlimit", fake.wxa_code_unlimited)
    app.router.add_get("/connect/oauth2/authorize", fake.oauth_authorize)
    app.router.add_get("/sns/oauth2/access_token", fake.oauth_access_token)
    app.router.add_post("/cgi-bin/menu/create", fake.menu_create)
    app.router.add_get("/cgi-bin/menu/get", fake.menu_get)
    app.router.add_get("/cgi-bin/get_current_selfmenu_info", fake.selfmenu_info)
    app.router.add_get("/_fake/sent", fake.ctl_sent)
    app.router.add_post("/_fake/fail", fake.ctl_fail)
    app.router.add_post("/_fake/user_wrote", fake.ctl_user_wrote)
    app.router.add_post("/_fake/login_code", fake.ctl_login_code)
    app.router.add_post("/_fake/phone_code", fake.ctl_phone_code)
    app.router.add_post("/_fake/oauth_as", fake.ctl_oauth_as)
    app.router.add_post("/_fake/grant", fake.ctl_grant)
    app.router.add_post("/_fake/media", fake.ctl_media)
    return app
