"""A thin asyncio client for the WeChat APIs we call, on aiohttp.

wechatpy's own client is synchronous `requests`; we send its payload shapes ourselves.
One access token per app, shared by every process through Redis and refreshed under the
cross-process lock: a new token invalidates the old one at WeChat, so processes must
never each fetch their own.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from redis.asyncio import Redis

from bot.channels.tencent import (
    SYSTEM_BUSY,
    TIMEOUT,
    ApiError,
    request_json,
    shared_token,
    with_token,
)
from bot.channels.tencent import (
    TransientError as TransientError,  # the clients' callers catch it from here
)

log = logging.getLogger(__name__)

TOKEN_INVALID = {40001, 40014, 42001}  # invalid credential / invalid token / token expired
WINDOW_CLOSED = 45015  # more than 48 h since the user last wrote
QUOTA_USED = 45047  # customer-service quota for this user message used up
DAILY_LIMIT = 45009  # the API's daily call quota reached
MINUTE_LIMIT = 45011  # calls per minute over the limit
INVALID_CODE = 40029  # a login / phone / OAuth code WeChat does not know (or has expired)
CODE_USED = 40163  # that code was exchanged already: each is good once
HIGH_RISK_USER = 40226  # jscode2session: WeChat blocks this user's login as high-risk
NOT_SUBSCRIBED = 43101  # subscribe message: the user has not granted it (or used it up)
INVALID_PAGE = 41030  # getwxacodeunlimit: the page is not a page path (pages/…)
INVALID_ARGS = 40097  # e.g. a scene WeChat will not take, a scheme over 30 days
INVALID_MEDIA = 40007  # media/get: a media id WeChat does not know (or past its 3 days)
# getwxacodeunlimit's scene: at most 32 of these characters (WeChat's own rule).
SCENE_CHARS = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}")
# What no retry will change for this recipient: the row fails, with the reason.
PERMANENT = {
    40003: "不合法的 OpenID（不是本公众号的用户）",
    43004: "对方没有关注或已取消关注公众号",
    43019: "对方已将公众号拉黑",
    50002: "对方的微信账号受限",
}


class WeChatError(ApiError):
    """WeChat answered with an error code."""


@dataclass
class WeChatAPI:
    http: aiohttp.ClientSession
    redis: Redis
    base: str
    app_id: str
    app_secret: str
    # A command-line process that may share no Redis with the server asks for the stable
    # token (/cgi-bin/stable_token), which leaves the server's token valid.
    stable: bool = False

    async def token(self, *, stale: str | None = None) -> str:
        """The shared token (bot.channels.tencent.shared_token). `stale`: a token WeChat
        just refused."""

        async def fetch(forced: bool) -> dict[str, Any]:
            if self.stable:
                return await self._request(
                    "POST",
                    "/cgi-bin/stable_token",
                    params={},
                    payload={
                        "grant_type": "client_credential",
                        "appid": self.app_id,
                        "secret": self.app_secret,
                        "force_refresh": forced,
                    },
                )
            return await self._request(
                "GET",
                "/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self.app_secret,
                },
            )

        return await shared_token(
            self.redis, key=f"wx:token:{self.app_id}", name="wechat", fetch=fetch, stale=stale
        )

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with the shared token; a refused token is refreshed and the call tried once
        more. Refused again, it is WeChat's trouble or ours to wait out: TransientError."""
        return await self.call_as("POST", path, payload=payload)

    async def call_as(
        self, method: str, path: str, *, params: dict[str, str] | None = None, payload: Any = None
    ) -> dict[str, Any]:
        """`call` with any method and query."""

        async def attempt(token: str) -> dict[str, Any]:
            query = {**(params or {}), "access_token": token}
            return await self._request(method, path, params=query, payload=payload)

        async def token(stale: str | None) -> str:
            return await self.token(stale=stale)

        return await with_token(attempt, token, invalid=TOKEN_INVALID, what=path)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str],
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await request_json(
            self.http,
            self.base + path,
            method,
            params=params,
            payload=payload,
            error=WeChatError,
            name="wechat",
        )

    # -- the calls we make (wechatpy's payload shapes) ---------------------------------

    async def scene_qr(self, scene: str) -> dict[str, Any]:
        """A permanent Official Account QR whose scan opens the chat with `scene` as the
        event key (qrscene_<scene> for a new follower): {ticket, url}; `url` is what the
        code encodes. WeChat allows 100,000 permanent scene codes per account."""
        return await self.call(
            "/cgi-bin/qrcode/create",
            {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}},
        )

    async def get_media(self, media_id: str) -> tuple[bytes, str]:
        """A photo or voice a user sent (temporary media, kept by WeChat for three days):
        its bytes and content type. An error comes back as JSON instead of the file:
        INVALID_MEDIA (40007) once WeChat no longer has it, which no retry changes."""
        return await self._file("GET", "/cgi-bin/media/get", params={"media_id": media_id})

    async def send_text(self, openid: str, text: str) -> dict[str, Any]:
        return await self.call(
            "/cgi-bin/message/custom/send",
            {"touser": openid, "msgtype": "text", "text": {"content": text}},
        )

    async def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} for k, v in data.items()},
        }
        if url:
            payload["url"] = url
        return await self.call("/cgi-bin/message/template/send", payload)

    async def send_subscribe(
        self, openid: str, template_id: str, data: dict[str, str], page: str | None = None
    ) -> None:
        """A mini-program subscribe message. 43101 (NOT_SUBSCRIBED): the user granted none,
        or used up what they granted — no retry changes that until they grant again."""
        payload: dict[str, Any] = {"touser": openid, "template_id": template_id}
        if page:
            payload["page"] = page
        payload |= {
            "data": {k: {"value": v} for k, v in data.items()},
            "miniprogram_state": "formal",
            "lang": "zh_CN",
        }
        await self.call("/cgi-bin/message/subscribe/send", payload)

    # -- the mini-program and web authorisation ----------------------------------------

    async def code_to_session(self, code: str) -> dict[str, str]:
        """A mini-program's wx.login code → {openid, session_key, unionid?}. Each code is
        good once (40163 after), for five minutes (40029 after). The session_key decrypts
        what the user's client sends; it is a secret: never logged, never sent on."""
        data = await self._request(
            "GET",
            "/sns/jscode2session",
            params={
                "appid": self.app_id,
                "secret": self.app_secret,
                "js_code": code,
                "grant_type": "authorization_code",
            },
        )
        return _identity(data, "openid", "session_key", "unionid")

    async def phone_number(self, code: str) -> str:
        """The phone number a user chose to share (getPhoneNumber's one-time code), without
        the country code: what the case's parties were registered with."""
        data = await self.call("/wxa/business/getuserphonenumber", {"code": code})
        phone = str((data.get("phone_info") or {}).get("purePhoneNumber") or "")
        if not phone:
            raise WeChatError(INVALID_CODE, "getuserphonenumber answered without a number")
        return phone

    def oauth_authorize_url(self, open_base: str, redirect_uri: str, state: str) -> str:
        """Where to send a browser inside WeChat to learn its user's openid silently
        (snsapi_base). WeChat refuses the parameters in any other order, and the page
        only works with the #wechat_redirect fragment."""
        return (
            f"{open_base.rstrip('/')}/connect/oauth2/authorize?appid={quote(self.app_id)}"
            f"&redirect_uri={quote(redirect_uri, safe='')}&response_type=code"
            f"&scope=snsapi_base&state={quote(state, safe='')}#wechat_redirect"
        )

    async def oauth_openid(self, code: str) -> dict[str, str]:
        """The code web authorisation redirected with → {openid, unionid?, scope}. The web
        access token it also gives is only for snsapi_userinfo calls, which we do not make."""
        data = await self._request(
            "GET",
            "/sns/oauth2/access_token",
            params={
                "appid": self.app_id,
                "secret": self.app_secret,
                "code": code,
                "grant_type": "authorization_code",
            },
        )
        return _identity(data, "openid", "unionid", "scope")

    async def generate_scheme(self, path: str, query: str, expire_days: int = 30) -> str:
        """A URL Scheme (weixin://dl/business/?t=…) that opens the mini-program's `path` with
        `query` from an SMS or a browser; it expires after `expire_days` (WeChat: ≤ 30)."""
        data = await self.call(
            "/wxa/generatescheme",
            {
                "jump_wxa": {"path": path, "query": query, "env_version": "release"},
                "is_expire": True,
                "expire_type": 1,
                "expire_interval": expire_days,
            },
        )
        return str(data["openlink"])

    async def wxa_code_unlimited(self, scene: str, page: str, width: int = 430) -> bytes:
        """A mini-program code (小程序码) opening `page` with `scene`: the image's bytes.
        The scene is checked here first: WeChat's 40097 would not say what was wrong."""
        if not SCENE_CHARS.fullmatch(scene):
            raise ValueError(
                f"scene {scene!r}: 1 to 32 characters of 0-9 A-Z a-z !#$&'()*+,/:;=?@-._~"
            )
        body, _ = await self._file(
            "POST",
            "/wxa/getwxacodeunlimit",
            payload={"scene": scene, "page": page, "width": width, "check_path": False},
        )
        return body

    async def _file(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> tuple[bytes, str]:
        """A call whose answer is a file, or JSON when WeChat refuses: the bytes and their
        content type. A refused token is replaced and the call tried once more."""
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        token = await self.token()
        for attempt in range(2):
            try:
                async with self.http.request(
                    method,
                    self.base + path,
                    params={**(params or {}), "access_token": token},
                    data=body,
                    headers={"Content-Type": "application/json; charset=utf-8"} if body else None,
                    timeout=TIMEOUT,
                ) as resp:
                    if resp.status >= 500:
                        raise TransientError(f"{path}: HTTP {resp.status}")
                    if resp.status != 200:
                        raise WeChatError(-resp.status, f"HTTP {resp.status}")
                    answer = await resp.read()
                    kind = resp.content_type
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientError(f"{path}: {type(exc).__name__}: {exc}") from exc
            # WeChat labels its JSON errors variously (application/json, text/plain, none).
            media = kind.startswith(("image/", "audio/", "video/"))
            if kind not in ("application/json", "text/plain") and (media or answer[:1] != b"{"):
                return answer, kind
            try:
                data = json.loads(answer)
            except json.JSONDecodeError as exc:
                raise TransientError(f"{path}: {type(exc).__name__}: {exc}") from exc
            errcode = int(data.get("errcode", 0) or 0)
            if errcode == SYSTEM_BUSY:
                raise TransientError(f"{path}: wechat system busy")
            if errcode in TOKEN_INVALID:
                if attempt == 1:
                    raise TransientError(f"{path}: token refused twice")
                log.warning("wechat refused the access token (%s); refreshing", errcode)
                token = await self.token(stale=token)
                continue
            raise WeChatError(errcode or -1, str(data.get("errmsg", "")) or "no file in the answer")
        raise AssertionError("unreachable")

    # -- the Official Account's custom menu (bot.channels.wechat.menu) -------------------

    async def create_menu(self, menu: dict[str, Any]) -> None:
        """Replace the custom menu (/cgi-bin/menu/create, body {"button": [...]}). WeChat
        checks it whole: 40016-40027 name a count, type, name, key or url it refuses."""
        await self.call("/cgi-bin/menu/create", menu)

    async def current_menu(self) -> dict[str, Any]:
        """The menu the account shows now, however it was set (by the API or on
        mp.weixin.qq.com): {"is_menu_open": 0|1, "selfmenu_info": {"button": [...]}}, a
        button's sub-buttons as {"list": [...]} (/cgi-bin/get_current_selfmenu_info)."""
        return await self.call_as("GET", "/cgi-bin/get_current_selfmenu_info")


def _identity(data: dict[str, Any], *keys: str) -> dict[str, str]:
    """The named fields WeChat gave (unionid only comes when the app is bound to an Open
    Platform account); an answer without openid is WeChat's fault, not the code's."""
    found = {k: str(data[k]) for k in keys if data.get(k)}
    if "openid" not in found:
        raise TransientError("wechat answered without an openid")
    return found
