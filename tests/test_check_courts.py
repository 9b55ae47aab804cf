"""`mst check` on a province's installation: the courts file (MST_COURTS_FILE), each court's
holiday file (MST_RULES_FILE), and the WeCom app (WECOM_*). Each mistake is its own finding
in Chinese (and in `--json`), all of them at once, even those that would stop `mst serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.dialog.deps import Deps
from storage.models import Court
from tests.conftest import COURT
from tests.test_check import LIVE
from tests.test_courts import GOOD, JX_COURT
from tests.world import mst_in_process

WECOM = {
    "WECOM_CORP_ID": "ww0123456789abcdef",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "wecom-secret-0123456789",
    "WECOM_TOKEN": "wecomToken2026",
    "WECOM_AES_KEY": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
}
HOLIDAYS = {"off": ["2026-11-24"], "work": ["2026-11-28"]}


@pytest.fixture
async def courts_in_db(deps: Deps, sample_case: dict[str, Any]) -> None:
    """桃城 (the sample case's) and 景县, each with its desk's phone, address and hours."""
    async with deps.db.transaction() as s:
        tc = (await s.execute(select(Court).where(Court.name == COURT))).scalar_one()
        tc.phone, tc.address, tc.hours = "0318-2123456", "人民路1号", "工作日 8:30-17:30"
        s.add(Court(name=JX_COURT, phone="0318-4321234", address="景州路2号", hours="工作日"))


def _files(
    tmp_path: Path,
    courts: str = GOOD,
    *,
    holidays: str | None = None,
    holiday_name: str = "jingxian-holidays.json",
) -> dict[str, str]:
    courts_path = tmp_path / "courts.toml"
    courts_path.write_text(courts, encoding="utf-8")
    (tmp_path / "jingxian-holidays.json").write_text(json.dumps(HOLIDAYS), encoding="utf-8")
    if holidays is not None:
        (tmp_path / holiday_name).write_text(holidays, encoding="utf-8")
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"courts": {JX_COURT: {"holidays": holiday_name}}}, ensure_ascii=False),
        encoding="utf-8",
    )
    return {"MST_COURTS_FILE": str(courts_path), "MST_RULES_FILE": str(rules)}


async def test_a_clean_province_setup_passes(
    courts_in_db: None, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = cli_env | LIVE | WECOM | _files(tmp_path)
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 0, run.out + run.err
    for line in (
        "✔ 各院公众号名单：2 家（taocheng、jingxian）",
        "✔ 企业微信：已设置（AgentId 1000002）",
        f"✔ {JX_COURT}的节假日文件：1 天休息、1 天调休上班",
    ):
        assert line in run.out, run.out
    assert "✘" not in run.out and run.out.strip().endswith("可以正式使用。")
    listed = json.loads((await mst_in_process(env, tmp_path, "check", "--json")).out)
    assert {"what", "ok", "fix", "needed"} <= set(listed[0])
    mine = [f for f in listed if f["what"].startswith(("各院", "企业微信", f"{JX_COURT}的节假日"))]
    assert len(mine) == 3 and all(f["ok"] for f in mine)
    # No courts file and no WeCom: said so, nothing to fix.
    plain = await mst_in_process(cli_env | LIVE, tmp_path, "check")
    assert plain.code == 0, plain.out
    assert "✔ 各院自己的公众号：没有" in plain.out and "✔ 企业微信：未启用" in plain.out


def _swap(*pairs: tuple[str, str]) -> str:
    text = GOOD
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


@pytest.mark.parametrize(
    ("courts", "said"),
    [
        ("[[court]", "✘ 各院公众号名单：{dir}/courts.toml 不是有效的 TOML"),
        (
            '[[courts]]\nname = "x"\n',
            "✘ 各院公众号名单：{dir}/courts.toml 格式不对：各院要列在 court 下",
        ),
        (
            _swap(('slug = "jingxian"', 'slug = "taocheng"')),
            f"✘ 各院公众号名单：第 2 家（{JX_COURT}）的简称“taocheng”和第 1 家（{COURT}）的重复了",
        ),
        (
            _swap(('app_id = "wxjingxian0000001"', 'app_id = "wxtaocheng0000001"')),
            f"✘ 各院公众号名单：第 2 家（{JX_COURT}）的AppID“wxtaocheng0000001”和第 1 家（{COURT}）的重复了",
        ),
        (
            _swap(('app_id = "wxjingxian0000001"', f'app_id = "{LIVE["WECHAT_APP_ID"]}"')),
            f"✘ 各院公众号名单：第 2 家（{JX_COURT}）的AppID“{LIVE['WECHAT_APP_ID']}”和WECHAT_APP_ID 的公众号的重复了",
        ),
        (
            _swap(('app_secret = "s2"\n', ""), ('token = "jxtoken"\n', "")),
            f"✘ 各院公众号名单：第 2 家（{JX_COURT}）缺少AppSecret（app_secret）、Token（token）",
        ),
        (
            _swap(('token = "tctoken"', 'token = "a"')),
            f"✘ 各院公众号名单：第 1 家（{COURT}）的设置有误：token: must be 3-32 letters or digits",
        ),
        (
            _swap(('aes_key = "ZYX', 'aes_key = "short"\n#')),
            f"✘ 各院公众号名单：第 1 家（{COURT}）的设置有误：aes_key:",
        ),
        (
            _swap(('name = "景县人民法院"', 'name = "故城县人民法院"')),
            "✘ 各院公众号名单：“故城县人民法院”在数据库里没有这个法院",
        ),
    ],
    ids=[
        "not-toml",
        "wrong-shape",
        "slug-twice",
        "app-id-twice",
        "default-app-id",
        "no-secret-no-token",
        "bad-token",
        "bad-aes-key",
        "not-in-database",
    ],
)
async def test_each_mistake_in_the_courts_file_is_named(
    courts_in_db: None, cli_env: dict[str, str], tmp_path: Path, courts: str, said: str
) -> None:
    env = cli_env | LIVE | _files(tmp_path, courts)
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 1, run.out + run.err
    assert said.format(dir=tmp_path) in run.out, run.out
    assert "Traceback" not in run.err and "configuration error" not in run.err
    assert "  - MST_COURTS_FILE" in run.out  # the fix names the setting
    listed = json.loads((await mst_in_process(env, tmp_path, "check", "--json")).out)
    assert any(
        said.format(dir=tmp_path).removeprefix("✘ ") in f["what"] and not f["ok"] and f["needed"]
        for f in listed
    )


async def test_an_unreadable_courts_file_and_several_mistakes_at_once(
    courts_in_db: None, cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = cli_env | LIVE | _files(tmp_path) | {"MST_COURTS_FILE": str(tmp_path / "nope.toml")}
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 1 and f"✘ 各院公众号名单：读不出 {tmp_path}/nope.toml" in run.out
    # Every mistake of the file, not only the first (start-up names only the first).
    both = _swap(
        ('app_secret = "s2"\n', ""),
        ('slug = "jingxian"', 'slug = "taocheng"'),
    )
    run = await mst_in_process(cli_env | LIVE | _files(tmp_path, both), tmp_path, "check")
    assert run.code == 1
    assert f"第 2 家（{JX_COURT}）缺少AppSecret（app_secret）" in run.out
    assert f"第 2 家（{JX_COURT}）的简称“taocheng”" in run.out
    # Other commands still stop on it, as `mst serve` does.
    stats = await mst_in_process(cli_env | LIVE | _files(tmp_path, both), tmp_path, "stats")
    assert stats.code == 2 and "configuration error" in stats.err


async def test_a_court_the_file_leaves_out_is_advice(
    courts_in_db: None, cli_env: dict[str, str], tmp_path: Path
) -> None:
    only_tc = GOOD.split('\n[[court]]\nname = "景县人民法院"')[0]
    run = await mst_in_process(cli_env | LIVE | _files(tmp_path, only_tc), tmp_path, "check")
    assert run.code == 0, run.out
    assert f"· 不在名单里、用 WECHAT_* 公众号的法院：{JX_COURT}" in run.out
    assert "✔ 各院公众号名单：1 家（taocheng）" in run.out


@pytest.mark.parametrize(
    ("holidays", "name", "said"),
    [
        (None, "gone.json", f"✘ {JX_COURT}的节假日文件：没有这个文件 {{dir}}/gone.json"),
        (
            "{",
            "broken.json",
            f"✘ {JX_COURT}的节假日文件：读不懂（{{dir}}/broken.json is not valid JSON",
        ),
        (
            '{"off": ["2026-13-01"]}',
            "baddate.json",
            f"✘ {JX_COURT}的节假日文件：读不懂（{{dir}}/baddate.json: \"off\": '2026-13-01' is not a date",
        ),
    ],
    ids=["missing", "not-json", "bad-date"],
)
async def test_a_courts_holiday_file_missing_or_unreadable(
    courts_in_db: None,
    cli_env: dict[str, str],
    tmp_path: Path,
    holidays: str | None,
    name: str,
    said: str,
) -> None:
    env = cli_env | LIVE | _files(tmp_path, holidays=holidays, holiday_name=name)
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 1, run.out + run.err
    assert said.format(dir=tmp_path) in run.out, run.out
    assert f"MST_RULES_FILE（各院的答复时限、升级和节假日）的 courts.{JX_COURT}.holidays" in run.out


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {k: "" for k in WECOM if k != "WECOM_CORP_ID"},
            "✘ 企业微信：缺少 WECOM_AGENT_ID、WECOM_SECRET、WECOM_TOKEN、WECOM_AES_KEY",
        ),
        ({"WECOM_CORP_ID": "ww-0123"}, "✘ 企业微信 CorpID 格式不对：“ww-0123”应是字母和数字"),
        ({"WECOM_AGENT_ID": "app1"}, "✘ 企业微信 AgentId 格式不对：“app1”应是数字"),
        ({"WECOM_TOKEN": "ab"}, "✘ 企业微信 Token 格式不对：应是 3 到 32 个字母或数字"),
        (
            {"WECOM_AES_KEY": WECOM["WECOM_AES_KEY"][:42]},
            "✘ 企业微信 EncodingAESKey 格式不对：应是 43 位，现在是 42 位",
        ),
    ],
    ids=["half-set", "corp-id", "agent-id", "token", "aes-key-42"],
)
async def test_each_wecom_mistake_is_named(
    courts_in_db: None,
    cli_env: dict[str, str],
    tmp_path: Path,
    change: dict[str, str],
    said: str,
) -> None:
    env = cli_env | LIVE | WECOM | change
    run = await mst_in_process(env, tmp_path, "check")
    assert run.code == 1, run.out + run.err
    assert said in run.out, run.out
    assert "✔ 企业微信：已设置" not in run.out
    listed = json.loads((await mst_in_process(env, tmp_path, "check", "--json")).out)
    assert any(f["what"].startswith(said.removeprefix("✘ ")) and not f["ok"] for f in listed)
