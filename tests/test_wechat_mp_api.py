"""The mini-program and web-authorisation calls of our WeChat client, against the fake
WeChat over real HTTP: the shapes WeChat answers with, its error codes, one-time codes,
and `mst qr --miniprogram`."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp
import pytest
import zxingcpp
from PIL import Image

from bot.channels.tencent import TOKEN_REFRESH_FLOOR_S
from bot.channels.wechat.api import TransientError, WeChatAPI, WeChatError
from bot.core.settings import DEMO_MP_APP_ID, DEMO_MP_APP_SECRET, MiniProgramSettings
from bot.dialog.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from storage import state
from tests.conftest import CASE_NUMBER
from tests.world import mst_in_process

OA_ID, OA_SECRET = "wx1234567890abcdef", "oa-secret"
USER = "oMiniUser000000000000000001"
TEMPLATE = "tmpl-reply-arrived"
PAGE = MiniProgramSettings().page


@dataclass
class Rig:
    fake: FakeWeChat
    base: str  # the fake's root: api.weixin.qq.com and open.weixin.qq.com both
    http: aiohttp.ClientSession
    mp: WeChatAPI  # the mini-program's credentials
    oa: WeChatAPI  # the Official Account's


@pytest.fixture
async def rig(aiohttp_server: Any) -> AsyncIterator[Rig]:
    fake = FakeWeChat(app_id=OA_ID, app_secret=OA_SECRET)
    server = await aiohttp_server(fake_app(fake))
    base = str(server.make_url("")).rstrip("/")
    redis = state.connect(None)
    http = aiohttp.ClientSession()
    try:
        yield Rig(
            fake,
            base,
            http,
            WeChatAPI(http, redis, base, DEMO_MP_APP_ID, DEMO_MP_APP_SECRET),
            WeChatAPI(http, redis, base, OA_ID, OA_SECRET),
        )
    finally:
        await http.close()
        await redis.aclose()


def _decode(png: bytes) -> list[str]:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert all(b.format == zxingcpp.BarcodeFormat.QRCode for b in found)
    return [b.text for b in found]


# -- jscode2session ------------------------------------------------------------------


async def test_code_to_session_gives_the_user_once_and_never_logs_the_session_key(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = rig.fake.login_code(USER, unionid="oUnion0001")
    session = await rig.mp.code_to_session(code)
    assert session["openid"] == USER and session["unionid"] == "oUnion0001"
    assert session["session_key"] == rig.fake.session_keys[USER]
    with pytest.raises(WeChatError) as used:
        await rig.mp.code_to_session(code)
    assert used.value.errcode == 40163
    with pytest.raises(WeChatError) as unknown:
        await rig.mp.code_to_session("no-such-code")
    assert unknown.value.errcode == 40029
    # Without an Open Platform binding WeChat gives no unionid: none is made up.
    assert set(await rig.mp.code_to_session(rig.fake.login_code("oOther"))) == {
        "openid",
        "session_key",
    }
    assert rig.fake.calls.count("/sns/jscode2session") == 4
    assert "/cgi-bin/token" not in rig.fake.calls  # a login needs no access token
    for key in rig.fake.session_keys.values():
        assert key not in caplog.text
        assert all(key not in str(r.args) for r in caplog.records)


@pytest.mark.parametrize("errcode", [45011, 40226, 40029, 40163])
async def test_code_to_session_refusals_are_wechat_errors(rig: Rig, errcode: int) -> None:
    rig.fake.fail("/sns/jscode2session", errcode)
    with pytest.raises(WeChatError) as refused:
        await rig.mp.code_to_session(rig.fake.login_code(USER))
    assert refused.value.errcode == errcode


async def test_code_to_session_busy_is_transient_and_a_wrong_secret_is_not(rig: Rig) -> None:
    code = rig.fake.login_code(USER)
    rig.fake.fail("/sns/jscode2session", -1)
    with pytest.raises(TransientError):
        await rig.mp.code_to_session(code)
    rig.fake.fail("/sns/jscode2session", -500)
    with pytest.raises(TransientError):
        await rig.mp.code_to_session(code)
    assert (await rig.mp.code_to_session(code))["openid"] == USER  # the code was not spent
    wrong = WeChatAPI(rig.http, rig.mp.redis, rig.base, DEMO_MP_APP_ID, "wrong")
    with pytest.raises(WeChatError) as refused:
        await wrong.code_to_session(rig.fake.login_code(USER))
    assert refused.value.errcode == 40125
    with pytest.raises(WeChatError) as not_mp:  # the Official Account cannot log users in
        await rig.oa.code_to_session(rig.fake.login_code(USER))
    assert not_mp.value.errcode == 40013


# -- getuserphonenumber --------------------------------------------------------------


async def test_phone_number_gives_the_pure_number_once(rig: Rig) -> None:
    code = rig.fake.phone_code("+86 13800001234")
    assert await rig.mp.phone_number(code) == "13800001234"
    for again in (code, "no-such-code"):
        with pytest.raises(WeChatError) as refused:
            await rig.mp.phone_number(again)
        assert refused.value.errcode == 40029
    rig.fake.fail("/wxa/business/getuserphonenumber", -1)
    with pytest.raises(TransientError):
        await rig.mp.phone_number(rig.fake.phone_code("13900005678"))


async def test_phone_number_replaces_a_refused_token_and_keeps_the_apps_apart(
    rig: Rig, frozen_clock: list[datetime]
) -> None:
    await rig.oa.send_text(USER, "hello")  # the Official Account's token, fetched first
    assert await rig.mp.phone_number(rig.fake.phone_code("13800001234")) == "13800001234"
    issued = rig.fake.tokens_issued
    frozen_clock[0] += timedelta(seconds=TOKEN_REFRESH_FLOOR_S + 1)
    rig.fake.expire_tokens()
    assert await rig.mp.phone_number(rig.fake.phone_code("13800001234")) == "13800001234"
    assert rig.fake.tokens_issued == issued + 1
    # Each app's token stays valid beside the other's; neither serves the other's APIs.
    await rig.oa.send_text(USER, "still here")
    assert await rig.mp.phone_number(rig.fake.phone_code("13800001234")) == "13800001234"
    with pytest.raises(WeChatError) as unauthorized:
        await rig.oa.phone_number(rig.fake.phone_code("13800001234"))
    assert unauthorized.value.errcode == 48001


# -- subscribe messages --------------------------------------------------------------


async def test_send_subscribe_needs_a_grant_per_message(rig: Rig) -> None:
    data = {"thing1": "您的咨询有了答复", "time2": "2026-11-20 10:00"}
    with pytest.raises(WeChatError) as refused:
        await rig.mp.send_subscribe(USER, TEMPLATE, data)
    assert refused.value.errcode == 43101
    rig.fake.grant(USER, TEMPLATE)
    await rig.mp.send_subscribe(USER, TEMPLATE, data, page="pages/case/index?t=1")
    [sent] = rig.fake.sent_to(USER)
    assert sent.kind == "subscribe"
    assert sent.payload == {
        "touser": USER,
        "template_id": TEMPLATE,
        "page": "pages/case/index?t=1",
        "data": {"thing1": {"value": "您的咨询有了答复"}, "time2": {"value": "2026-11-20 10:00"}},
        "miniprogram_state": "formal",
        "lang": "zh_CN",
    }
    with pytest.raises(WeChatError) as used_up:  # the one grant is spent
        await rig.mp.send_subscribe(USER, TEMPLATE, data)
    assert used_up.value.errcode == 43101
    rig.fake.grant(USER, "another-template")
    with pytest.raises(WeChatError):  # a grant is for its template only
        await rig.mp.send_subscribe(USER, TEMPLATE, data)
    rig.fake.grant(USER, TEMPLATE)
    await rig.mp.send_subscribe(USER, TEMPLATE, data)
    assert "page" not in rig.fake.sent_to(USER)[-1].payload
    rig.fake.subscriptions_checked = False  # for demos that skip the grant dialog
    await rig.mp.send_subscribe(USER, TEMPLATE, data)
    assert len(rig.fake.sent_to(USER)) == 3


# -- web authorisation ---------------------------------------------------------------


def test_oauth_authorize_url_has_wechats_order_and_fragment() -> None:
    api = WeChatAPI(None, None, "https://api.weixin.qq.com", OA_ID, OA_SECRET)  # type: ignore[arg-type]
    url = api.oauth_authorize_url(
        "https://open.weixin.qq.com/", "https://mst.court.example/q/abc?x=1&y=中", "s1"
    )
    assert url.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=")
    assert url.endswith("#wechat_redirect")
    query = urlsplit(url).query
    assert [k for k, _ in parse_qsl(query)] == [
        "appid",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
    ]
    assert dict(parse_qsl(query)) == {
        "appid": OA_ID,
        "redirect_uri": "https://mst.court.example/q/abc?x=1&y=中",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "s1",
    }
    assert "redirect_uri=https%3A%2F%2Fmst.court.example%2Fq%2Fabc%3Fx%3D1%26y%3D" in url


async def test_authorize_redirects_with_code_and_state_and_the_code_gives_the_openid(
    rig: Rig,
) -> None:
    rig.fake.oauth_as(USER, unionid="oUnion0001")
    url = rig.oa.oauth_authorize_url(rig.base, "https://mst.court.example/q/abc?x=1", "st4te")
    async with rig.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith("https://mst.court.example/q/abc?x=1&code=")
    back = parse_qs(urlsplit(location).query)
    assert back["state"] == ["st4te"] and back["x"] == ["1"]
    code = back["code"][0]
    who = await rig.oa.oauth_openid(code)
    assert who["openid"] == USER and who["unionid"] == "oUnion0001"
    assert "access_token" not in who  # the web token is of no use to us: not passed on
    with pytest.raises(WeChatError) as used:
        await rig.oa.oauth_openid(code)
    assert used.value.errcode == 40163
    with pytest.raises(WeChatError) as unknown:
        await rig.oa.oauth_openid("no-such-code")
    assert unknown.value.errcode == 40029
    rig.fake.fail("/sns/oauth2/access_token", -1)
    with pytest.raises(TransientError):
        await rig.oa.oauth_openid("whatever")


async def test_authorize_outside_wechat_or_with_a_wrong_appid_shows_a_page(rig: Rig) -> None:
    url = rig.oa.oauth_authorize_url(rig.base, "https://mst.court.example/q/abc", "s")
    async with rig.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "请在微信客户端打开链接" in await resp.text()
    rig.fake.oauth_as(USER)
    url = rig.mp.oauth_authorize_url(rig.base, "https://mst.court.example/q/abc", "s")
    async with rig.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 200 and "appid错误" in await resp.text()


# -- URL Scheme and mini-program codes ---------------------------------------------


async def test_generate_scheme_gives_an_openlink_and_records_the_page(rig: Rig) -> None:
    link = await rig.mp.generate_scheme("pages/case/index", "c=ABCDE12345", expire_days=7)
    assert re.fullmatch(r"weixin://dl/business/\?t=[A-Za-z0-9]{12}", link)
    assert rig.fake.schemes == [
        {"path": "pages/case/index", "query": "c=ABCDE12345", "days": 7, "openlink": link}
    ]
    with pytest.raises(WeChatError) as too_long:
        await rig.mp.generate_scheme("pages/case/index", "", expire_days=31)
    assert too_long.value.errcode == 40097


async def test_wxa_code_is_a_png_that_reads_back_as_the_scene(
    rig: Rig, frozen_clock: list[datetime]
) -> None:
    png = await rig.mp.wxa_code_unlimited("ABCDE12345", PAGE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _decode(png) == ["ABCDE12345"]
    assert rig.fake.wxa_codes == [{"scene": "ABCDE12345", "page": PAGE, "width": 430}]
    with pytest.raises(WeChatError) as bad_page:
        await rig.mp.wxa_code_unlimited("ABCDE12345", "/pages/case/index?x=1")
    assert bad_page.value.errcode == 41030
    # A refused token is replaced for file answers as for JSON ones.
    frozen_clock[0] += timedelta(seconds=TOKEN_REFRESH_FLOOR_S + 1)
    rig.fake.expire_tokens()
    assert _decode(await rig.mp.wxa_code_unlimited("x" * 32, PAGE)) == ["x" * 32]


async def test_wxa_code_scene_is_checked_before_wechat_is_asked(rig: Rig) -> None:
    for scene in ("x" * 33, "", "案号"):
        with pytest.raises(ValueError):
            await rig.mp.wxa_code_unlimited(scene, PAGE)
    assert "/wxa/getwxacodeunlimit" not in rig.fake.calls
    # WeChat's own answer to such a scene, asked without our client's check.
    token = await rig.mp.token()
    async with rig.http.post(
        rig.base + "/wxa/getwxacodeunlimit",
        params={"access_token": token},
        json={"scene": "x" * 33, "page": PAGE},
    ) as resp:
        assert (await resp.json())["errcode"] == 40097


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/wxa/business/getuserphonenumber", "phone"),
        ("/cgi-bin/message/subscribe/send", "subscribe"),
        ("/wxa/generatescheme", "scheme"),
        ("/wxa/getwxacodeunlimit", "wxacode"),
    ],
)
async def test_injected_failures_reach_the_new_paths(rig: Rig, path: str, call: str) -> None:
    async def go() -> None:
        if call == "phone":
            await rig.mp.phone_number(rig.fake.phone_code("13800001234"))
        elif call == "subscribe":
            await rig.mp.send_subscribe(USER, TEMPLATE, {"thing1": "x"})
        elif call == "scheme":
            await rig.mp.generate_scheme(PAGE, "")
        else:
            await rig.mp.wxa_code_unlimited("ABC", PAGE)

    rig.fake.grant(USER, TEMPLATE)
    rig.fake.fail(path, 45011)
    with pytest.raises(WeChatError) as limited:
        await go()
    assert limited.value.errcode == 45011
    rig.fake.fail(path, -1)
    with pytest.raises(TransientError):
        await go()
    rig.fake.fail(path, -500)
    with pytest.raises(TransientError):
        await go()
    await go()  # the outage is over


async def test_media_still_comes_through_the_shared_file_call(rig: Rig) -> None:
    rig.fake.media["MEDIA_1"] = (b"\xff\xd8\xff photo", "image/jpeg")
    assert await rig.oa.get_media("MEDIA_1") == (b"\xff\xd8\xff photo", "image/jpeg")
    with pytest.raises(WeChatError) as expired:
        await rig.oa.get_media("MEDIA_gone")
    assert expired.value.errcode == 40007
    rig.fake.fail("/cgi-bin/media/get", -1)
    with pytest.raises(TransientError):
        await rig.oa.get_media("MEDIA_1")


# -- the fake's control endpoints ----------------------------------------------------


async def test_control_endpoints_hand_out_codes_a_browser_can_use(rig: Rig) -> None:
    async def ctl(name: str, body: dict[str, Any]) -> dict[str, Any]:
        async with rig.http.post(f"{rig.base}/_fake/{name}", json=body) as resp:
            assert resp.status == 200
            answer: dict[str, Any] = await resp.json()
            return answer

    login = await ctl("login_code", {"openid": USER, "unionid": "oUnion0001"})
    assert (await rig.mp.code_to_session(login["code"]))["unionid"] == "oUnion0001"
    phone = await ctl("phone_code", {"phone": "13800001234"})
    assert await rig.mp.phone_number(phone["code"]) == "13800001234"
    await ctl("grant", {"openid": USER, "template_id": TEMPLATE})
    await rig.mp.send_subscribe(USER, TEMPLATE, {"thing1": "x"})
    await ctl("oauth_as", {"openid": USER})
    url = rig.oa.oauth_authorize_url(rig.base, "https://mst.court.example/q/abc", "s")
    async with rig.http.get(url, allow_redirects=False) as resp:
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    assert (await rig.oa.oauth_openid(code))["openid"] == USER
    await ctl("oauth_as", {"openid": None})
    async with rig.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 200


# -- mst qr --miniprogram ------------------------------------------------------------


async def test_mst_qr_saves_the_cases_miniprogram_code(
    aiohttp_server: Any,
    deps: Deps,
    sample_case: dict[str, Any],
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    fake = FakeWeChat(app_id=OA_ID, app_secret=OA_SECRET)
    server = await aiohttp_server(fake_app(fake))
    env = cli_env | {"WECHAT_API_BASE": str(server.make_url("")).rstrip("/")}
    png = tmp_path / "mp.png"
    off = await mst_in_process(env, tmp_path, "qr", CASE_NUMBER, "--miniprogram", str(png))
    assert off.code == 1 and "MP_APP_ID" in off.err and "MP_APP_SECRET" in off.err
    assert len(off.err.strip().splitlines()) == 1 and not png.exists()

    env |= {"MP_APP_ID": DEMO_MP_APP_ID, "MP_APP_SECRET": DEMO_MP_APP_SECRET}
    run = await mst_in_process(
        env, tmp_path, "qr", CASE_NUMBER, "--miniprogram", str(png), "--json"
    )
    assert run.code == 0, run.err
    info = json.loads(run.out)
    assert info["short_code"] == sample_case["short_code"]
    assert info["miniprogram_image"] == str(png)
    assert _decode(png.read_bytes()) == [sample_case["short_code"]]
    assert fake.wxa_codes == [{"scene": sample_case["short_code"], "page": PAGE, "width": 430}]
    # The stable token: the running server's mini-program token stays valid.
    assert "/cgi-bin/stable_token" in fake.calls and "/cgi-bin/token" not in fake.calls

    said = await mst_in_process(env, tmp_path, "qr", CASE_NUMBER, "--miniprogram", str(png))
    assert said.code == 0 and f"小程序码：{png}" in said.out

    refused = await mst_in_process(
        env | {"MP_APP_SECRET": "wrong"}, tmp_path, "qr", CASE_NUMBER, "--miniprogram", str(png)
    )
    assert refused.code == 1 and "微信没有生成小程序码" in refused.err
    assert "Traceback" not in refused.err
