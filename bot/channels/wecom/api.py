"""A thin asyncio client for the WeCom (企业微信) server API we call, on aiohttp.

One access token per app (`/cgi-bin/gettoken?corpid&corpsecret`, 7,200 s), shared by every
process through Redis under its own key and fetched single-flight under the cross-process
lock, as the Official Account's is (both: bot.channels.tencent): a refused token (40014
invalid, 42001 expired) is replaced once and the call tried again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from redis.asyncio import Redis

from bot.channels.tencent import (
    ApiError,
    request_json,
    shared_token,
    with_token,
)
from bot.channels.tencent import (
    TransientError as TransientError,  # the client's callers catch it from here
)

log = logging.getLogger(__name__)

INVALID_SECRET = 40001  # gettoken: the app's Secret is wrong
INVALID_CORP = 40013  # gettoken: the CorpID is wrong
INVALID_TOKEN = 40014
TOKEN_EXPIRED = 42001
TOKEN_INVALID = {INVALID_TOKEN, TOKEN_EXPIRED}
INVALID_CODE = 40029  # auth/getuserinfo: an OAuth code WeCom does not know (or used, or old)
INVALID_AGENT = 40056  # message/send: no such agentid
FREQUENCY = 45009  # an API's call frequency is over WeCom's limit
IP_NOT_ALLOWED = 60020  # this server's address is not among the app's trusted IPs
NO_SUCH_USER = 60111  # user/get: the userid is not in the corp
USERS_INVALID = 81013  # message/send: every recipient unknown or outside the app's range
APP_NOT_ALLOWED = 301002  # the token's app may not act for the agentid given
# What no retry changes for the recipient: the row fails, with the reason.
PERMANENT = {
    USERS_INVALID: "企业微信账号不存在，或不在应用的可见范围内",
    NO_SUCH_USER: "企业微信账号不存在",
}
# Our own configuration, which an operator must fix (the row is retried, and the reason
# kept, until they do): the words the logs and `mst outbox` show.
OURS = {
    INVALID_SECRET: "WECOM_SECRET 不对",
    INVALID_CORP: "WECOM_CORP_ID 不对",
    INVALID_AGENT: "WECOM_AGENT_ID 不对",
    APP_NOT_ALLOWED: "WECOM_SECRET 与 WECOM_AGENT_ID 不是同一个应用的",
    IP_NOT_ALLOWED: "本服务器的IP不在应用的“企业可信IP”中",
}
TEXT_MAX_BYTES = 2048  # a text message's content; WeCom cuts what is longer
CARD_TITLE_MAX_BYTES = 128
CARD_DESCRIPTION_MAX_BYTES = 512
CARD_BUTTON_MAX_CHARS = 4


class WeComError(ApiError):
    """WeCom answered with an error code."""


@dataclass
class WeComAPI:
    http: aiohttp.ClientSession
    redis: Redis
    base: str  # WECOM_API_BASE
    corp_id: str
    secret: str
    agent_id: int

    async def token(self, *, stale: str | None = None) -> str:
        """The shared token (bot.channels.tencent.shared_token), per app: each app's Secret
        gives its own. `stale`: one WeCom just refused."""

        async def fetch(forced: bool) -> dict[str, Any]:
            return await self._request(
                "GET",
                "/cgi-bin/gettoken",
                params={"corpid": self.corp_id, "corpsecret": self.secret},
            )

        key = f"wecom:token:{self.corp_id}:{self.agent_id}"
        return await shared_token(self.redis, key=key, name="wecom", fetch=fetch, stale=stale)

    async def call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, payload: Any = None
    ) -> dict[str, Any]:
        """A call with the shared token; a refused token is replaced and the call tried once
        more. Refused again: TransientError (WeCom's trouble, or ours to wait out)."""

        async def attempt(token: str) -> dict[str, Any]:
            query = {**(params or {}), "access_token": token}
            return await self._request(method, path, params=query, payload=payload)

        async def token(stale: str | None) -> str:
            return await self.token(stale=stale)

        return await with_token(attempt, token, invalid=TOKEN_INVALID, what=path)

    async def _request(
        self, method: str, path: str, *, params: dict[str, str], payload: Any = None
    ) -> dict[str, Any]:
        return await request_json(
            self.http,
            self.base + path,
            method,
            params=params,
            payload=payload,
            error=WeComError,
            name="wecom",
        )

    # -- the calls we make ----------------------------------------------------------------

    async def send(self, userid: str, message: dict[str, Any]) -> dict[str, Any]:
        """An app message to one member (`message`: {"msgtype": …, <msgtype>: {…}}). WeCom
        answers 0 even when it will not deliver to someone: they are in `invaliduser`."""
        payload = {"touser": userid, "agentid": self.agent_id, **message, "safe": 0}
        return await self.call("POST", "/cgi-bin/message/send", payload=payload)

    async def user_of_code(self, code: str) -> dict[str, str]:
        """An OAuth or QR sign-in code → {"userid"} for a member of the corp ({"openid"} for
        someone outside it). Each code is good once, for five minutes (40029 after)."""
        data = await self.call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})
        return {k: str(data[k]) for k in ("userid", "openid") if data.get(k)}

    async def user(self, userid: str) -> dict[str, Any]:
        """A member's record (/cgi-bin/user/get): name, department, status …"""
        return await self.call("GET", "/cgi-bin/user/get", params={"userid": userid})

    def oauth_url(self, open_base: str, redirect_uri: str, state: str) -> str:
        """Where a page opened inside WeCom's own browser learns who is there silently
        (snsapi_base), WeCom's parameters in WeCom's order, with #wechat_redirect."""
        return (
            f"{open_base.rstrip('/')}/connect/oauth2/authorize?appid={quote(self.corp_id)}"
            f"&redirect_uri={quote(redirect_uri, safe='')}&response_type=code"
            f"&scope=snsapi_base&state={quote(state, safe='')}&agentid={self.agent_id}"
            "#wechat_redirect"
        )

    def sso_url(self, login_base: str, redirect_uri: str, state: str) -> str:
        """WeCom's sign-in page for any other browser: a QR code the member scans with
        WeCom (login_type CorpApp: a corp's own app)."""
        return (
            f"{login_base.rstrip('/')}/wwlogin/sso/login?login_type=CorpApp"
            f"&appid={quote(self.corp_id)}&agentid={self.agent_id}"
            f"&redirect_uri={quote(redirect_uri, safe='')}&state={quote(state, safe='')}"
        )
