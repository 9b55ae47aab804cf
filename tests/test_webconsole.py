"""The staff web console over HTTP, as a desk browser meets it: signing in (a wrong password,
lockouts per account and per address that a Redis restart does not lift, the TOTP code),
sessions that end when idle, forms refused without their token, the cookie and the headers;
then the same access rules as the chat, page by page, for every role of two courts (the
expected columns are test_access's, written by hand); an answer that reaches the litigant
through the fake WeChat API, and a transfer that `mst ticket history` records."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import ClientResponse
from sqlalchemy import func, select

from bot.channels.webconsole import auth, words
from bot.channels.webconsole import pages as console
from bot.core.clock import now
from bot.core.errors import ConfigError
from bot.core.settings import ConsoleSettings
from bot.rules import staff_auth
from handlers import texts
from storage.models import AuditEvent, Outbox, Staff, Ticket
from tests.conftest import CASE_NUMBER, COURT
from tests.test_access import (
    ACTORS,
    BAD_TARGETS,
    BY,
    CLAIMS,
    ESCALATE_TO,
    ESCALATES,
    HANDLES,
    ITEMS,
    SEES,
    TRANSFER_TO,
    TRANSFERS,
    restore,
    snapshot,
    two_courts,
)
from tests.world import LITIGANT, World, ask, mst_in_process, verify_litigant

PASSWORD = "correct horse battery"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


# -- a desk browser ------------------------------------------------------------------------------


@dataclass
class Page:
    status: int
    text: str
    headers: Any
    location: str = ""


@dataclass
class Browser:
    """A desk's browser on the test server: its cookies kept by hand (aiohttp's client jar
    keeps `Secure` cookies away from http://), redirects followed as a browser does."""

    w: World
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request

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
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        resp = await self.w.client.request(
            method, url, headers=headers, data=data, allow_redirects=False
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

    async def csrf(self, url: str) -> str:
        """The form token on the page at `url`."""
        page = await self.get(url)
        assert page.status == 200, page.text
        return csrf_of(page.text)

    async def sign_in(self, username: str, password: str = PASSWORD) -> Page:
        token = await self.csrf("/console/login")
        return await self.post(
            "/console/login", {"csrf": token, "username": username, "password": password}
        )


def csrf_of(html: str) -> str:
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]*)">', html)
    assert found, html
    return found.group(1)


def listed(html: str) -> set[int]:
    """The item numbers an inbox page lists."""
    return {int(n) for n in re.findall(r'<td class="num"><a href="/console/items/(\d+)">', html)}


_HASHES: dict[str, str] = {}


def hashed(password: str = PASSWORD) -> str:
    """One argon2 hash per password for the whole run (a quarter of a second each)."""
    if password not in _HASHES:
        _HASHES[password] = staff_auth.hash_password(password)
    return _HASHES[password]


async def give_password(w: World, *usernames: str, password: str = PASSWORD) -> None:
    async with w.deps.db.transaction() as s:
        for username in usernames:
            member = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
            await staff_auth.set_password(s, member, hashed(password), actor="test")


async def session_for(w: World, username: str) -> Browser:
    """A browser already signed in as `username` (a session made as sign-in makes it)."""
    async with w.deps.db.sessions() as s:
        member = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
    browser = Browser(w)
    browser.cookies[auth.COOKIE] = await auth.start(w.deps.redis, member)
    return browser


async def events(w: World, action: str) -> list[AuditEvent]:
    async with w.deps.db.sessions() as s:
        rows = await s.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows.scalars())


async def audit_count(w: World) -> int:
    async with w.deps.db.sessions() as s:
        return (await s.execute(select(func.count()).select_from(AuditEvent))).scalar_one()


async def stored_totp(w: World, username: str) -> str:
    """What the database column holds, as anyone reading the table would see it."""
    async with w.deps.db.sessions() as s:
        found = (
            await s.execute(select(Staff.totp_secret).where(Staff.username == username))
        ).scalar_one()
    assert found is not None
    return str(found)


async def add_staff(w: World, username: str, name: str, roles: str, team: str | None) -> None:
    async with w.deps.db.transaction() as s:
        judge = await s.get_one(Staff, w.case["judge_id"])
        s.add(Staff(username=username, name=name, court_id=judge.court_id, roles=roles, team=team))


# -- signing in ------------------------------------------------------------------------------


async def test_sign_in_with_the_right_password_and_out_again(world: World) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    first = await browser.get("/console", follow=False)
    assert first.status == 303 and first.location == "/console/login"
    login = await browser.get("/console/login")
    assert login.status == 200 and words.LOGIN_TITLE in login.text
    assert auth.PRE_COOKIE in browser.cookies

    page = await browser.sign_in("zhangwei")
    assert page.status == 200 and words.INBOX_TITLE in page.text
    assert "张伟（zhangwei）" in page.text and COURT in page.text
    [cookie] = [c for c in browser.set_cookies if c.startswith(auth.COOKIE + "=")]
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/console"):
        assert flag in cookie, cookie
    token = browser.cookies[auth.COOKIE]
    assert token not in json.dumps(await w.deps.redis.keys("*"))  # kept only as a digest
    [signed] = await events(w, "console.signed_in")
    assert signed.actor == "staff:zhangwei"
    assert json.loads(signed.payload) == {"address": "127.0.0.1", "second_factor": False}

    out = await browser.post("/console/logout", {"csrf": csrf_of(page.text)})
    assert out.status == 200 and words.SIGNED_OUT in out.text
    assert auth.COOKIE not in browser.cookies
    # The old token is dead on the server too, not just forgotten by this browser.
    again = Browser(w, cookies={auth.COOKIE: token})
    assert (await again.get("/console", follow=False)).status == 303
    assert [e.actor for e in await events(w, "console.signed_out")] == ["staff:zhangwei"]


async def test_a_wrong_password_is_refused_and_recorded_without_it(world: World) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    for username, password in (("zhangwei", "wrong password!"), ("nobody", "zhangwei-pass")):
        page = await browser.sign_in(username, password)
        assert page.status == 401 and words.LOGIN_FAILED in page.text
        assert auth.COOKIE not in browser.cookies
    failed = await events(w, "console.sign_in_failed")
    assert [e.actor for e in failed] == ["staff:zhangwei", "console"]
    assert [json.loads(e.payload)["reason"] for e in failed] == ["wrong_password", "unknown_user"]
    everything = json.dumps([(e.actor, e.subject, e.payload) for e in failed])
    # Neither password is in the record, nor the unknown name (people type passwords there).
    assert "wrong password" not in everything and "zhangwei-pass" not in everything
    assert "nobody" not in everything
    # A staff member without a password cannot sign in with any.
    await add_staff(w, "lina", "李娜", "judge", "民一庭")
    assert (await browser.sign_in("lina", "")).status == 401
    assert (await browser.sign_in("lina", PASSWORD)).status == 401


async def test_an_account_locks_after_five_wrong_passwords_even_across_a_redis_restart(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    for _ in range(staff_auth.PER_ACCOUNT - 1):
        assert words.LOGIN_FAILED in (await browser.sign_in("zhangwei", "guess guess")).text
    last = await browser.sign_in("zhangwei", "guess guess")
    assert last.status == 401 and words.LOCKED in last.text
    before = await audit_count(w)
    await w.deps.redis.flushdb()  # a Redis restart with persistence off
    browser = Browser(w)
    right = await browser.sign_in("zhangwei")
    assert right.status == 429 and words.LOCKED in right.text  # the right password too
    assert auth.COOKIE not in browser.cookies
    assert await audit_count(w) == before  # a try while locked is not written down
    failed = await events(w, "console.sign_in_failed")
    assert [json.loads(e.payload)["locked"] for e in failed] == [False] * 4 + [True]
    frozen_clock[0] += staff_auth.WINDOW + timedelta(seconds=1)
    assert (await browser.sign_in("zhangwei")).status == 200


async def test_an_address_locks_after_twenty_wrong_tries_across_accounts(world: World) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    for n in range(staff_auth.PER_ADDRESS):
        page = await browser.sign_in(f"guess{n}", "guess guess")
        assert page.status == 401
    assert words.LOCKED in page.text
    page = await browser.sign_in("zhangwei")
    assert page.status == 429 and words.LOCKED in page.text
    async with w.deps.db.sessions() as s:
        tries = await staff_auth.tries(s, "zhangwei", "127.0.0.1")
    assert tries == staff_auth.Tries(account=0, address=staff_auth.PER_ADDRESS)


async def test_a_totp_code_is_asked_for_when_the_account_has_one(
    world: World, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    w = world
    await give_password(w, "zhangwei")
    # The command and the server share the secret the TOTP key is drawn from, as in a court.
    cli_env = {**cli_env, "MST_SECRET_KEY": w.deps.settings.secret_key}
    run = await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--totp", "--json")
    assert run.code == 0, run.err
    out = json.loads(run.out)
    assert out["username"] == "zhangwei" and "set_at" not in out  # the password unchanged
    uri = out["otpauth"]
    assert uri.startswith("otpauth://totp/") and "zhangwei" in uri
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)

    browser = Browser(w)
    page = await browser.sign_in("zhangwei")
    assert page.status == 200 and words.CODE_TITLE in page.text
    assert auth.COOKIE not in browser.cookies  # not signed in yet
    assert (await browser.get("/console", follow=False)).status == 303
    wrong = await browser.post(
        "/console/login/code", {"csrf": csrf_of(page.text), "code": "000000"}
    )
    assert wrong.status == 401 and words.CODE_WRONG in wrong.text
    code = totp.at(now())  # the server's clock: the tests' Monday
    right = await browser.post("/console/login/code", {"csrf": csrf_of(page.text), "code": code})
    assert right.status == 200 and words.INBOX_TITLE in right.text
    assert json.loads((await events(w, "console.signed_in"))[-1].payload)["second_factor"]
    stored = await stored_totp(w, "zhangwei")
    assert stored.startswith(staff_auth.SEALED) and totp.secret not in stored

    # The same code again (read over a shoulder): refused.
    other = Browser(w)
    page = await other.sign_in("zhangwei")
    again = await other.post("/console/login/code", {"csrf": csrf_of(page.text), "code": code})
    assert again.status == 401 and auth.COOKIE not in other.cookies
    # Without a right password first there is no code page to send to.
    stranger = Browser(w)
    token = await stranger.csrf("/console/login")
    sent = await stranger.post("/console/login/code", {"csrf": token, "code": totp.at(now())})
    assert words.CODE_EXPIRED in sent.text and auth.COOKIE not in stranger.cookies

    off = await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--no-totp")
    assert off.code == 0, off.err
    assert words.INBOX_TITLE in (await Browser(w).sign_in("zhangwei")).text


async def test_a_totp_secret_is_never_kept_in_clear(world: World) -> None:
    w = world
    await give_password(w, "zhangwei")
    key = w.deps.settings.secret_key
    async with w.deps.db.transaction() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
        uri = await staff_auth.enable_totp(s, judge, actor="test", secret_key=key)
    secret = pyotp.parse_uri(uri).secret
    stored = await stored_totp(w, "zhangwei")
    assert stored.startswith("v1:") and len(stored) <= 64  # the column's length
    assert secret not in stored.upper()
    raw = base64.b32decode(secret)
    assert raw not in base64.b85decode(stored[3:])  # nor its bytes, under any encoding
    async with w.deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert staff_auth.totp_secret(judge, key) == secret
    assert staff_auth.totp_secret(judge, "t" * 48) is None  # another server's secret
    assert staff_auth.totp_secret(judge, None) is None
    # Copied onto another account, it does not open: each is sealed to its own account.
    other = Staff(id=(judge.id or 0) + 1, username="x", name="x", court_id=1, totp_secret=stored)
    assert staff_auth.totp_secret(other, key) is None
    assert not staff_auth.totp_ok(other, pyotp.TOTP(secret).at(now()), secret_key=key)
    # The same secret sealed twice reads differently (a fresh nonce each time).
    box = staff_auth.TotpBox.from_secret(key)
    assert box.seal(judge, secret) != box.seal(judge, secret)

    browser = Browser(w)
    page = await browser.sign_in("zhangwei")
    assert words.CODE_TITLE in page.text
    code = pyotp.TOTP(secret).at(now())
    done = await browser.post("/console/login/code", {"csrf": csrf_of(page.text), "code": code})
    assert done.status == 200 and words.INBOX_TITLE in done.text
    assert await stored_totp(w, "zhangwei") == stored


async def test_an_older_clear_totp_secret_still_works_and_is_sealed_at_its_first_use(
    world: World,
) -> None:
    w = world
    await give_password(w, "zhangwei")
    secret = pyotp.random_base32()
    async with w.deps.db.transaction() as s:
        await s.execute(
            Staff.__table__.update()  # type: ignore[attr-defined]
            .where(Staff.username == "zhangwei")
            .values(totp_secret=secret)
        )
    browser = Browser(w)
    page = await browser.sign_in("zhangwei")
    totp = pyotp.TOTP(secret)
    done = await browser.post(
        "/console/login/code", {"csrf": csrf_of(page.text), "code": totp.at(now())}
    )
    assert done.status == 200 and words.INBOX_TITLE in done.text
    stored = await stored_totp(w, "zhangwei")
    assert stored.startswith("v1:") and secret not in stored
    # Sealed, it still signs in (the next 30-second step's code: each code is used once).
    again = Browser(w)
    page = await again.sign_in("zhangwei")
    code = totp.at(now() + timedelta(seconds=30))
    done = await again.post("/console/login/code", {"csrf": csrf_of(page.text), "code": code})
    assert done.status == 200 and words.INBOX_TITLE in done.text


# -- the address a sign-in comes from ----------------------------------------------------------


def test_the_client_address_behind_trusted_proxies() -> None:
    address = console.client_address
    nobody = ConsoleSettings()
    ours = ConsoleSettings.parse("127.0.0.1, 10.0.0.0/8")
    # No proxy trusted (the default): X-Forwarded-For is never read.
    assert address("127.0.0.1", ["203.0.113.9"], nobody) == "127.0.0.1"
    # A peer that is not ours: whatever it writes is ignored.
    assert address("198.51.100.7", ["203.0.113.9"], ours) == "198.51.100.7"
    assert address("198.51.100.7", ["127.0.0.1"], ours) == "198.51.100.7"
    # Through our proxy: the address it appended, not what the client wrote to its left.
    assert address("127.0.0.1", ["203.0.113.9"], ours) == "203.0.113.9"
    assert address("127.0.0.1", ["1.2.3.4, 203.0.113.9"], ours) == "203.0.113.9"
    # Two of ours in a row, the header over two lines: the last address not ours.
    assert address("10.0.0.2", ["1.2.3.4, 203.0.113.9", "10.0.0.1"], ours) == "203.0.113.9"
    # Only ours all the way: the furthest; none at all: the proxy itself.
    assert address("10.0.0.2", ["10.0.0.5"], ours) == "10.0.0.5"
    assert address("127.0.0.1", [], ours) == "127.0.0.1"
    # Not an address where ours should have written one: stop at the proxy that passed it.
    assert address("127.0.0.1", ["203.0.113.9, unknown"], ours) == "127.0.0.1"
    # A dual-stack socket's way of naming an IPv4 peer is the same peer.
    assert address("::ffff:127.0.0.1", ["203.0.113.9"], ours) == "203.0.113.9"
    assert address("2001:db8::1", ["203.0.113.9"], ours) == "2001:db8::1"
    assert ConsoleSettings.parse("").trusted_proxies == ()
    with pytest.raises(ConfigError, match="MST_CONSOLE_TRUSTED_PROXIES"):
        ConsoleSettings.parse("10.0.0.0/33")
    with pytest.raises(ConfigError, match="MST_CONSOLE_TRUSTED_PROXIES"):
        ConsoleSettings.parse("127.0.0.1, nginx")


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(world: World) -> None:
    w = world
    await give_password(w, "zhangwei")
    # The test client (127.0.0.1) is no trusted proxy: each try claims an address of its own.
    for n in range(staff_auth.PER_ADDRESS):
        guesser = Browser(w, headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert (await guesser.sign_in(f"guess{n}", "guess guess")).status == 401
    page = await Browser(w, headers={"X-Forwarded-For": "198.51.100.1"}).sign_in("zhangwei")
    assert page.status == 429 and words.LOCKED in page.text
    failed = await events(w, "console.sign_in_failed")
    assert {json.loads(e.payload)["address"] for e in failed} == {"127.0.0.1"}


async def test_behind_a_trusted_proxy_the_client_it_names_is_counted(world: World) -> None:
    w = world
    w.deps.settings = replace(w.deps.settings, console=ConsoleSettings.parse("127.0.0.1"))
    await give_password(w, "zhangwei")
    # A guesser behind our proxy writes a fresh address each time; the proxy appends theirs.
    for n in range(staff_auth.PER_ADDRESS):
        guesser = Browser(w, headers={"X-Forwarded-For": f"10.9.9.{n}, 203.0.113.9"})
        assert (await guesser.sign_in(f"guess{n}", "guess guess")).status == 401
    locked = await Browser(w, headers={"X-Forwarded-For": "203.0.113.9"}).sign_in("zhangwei")
    assert locked.status == 429 and words.LOCKED in locked.text
    # A colleague behind the same proxy, at another address, is not locked out with them.
    colleague = Browser(w, headers={"X-Forwarded-For": "198.51.100.20"})
    page = await colleague.sign_in("zhangwei")
    assert page.status == 200 and words.INBOX_TITLE in page.text
    [signed] = await events(w, "console.signed_in")
    assert json.loads(signed.payload)["address"] == "198.51.100.20"
    async with w.deps.db.sessions() as s:
        tries = await staff_auth.tries(s, "zhangwei", "203.0.113.9")
    assert tries.address == staff_auth.PER_ADDRESS


async def test_a_session_ends_after_thirty_idle_minutes_and_after_twelve_hours(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    assert (await browser.sign_in("zhangwei")).status == 200
    for _ in range(3):  # each request moves the idle time on
        frozen_clock[0] += timedelta(minutes=29)
        assert (await browser.get("/console", follow=False)).status == 200
    frozen_clock[0] += auth.IDLE + timedelta(seconds=1)
    ended = await browser.get("/console", follow=False)
    assert ended.status == 303 and ended.location == "/console/login?m=ended"
    assert words.SESSION_ENDED in (await browser.get(ended.location)).text

    assert (await browser.sign_in("zhangwei")).status == 200
    started = frozen_clock[0]
    while frozen_clock[0] - started < auth.ABSOLUTE - timedelta(minutes=25):
        frozen_clock[0] += timedelta(minutes=25)
        assert (await browser.get("/console", follow=False)).status == 200
    frozen_clock[0] = started + auth.ABSOLUTE + timedelta(seconds=1)
    assert (await browser.get("/console", follow=False)).status == 303


async def test_a_new_password_ends_every_session(
    world: World, tmp_path: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    await give_password(w, "zhangwei")
    browser = Browser(w)
    assert (await browser.sign_in("zhangwei")).status == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("another good password\n"))
    run = await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--stdin", "--json")
    assert run.code == 0, run.err
    out = json.loads(run.out)
    assert set(out) == {"username", "set_at"} and out["username"] == "zhangwei"
    assert (await browser.get("/console", follow=False)).status == 303
    assert (await Browser(w).sign_in("zhangwei", "another good password")).status == 200
    assert (await Browser(w).sign_in("zhangwei", PASSWORD)).status == 401

    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert (
        await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--stdin")
    ).code == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough password\n"))
    missing = await mst_in_process(cli_env, tmp_path, "staff-password", "nobody", "--stdin")
    assert missing.code == 1 and "nobody" in missing.err
    [event] = [e for e in await events(w, "staff.password_set") if e.actor == "admin"]
    assert event.subject == "staff:zhangwei"


async def test_a_set_up_link_sets_a_password_once(
    world: World, tmp_path: Path, cli_env: dict[str, str], frozen_clock: list[datetime]
) -> None:
    w = world
    run = await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--link", "--json")
    assert run.code == 0, run.err
    out = json.loads(run.out)
    base = cli_env["PUBLIC_BASE_URL"]
    assert out["link"].startswith(f"{base}/console/setup/")
    path = out["link"].removeprefix(base)  # PUBLIC_BASE_URL may have a path of its own
    async with w.deps.db.sessions() as s:
        judge = await s.get_one(Staff, w.case["judge_id"])
    assert judge.setup_token_hash and path.rsplit("/", 1)[1] not in judge.setup_token_hash

    browser = Browser(w)
    page = await browser.get(path)
    assert page.status == 200 and "张伟（zhangwei）" in page.text
    token = csrf_of(page.text)
    differ = await browser.post(path, {"csrf": token, "password": PASSWORD, "again": "other"})
    assert differ.status == 400 and words.PASSWORD_ERRORS["mismatch"] in differ.text
    short = await browser.post(path, {"csrf": token, "password": "short", "again": "short"})
    assert short.status == 400 and words.PASSWORD_ERRORS["too_short"] in short.text
    done = await browser.post(path, {"csrf": token, "password": PASSWORD, "again": PASSWORD})
    assert done.status == 200 and words.PASSWORD_SET in done.text
    assert (await browser.get(path)).status == 404  # one use only
    assert (await browser.sign_in("zhangwei")).status == 200

    later = await mst_in_process(cli_env, tmp_path, "staff-password", "zhangwei", "--link")
    assert later.code == 0, later.err
    link = next(line for line in later.out.splitlines() if "/console/setup/" in line)
    # The command ran on the real clock (as a process does): a day past it.
    frozen_clock[0] = datetime.now(UTC) + staff_auth.SETUP_TTL + timedelta(minutes=1)
    gone = await browser.get(link.strip().removeprefix(base))
    assert gone.status == 404 and words.SETUP_BAD in gone.text


# -- forms, cookies and headers ------------------------------------------------------------


async def test_forms_without_their_token_are_refused_and_change_nothing(world: World) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    await give_password(w, "zhangwei")
    browser = await session_for(w, "zhangwei")
    page = await browser.get(f"/console/items/{number}")
    assert page.status == 200
    good = csrf_of(page.text)
    before = await snapshot(w, number), await audit_count(w)
    posts = {
        f"/console/items/{number}/answer": {"text": "下周一开庭。"},
        f"/console/items/{number}/close": {},
        f"/console/items/{number}/transfer": {"to": "zhangwei", "reason": "x"},
        f"/console/items/{number}/escalate": {"reason": "请上级协调"},
        "/console/logout": {},
        "/console/login": {"username": "zhangwei", "password": PASSWORD},
    }
    for url, data in posts.items():
        for token in (None, "", "0" * 40, good[:-1] + ("0" if good[-1] != "0" else "1")):
            sent = data if token is None else {**data, "csrf": token}
            refused = await browser.post(url, sent, follow=False)
            assert refused.status == 403, (url, token, refused.text)
            assert words.FORM_EXPIRED in refused.text
    # Another session's token is no good either.
    other = await session_for(w, "zhangwei")
    theirs = csrf_of((await other.get(f"/console/items/{number}")).text)
    refused = await browser.post(
        f"/console/items/{number}/answer", {"csrf": theirs, "text": "x"}, follow=False
    )
    assert refused.status == 403
    assert (await snapshot(w, number), await audit_count(w)) == before
    assert (await browser.get("/console", follow=False)).status == 200  # still signed in
    # The right token does the same thing.
    done = await browser.post(f"/console/items/{number}/answer", {"csrf": good, "text": "好的"})
    assert done.status == 200 and texts.STAFF_ANSWERED.format(ticket=number) in done.text


async def test_every_console_response_is_locked_down(world: World) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    await add_staff(w, "qianjd", "钱接待", "reception", "集约接待")
    browser = await session_for(w, "qianjd")
    judge = await session_for(w, "zhangwei")
    urls = ["/console/login", "/console", "/console/desk", "/console/items/999999"]
    for url in urls:
        for who in (Browser(w), browser, judge):
            page = await who._one("GET", url)
            assert page.headers["Content-Security-Policy"] == CSP, url
            assert page.headers["X-Content-Type-Options"] == "nosniff", url
            assert page.headers["Cache-Control"] == "no-store", url
            if page.status == 200:
                html = page.text
                assert "<script" not in html and "style=" not in html and "<style" not in html
                # Only our own files: no CDN, no other site.
                assert not re.search(r'(src|href)="(https?:)?//', html), (url, html)
                assert console.STYLE_URL in html
    item = await judge.get(f"/console/items/{number}")
    assert item.status == 200 and item.headers["Content-Security-Policy"] == CSP
    css = await Browser(w)._one("GET", console.STYLE_URL)
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    assert css.headers["X-Content-Type-Options"] == "nosniff"


# -- the work itself ---------------------------------------------------------------------------


async def test_an_answer_in_the_console_reaches_the_litigant(world: World) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？我需要带什么材料？")
    await give_password(w, "zhangwei")
    browser = Browser(w)
    inbox = await browser.sign_in("zhangwei")
    assert listed(inbox.text) == {number} and CASE_NUMBER in inbox.text
    assert "原告王**" in inbox.text and "王某某" not in inbox.text
    item = await browser.get(f"/console/items/{number}")
    assert "请问什么时候开庭？我需要带什么材料？" in item.text
    sent_before = len(w.inbox(LITIGANT))
    done = await browser.post(
        f"/console/items/{number}/answer",
        {"csrf": csrf_of(item.text), "text": "12月10日上午九点开庭，请带身份证原件和借条。"},
    )
    assert done.status == 200 and texts.STAFF_ANSWERED.format(ticket=number) in done.text
    assert "12月10日上午九点开庭" in done.text and "法官张伟" in done.text  # in the thread
    await w.deliver()
    received = w.inbox(LITIGANT)[sent_before:]
    assert received == [f"法官张伟回复 #{number}：12月10日上午九点开庭，请带身份证原件和借条。"]
    [answered] = await events(w, "ticket.answered")
    assert answered.actor == "staff:zhangwei" and answered.subject == f"ticket:{number}"
    async with w.deps.db.sessions() as s:
        ticket = await s.get_one(Ticket, number)
    assert ticket.status == "answered" and ticket.first_reply_at is not None

    closed = await browser.post(f"/console/items/{number}/close", {"csrf": csrf_of(done.text)})
    assert texts.STAFF_CLOSED.format(ticket=number) in closed.text
    await w.deliver()
    assert any(f"#{number}" in m and "已办结" in m for m in w.inbox(LITIGANT))
    # Closed: no more forms, and a late post changes nothing.
    assert "/answer" not in closed.text and words.CLOSED_NOTE in closed.text
    late = await browser.post(
        f"/console/items/{number}/answer", {"csrf": csrf_of(closed.text), "text": "再补一句"}
    )
    assert late.status == 409 and texts.STAFF_ALREADY_CLOSED.format(ticket=number) in late.text


async def test_a_transfer_is_recorded_in_the_items_history(
    world: World, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    await add_staff(w, "zhaoliu", "赵六", "judge", "民二庭")
    browser = await session_for(w, "zhangwei")
    page = await browser.get(f"/console/items/{number}")
    assert '<option value="zhaoliu">赵六（民二庭）</option>' in page.text
    assert '<option value="zhangwei">' not in page.text  # not to himself
    done = await browser.post(
        f"/console/items/{number}/transfer",
        {"csrf": csrf_of(page.text), "to": "zhaoliu", "reason": "本人回避"},
    )
    # Back to his inbox, where it is no longer listed: now hidden from him as one that
    # does not exist.
    assert done.status == 200 and words.INBOX_TITLE in done.text
    assert texts.TRANSFERRED.format(ticket=number, name="赵六") in done.text
    assert listed(done.text) == set()
    gone = await browser.get(f"/console/items/{number}")
    assert gone.status == 404 and gone.text == (await browser.get("/console/items/999999")).text
    [looked] = await events(w, "ticket.refused")  # his look at it is on record, as in chat
    assert looked.actor == "staff:zhangwei" and json.loads(looked.payload)["verb"] == "view"
    async with w.deps.db.sessions() as s:
        ticket = await s.get_one(Ticket, number)
        zhaoliu = (await s.execute(select(Staff).where(Staff.username == "zhaoliu"))).scalar_one()
    assert ticket.assignee_id == zhaoliu.id

    run = await mst_in_process(cli_env, tmp_path, "ticket", "history", str(number), "--json")
    assert run.code == 0, run.err
    [last] = [r for r in json.loads(run.out) if r["action"] == "ticket.transferred"]
    assert last["by"] == "张伟（zhangwei）"
    assert last["to"] == "赵六" and last["reason"] == "本人回避"
    # The new holder reads the same history on the item's page.
    theirs = await (await session_for(w, "zhaoliu")).get(f"/console/items/{number}")
    assert theirs.status == 200
    row = re.search(r"<tr><td class=\"when\">[^<]*</td><td>转办</td>(.*?)</tr>", theirs.text)
    assert row and "张伟（zhangwei）" in row.group(1) and "赵六" in row.group(1)
    assert "本人回避" in row.group(1)
    await w.deliver()
    assert any("赵六" in m for m in w.inbox(LITIGANT))  # the party is told who has it now


async def test_an_escalation_and_its_reason_are_in_the_record_and_the_history(
    world: World, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    await add_staff(w, "qianjd", "钱接待", "reception", "集约接待")
    url = f"/console/items/{number}/escalate"
    judge = await session_for(w, "zhangwei")
    page = await judge.get(f"/console/items/{number}")
    assert f'action="{url}"' in page.text
    assert words.ESCALATE_HINT.format(to="集约接待（第1级）") in page.text
    token = csrf_of(page.text)
    before = await snapshot(w, number), await audit_count(w)
    empty = await judge.post(url, {"csrf": token, "reason": "  "})
    assert empty.status == 400 and words.ESCALATE_NO_REASON in empty.text
    assert (await snapshot(w, number), await audit_count(w)) == before
    sent_before = len(w.inbox(LITIGANT))

    done = await judge.post(url, {"csrf": token, "reason": "涉及全院统一排期"})
    # Now in reception's inbox, out of his sight: back to his own inbox, told where it went.
    assert done.status == 200 and words.INBOX_TITLE in done.text
    assert words.ESCALATED.format(ticket=number, to="集约接待（第1级）") in done.text
    assert (await judge.get(f"/console/items/{number}")).status == 404
    [event] = await events(w, "ticket.escalated")
    assert event.actor == "staff:zhangwei" and event.subject == f"ticket:{number}"
    payload = json.loads(event.payload)
    assert (payload["reason"], payload["note"], payload["to"]["level"]) == (
        "requested",
        "涉及全院统一排期",
        1,
    )
    # Reception reads, in the item's history, who raised it, to whom and why.
    desk = await session_for(w, "qianjd")
    theirs = await desk.get(f"/console/items/{number}")
    assert theirs.status == 200
    row = re.search(
        rf'<tr><td class="when">[^<]*</td><td>{words.ESCALATED_BY_HAND}</td>(.*?)</tr>',
        theirs.text,
    )
    assert row, theirs.text
    assert "张伟（zhangwei）" in row.group(1) and "集约接待（第1级）" in row.group(1)
    assert "涉及全院统一排期" in row.group(1)
    run = await mst_in_process(cli_env, tmp_path, "ticket", "history", str(number), "--json")
    [last] = [r for r in json.loads(run.out) if r["action"] == "ticket.escalated"]
    assert (last["by"], last["to"], last["level"], last["reason"]) == (
        "张伟（zhangwei）",
        "集约接待",
        1,
        "涉及全院统一排期",
    )
    # The litigant is told who handles it now, and nothing of why.
    await w.deliver()
    told = w.inbox(LITIGANT)[sent_before:]
    assert len(told) == 1 and f"#{number}" in told[0] and "法院接待人员" in told[0]
    assert "排期" not in told[0]

    # This court has nobody above reception: no button, a plain word, and a post changes nothing.
    assert f'action="{url}"' not in theirs.text and words.ESCALATE_NOT["nobody"] in theirs.text
    before = await snapshot(w, number)
    refused = await desk.post(url, {"csrf": csrf_of(theirs.text), "reason": "请院领导协调"})
    assert refused.status == 409 and words.ESCALATE_NOT["nobody"] in refused.text
    assert await snapshot(w, number) == before
    await add_staff(w, "zhoulead", "周院长", "admin", "院领导")
    page = await desk.get(f"/console/items/{number}")
    assert words.ESCALATE_HINT.format(to="院领导（第2级）") in page.text
    done = await desk.post(url, {"csrf": csrf_of(page.text), "reason": "请院领导协调"})
    assert words.ESCALATED.format(ticket=number, to="院领导（第2级）") in done.text
    # The leadership is the top: the page says so, and offers no button.
    top = await (await session_for(w, "zhoulead")).get(f"/console/items/{number}")
    assert f'action="{url}"' not in top.text and words.ESCALATE_NOT["at_top"] in top.text
    assert top.text.count(words.ESCALATED_BY_HAND) >= 3  # two rows, and the card's heading


def inbox_order(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num"><a href="/console/items/(\d+)">', page)]


def pager_link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a class="button small" rel="{rel}" href="([^"]*)">', page)
    return html.unescape(found.group(1)) if found else None


async def test_the_inbox_pages_past_two_hundred_items_keeping_filters_and_search(
    world: World,
) -> None:
    w = world
    await verify_litigant(w)
    first = await ask(w, "第一个问题")
    async with w.deps.db.transaction() as s:
        base = await s.get_one(Ticket, first)
        assert base.holder_due_at is not None
        for i in range(1, 452):
            s.add(
                Ticket(
                    case_id=base.case_id,
                    court_id=base.court_id,
                    kind="question",
                    status="closed" if i > 449 else "open",
                    openid=base.openid,
                    party_id=base.party_id,
                    assignee_id=base.assignee_id,
                    team=base.team,
                    created_at=base.created_at,
                    holder_since=base.holder_since,
                    due_at=base.due_at,
                    holder_due_at=base.holder_due_at + timedelta(minutes=i),
                )
            )
        ids = list((await s.execute(select(Ticket.id).order_by(Ticket.id))).scalars())
    open_ids = set(ids[:450])  # the two last are closed
    browser = await session_for(w, "zhangwei")
    url: str | None = "/console?view=mine&status=todo&q=1102%E6%B0%91%E5%88%9D"  # 1102民初
    pages: list[list[int]] = []
    texts_seen: list[str] = []
    while url is not None:
        page = await browser.get(url)
        assert page.status == 200, url
        pages.append(inbox_order(page.text))
        texts_seen.append(page.text)
        if len(pages) > 1:  # the links keep the range, the status and the search
            assert "view=mine" in url and "status=todo" in url and "q=1102" in url, url
            assert f"page={len(pages)}" in url
        url = pager_link(page.text, "next")
    assert [len(p) for p in pages] == [200, 200, 50]
    assert sum(pages, []) == sorted(sum(pages, []), key=lambda n: n)  # by due time: by id here
    assert set(sum(pages, [])) == open_ids and len(sum(pages, [])) == 450
    assert words.PAGE.format(page=2, first=201, last=400) in texts_seen[1]
    assert pager_link(texts_seen[0], "prev") is None
    back = pager_link(texts_seen[1], "prev")
    assert back is not None and "page=" not in back and "q=1102" in back
    assert inbox_order((await browser.get(back)).text) == pages[0]
    assert pager_link(texts_seen[2], "prev") is not None
    # All statuses: the closed two come last, on the third page.
    third = await browser.get("/console?view=mine&status=all&page=3")
    assert inbox_order(third.text)[-2:] == ids[450:]
    # Past the end: nothing listed, a way back; a page number that is not one: the first.
    beyond = await browser.get("/console?page=9")
    assert inbox_order(beyond.text) == [] and pager_link(beyond.text, "prev") is not None
    for bad in ("0", "-1", "x", "99999999999", "２"):
        assert inbox_order((await browser.get(f"/console?page={bad}")).text) == pages[0], bad


async def test_the_inbox_colours_items_due_soon_and_overdue(
    world: World, frozen_clock: list[datetime]
) -> None:
    w = world
    await verify_litigant(w)
    number = await ask(w, "请问什么时候开庭？")
    async with w.deps.db.sessions() as s:
        due = (await s.get_one(Ticket, number)).holder_due_at
    assert due is not None
    row = re.compile(rf'<tr class="(\w*)">\s*<td class="num"><a href="/console/items/{number}">')

    async def colour() -> str:
        page = await (await session_for(w, "zhangwei")).get("/console", follow=False)
        found = row.search(page.text)
        assert found, page.text
        return found.group(1)

    assert await colour() == ""
    frozen_clock[0] = due - timedelta(hours=1)
    assert await colour() == "soon"
    frozen_clock[0] = due + timedelta(minutes=1)
    assert await colour() == "overdue"
    browser = await session_for(w, "zhangwei")
    page = await browser.get("/console", follow=False)
    assert words.OVERDUE in page.text
    # The search finds it by number and by case number; not by another number.
    for query, found in (
        (f"%23{number}", {number}),
        ("1102民初1234", {number}),
        ("%23999", set()),
        ("冀9999", set()),
    ):
        assert listed((await browser.get(f"/console?q={query}")).text) == found, query


# -- who sees and does what: every page, every role, two courts --------------------------------


async def _browsers(w: World) -> dict[str, Browser]:
    return {a.username: await session_for(w, a.username) for a in ACTORS}


async def test_every_page_shows_each_role_only_what_the_rules_allow(world: World) -> None:
    w = world
    setup = await two_courts(w)
    browsers = await _browsers(w)
    missing = (await browsers["zhangwei"].get("/console/items/999999")).text
    for actor in ACTORS:
        b = browsers[actor.username]
        everything = listed((await b.get("/console?view=all&status=all")).text)
        for view in ("mine", "unclaimed", "complaints", "team"):
            assert listed((await b.get(f"/console?view={view}&status=all")).text) <= everything
        for item, number in setup.items.items():
            cell = f"{actor.username} {item}"
            sees = actor.username in SEES[item]
            assert (number in everything) == sees, cell
            assert (number in listed((await b.get(f"/console?q=%23{number}")).text)) == sees
            page = await b.get(f"/console/items/{number}")
            if not sees:
                # The same page as for a number that does not exist.
                assert page.status == 404 and page.text == missing, cell
                continue
            assert page.status == 200, cell
            forms = set(re.findall(rf'action="/console/items/{number}/(\w+)"', page.text))
            expected = {
                verb
                for verb, who in (
                    ("answer", HANDLES),
                    ("close", HANDLES),
                    ("claim", CLAIMS),
                    ("transfer", TRANSFERS),
                    ("escalate", ESCALATES),
                )
                if actor.username in who[item]
            }
            assert forms == expected, cell
            options = set(re.findall(r'<option value="(\w+)">', page.text))
            if "transfer" in expected:
                assert BY[TRANSFER_TO[item]].username in options, cell
            assert not options & set(BAD_TARGETS[item]), cell
            assert all(BY[o].court == actor.court for o in options if o in BY), cell
        desk = await b.get(f"/console/desk?case={CASE_NUMBER}")
        at_desk = any(r in actor.roles.split(",") for r in ("assistant", "reception"))
        assert desk.status == (200 if at_desk else 403), actor.username
        if at_desk:
            # Their own court's case only: the case is court 1's.
            assert ("王**" in desk.text) == (actor.court == 1), actor.username
            assert ("138****1234" in desk.text) == (actor.court == 1)
            assert "王某某" not in desk.text and "13800001234" not in desk.text


@pytest.mark.parametrize("verb", ["answer", "close", "claim", "transfer", "escalate"])
async def test_every_actor_acts_only_on_what_is_theirs(world: World, verb: str) -> None:
    w = world
    setup = await two_courts(w)
    browsers = await _browsers(w)
    allowed = {
        "answer": HANDLES,
        "close": HANDLES,
        "claim": CLAIMS,
        "transfer": TRANSFERS,
        "escalate": ESCALATES,
    }[verb]
    for item in ITEMS:
        number = setup.items[item]
        data = {
            "answer": {"text": "您好，下周一开庭。"},
            "close": {},
            "claim": {},
            "transfer": {"to": BY[TRANSFER_TO[item]].username, "reason": "请协助"},
            "escalate": {"reason": "请上级协调"},
        }[verb]
        for actor in ACTORS:
            b = browsers[actor.username]
            # A token from the console's own page (the inbox: every signed-in person has it).
            token = csrf_of((await b.get("/console", follow=False)).text)
            before = await snapshot(w, number)
            page = await b.post(
                f"/console/items/{number}/{verb}", {**data, "csrf": token}, follow=False
            )
            after = await snapshot(w, number)
            cell = f"{actor.username} {verb} {item}: {page.status}"
            if actor.username in allowed[item]:
                assert page.status == 303 and after != before, cell
                if verb == "escalate":
                    assert (after["inbox"], after["level"]) == ESCALATE_TO[item], cell
                await restore(w, number, before)
            else:
                assert after == before, cell  # nothing changed, nobody was told anything
                sees = actor.username in SEES[item]
                assert page.status == (403 if sees else 404), cell


@pytest.mark.parametrize("item", ITEMS)
async def test_nobody_moves_an_item_where_it_would_be_lost(world: World, item: str) -> None:
    w = world
    setup = await two_courts(w)
    browsers = await _browsers(w)
    number = setup.items[item]
    for target in [*BAD_TARGETS[item], "nobody"]:
        for actor in ACTORS:
            b = browsers[actor.username]
            token = csrf_of((await b.get("/console", follow=False)).text)
            before = await snapshot(w, number)
            page = await b.post(
                f"/console/items/{number}/transfer",
                {"csrf": token, "to": target, "reason": "试试"},
                follow=False,
            )
            assert page.status in (403, 404), f"{actor.username} → {target}"
            assert await snapshot(w, number) == before, f"{actor.username} → {target}"
    async with w.deps.db.sessions() as s:
        refused = (
            await s.execute(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "ticket.refused")
            )
        ).scalar_one()
    assert refused > 0  # each refusal is in the record


async def test_reading_pages_queues_nothing_for_anyone(world: World) -> None:
    """Reading pages queues nothing for anyone: only the forms act."""
    w = world
    setup = await two_courts(w)
    browsers = await _browsers(w)
    async with w.deps.db.sessions() as s:
        before = (await s.execute(select(func.count()).select_from(Outbox))).scalar_one()
    for b in browsers.values():
        await b.get("/console")
        for number in setup.items.values():
            await b.get(f"/console/items/{number}")
    async with w.deps.db.sessions() as s:
        after = (await s.execute(select(func.count()).select_from(Outbox))).scalar_one()
    assert after == before
