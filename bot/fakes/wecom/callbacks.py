"""WeCom's side of the callback: the URL check and messages built, signed and encrypted the
way WeCom's servers do (always encrypted: the app's Token and EncodingAESKey, the corp's
id inside). Used by the tests and `mst demo --wecom`."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

_msg_ids = itertools.count(int(time.time() * 1000) * 1000 + 7)


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


@dataclass
class WeComServer:
    """Signs and encrypts callbacks for one WeCom app's settings."""

    token: str
    aes_key: str
    corp_id: str
    agent_id: int
    clock_skew_s: int = 0
    _crypto: WeChatCrypto = field(init=False)

    def __post_init__(self) -> None:
        self._crypto = WeChatCrypto(self.token, self.aes_key, self.corp_id)

    def text_xml(self, userid: str, content: str, *, msg_id: int | None = None) -> str:
        return _xml(
            {
                "ToUserName": self.corp_id,
                "FromUserName": userid,
                "CreateTime": int(time.time()),
                "MsgType": "text",
                "Content": content,
                "MsgId": msg_id if msg_id is not None else next(_msg_ids),
                "AgentID": self.agent_id,
            }
        )

    def event_xml(self, userid: str, event: str, key: str | None = None) -> str:
        fields: dict[str, Any] = {
            "ToUserName": self.corp_id,
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": event,
            "AgentID": self.agent_id,
        }
        if key is not None:
            fields["EventKey"] = key
        return _xml(fields)

    def _stamp(self, timestamp: str | None, nonce: str | None) -> tuple[str, str]:
        return (
            timestamp or str(int(time.time()) + self.clock_skew_s),
            nonce or str(secrets.randbelow(10**10)),
        )

    def verify_query(self, echo: str = "hello", **kw: Any) -> dict[str, str]:
        """The GET WeCom sends when an admin saves the callback URL: `echo` encrypted."""
        timestamp, nonce = self._stamp(kw.get("timestamp"), kw.get("nonce"))
        encrypted = self._crypto.encrypt_message(echo, nonce, timestamp)
        echostr = xmltodict.parse(encrypted)["xml"]["Encrypt"]
        return {
            "msg_signature": sign(self.token, timestamp, nonce, echostr),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": echostr,
        }

    def request(
        self, xml: str, *, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], str]:
        """(query, body) as WeCom POSTs a message."""
        timestamp, nonce = self._stamp(timestamp, nonce)
        encrypted = xmltodict.parse(self._crypto.encrypt_message(xml, nonce, timestamp))["xml"]
        body = (
            f"<xml><ToUserName><![CDATA[{escape(self.corp_id)}]]></ToUserName>"
            f"<AgentID><![CDATA[{self.agent_id}]]></AgentID>"
            f"<Encrypt><![CDATA[{encrypted['Encrypt']}]]></Encrypt></xml>"
        )
        query = {"msg_signature": encrypted["MsgSignature"], "timestamp": timestamp, "nonce": nonce}
        return query, body

    def read_reply(self, body: str) -> dict[str, Any] | None:
        """The passive reply as a dict (decrypted), or None for an empty body."""
        if body.strip() in ("", "success"):
            return None
        outer = xmltodict.parse(body)["xml"]
        plain = self._crypto.decrypt_message(
            body, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"]
        )
        return dict(xmltodict.parse(plain)["xml"])
