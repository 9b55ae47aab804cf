"""A local stand-in for api.weixin.qq.com, for tests, the demo and `mst chat`.

It speaks the real paths and error codes, records every message the server sends out,
enforces the customer-service window and quota when told to, and can be told to fail a
path with a given error code. Control endpoints live under `/_fake/`.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CS_QUOTA = 5  # messages per user message within 48 h


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
    token_ttl_s: int = 7200
    # Off by default; tests switch on what they exercise.
    enforce_window: bool = False
    enforce_quota: bool = False
    sent: list[Sent] = field(default_factory=list)
    tokens_issued: int = 0
    calls: list[str] = field(default_factory=list)
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    _failures: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _closed_windows: set[str] = field(default_factory=set)
    _quota_used: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _msgids: Any = field(default_factory=lambda: itertools.count(1000))
    # Temporary media users sent (MediaId -> bytes, content type), as /cgi-bin/media/get serves.
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    scenes: list[str] = field(default_factory=list)  # scene QR codes asked for

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

    # -- the API -----------------------------------------------------------------------

    def _issue_token(self) -> dict[str, Any]:
        token = secrets.token_urlsafe(48)
        # A new token replaces the old one (WeChat keeps the old one valid for a short overlap;
        # here it ends at once, so code that fetches per process is caught).
        self._tokens = {token: time.time() + self.token_ttl_s}
        self.tokens_issued += 1
        return {"access_token": token, "expires_in": self.token_ttl_s}

    def _check_token(self, request: web.Request) -> dict[str, Any] | None:
        token = request.query.get("access_token", "")
        expiry = self._tokens.get(token)
        if expiry is None:
            return {
                "errcode": 40001,
                "errmsg": "invalid credential, access_token is invalid or not latest",
            }
        if expiry < time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
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
        if q.get("appid") != self.app_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        return web.json_response(self._issue_token())

    async def stable_token(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/stable_token")
        body = await request.json()
        if body.get("appid") != self.app_id or body.get("secret") != self.app_secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        if body.get("force_refresh") or not self._tokens:
            return web.json_response(self._issue_token())
        token, expiry = next(iter(self._tokens.items()))
        return web.json_response({"access_token": token, "expires_in": int(expiry - time.time())})

    async def _send(self, request: web.Request, kind: str) -> web.Response:
        path = request.path
        self.calls.append(path)
        if (failed := self._injected(path)) is not None:
            return failed
        if (bad := self._check_token(request)) is not None:
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
        if (bad := self._check_token(request)) is not None:
            return web.json_response(bad)
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:  # unknown or older than three days
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        body, content_type = found
        return web.Response(body=body, content_type=content_type)

    async def qrcode_create(self, request: web.Request) -> web.Response:
        self.calls.append("/cgi-bin/qrcode/create")
        if (bad := self._check_token(request)) is not None:
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


def create_app(fake: FakeWeChat) -> web.Application:
    app = web.Application()
    app.router.add_get("/cgi-bin/token", fake.token)
    app.router.add_post("/cgi-bin/stable_token", fake.stable_token)
    app.router.add_post("/cgi-bin/message/custom/send", fake.custom_send)
    app.router.add_post("/cgi-bin/message/template/send", fake.template_send)
    app.router.add_post("/cgi-bin/message/subscribe/send", fake.subscribe_send)
    app.router.add_post("/cgi-bin/qrcode/create", fake.qrcode_create)
    app.router.add_get("/cgi-bin/media/get", fake.media_get)
    app.router.add_get("/_fake/sent", fake.ctl_sent)
    app.router.add_post("/_fake/fail", fake.ctl_fail)
    app.router.add_post("/_fake/user_wrote", fake.ctl_user_wrote)
    return app
