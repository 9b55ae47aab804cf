"""Case codes: tokens, printed short codes, issue / revoke / re-issue, the images, and
the landing page a phone camera opens."""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import secrets
from typing import Any

import pytest
import zxingcpp
from aiohttp.test_utils import TestClient
from defusedxml import ElementTree
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.core.clock import now
from bot.dialog.dispatch import Deps
from qr import codes, render, tokens
from storage.models import AuditEvent, Case, CaseCode, Court
from tests.conftest import CASE_NUMBER, COURT

BASE = "http://court.example"  # the `settings` fixture's PUBLIC_BASE_URL


# -- tokens ------------------------------------------------------------------------------


def test_tokens_are_long_url_safe_and_unique() -> None:
    many = [tokens.new_token() for _ in range(2000)]
    assert len(set(many)) == len(many)
    for token in many:
        assert len(token) == 32
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)
        assert tokens.looks_like_token(token)
        # At least 128 random bits behind the 32 characters.
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert tokens.TOKEN_BYTES * 8 >= 128
    # Every character position varies: nothing fixed or sequential in them.
    for position in range(32):
        assert len({t[position] for t in many}) > 20


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a" * 31,
        "a" * 33,
        "a" * 31 + "=",
        "a" * 31 + "/",
        "<script>alert(1)</script>aaaaaaa",
        "令" * 32,
    ],
)
def test_looks_like_token_refuses_other_text(text: str) -> None:
    assert not tokens.looks_like_token(text)


# -- short codes -------------------------------------------------------------------------


def test_short_codes_are_ten_crockford_characters_with_a_valid_check() -> None:
    many = [tokens.new_short_code() for _ in range(2000)]
    assert len(set(many)) == len(many)
    for code in many:
        assert len(code) == 10
        assert set(code) <= set(tokens.ALPHABET)
        assert not set(code) & set("ILOU")
        assert tokens.short_code_status(code) == "ok"
    assert len(tokens.ALPHABET) == 32 and len(set(tokens.ALPHABET)) == 32


def test_check_character_is_luhn_mod_32() -> None:
    # Printed codes must stay valid: pin the algorithm with hand-computed values.
    assert tokens.check_char("000000000") == "0"
    assert tokens.check_char("000000001") == "Y"  # 2*1 = 2 → (32 - 2) = 30 → Y
    assert tokens.check_char("000000010") == "Z"  # 1*1 = 1 → 31 → Z
    assert tokens.check_char("00000000Z") == "1"  # 2*31 = 62 → 1 + 30 = 31 → 1
    assert tokens.short_code_status("000000001Y") == "ok"


def _substitutions(code: str) -> list[str]:
    return [
        code[:i] + ch + code[i + 1 :]
        for i in range(len(code))
        for ch in tokens.ALPHABET
        if ch != code[i]
    ]


def test_every_single_character_substitution_is_detected() -> None:
    code = "7K3QX9MZP" + tokens.check_char("7K3QX9MZP")
    wrong = _substitutions(code)
    assert len(wrong) == 10 * 31
    assert {tokens.short_code_status(w) for w in wrong} == {"mistyped"}
    # And for a handful of random codes too.
    for _ in range(20):
        code = tokens.new_short_code()
        assert all(tokens.short_code_status(w) == "mistyped" for w in _substitutions(code))


def test_adjacent_transpositions_are_mostly_detected() -> None:
    tried = caught = 0
    for a, b in itertools.permutations(tokens.ALPHABET, 2):
        for position in range(9):  # swaps of body characters and of the check character
            body = list("0000000000")
            body[position], body[position + 1] = a, b
            code = "".join(body[:9])
            code += tokens.check_char(code)
            swapped = list(code)
            swapped[position], swapped[position + 1] = swapped[position + 1], swapped[position]
            if swapped == list(code):
                continue
            tried += 1
            caught += tokens.short_code_status("".join(swapped)) == "mistyped"
    assert tried > 8000
    assert caught / tried >= 0.99


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("abcde-fghjk", "ABCDEFGHJK"),
        ("ABCDE FGHJK", "ABCDEFGHJK"),
        ("  abcde\tfghjk \n", "ABCDEFGHJK"),
        ("ab-cd-ef", "ABCDEF"),
        ("ABCDE—FGHJK", "ABCDEFGHJK"),
        ("ABCDE·FGHJK", "ABCDEFGHJK"),
        ("ABCDE_FGHJK.", "ABCDEFGHJK"),
        ("O0o", "000"),
        ("IiLl1", "11111"),
    ],
)
def test_normalize(typed: str, expected: str) -> None:
    assert tokens.normalize(typed) == expected


def test_what_people_type_for_a_printed_code_is_accepted() -> None:
    body = "10A0B1C0D"
    code = body + tokens.check_char(body)
    printed = tokens.pretty(code)
    assert printed == f"{code[:5]}-{code[5:]}" and len(printed) == 11
    for typed in (
        printed,
        printed.lower(),
        code.lower(),
        " ".join(code),
        printed.replace("0", "O").replace("1", "l"),
        printed.replace("1", "I").lower(),
    ):
        assert tokens.normalize(typed) == code
        assert tokens.short_code_status(typed) == "ok"


@pytest.mark.parametrize(
    "text", ["", "你好", "1", "ABCDEFGHJ", "ABCDEFGHJKM", "ABCDEFGHJU", "#12 好的"]
)
def test_text_that_is_not_a_short_code(text: str) -> None:
    assert tokens.short_code_status(text) == "no"


# -- issue, revoke, re-issue ----------------------------------------------------------


async def _actions(deps: Deps, case_id: int) -> list[tuple[str, dict[str, Any]]]:
    async with deps.db.sessions() as s:
        rows = (
            await s.execute(
                select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq)
            )
        ).scalars()
        return [(e.action, json.loads(e.payload)) for e in rows]


async def _case(deps: Deps, case_id: int) -> Case:
    async with deps.db.sessions() as s:
        case = await s.get(Case, case_id)
    assert case is not None
    return case


async def test_a_live_code_leads_to_its_case(deps: Deps, sample_case: dict[str, Any]) -> None:
    async with deps.db.sessions() as s:
        found = await codes.by_token(s, sample_case["token"])
    assert found.status == "ok"
    assert found.case is not None and found.case.case_number == CASE_NUMBER
    assert found.court is not None and found.court.name == COURT
    assert found.code is not None and found.code.short_code == sample_case["short_code"]
    assert codes.url_for(BASE, sample_case["token"]) == f"{BASE}/q/{sample_case['token']}"


async def test_revoke_then_issue_again(deps: Deps, sample_case: dict[str, Any]) -> None:
    case = await _case(deps, sample_case["case_id"])
    old_token = sample_case["token"]
    async with deps.db.transaction() as s:
        gone = await codes.revoke(s, case, reason="lost by the party", actor="admin")
    assert gone is not None and gone.token == old_token
    assert gone.revoked_at is not None and gone.revoke_reason == "lost by the party"
    async with deps.db.transaction() as s:
        assert await codes.active_code(s, case.id or 0) is None
        assert (await codes.by_token(s, old_token)).status == "revoked"
        # Nothing live: a second revoke does nothing.
        assert await codes.revoke(s, case, reason="again", actor="admin") is None
        new = await codes.issue(s, case, actor="admin")
    assert new.token != old_token and new.short_code != sample_case["short_code"]
    async with deps.db.sessions() as s:
        assert (await codes.by_token(s, old_token)).status == "revoked"
        assert (await codes.by_token(s, new.token)).status == "ok"
        live = await codes.active_code(s, case.id or 0)
        assert live is not None and live.id == new.id
        typed_old = await codes.by_typed_text(s, tokens.pretty(sample_case["short_code"]))
        assert typed_old is not None and typed_old.status == "revoked"
    assert [a for a, _ in await _actions(deps, case.id or 0)] == [
        "code.issued",
        "code.revoked",
        "code.issued",
    ]


async def test_issue_over_a_live_code_revokes_it(deps: Deps, sample_case: dict[str, Any]) -> None:
    case = await _case(deps, sample_case["case_id"])
    async with deps.db.transaction() as s:
        new = await codes.issue(s, case, actor="admin")
    async with deps.db.sessions() as s:
        rows = list(
            (await s.execute(select(CaseCode).where(CaseCode.case_id == case.id))).scalars()
        )
        assert (await codes.by_token(s, sample_case["token"])).status == "revoked"
    live = [c for c in rows if c.revoked_at is None]
    assert [c.id for c in live] == [new.id]
    old = next(c for c in rows if c.id != new.id)
    assert old.revoke_reason == "reissued"
    issued = await _actions(deps, case.id or 0)
    assert issued[-2:] == [
        ("code.revoked", {"short_code": sample_case["short_code"], "reason": "reissued"}),
        ("code.issued", {"short_code": new.short_code, "replaces": old.id}),
    ]


async def test_the_database_refuses_a_second_live_code(
    deps: Deps, sample_case: dict[str, Any]
) -> None:
    def another(**kw: Any) -> CaseCode:
        return CaseCode(
            case_id=sample_case["case_id"],
            token=tokens.new_token(),
            short_code=tokens.new_short_code(),
            **kw,
        )

    with pytest.raises(IntegrityError):
        async with deps.db.transaction() as s:
            s.add(another())
    # Revoked ones are kept for the record: any number of them is fine.
    async with deps.db.transaction() as s:
        s.add(another(revoked_at=now(), revoke_reason="test"))
        s.add(another(revoked_at=now(), revoke_reason="test"))
    async with deps.db.sessions() as s:
        rows = list(
            (
                await s.execute(select(CaseCode).where(CaseCode.case_id == sample_case["case_id"]))
            ).scalars()
        )
    assert len(rows) == 3
    assert [c.token for c in rows if c.revoked_at is None] == [sample_case["token"]]


async def test_typed_codes(deps: Deps, sample_case: dict[str, Any]) -> None:
    short = sample_case["short_code"]
    i = 3
    mistyped = short[:i] + next(c for c in tokens.ALPHABET if c != short[i]) + short[i + 1 :]
    unknown_body = next(
        b for b in (tokens.new_short_code()[:9] for _ in range(100)) if b != short[:9]
    )
    async with deps.db.sessions() as s:
        for typed in (short, tokens.pretty(short).lower(), f"  {tokens.pretty(short)} "):
            found = await codes.by_typed_text(s, typed)
            assert found is not None and found.status == "ok"
            assert found.case is not None and found.case.id == sample_case["case_id"]
        by_token = await codes.by_typed_text(s, sample_case["token"])
        assert by_token is not None and by_token.status == "ok"
        wrong = await codes.by_typed_text(s, mistyped)
        assert wrong is not None and wrong.status == "mistyped" and wrong.case is None
        nothing = await codes.by_typed_text(s, unknown_body + tokens.check_char(unknown_body))
        assert nothing is not None and nothing.status == "unknown" and nothing.case is None
        assert await codes.by_typed_text(s, "你好，我想咨询") is None
        assert (await codes.by_token(s, tokens.new_token())).status == "unknown"
        assert (await codes.by_token(s, "' OR 1=1 --")).status == "unknown"


# -- images ------------------------------------------------------------------------------


def _decode(image: Image.Image) -> list[str]:
    found = zxingcpp.read_barcodes(image)
    assert all(b.format == zxingcpp.BarcodeFormat.QRCode for b in found)
    return [b.text for b in found]


@pytest.mark.parametrize("base", [BASE, "https://ssfw.hbcourt.gov.cn/mashangtong"])
def test_png_decodes_to_exactly_the_url(base: str) -> None:
    url = codes.url_for(base, tokens.new_token())
    png = render.png(url)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _decode(Image.open(io.BytesIO(png))) == [f"{base}/q/{url.rsplit('/', 1)[1]}"]


def _rasterize(svg: bytes, scale: int = 8) -> Image.Image:
    """Draw the module squares of qrcode's SvgPathImage (M x,y H.. V.. H.. z)."""
    root = ElementTree.fromstring(svg)
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    image = Image.new("L", (int(width * scale), int(height * scale)), 255)
    draw = ImageDraw.Draw(image)
    path = next(el for el in root.iter() if el.tag.endswith("path")).attrib["d"]
    for x, y, x2, y2 in re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+z", path):
        box = [float(x) * scale, float(y) * scale, float(x2) * scale - 1, float(y2) * scale - 1]
        draw.rectangle(box, fill=0)
    return image


def test_svg_is_valid_xml_and_encodes_the_url() -> None:
    url = codes.url_for(BASE, tokens.new_token())
    svg = render.svg(url)
    root = ElementTree.fromstring(svg)
    assert root.tag in ("svg", "{http://www.w3.org/2000/svg}svg")
    assert "viewBox" in root.attrib
    assert _decode(_rasterize(svg)) == [url]


# -- the landing page -------------------------------------------------------------------


async def test_landing_page_shows_court_case_and_code_only(
    client: TestClient, sample_case: dict[str, Any]
) -> None:
    resp = await client.get(f"/q/{sample_case['token']}")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert resp.charset == "utf-8"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    page = await resp.text()
    assert 'lang="zh-CN"' in page
    assert COURT in page and CASE_NUMBER in page and "民间借贷纠纷" in page
    assert tokens.pretty(sample_case["short_code"]) in page
    assert "公众号" in page  # how to go on, in Chinese
    # Never who the parties are or how to reach them.
    for secret in ("王某某", "李某", "138****1234", "139****5678", "原告", "被告"):
        assert secret not in page
    assert "张伟" not in page  # nor the judge's name


async def test_a_revoked_code_answers_410(
    client: TestClient, deps: Deps, sample_case: dict[str, Any]
) -> None:
    case = await _case(deps, sample_case["case_id"])
    async with deps.db.transaction() as s:
        await codes.revoke(s, case, reason="leaked", actor="admin")
    resp = await client.get(f"/q/{sample_case['token']}")
    assert resp.status == 410
    page = await resp.text()
    assert "停用" in page and "新的二维码" in page
    # A leaked code tells nothing about the case any more.
    assert CASE_NUMBER not in page and "民间借贷纠纷" not in page
    assert tokens.pretty(sample_case["short_code"]) not in page


async def test_unknown_or_malformed_tokens_answer_404(
    client: TestClient, sample_case: dict[str, Any]
) -> None:
    for token in (
        secrets.token_urlsafe(24),  # well-formed, never issued
        sample_case["token"][:-1],
        sample_case["token"] + "a",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "..%2F..%2Fetc%2Fpasswd",
        "%E4%BD%A0%E5%A5%BD",
        sample_case["short_code"],  # the printed code is for chat, not for this URL
    ):
        resp = await client.get(f"/q/{token}")
        assert resp.status == 404, token
        page = await resp.text()
        assert "没有找到" in page
        assert CASE_NUMBER not in page
        assert "<script>" not in page


async def test_landing_page_escapes_what_it_shows(deps: Deps, client: TestClient) -> None:
    async with deps.db.transaction() as s:
        court = Court(name="法院 <u>&amp;</u>")
        s.add(court)
        await s.flush()
        case = Case(
            court_id=court.id or 0,
            case_number="(2026)<script>alert(1)</script>号",
            case_type="民事",
            cause='"><img src=x onerror=alert(2)>',
        )
        s.add(case)
        await s.flush()
        code = await codes.issue(s, case, actor="test")
    resp = await client.get(f"/q/{code.token}")
    assert resp.status == 200
    page = await resp.text()
    assert "<script>" not in page and "<img" not in page and "<u>" not in page
    assert "(2026)&lt;script&gt;alert(1)&lt;/script&gt;号" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page  # Jinja2 escapes " as &#34;
    assert "法院 &lt;u&gt;&amp;amp;&lt;/u&gt;" in page
    title = re.search(r"<title>(.*?)</title>", page)
    assert title is not None and "<" not in title.group(1)


async def test_the_landing_page_leads_into_the_chat(
    aiohttp_client: Any, settings: Any, deps: Deps, sample_case: dict[str, Any], tmp_path: Any
) -> None:
    """First-day issue, item 7: the page names the account and shows its own QR to follow,
    and sends people who cannot manage to the court's desk with its address and phone."""
    from dataclasses import replace

    from bot.rules import courts
    from tests.conftest import _client

    account_qr = tmp_path / "account.png"
    account_qr.write_bytes(render.png("http://weixin.qq.com/r/court-account"))
    configured = replace(
        settings,
        wechat=replace(settings.wechat, account_name="桃城法院诉讼服务", account_qr=account_qr),
    )
    async with deps.db.transaction() as s:
        court = await courts.by_name(s, COURT)
        assert court is not None
        await courts.set_desk(s, court, {"phone": "0318-2123456"}, actor="test")
    client = await _client(aiohttp_client, configured, deps)
    page = await (await client.get(f"/q/{sample_case['token']}")).text()
    assert "关注“桃城法院诉讼服务”" in page and "<img class='qr' src='/account-qr'" in page
    assert f"{COURT}诉讼服务中心（电话 0318-2123456）" in page
    image = await client.get("/account-qr")
    assert image.status == 200 and image.content_type == "image/png"
    assert _decode(Image.open(io.BytesIO(await image.read()))) == [
        "http://weixin.qq.com/r/court-account"
    ]
    # Only the name: where to search for it; nothing configured: the old words, no image.
    named = await _client(
        aiohttp_client,
        replace(settings, wechat=replace(settings.wechat, account_name="桃城法院")),
        deps,
    )
    page = await (await named.get(f"/q/{sample_case['token']}")).text()
    assert "搜索“桃城法院”" in page and "<img" not in page
    plain = await _client(aiohttp_client, settings, deps)
    assert (await plain.get("/account-qr")).status == 404
