"""WeChat's side of the callback: messages built, signed and (in safe mode) encrypted the
way WeChat's servers build them. Used by tests, the benchmark, `mst demo` and `mst chat`."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    signature: str = signer.signature
    return signature


def _xml(fields: dict[str, Any]) -> str:
    body = "".join(
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
        for k, v in fields.items()
    )
    return f"<xml>{body}</xml>"


def text_xml(
    openid: str, content: str, *, to: str = "gh_mashangtong", msg_id: int | None = None
) -> str:
    return _xml(
        {
            "ToUserName": to,
            "FromUserName": openid,
            "CreateTime": int(time.time()),
            "MsgType": "text",
            "Content": content,
            "MsgId": msg_id if msg_id is not None else next(_msg_ids),
        }
    )


def event_xml(
    openid: str,
    event: str,
    key: str | None = None,
    *,
    to: str = "gh_mashangtong",
    at: int | None = None,
) -> str:
    fields: dict[str, Any] = {
        "ToUserName": to,
        "FromUserName": openid,
        "CreateTime": at if at is not None else int(time.time()),
        "MsgType": "event",
        "Event": event,
    }
    if key is not None:
        fields["EventKey"] = key
    return _xml(fields)


def media_xml(openid: str, msg_type: str, *, to: str = "gh_mashangtong", **extra: Any) -> str:
    fields: dict[str, Any] = {
        "ToUserName": to,
        "FromUserName": openid,
        "CreateTime": int(time.time()),
        "MsgType": msg_type,
        **extra,
        "MsgId": next(_msg_ids),
    }
    return _xml(fields)


@dataclass
class WeChatServer:
    """Signs (and encrypts) callbacks for one Official Account's settings."""

    token: str
    app_id: str
    aes_key: str | None = None
    clock_skew_s: int = 0
    _crypto: WeChatCrypto | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.aes_key:
            self._crypto = WeChatCrypto(self.token, self.aes_key, self.app_id)

    def query(
        self, *, timestamp: str | None = None, nonce: str | None = None, openid: str = ""
    ) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()) + self.clock_skew_s)
        nonce = nonce or str(secrets.randbelow(10**10))
        q = {
            "signature": sign(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
        }
        if openid:
            q["openid"] = openid
        return q

    def request(self, xml: str, **kw: Any) -> tuple[dict[str, str], str]:
        """(query, body) as WeChat POSTs them: plaintext, or encrypted with msg_signature."""
        q = self.query(**kw)
        if self._crypto is None:
            return q, xml
        encrypted = self._crypto.encrypt_message(xml, q["nonce"], q["timestamp"])
        enc = xmltodict.parse(encrypted)["xml"]
        to_user = xmltodict.parse(xml)["xml"]["ToUserName"]
        body = f"<xml><ToUserName><![CDATA[{escape(to_user)}]]></ToUserName><Encrypt><![CDATA[{enc['Encrypt']}]]></Encrypt></xml>"
        q.update(encrypt_type="aes", msg_signature=enc["MsgSignature"])
        return q, body

    def read_reply(self, body: str, query: dict[str, str]) -> dict[str, Any] | None:
        """The passive reply as a dict (decrypted in safe mode), or None for `success`/empty."""
        if body in ("", "success"):
            return None
        if self._crypto is not None:
            outer = xmltodict.parse(body)["xml"]
            body = self._crypto.decrypt_message(
                body, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"]
            )
        return dict(xmltodict.parse(body)["xml"])
