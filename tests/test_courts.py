"""Many courts, one installation: courts with an Official Account of their own
(MST_COURTS_FILE) beside courts that share the default (the province's) account.

The world: 桃城 (the sample case's court) and 景县 each have their own account, each with
its own fake WeChat API; 冀州 has none and is served by the default account (the world's
own fake). Callbacks are signed per account; a message on an account reaches only the
cases of the courts it serves; answers go out through the account the person follows."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import courts as courts_file
from bot.app.config import load_settings
from bot.channels.wechat import menu
from bot.core.addresses import channel_of, external_id, wechat_account, wechat_user
from bot.core.errors import ConfigError
from bot.core.settings import CourtAccount, Settings, WeChatSettings
from bot.dialog.deps import Deps
from bot.fakes.wechat.api import FakeWeChat
from bot.fakes.wechat.api import create_app as fake_app
from bot.fakes.wechat.callbacks import WeChatServer, event_xml, text_xml
from bot.rules.staff import issue_bind_code
from handlers import texts
from qr import codes
from storage.models import AuditEvent, Binding, Case, Court, Outbox, Party, Staff
from tests.conftest import APP_ID, COURT, open_world
from tests.world import World, mst_in_process

TC_AES = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj"
JX_AES = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
JX_COURT = "景县人民法院"
JZ_COURT = "冀州区人民法院"  # no account of its own: the default one serves it
LITIGANT = "oTaoCheng0000000000000000001"


class Account:
    """One Official Account as WeChat sees it: its callback path, its signer, its API."""

    def __init__(self, path: str, server: WeChatServer, fake: FakeWeChat) -> None:
        self.path, self.server, self.fake = path, server, fake

    async def send(self, w: World, xml: str, *, status: int = 200) -> str:
        query, body = self.server.request(xml)
        resp = await w.client.post(self.path, params=query, data=body.encode())
        assert resp.status == status, await resp.text()
        if status != 200:
            return ""
        reply = self.server.read_reply(await resp.text(), query)
        return "" if reply is None else str(reply["Content"])

    async def say(self, w: World, openid: str, text: str) -> str:
        return await self.send(w, text_xml(openid, text))

    def inbox(self, openid: str) -> list[str]:
        return [s.text for s in self.fake.sent_to(openid)]


class Province:
    def __init__(self, w: World, tc: Account, jx: Account, default: Account) -> None:
        self.w, self.tc, self.jx, self.default = w, tc, jx, default
        self.cases: dict[str, dict[str, Any]] = {}


async def _fake(aiohttp_server: Any, app_id: str) -> tuple[FakeWeChat, str]:
    fake = FakeWeChat(app_id=app_id, app_secret=f"{app_id}-secret")
    server = await aiohttp_server(fake_app(fake))
    return fake, str(server.make_url("")).rstrip("/")


def _court(name: str, slug: str, app_id: str, token: str, aes: str, base: str) -> CourtAccount:
    return CourtAccount(
        court=name,
        slug=slug,
        wechat=WeChatSettings(
            app_id=app_id,
            app_secret=f"{app_id}-secret",
            token=token,
            aes_key=aes,
            api_base=base,
            template_id=f"{slug}-template",
            account_name=f"{name[:2]}法院",
        ),
    )


async def _case(deps: Deps, court_name: str, number: str, tail: str) -> dict[str, Any]:
    async with deps.db.transaction() as s:
        court = Court(name=court_name, phone="0318-1")
        s.add(court)
        await s.flush()
        judge = Staff(username=f"j{number}", name="法官", court_id=court.id or 0, roles="judge")
        s.add(judge)
        await s.flush()
        case = Case(
            court_id=court.id or 0,
            case_number=f"(2026)冀{number}民初1号",
            case_type="民事",
            cause="合同纠纷",
            judge_id=judge.id,
        )
        s.add(case)
        await s.flush()
        s.add(
            Party(
                case_id=case.id or 0,
                role="原告",
                name="赵某",
                phone_tail=tail,
                phone_masked="1",
                phone_hash=f"h{number}",
            )
        )
        code = await codes.issue(s, case, actor="test")
    return {"case_id": case.id, "token": code.token, "short_code": code.short_code}


@pytest.fixture
async def province(
    aiohttp_client: Any,
    aiohttp_server: Any,
    settings: Settings,
    deps: Deps,
    sample_case: dict[str, Any],
) -> AsyncIterator[Province]:
    tc_fake, tc_base = await _fake(aiohttp_server, "wxtaocheng0000001")
    jx_fake, jx_base = await _fake(aiohttp_server, "wxjingxian0000001")
    accounts = (
        _court(COURT, "taocheng", tc_fake.app_id, "tctoken", TC_AES, tc_base),
        _court(JX_COURT, "jingxian", jx_fake.app_id, "jxtoken", JX_AES, jx_base),
    )
    settings = replace(settings, wechat=replace(settings.wechat, account_name="河北法院"))
    async with open_world(
        aiohttp_client, aiohttp_server, settings, deps, sample_case, courts=accounts
    ) as w:
        p = Province(
            w,
            Account("/wechat/taocheng", WeChatServer("tctoken", tc_fake.app_id, TC_AES), tc_fake),
            Account("/wechat/jingxian", WeChatServer("jxtoken", jx_fake.app_id, JX_AES), jx_fake),
            Account("/wechat", w.wechat, w.fake),
        )
        p.cases = {
            "tc": sample_case,
            "jx": await _case(deps, JX_COURT, "1127", "2222"),
            "jz": await _case(deps, JZ_COURT, "1181", "3333"),
        }
        yield p


async def _bind_staff(p: Province, account: Account, username: str, openid: str) -> str:
    async with p.w.deps.db.transaction() as s:
        member = (await s.execute(select(Staff).where(Staff.username == username))).scalar_one()
        code = await issue_bind_code(s, member, actor="test")
    return await account.say(p.w, openid, code)


async def _bindings(deps: Deps) -> set[tuple[str, int]]:
    async with deps.db.sessions() as s:
        return {(b.openid, b.case_id) for b in (await s.execute(select(Binding))).scalars()}


# -- addresses -------------------------------------------------------------------------------


def test_a_court_accounts_followers_are_named_by_the_account() -> None:
    user = wechat_user("oAbc", "taocheng")
    assert user == "wx:taocheng:oAbc"
    assert wechat_account(user) == "taocheng" and external_id(user) == "oAbc"
    assert channel_of(user) == "wechat"
    # The default account's followers are plain openids, as they always were.
    assert wechat_user("oAbc") == "oAbc" and wechat_account("oAbc") is None
    assert external_id("oAbc") == "oAbc" and channel_of("oAbc") == "wechat"
    assert wechat_account("mp:oAbc") is None and wechat_account("wecom:zhang") is None


# -- callbacks, each with its own account's token and key ------------------------------------


async def test_each_callback_is_checked_with_its_own_accounts_token(province: Province) -> None:
    p, w = province, province.w
    for account in (p.tc, p.jx, p.default):
        q = account.server.query()
        resp = await w.client.get(account.path, params=q | {"echostr": "hello"})
        assert resp.status == 200 and await resp.text() == "hello"
    # Signed for one account, sent to another: refused, nothing stored.
    for signer, path in ((p.tc, "/wechat/jingxian"), (p.tc, "/wechat"), (p.default, p.tc.path)):
        q = signer.server.query()
        assert (await w.client.get(path, params=q | {"echostr": "x"})).status == 403
        query, body = signer.server.request(text_xml(LITIGANT, "你好"))
        assert (await w.client.post(path, params=query, data=body.encode())).status == 403
    # A court no account has: not found.
    q = p.tc.server.query()
    assert (await w.client.get("/wechat/nowhere", params=q | {"echostr": "x"})).status == 404
    # Signed with jingxian's token but encrypted with taocheng's key: it does not decrypt
    # (400, as any body that cannot be decrypted), nothing stored.
    wrong = Account(p.jx.path, WeChatServer("jxtoken", p.tc.fake.app_id, TC_AES), p.jx.fake)
    await wrong.send(w, text_xml(LITIGANT, "你好"), status=400)
    async with w.deps.db.sessions() as s:
        assert (await s.execute(select(Outbox))).first() is None


# -- a court's own account: in and out through it --------------------------------------------


async def test_a_litigant_and_judge_on_a_courts_account_talk_through_it(
    province: Province,
) -> None:
    p, w = province, province.w
    case = p.cases["tc"]
    greeting = await p.tc.send(w, event_xml(LITIGANT, "SCAN", case["token"]))
    assert COURT in greeting and texts.ASK_DIGITS in greeting
    assert "验证成功" in await p.tc.say(w, LITIGANT, "1234")
    assert (f"wx:taocheng:{LITIGANT}", case["case_id"]) in await _bindings(w.deps)
    assert "绑定成功" in await _bind_staff(p, p.tc, "zhangwei", "oJudgeTaoCheng00000000000001")

    assert await p.tc.say(w, LITIGANT, "1") == texts.ASK_PROMPT
    asked = await p.tc.say(w, LITIGANT, "请问开庭时间？")
    number = int(re.search(r"#(\d+)", asked).group(1))  # type: ignore[union-attr]
    await w.deliver()
    told = p.tc.inbox("oJudgeTaoCheng00000000000001")
    assert any("请问开庭时间" in t for t in told), told
    await p.tc.say(w, "oJudgeTaoCheng00000000000001", f"#{number} 下周一上午九点")
    await w.deliver()
    assert any("下周一上午九点" in t for t in p.tc.inbox(LITIGANT))
    # Only taocheng's API was used, with taocheng's own credentials (the fakes check them),
    # and WeChat was handed the bare openid.
    assert p.default.fake.sent == [] and p.jx.fake.sent == []
    assert p.tc.fake.tokens_issued >= 1 and p.default.fake.tokens_issued == 0
    async with w.deps.db.sessions() as s:
        rows = list((await s.execute(select(Outbox))).scalars())
    assert rows and {r.status for r in rows} == {"sent"}
    assert {r.recipient for r in rows} <= {
        f"wx:taocheng:{LITIGANT}",
        "wx:taocheng:oJudgeTaoCheng00000000000001",
    }


async def test_the_default_account_serves_the_courts_without_their_own(
    province: Province,
) -> None:
    p, w = province, province.w
    case = p.cases["jz"]
    greeting = await p.default.send(
        w, event_xml("oProvince0000000000000000001", "SCAN", case["token"])
    )
    assert JZ_COURT in greeting
    assert "验证成功" in await p.default.say(w, "oProvince0000000000000000001", "3333")
    assert ("oProvince0000000000000000001", case["case_id"]) in await _bindings(w.deps)


# -- a code of a court another account serves ------------------------------------------------


async def test_a_code_of_another_accounts_court_is_refused_naming_that_account(
    province: Province,
) -> None:
    p, w = province, province.w
    tc, jx, jz = p.cases["tc"], p.cases["jx"], p.cases["jz"]
    # 景县's code scanned in 桃城's account: sent to 景县's account, nothing of the case shown.
    said = await p.tc.send(w, event_xml(LITIGANT, "SCAN", jx["token"]))
    assert said == texts.CODE_OTHER_ACCOUNT.format(court=JX_COURT, account="“景县法院”公众号")
    assert "1127" not in said
    # Typed, on the default account: the same.
    said = await p.default.say(w, "oProvince0000000000000000001", tc["short_code"])
    assert said == texts.CODE_OTHER_ACCOUNT.format(court=COURT, account="“衡水法院”公众号")
    # A court on the default account, from a court's own account: sent to the province's.
    said = await p.jx.say(w, "oJingXian0000000000000000001", jz["short_code"])
    assert said == texts.CODE_OTHER_ACCOUNT.format(court=JZ_COURT, account="“河北法院”公众号")
    # Four digits after a refused scan verify nothing; no scan was recorded, nobody bound.
    assert "验证成功" not in await p.tc.say(w, LITIGANT, "2222")
    assert await _bindings(w.deps) == set()
    async with w.deps.db.sessions() as s:
        scans = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "code.scanned"))
        ).all()
    assert scans == []


async def test_the_same_openid_on_two_accounts_is_two_people(province: Province) -> None:
    p, w = province, province.w
    same = "oSameOpenid00000000000000001"
    await p.tc.send(w, event_xml(same, "SCAN", p.cases["tc"]["token"]))
    assert "验证成功" in await p.tc.say(w, same, "1234")
    # The same string as a default-account openid is someone else: no case of theirs.
    assert await p.default.say(w, same, "1") == texts.WELCOME
    assert (same, p.cases["tc"]["case_id"]) not in await _bindings(w.deps)


async def test_staff_bind_only_through_their_courts_account(province: Province) -> None:
    p, w = province, province.w
    said = await _bind_staff(p, p.jx, "zhangwei", "oJudgeElsewhere0000000000001")
    assert said == texts.STAFF_OTHER_ACCOUNT.format(court=COURT, account="“衡水法院”公众号")
    async with w.deps.db.sessions() as s:
        judge = (await s.execute(select(Staff).where(Staff.username == "zhangwei"))).scalar_one()
    assert judge.openid is None


async def test_a_voice_is_fetched_through_the_account_it_came_to(province: Province) -> None:
    from bot.app import jobs
    from bot.fakes.wechat.callbacks import media_xml
    from storage.models import MediaFile

    p, w = province, province.w
    await p.tc.send(w, event_xml(LITIGANT, "SCAN", p.cases["tc"]["token"]))
    await p.tc.say(w, LITIGANT, "1234")
    p.tc.fake.media["voice-1"] = (b"#!AMR\n" + b"\0" * 64, "audio/amr")
    await p.tc.send(w, media_xml(LITIGANT, "voice", MediaId="voice-1", Format="amr"))
    assert await jobs.fetch_voices(w.deps) == 1
    async with w.deps.db.sessions() as s:
        kept = list((await s.execute(select(MediaFile))).scalars())
    assert [k.status for k in kept] == ["stored"], [(k.status, k.last_error) for k in kept]
    assert (
        "/cgi-bin/media/get" in p.tc.fake.calls and "/cgi-bin/media/get" not in p.default.fake.calls
    )


# -- the courts file -------------------------------------------------------------------------

GOOD = """
[[court]]
name = "衡水市桃城区人民法院"
slug = "taocheng"
app_id = "wxtaocheng0000001"
app_secret = "s1"
token = "tctoken"
aes_key = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj"
template_id = "t1"
account_name = "桃城法院"

[[court]]
name = "景县人民法院"
slug = "jingxian"
app_id = "wxjingxian0000001"
app_secret = "s2"
token = "jxtoken"
template_id = "t2"
"""


def test_the_courts_file_is_read_as_toml_or_json(tmp_path: Path) -> None:
    path = tmp_path / "courts.toml"
    path.write_text(GOOD, encoding="utf-8")
    settings = load_settings(
        {"MST_COURTS_FILE": str(path), "MST_SECRET_KEY": "k" * 40, "MST_DATA_DIR": str(tmp_path)},
        env_file=None,
    )
    tc, jx = settings.courts
    assert (tc.court, tc.slug, tc.wechat.app_id, tc.wechat.safe_mode) == (
        COURT,
        "taocheng",
        "wxtaocheng0000001",
        True,
    )
    assert jx.wechat.aes_key is None and jx.wechat.template_id == "t2"
    assert jx.wechat.api_base == settings.wechat.api_base  # unless the file says otherwise
    as_json = tmp_path / "courts.json"
    as_json.write_text(
        json.dumps(
            {
                "court": [
                    {
                        "name": "甲",
                        "slug": "a",
                        "app_id": "wxa",
                        "app_secret": "s",
                        "token": "abc",
                        "template_id": "t",
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    [a] = courts_file.load(as_json, WeChatSettings())
    assert (a.court, a.slug) == ("甲", "a")
    assert courts_file.load(None, WeChatSettings()) == ()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (('slug = "taocheng"', 'slug = "Tao Cheng"'), "court 1 (衡水市桃城区人民法院): slug:"),
        (
            ('token = "tctoken"', 'token = "t!"'),
            "court 1 (衡水市桃城区人民法院): token: must be 3-32",
        ),
        (('aes_key = "ZYX', 'aes_key = "short"\n#'), "court 1 (衡水市桃城区人民法院): aes_key:"),
        (('template_id = "t2"\n', ""), "court 2 (景县人民法院): template_id: missing"),
        (
            ('slug = "jingxian"', 'slug = "taocheng"'),
            "court taocheng (景县人民法院): slug: 'taocheng' is also court taocheng (衡水市桃城区人民法院)'s",
        ),
        (
            ('app_id = "wxjingxian0000001"', f'app_id = "{APP_ID}"'),
            "app_id: 'wx1234567890abcdef' is also the default account (WECHAT_APP_ID)'s",
        ),
        (
            ('name = "景县人民法院"', 'name = "衡水市桃城区人民法院"'),
            "name: '衡水市桃城区人民法院' is also",
        ),
        (
            ('account_name = "桃城法院"', 'acount_name = "桃城法院"'),
            "court 1 (衡水市桃城区人民法院): acount_name: unknown setting",
        ),
        (('account_name = "桃城法院"', 'account_qr = "none.png"'), "account_qr:"),
        (("[[court]]", "[[court]"), "is not valid TOML"),
    ],
)
def test_a_wrong_courts_file_stops_start_up_naming_the_court_and_field(
    tmp_path: Path, change: tuple[str, str], error: str
) -> None:
    path = tmp_path / "courts.toml"
    path.write_text(GOOD.replace(*change, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        courts_file.load(path, WeChatSettings(app_id=APP_ID))
    assert str(caught.value).startswith(f"MST_COURTS_FILE: {path}")
    assert error in str(caught.value), str(caught.value)


def test_a_missing_courts_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MST_COURTS_FILE: cannot read"):
        courts_file.load(tmp_path / "nope.toml", WeChatSettings())


# -- the menu of a court's own account -------------------------------------------------------


async def test_menu_push_to_a_courts_own_account(
    aiohttp_server: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    default_fake, default_base = await _fake(aiohttp_server, APP_ID)
    tc_fake, tc_base = await _fake(aiohttp_server, "wxtaocheng0000001")
    path = tmp_path / "courts.toml"
    path.write_text(
        GOOD.replace(
            'template_id = "t1"', f'template_id = "t1"\napi_base = "{tc_base}"', 1
        ).replace('app_secret = "s1"', f'app_secret = "{tc_fake.app_secret}"', 1),
        encoding="utf-8",
    )
    env = cli_env | {
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_APP_SECRET": default_fake.app_secret,
        "WECHAT_API_BASE": default_base,
        "MST_COURTS_FILE": str(path),
    }
    run = await mst_in_process(env, tmp_path, "menu", "push", "--court", "taocheng", "--json")
    assert run.code == 0, run.err
    assert tc_fake.menus == [menu.DEFAULT] and default_fake.menus == []
    shown = await mst_in_process(env, tmp_path, "menu", "show", "--court", "taocheng", "--json")
    assert shown.code == 0 and json.loads(shown.out)["is_menu_open"] is True
    wrong = await mst_in_process(env, tmp_path, "menu", "push", "--court", "nowhere")
    assert wrong.code == 2 and "no court account 'nowhere' (known: taocheng, jingxian)" in wrong.err
