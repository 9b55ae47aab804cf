"""The H5 pages of a court with an Official Account of its own (MST_COURTS_FILE): web
authorisation through that account's app id and secret, returning to `/h5/oauth/<slug>`,
signing in the person that account's chat knows (`wx:<slug>:<openid>`). A state made for
one account is refused at another's return; a court nobody configured is a 404 page.

The world is tests/test_courts.py's: 桃城 (the sample case) and 景县 with their own
accounts (each its own fake WeChat, which records what web authorisation was asked),
冀州 on the default account. Real WeChat serves every account's authorize page from
open.weixin.qq.com; here each account's fake serves its own, so the phone follows the
authorize URL on the fake of the account it names."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, select
from sqlmodel import col

from bot.channels.h5 import pages as h5
from bot.channels.h5 import words
from bot.fakes.wechat.callbacks import event_xml
from storage.models import AppSession, AuditEvent, ChannelIdentity
from tests.conftest import APP_ID, CASE_NUMBER, COURT
from tests.test_courts import JX_COURT, LITIGANT, Province, province  # noqa: F401
from tests.test_h5 import Page, Phone, shown

AUTHORIZE = "/connect/oauth2/authorize"
EXCHANGE = "/sns/oauth2/access_token"


def _base(p: Province, slug: str | None) -> str:
    """Where an account's fake WeChat answers (the default's: the world's own)."""
    settings = p.w.deps.settings
    if slug is None:
        return settings.wechat.api_base
    return next(c.wechat.api_base for c in settings.courts if c.slug == slug)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def _through(p: Province, phone: Phone, first: Page, slug: str | None) -> Page:
    """Follow a redirect to web authorisation on `slug`'s fake, and WeChat's redirect back
    to us; the page our /h5/oauth… answered (not followed further)."""
    assert first.status == 302 and first.location.startswith(
        p.w.deps.settings.miniprogram.open_base + AUTHORIZE
    ), first
    parts = urlsplit(first.location)
    back = await phone.get(f"{_base(p, slug)}{parts.path}?{parts.query}", follow=False)
    assert back.status == 302, back.text  # the fake checked the app id is its own
    return await phone.get(back.location, follow=False)


async def _sessions(p: Province) -> list[AppSession]:
    async with p.w.deps.db.sessions() as s:
        return list((await s.execute(select(AppSession))).scalars())


async def test_a_courts_code_signs_in_through_its_own_account(province: Province) -> None:
    p, w = province, province.w
    case = p.cases["tc"]
    # Verified in 桃城's chat first: the H5 pages must find the same person.
    await p.tc.send(w, event_xml(LITIGANT, "SCAN", case["token"]))
    assert "验证成功" in await p.tc.say(w, LITIGANT, "1234")
    p.tc.fake.oauth_as(LITIGANT)
    phone = Phone(w)

    first = await phone.get(f"/q/{case['token']}", follow=False)
    asked = _query(first.location)
    assert asked["appid"] == p.tc.fake.app_id and asked["scope"] == "snsapi_base"
    assert asked["redirect_uri"] == "http://court.example/h5/oauth/taocheng"
    [state_cookie] = [c for c in phone.set_cookies if c.startswith(h5.STATE_COOKIE + "=")]
    assert "Path=/h5/oauth" in state_cookie  # sent to /h5/oauth/taocheng as well

    landed = await _through(p, phone, first, "taocheng")
    assert landed.status == 302 and landed.location == f"/q/{case['token']}", landed.text
    # The code was exchanged with 桃城's own app id and secret, at 桃城's WeChat only.
    [(path, exchanged)] = [r for r in p.tc.fake.oauth_requests if r[0] == EXCHANGE]
    assert (exchanged["appid"], exchanged["secret"]) == (
        p.tc.fake.app_id,
        p.tc.fake.app_secret,
    )
    assert p.default.fake.oauth_requests == [] and p.jx.fake.oauth_requests == []
    [row] = await _sessions(p)
    assert (row.user, row.channel, row.openid) == (f"wx:taocheng:{LITIGANT}", "h5", LITIGANT)
    async with w.deps.db.sessions() as s:  # one identity: the chat's person, not a second
        identities = (
            await s.execute(
                select(func.count())
                .select_from(ChannelIdentity)
                .where(col(ChannelIdentity.external_id).like(f"%{LITIGANT}"))
            )
        ).scalar_one()
    assert identities == 1

    # Verified in the chat, so the scan opens their case's home at once.
    page = await phone.get(landed.location)
    assert page.status == 200 and CASE_NUMBER in page.text and COURT in page.text, page.text
    assert words.ASK in shown(page.text)


async def test_a_state_made_for_one_court_is_refused_at_anothers(province: Province) -> None:
    p, w = province, province.w
    p.tc.fake.oauth_as(LITIGANT)
    phone = Phone(w)
    first = await phone.get(f"/q/{p.cases['tc']['token']}", follow=False)
    parts = urlsplit(first.location)
    back = await phone.get(f"{_base(p, 'taocheng')}{parts.path}?{parts.query}", follow=False)
    q = _query(back.location)
    assert urlsplit(back.location).path == "/h5/oauth/taocheng"
    # 桃城's state (and code) brought to 景县's return, or to the default account's.
    for elsewhere in ("/h5/oauth/jingxian", "/h5/oauth"):
        page = await phone.get(f"{elsewhere}?code={q['code']}&state={q['state']}", follow=False)
        assert page.status == 400 and words.LINK_BAD in page.text, (elsewhere, page.text)
    # Refused before any exchange: no other account was asked, nothing stored.
    assert p.jx.fake.oauth_requests == [] and p.default.fake.oauth_requests == []
    assert await _sessions(p) == []
    # A state made for 景县 cannot sign in at 桃城's return either.
    p.jx.fake.oauth_as("oJingXian0000000000000000001")
    jx_phone = Phone(w)
    jx_first = await jx_phone.get(f"/q/{p.cases['jx']['token']}", follow=False)
    assert _query(jx_first.location)["appid"] == p.jx.fake.app_id
    jx_parts = urlsplit(jx_first.location)
    jx_back = await jx_phone.get(
        f"{_base(p, 'jingxian')}{jx_parts.path}?{jx_parts.query}", follow=False
    )
    jq = _query(jx_back.location)
    page = await jx_phone.get(f"/h5/oauth/taocheng?code={jq['code']}&state={jq['state']}")
    assert page.status == 400 and words.LINK_BAD in page.text
    assert [r for r in p.tc.fake.oauth_requests if r[0] == EXCHANGE] == []
    assert await _sessions(p) == []
    # The right return still works afterwards (the code was not spent).
    done = await phone.get(back.location, follow=False)
    assert done.status == 302 and [s.user for s in await _sessions(p)] == [
        f"wx:taocheng:{LITIGANT}"
    ]


async def test_an_unknown_court_is_a_plain_404_page(province: Province) -> None:
    p, w = province, province.w
    phone = Phone(w)
    for url in (
        "/h5/oauth/nowhere?code=abc&state=00",
        "/h5/?court=nowhere",
        "/h5?court=Tao%20Cheng",
    ):
        page = await phone.get(url, follow=False)
        assert page.status == 404, (url, page.status)
        assert words.NO_SUCH_COURT_TITLE in page.text and words.NO_SUCH_COURT in page.text
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Traceback" not in page.text
    assert await _sessions(p) == []
    assert all(a.fake.oauth_requests == [] for a in (p.tc, p.jx, p.default))
    async with w.deps.db.sessions() as s:
        assert (
            await s.execute(select(AuditEvent.id).where(AuditEvent.action == "code.scanned"))
        ).first() is None


async def test_a_courts_entry_and_a_session_of_another_account(province: Province) -> None:
    p, w = province, province.w
    p.tc.fake.oauth_as(LITIGANT)
    p.jx.fake.oauth_as(LITIGANT)  # the same phone; an openid is each account's own
    w.fake.oauth_as(LITIGANT)
    phone = Phone(w)
    # The account's menu link: /h5/?court=taocheng signs in through 桃城's account.
    first = await phone.get("/h5/?court=taocheng", follow=False)
    assert _query(first.location)["appid"] == p.tc.fake.app_id
    landed = await _through(p, phone, first, "taocheng")
    assert landed.status == 302 and landed.location == "/h5/"
    page = await phone.get("/h5/?court=taocheng")
    assert page.status == 200 and words.NO_CASES in page.text  # nobody verified yet
    # 景县's entry with 桃城's session: signed in afresh through 景县's account, never
    # taken for 桃城's user.
    again = await phone.get("/h5/?court=jingxian", follow=False)
    assert _query(again.location)["appid"] == p.jx.fake.app_id
    assert _query(again.location)["redirect_uri"] == "http://court.example/h5/oauth/jingxian"
    await _through(p, phone, again, "jingxian")
    # A code of a court on the default account: its app id, its return, a plain openid.
    jz = await phone.get(f"/q/{p.cases['jz']['token']}", follow=False)
    assert _query(jz.location)["appid"] == APP_ID
    assert _query(jz.location)["redirect_uri"] == "http://court.example/h5/oauth"
    await _through(p, phone, jz, None)
    users = [s.user for s in await _sessions(p)]
    assert users == [f"wx:taocheng:{LITIGANT}", f"wx:jingxian:{LITIGANT}", LITIGANT]
    # A page of a 桃城 case opened without a session: 桃城's account signs them in.
    fresh = Phone(w)
    page = await fresh.get(f"/h5/c/{p.cases['tc']['case_id']}", follow=False)
    assert page.status == 302 and _query(page.location)["appid"] == p.tc.fake.app_id
    assert re.fullmatch(r"[0-9a-f]{1,128}", _query(page.location)["state"])
    # The same code page in a browser outside WeChat: the public page naming 景县's account.
    outside = Phone(w, ua="Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0")
    public = await outside.get(f"/q/{p.cases['jx']['token']}")
    assert public.status == 200 and JX_COURT in public.text and "景县法院" in public.text


def test_the_state_is_bound_to_its_account() -> None:
    secret, nonce = "k" * 40, "n" * 32
    tc = h5.sign_state(secret, "/h5/", nonce, 2000, account="taocheng")
    assert h5.check_state(secret, tc, nonce, 1999, account="taocheng") == "/h5/"
    assert h5.check_state(secret, tc, nonce, 1999, account="jingxian") is None
    assert h5.check_state(secret, tc, nonce, 1999) is None  # the default account's return
    default = h5.sign_state(secret, "/h5/", nonce, 2000)
    assert h5.check_state(secret, default, nonce, 1999, account="taocheng") is None
    assert len(tc) == len(default)  # the account is in the signature, not the state
