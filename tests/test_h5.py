"""The H5 pages over HTTP, as a phone's browser meets them: a scan in WeChat's browser signs
in through web authorisation (the fake WeChat's authorize page, then /h5/oauth), verifies,
asks; the judge answers in the chat and the item page shows it. Then who may see what,
forms without their CSRF token, the cookie and the headers, and the public page any other
browser gets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import ClientResponse
from sqlalchemy import select

from bot.channels.h5 import pages as h5
from bot.channels.h5 import words
from bot.rules import attempts, courts
from handlers import texts
from storage.models import (
    AppSession,
    AuditEvent,
    Binding,
    Court,
    EnforcementEvent,
    Message,
    Rating,
    Ticket,
)
from tests.conftest import APP_ID, CASE_NUMBER, COURT, count
from tests.world import JUDGE_WX, LITIGANT, World, bind_judge

WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; V2148A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/116.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MicroMessenger/8.0.47"
)
PLAIN_UA = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
STRANGER = "oStranger0000000000000000001"


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    location: str = ""


@dataclass
class Phone:
    """A phone's browser on the test server: its cookies (kept by hand: aiohttp's client
    jar keeps `Secure` cookies away from http://), WeChat's user agent or another, and
    redirects followed as a browser follows them, the fake WeChat's authorize page too."""

    w: World
    ua: str = WECHAT_UA
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)  # every Set-Cookie header seen

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.ua}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, resp: ClientResponse) -> None:
        for header in resp.headers.getall("Set-Cookie", []):
            self.set_cookies.append(header)
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def _one(self, method: str, url: str, data: dict[str, str] | None = None) -> Page:
        public = self.w.deps.settings.public_base_url
        if url.startswith(public):
            url = url[len(public) :]
        if url.startswith("http"):  # the fake WeChat, on its own port
            async with self.w.client.session.request(
                method, url, headers={"User-Agent": self.ua}, allow_redirects=False
            ) as resp:
                return Page(
                    resp.status, await resp.text(), resp.headers, resp.headers.get("Location", "")
                )
        resp = await self.w.client.request(
            method, url, headers=self._headers(), data=data, allow_redirects=False
        )
        self._keep(resp)
        return Page(resp.status, await resp.text(), resp.headers, resp.headers.get("Location", ""))

    async def get(self, url: str, *, follow: bool = True) -> Page:
        page = await self._one("GET", url)
        while follow and page.status in (301, 302, 303) and page.location:
            page = await self._one("GET", page.location)
        return page

    async def post(self, url: str, data: dict[str, str], *, follow: bool = True) -> Page:
        page = await self._one("POST", url, data)
        while follow and page.status in (301, 302, 303) and page.location:
            page = await self._one("GET", page.location)
        return page

    async def form(self, url: str) -> dict[str, str]:
        """The hidden fields of the page's form (csrf, once, …)."""
        page = await self.get(url)
        assert page.status == 200, page.text
        return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page.text))


async def signed_in(w: World, openid: str = LITIGANT) -> Phone:
    phone = Phone(w)
    w.fake.oauth_as(openid)
    page = await phone.get(f"/q/{w.case['token']}")
    assert page.status in (200, 404), page.text  # the verify page, or their case's home
    assert h5.COOKIE in phone.cookies
    return phone


async def verified(w: World, openid: str = LITIGANT) -> Phone:
    phone = await signed_in(w, openid)
    hidden = await phone.form(f"/q/{w.case['token']}")
    page = await phone.post(f"/q/{w.case['token']}", {**hidden, "digits": "1234"})
    assert page.status == 200 and "验证成功" in page.text, page.text
    return phone


async def ask(phone: Phone, text: str) -> tuple[int, Page]:
    url = f"/h5/c/{phone.w.case['case_id']}/new/question"
    page = await phone.post(url, {**await phone.form(url), "text": text})
    found = re.search(r"<h1>#(\d+) 咨询</h1>", page.text)
    assert page.status == 200 and found, page.text
    return int(found.group(1)), page


def shown(html: str) -> str:
    """The page's words, tags dropped (what a person reads)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- signing in ------------------------------------------------------------------------------


async def test_a_scan_in_wechat_signs_in_through_web_authorisation(world: World) -> None:
    w = world
    w.fake.oauth_as(LITIGANT)
    phone = Phone(w)
    token = w.case["token"]

    first = await phone.get(f"/q/{token}", follow=False)
    assert first.status == 302
    authorize = urlsplit(first.location)
    assert first.location.startswith(w.deps.settings.miniprogram.open_base)
    assert authorize.path == "/connect/oauth2/authorize" and authorize.fragment == "wechat_redirect"
    q = parse_qs(authorize.query)
    assert q["appid"] == [APP_ID] and q["scope"] == ["snsapi_base"]
    assert q["redirect_uri"] == ["http://court.example/h5/oauth"]
    state = q["state"][0]
    assert re.fullmatch(r"[0-9a-f]{1,128}", state)  # WeChat takes [A-Za-z0-9], ≤ 128 bytes
    assert f"/q/{token}".encode().hex() in state  # names where to return
    [state_cookie] = [c for c in phone.set_cookies if c.startswith(h5.STATE_COOKIE + "=")]
    assert "Path=/h5/oauth" in state_cookie
    assert all(flag in state_cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax"))

    back = await phone.get(first.location, follow=False)  # WeChat's page sends them back
    assert back.status == 302 and back.location.startswith("http://court.example/h5/oauth?")
    landed = await phone.get(back.location, follow=False)
    assert landed.status == 302 and landed.location == f"/q/{token}"
    [session_cookie] = [c for c in phone.set_cookies if c.startswith(h5.COOKIE + "=")]
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in session_cookie, session_cookie

    page = await phone.get(landed.location)
    assert page.status == 200
    assert texts.ASK_DIGITS in page.text and CASE_NUMBER in page.text and COURT in page.text
    assert "王某某" not in page.text and "张伟" not in page.text  # nothing private yet
    async with w.deps.db.sessions() as s:
        [row] = (await s.execute(select(AppSession))).scalars().all()
        scans = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "code.scanned")))
            .scalars()
            .all()
        )
    assert (row.user, row.channel, row.openid) == (LITIGANT, "h5", LITIGANT)
    assert row.token_sha256 != phone.cookies[h5.COOKIE]  # only its digest is kept
    assert len(scans) == 1 and '"via":"h5"' in scans[0].payload.replace(" ", "")
    await phone.get(f"/q/{token}")
    async with w.deps.db.sessions() as s:  # a reload is not another scan
        assert (
            len(
                (
                    await s.execute(select(AuditEvent).where(AuditEvent.action == "code.scanned"))
                ).all()
            )
            == 1
        )

    # The same code again (a reload of WeChat's redirect): a page to try again, not a 5xx.
    again = await phone.get(back.location, follow=False)
    assert again.status == 400 and words.SIGN_IN_FAILED in again.text
    assert f'href="/q/{token}"' in again.text and words.TRY_AGAIN in again.text


async def test_a_bad_state_or_code_gets_a_polite_400(world: World) -> None:
    w = world
    w.fake.oauth_as(LITIGANT)
    phone = Phone(w)
    first = await phone.get(f"/q/{w.case['token']}", follow=False)
    back = await phone.get(first.location, follow=False)
    q = parse_qs(urlsplit(back.location).query)
    code, state = q["code"][0], q["state"][0]
    flipped = state[:20] + ("0" if state[20] != "0" else "1") + state[21:]
    for query in (
        {"code": code, "state": flipped},  # tampered
        {"code": code, "state": state + "00"},  # another path, same signature
        {"code": code, "state": ""},
        {"code": code},
    ):
        page = await phone._one(
            "GET", "/h5/oauth?" + "&".join(f"{k}={v}" for k, v in query.items())
        )
        assert page.status == 400 and words.LINK_BAD in page.text, query
    # The right state from another browser (no state cookie): refused too.
    other = Phone(w)
    page = await other.get(back.location, follow=False)
    assert page.status == 400 and words.LINK_BAD in page.text
    # A code WeChat does not know (40029).
    page = await phone.get(f"/h5/oauth?code=nonsense&state={state}", follow=False)
    assert page.status == 400 and words.SIGN_IN_FAILED in page.text
    # WeChat down: a page that says so, never a traceback.
    w.fake.fail("/sns/oauth2/access_token", -500)
    page = await phone.get(back.location, follow=False)
    assert page.status == 503 and words.WECHAT_BUSY in page.text
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(AppSession))).first() is None


def test_the_state_names_only_our_own_pages_and_expires() -> None:
    secret, nonce = "k" * 40, "n" * 32
    good = h5.sign_state(secret, "/h5/c/3", nonce, 2000)
    assert h5.check_state(secret, good, nonce, 1999) == "/h5/c/3"
    assert h5.check_state(secret, good, nonce, 2001) is None  # expired
    assert h5.check_state(secret, good, "m" * 32, 1999) is None  # another browser's
    assert h5.check_state("x" * 40, good, nonce, 1999) is None  # another key
    for elsewhere in ("https://evil.example/", "//evil.example/h5", "/h5/../../x", "/v/abc"):
        signed = h5.sign_state(secret, elsewhere, nonce, 2000)
        assert h5.check_state(secret, signed, nonce, 1999) is None, elsewhere


# -- verifying ------------------------------------------------------------------------------


async def test_wrong_digits_then_the_right_ones(world: World) -> None:
    w = world
    phone = await signed_in(w)
    url = f"/q/{w.case['token']}"
    page = await phone.post(url, {**await phone.form(url), "digits": "0000"})
    assert page.status == 200
    assert (
        texts.WRONG_DIGITS.format(left=attempts.VERIFY_PER_PERSON_AND_CASE - 1).split("\n")[0]
        in page.text
    )
    assert f"还可以再试 {attempts.VERIFY_PER_PERSON_AND_CASE - 1} 次" in page.text
    page = await phone.post(url, {**await phone.form(url), "digits": "12a4"})
    assert texts.DIGITS_ONLY_LEAD in page.text  # not a try, as in the chat
    page = await phone.post(url, {**await phone.form(url), "digits": "1234"})
    assert page.status == 200 and "验证成功！您是本案的原告" in page.text
    assert "请回复数字" not in page.text  # the chat's menu is the chat's
    for label in (words.ASK, words.MINE, words.PROGRESS, words.RATE):
        assert label in page.text
    assert page.text.count('class="button main"') == 1  # one main action per screen
    async with w.deps.db.sessions() as s:
        binding = (await s.execute(select(Binding))).scalar_one()
    assert (binding.openid, binding.method) == (LITIGANT, "phone_tail")
    # Verified: the scan goes straight to the case's home.
    again = await phone.get(url, follow=False)
    assert again.status == 303 and again.location == f"/h5/c/{w.case['case_id']}"
    # And the chat knows them too: the same person.
    assert "当前案件" in await w.say(LITIGANT, "0")


async def test_the_lockout_is_shared_with_the_chat(world: World) -> None:
    w = world
    async with w.deps.db.sessions() as s:
        court = (await s.execute(select(Court))).scalar_one()
    await w.say(LITIGANT, w.case["short_code"])
    for _ in range(attempts.VERIFY_PER_PERSON_AND_CASE - 1):
        await w.say(LITIGANT, "0000")
    phone = await signed_in(w)
    url = f"/q/{w.case['token']}"
    locked = texts.LOCKED.format(desk=texts.desk(court)).split("\n")[0]
    page = await phone.post(url, {**await phone.form(url), "digits": "0000"})
    assert locked in page.text
    page = await phone.post(url, {**await phone.form(url), "digits": "1234"})
    assert locked in page.text and "验证成功" not in page.text
    assert locked in await w.say(LITIGANT, "1234")
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Binding))).first() is None


# -- asking, and the judge's answer --------------------------------------------------------


async def test_ask_and_the_judges_answer_in_the_chat_shows_on_the_item_page(world: World) -> None:
    w = world
    await bind_judge(w)
    phone = await verified(w)
    case_id = w.case["case_id"]
    home = await phone.get(f"/h5/c/{case_id}")
    assert home.status == 200 and "法官张伟" in home.text and "原告" in home.text

    number, page = await ask(phone, "请问什么时候开庭？\n我需要带什么材料？")
    assert f"已收到您的咨询，编号 #{number}。" in page.text
    assert "发送 0" not in page.text and "回执：" not in page.text  # the chat's, not the page's
    receipt = re.search(
        r'<a class="button" href="(http://court\.example/v/[0-9a-f]{16})">', page.text
    )
    assert receipt and words.RECEIPT in page.text
    assert "请问什么时候开庭？\n我需要带什么材料？" in page.text  # their lines, as written
    async with w.deps.db.sessions() as s:
        ticket = await s.get_one(Ticket, number)
        [message_in] = (
            (
                await s.execute(
                    select(Message).where(Message.channel == "h5", Message.msg_type == "app.open")
                )
            )
            .scalars()
            .all()
        )
    assert (ticket.openid, ticket.kind, ticket.assignee_id) == (
        LITIGANT,
        "question",
        w.case["judge_id"],
    )
    assert message_in.content.startswith("请问什么时候开庭")
    assert f"新咨询 #{number}" in (await w.delivered_to(JUDGE_WX))[-1]

    # The judge answers in the chat; the litigant reloads the item page.
    await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭，请带身份证原件。")
    page = await phone.get(f"/h5/i/{number}")
    assert page.status == 200
    text = shown(page.text)
    assert "12月10日上午九点开庭，请带身份证原件。" in text and "法官张伟" in text
    assert texts.status_name("answered") in text
    assert text.index("请问什么时候开庭") < text.index("12月10日上午九点开庭")

    # Their items, and adding to one.
    listed = await phone.get(f"/h5/c/{case_id}/items")
    assert f'href="/h5/i/{number}"' in listed.text and f"#{number} 咨询" in listed.text
    page = await phone.post(
        f"/h5/i/{number}", {**await phone.form(f"/h5/i/{number}"), "text": "好的，谢谢。"}
    )
    assert texts.APP_ADDED.format(ticket=number) in page.text and "好的，谢谢。" in page.text
    # An empty addition stores nothing and says what to do.
    before = await count(w.deps, Message)
    page = await phone.post(
        f"/h5/i/{number}", {**await phone.form(f"/h5/i/{number}"), "text": "  "}
    )
    assert words.WRITE_FIRST in page.text and await count(w.deps, Message) == before

    # The judge closes it: no more adding; rating it instead.
    await w.say(JUDGE_WX, f"#{number} 结")
    page = await phone.get(f"/h5/i/{number}")
    assert texts.APP_ITEM_CLOSED.format(ticket=number) in page.text and "<textarea" not in page.text
    rate_url = f"/h5/c/{case_id}/rate?ticket={number}"
    assert f'href="{rate_url}"' in page.text
    page = await phone.post(rate_url.split("?")[0], {**await phone.form(rate_url), "score": "2"})
    assert (
        page.status == 200
        and texts.APP_RATED in page.text
        and f"<h1>#{number} 咨询</h1>" in page.text
    )
    async with w.deps.db.sessions() as s:
        rating = (await s.execute(select(Rating))).scalar_one()
    assert (rating.ticket_id, rating.score) == (number, 2)


async def test_a_form_sent_twice_is_answered_once(world: World) -> None:
    w = world
    phone = await verified(w)
    url = f"/h5/c/{w.case['case_id']}/new/question"
    hidden = await phone.form(url)
    first = await phone.post(url, {**hidden, "text": "一个问题"})
    assert "已收到您的咨询" in first.text
    second = await phone.post(url, {**hidden, "text": "一个问题"})
    assert words.ALREADY_SENT in second.text and await count(w.deps, Ticket) == 1


async def test_rating_and_the_other_pages(world: World) -> None:
    w = world
    phone = await signed_in(w)
    nothing = await phone.get("/h5/")  # signed in, no case verified yet
    assert nothing.status == 200 and words.NO_CASES in nothing.text
    phone = await verified(w)
    case_id = w.case["case_id"]
    one = await phone.get("/h5/", follow=False)
    assert one.status == 303 and one.location == f"/h5/c/{case_id}"
    progress = await phone.get(f"/h5/c/{case_id}/progress")
    assert progress.status == 200 and words.NO_PROGRESS_YET in progress.text
    async with w.deps.db.transaction() as s:
        s.add(
            EnforcementEvent(
                case_id=case_id,
                external_id="e-1",
                kind="received",
                happened_at=datetime(2026, 11, 20, 2, 0, tzinfo=UTC),
                amount_cents=1200050,
            )
        )
    progress = await phone.get(f"/h5/c/{case_id}/progress")
    assert "11月20日 周五 上午10:00：收到执行款 12,000.50元" in progress.text
    assert words.RECEIVED.format(amount="12,000.50元") in progress.text
    rate_url = f"/h5/c/{case_id}/rate"
    page = await phone.get(rate_url)
    for label in ("满意", "基本满意", "不满意"):
        assert f"> {label}</label>" in page.text
    page = await phone.post(rate_url, {**await phone.form(rate_url), "comment": "还行"})
    assert words.PICK_A_SCORE in page.text and await count(w.deps, Rating) == 0
    page = await phone.post(
        rate_url, {**await phone.form(rate_url), "score": "1", "comment": "很好"}
    )
    assert texts.APP_RATED_WITH_COMMENT in page.text
    async with w.deps.db.sessions() as s:
        rating = (await s.execute(select(Rating))).scalar_one()
    assert (rating.openid, rating.score, rating.ticket_id) == (LITIGANT, 1, None)
    empty = await phone.get(f"/h5/c/{case_id}/items")
    assert texts.NO_TICKETS.strip() in empty.text, empty.text
    complaint = f"/h5/c/{case_id}/new/complaint"
    page = await phone.get(complaint)
    assert "承办法官或工作人员" in page.text and 'name="about"' in page.text
    page = await phone.post(
        complaint, {**await phone.form(complaint), "about": "process", "text": "一直没人管"}
    )
    assert "已收到您的投诉" in page.text
    async with w.deps.db.sessions() as s:
        ticket = (await s.execute(select(Ticket))).scalar_one()
    assert (ticket.kind, ticket.about) == ("complaint", "process")
    assert (await phone.get(f"/h5/c/{case_id}/new/mediation")).status == 404


# -- who may see what ----------------------------------------------------------------------


async def test_a_second_person_cannot_open_the_first_persons_pages(world: World) -> None:
    w = world
    owner = await verified(w)
    number, _ = await ask(owner, "我的问题")
    case_id = w.case["case_id"]
    stranger = await signed_in(w, STRANGER)
    for url in (
        f"/h5/i/{number}",
        f"/h5/c/{case_id}",
        f"/h5/c/{case_id}/items",
        f"/h5/c/{case_id}/progress",
        f"/h5/c/{case_id}/new/question",
        f"/h5/c/{case_id}/rate",
        f"/h5/i/{number + 1}",
        "/h5/i/99999999999",
        "/h5/i/0",
        "/h5/c/abc",
    ):
        page = await stranger.get(url)
        assert page.status == 404 and words.NOT_FOUND_TITLE in page.text, url
        assert "我的问题" not in page.text and "不是您的" not in page.text
    # Their own valid form token on the other's item: not found, nothing stored.
    hidden = await stranger.form(f"/q/{w.case['token']}")
    before = await count(w.deps, Message)
    page = await stranger.post(f"/h5/i/{number}", {**hidden, "text": "插一句"})
    assert page.status == 404 and await count(w.deps, Message) == before
    page = await owner.get(f"/h5/c/{case_id}/rate?ticket={number}")
    assert page.status == 200
    assert (await stranger.get(f"/h5/c/{case_id}/rate?ticket={number}")).status == 404
    # Signed out, outside WeChat: a page that says where to open it.
    plain = Phone(w, ua=PLAIN_UA)
    page = await plain.get(f"/h5/i/{number}")
    assert page.status == 403 and words.OPEN_IN_WECHAT in page.text
    # Signed out, in WeChat: off to sign in, and back to that page.
    wechat = Phone(w)
    page = await wechat.get(f"/h5/i/{number}", follow=False)
    assert page.status == 302 and bytes.hex(f"/h5/i/{number}".encode()) in page.location


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(world: World) -> None:
    w = world
    phone = await verified(w)
    url = f"/h5/c/{w.case['case_id']}/new/question"
    hidden = await phone.form(url)
    other = await signed_in(w, STRANGER)
    theirs = await other.form(f"/q/{w.case['token']}")
    messages = await count(w.deps, Message)
    for data in (
        {"text": "没有令牌", "once": hidden["once"]},
        {"text": "错的令牌", "csrf": "0" * 32, "once": hidden["once"]},
        {"text": "别人的令牌", "csrf": theirs["csrf"], "once": hidden["once"]},
    ):
        page = await phone.post(url, data)
        assert page.status == 403 and words.EXPIRED in page.text, data
    # The right token, but no session cookie (a page from another site): refused, no redirect.
    cookieless = Phone(w)
    page = await cookieless.post(url, {**hidden, "text": "没有登录"}, follow=False)
    assert page.status == 403
    verify = await cookieless.post(
        f"/q/{w.case['token']}", {**hidden, "digits": "1234"}, follow=False
    )
    assert verify.status == 403
    assert await count(w.deps, Ticket) == 0 and await count(w.deps, Message) == messages


async def test_cookies_and_security_headers(world: World) -> None:
    w = world
    phone = await verified(w)
    case_id = w.case["case_id"]
    plain = Phone(w, ua=PLAIN_UA)
    for who, url in (
        (phone, f"/h5/c/{case_id}"),
        (phone, f"/q/{w.case['token']}"),  # a redirect
        (phone, "/h5/i/12345"),  # a 404
        (plain, f"/q/{w.case['token']}"),
        (plain, "/q/nonsense"),
        (plain, "/h5/oauth?state=x"),
    ):
        page = await who.get(url, follow=False)
        assert page.headers["Content-Security-Policy"] == h5.CSP, url
        assert page.headers["X-Content-Type-Options"] == "nosniff", url
        assert page.headers["Referrer-Policy"] == "no-referrer", url
        assert "<script" not in page.text and "style=" not in page.text, url
    home = await phone.get(f"/h5/c/{case_id}")
    assert home.headers["Cache-Control"] == "no-store"
    css_url = re.search(r'<link rel="stylesheet" href="([^"]+)">', home.text)
    assert css_url and css_url.group(1).startswith("/h5/static/h5.css?v=")
    resp = await w.client.get(css_url.group(1))
    assert resp.status == 200 and resp.content_type == "text/css"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    css = await resp.text()
    sizes = re.findall(r"font-size:\s*([^;]+);", css)
    assert "112.5%" in sizes  # the root: the phone's own size, larger
    assert all(re.fullmatch(r"[\d.]+(rem|%)( !important)?", size) for size in sizes), sizes


# -- any other browser -----------------------------------------------------------------------


async def test_outside_wechat_the_public_facts_the_account_and_the_mini_program(
    world: World,
) -> None:
    w = world
    w.deps.settings = replace(
        w.deps.settings, wechat=replace(w.deps.settings.wechat, account_name="桃城法院诉讼服务")
    )
    async with w.deps.db.transaction() as s:
        court = (await s.execute(select(Court))).scalar_one()
        await courts.set_desk(
            s,
            court,
            {"phone": "0318-2123456", "address": "桃城区人民路1号", "hours": "工作日 9:00-17:00"},
            actor="test",
        )
    plain = Phone(w, ua=PLAIN_UA)
    page = await plain.get(f"/q/{w.case['token']}")
    assert page.status == 200
    text = shown(page.text)
    for fact in (
        COURT,
        CASE_NUMBER,
        "民间借贷纠纷",
        "桃城法院诉讼服务",
        "0318-2123456",
        "桃城区人民路1号",
        "工作日 9:00-17:00",
    ):
        assert fact in text, fact
    scheme = re.search(r'<a class="button main" href="(weixin://dl/business/\?t=\w+)">', page.text)
    assert scheme and words.OPEN_APP in page.text
    assert w.fake.schemes[-1]["path"] == w.deps.settings.miniprogram.page
    assert w.fake.schemes[-1]["query"] == f"scene={w.case['short_code']}"
    assert 'href="tel:0318-2123456"' in page.text
    assert "<form" not in page.text and h5.COOKIE not in plain.cookies
    for secret in ("王某某", "李某", "138****1234", "原告", "张伟"):
        assert secret not in text, secret
    assert "/connect/oauth2/authorize" not in w.fake.calls  # no sign-in outside WeChat
    # Asked for once, not on every visit.
    await plain.get(f"/q/{w.case['token']}")
    assert len(w.fake.schemes) == 1

    # WeChat refuses the scheme, or the mini-program is off: no button, never an error page.
    await w.deps.redis.flushdb()
    w.fake.fail("/wxa/generatescheme", 40097)
    page = await plain.get(f"/q/{w.case['token']}")
    assert page.status == 200 and "weixin://" not in page.text and CASE_NUMBER in page.text
    w.deps.settings = replace(
        w.deps.settings, miniprogram=replace(w.deps.settings.miniprogram, app_id=None)
    )
    page = await plain.get(f"/q/{w.case['token']}")
    assert page.status == 200 and "weixin://" not in page.text and len(w.fake.schemes) == 1


async def test_what_a_person_wrote_is_shown_as_text(world: World) -> None:
    w = world
    phone = await verified(w)
    number, asked = await ask(phone, '<script>alert(1)</script>"><img src=x onerror=alert(2)>')
    for page in (asked, await phone.get(f"/h5/i/{number}")):
        assert "<script>alert(1)</script>" not in page.text and "<img" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page.text
