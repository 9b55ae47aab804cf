"""What is still demo or missing before a court goes live (`mst check`; `mst serve` prints
the same summary when it starts). Each finding names the setting or command that fixes it.

The files and groups a mistake in which stops start-up (MST_COURTS_FILE, the WeCom app's
WECOM_*, the holiday files of MST_RULES_FILE and MST_HOLIDAYS_FILE) are read here afresh
from the environment, each mistake its own finding: `mst check` still runs when they would
stop `mst serve` (`settings_for_check` loads the rest without them), and names them all."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dotenv import dotenv_values

from bot.app import courts as courts_file
from bot.app.config import WECOM_NEEDED, Settings, load_settings
from bot.core import settings as settings_defaults
from bot.core.errors import ConfigError
from bot.core.settings import WeChatSettings
from bot.rules import courts, deadlines
from storage.db import Database

LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "::1"}


@dataclass(frozen=True)
class Finding:
    what: str  # in Chinese, for the court's admin
    ok: bool
    fix: str  # the setting or command that changes it
    needed: bool = True  # False: advice, the service works without it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def public_url_is_local(settings: Settings) -> bool:
    """Codes printed with this URL open nothing on a litigant's phone."""
    return (urlparse(settings.public_base_url).hostname or "") in LOCAL_HOSTS


def settings_findings(settings: Settings) -> list[Finding]:
    demo_credentials = (
        settings.wechat.app_id == settings_defaults.DEMO_WECHAT_APP_ID
        or settings.wechat.app_secret == settings_defaults.DEMO_WECHAT_APP_SECRET
        or settings.wechat.token == settings_defaults.DEMO_WECHAT_TOKEN
    )
    real_api = settings.wechat.api_base == settings_defaults.DEFAULT_WECHAT_API_BASE
    return [
        Finding(
            "公众号凭据：演示值" if demo_credentials else "公众号凭据：已设置",
            not demo_credentials,
            "WECHAT_APP_ID、WECHAT_APP_SECRET、WECHAT_TOKEN（公众号后台“基本配置”）",
        ),
        Finding(
            "消息加解密：安全模式" if settings.wechat.safe_mode else "消息加解密：明文模式",
            settings.wechat.safe_mode,
            "WECHAT_AES_KEY（公众号后台的 EncodingAESKey，选“安全模式”）",
        ),
        Finding(
            f"对外地址：{settings.public_base_url}",
            not public_url_is_local(settings),
            "PUBLIC_BASE_URL（当事人手机能打开的地址，二维码里印的就是它）",
        ),
        Finding(
            "模板消息：演示模板"
            if settings.wechat.template_id == settings_defaults.DEMO_TEMPLATE_ID
            else "模板消息：已设置",
            settings.wechat.template_id != settings_defaults.DEMO_TEMPLATE_ID,
            "WECHAT_TEMPLATE_ID（超过48小时后通知当事人要用）",
        ),
        Finding(
            f"公众号名称：{settings.wechat.account_name or '未设置'}",
            settings.wechat.account_name is not None,
            "WECHAT_ACCOUNT_NAME（扫码页告诉当事人关注哪个公众号）",
        ),
        Finding(
            "公众号二维码图片：" + ("已设置" if settings.wechat.account_qr else "未设置"),
            settings.wechat.account_qr is not None,
            "WECHAT_ACCOUNT_QR（PNG 或 JPEG 文件）",
            needed=False,
        ),
        Finding(
            f"时区：{settings.timezone}",
            True,
            "MST_TIMEZONE",
        ),
        Finding(
            "微信接口：" + ("api.weixin.qq.com" if real_api else settings.wechat.api_base),
            real_api,
            "WECHAT_API_BASE（正式使用时不要设置）",
        ),
    ]


async def court_findings(db: Database) -> list[Finding]:
    async with db.sessions() as session:
        known = await courts.all_courts(session)
    if not known:
        return [Finding("法院：还没有导入", False, "mst import-staff / mst import-cases")]
    words = {"phone": "电话", "address": "地址", "hours": "办公时间"}
    return [
        Finding(
            f"{court.name}诉讼服务中心："
            + (
                "电话、地址、时间都已填写"
                if not (gaps := courts.missing(court))
                else "未填写" + "、".join(words[g] for g in gaps)
            ),
            not gaps,
            f"mst court set '{court.name}' --phone … --address … --hours …",
        )
        for court in known
    ]


async def findings(
    settings: Settings, db: Database | None, environ: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every finding; `environ`: the environment the files are named in (None: this
    process's, with `.env` under it, as the settings were read)."""
    values = environment() if environ is None else environ
    listed = courts_file_findings(values, settings.wechat)
    found = settings_findings(settings)
    found += listed.found + wecom_findings(values) + holiday_findings(values)
    if db is not None:
        found += await court_findings(db)
        if listed.names is not None:
            found += await listed_courts_findings(db, listed.names)
    return found


# -- what stops start-up, each mistake named ------------------------------------------------

COURTS_VAR = courts_file.VARIABLE
# Set aside by `settings_for_check`: what the findings below read for themselves.
CHECKED_HERE = (
    COURTS_VAR,
    *WECOM_NEEDED,
    "WECOM_API_BASE",
    deadlines.RULES_VAR,
    deadlines.HOLIDAYS_VAR,
)
COURTS_FIX = f"{COURTS_VAR}（各院自己公众号的名单，见 README“Many courts”）"
_FIELD_WORDS = {
    "name": "法院名称（name）",
    "slug": "简称（slug）",
    "app_id": "AppID（app_id）",
    "app_secret": "AppSecret（app_secret）",
    "token": "Token（token）",
    "template_id": "模板消息 ID（template_id）",
}


def environment(env_file: str | Path = ".env") -> dict[str, str]:
    """The environment as the settings are read from it: `.env`, then the process's."""
    values: dict[str, str] = {}
    if Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


def settings_for_check(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings without what `findings` reads for itself (CHECKED_HERE): for `mst
    check` when the whole would not load. Any other mistake is still a ConfigError."""
    values = dict(environment() if environ is None else environ)
    return load_settings(values | dict.fromkeys(CHECKED_HERE, ""), env_file=None)


def _given(values: Mapping[str, str], name: str) -> str | None:
    value = values.get(name)
    return value.strip() if value is not None and value.strip() else None


@dataclass
class Listed:
    found: list[Finding] = field(default_factory=list)
    names: list[str] | None = None  # the courts the file names (None: no file, or unread)


def courts_file_findings(values: Mapping[str, str], default: WeChatSettings) -> Listed:
    """MST_COURTS_FILE: readable, the right shape, every court's entry whole and right,
    no slug, AppID or name twice (nor the default account's AppID)."""
    given = _given(values, COURTS_VAR)
    if given is None:
        return Listed(
            [Finding("各院自己的公众号：没有（都用 WECHAT_* 的公众号）", True, COURTS_FIX)]
        )
    path = Path(given)
    listed = Listed()

    def bad(what: str) -> Listed:
        listed.found.append(Finding(f"各院公众号名单：{what}", False, COURTS_FIX))
        return listed

    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return bad(f"读不出 {path}（{why}）")
    try:
        raw = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        return bad(f"{path} 不是有效的 {kind}（{exc}）")
    entries = raw.get("court") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or set(raw) - {"court"} or not isinstance(entries, list):
        return bad(
            f'{path} 格式不对：各院要列在 court 下（TOML 用 [[court]]，JSON 用 {{"court": [...]}}）'
        )
    seen: dict[tuple[str, str], str] = {("app_id", default.app_id): "WECHAT_APP_ID 的公众号"}
    names: list[str] = []
    for n, entry in enumerate(entries, 1):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"第 {n} 家" + (f"（{name}）" if isinstance(name, str) and name.strip() else "")
        if not isinstance(entry, dict):
            bad(f"{label}不是一组设置")
            continue
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
        missing = [
            key
            for key in courts_file.REQUIRED
            if not (isinstance(entry.get(key), str) and entry[key].strip())
        ]
        if missing:
            bad(f"{label}缺少" + "、".join(_FIELD_WORDS.get(k, k) for k in missing))
        else:
            try:
                courts_file.court_entry(path, n, entry, default)
            except ConfigError as exc:
                bad(f"{label}的设置有误：{str(exc).split(': ', 3)[-1]}")
        for key, words in (("slug", "简称"), ("app_id", "AppID"), ("name", "法院名称")):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                continue
            other = seen.get((key, value.strip()))
            if other is not None:
                bad(f"{label}的{words}“{value.strip()}”和{other}的重复了")
            else:
                seen[(key, value.strip())] = label
    listed.names = names
    if not listed.found:
        slugs = "、".join(str(e["slug"]) for e in entries)
        listed.found.append(
            Finding(f"各院公众号名单：{len(entries)} 家（{slugs or '空'}）", True, COURTS_FIX)
        )
    return listed


async def listed_courts_findings(db: Database, names: list[str]) -> list[Finding]:
    """The courts file against the database: every court it names is one the imports made
    (its name exactly); the courts it does not name share the default account (advice)."""
    async with db.sessions() as session:
        known = [c.name for c in await courts.all_courts(session)]
    found = [
        Finding(
            f"各院公众号名单：“{name}”在数据库里没有这个法院（名称要和导入时的完全一样）",
            False,
            f"{COURTS_VAR} 里的 name，或先 mst import-staff / mst import-cases",
        )
        for name in names
        if name not in known
    ]
    shared = [name for name in known if name not in names]
    if shared:
        found.append(
            Finding(
                "不在名单里、用 WECHAT_* 公众号的法院：" + "、".join(shared),
                False,
                f"{COURTS_VAR}（这些法院若有自己的公众号，把它们加进名单）",
                needed=False,
            )
        )
    return found


def holiday_findings(values: Mapping[str, str]) -> list[Finding]:
    """MST_HOLIDAYS_FILE, MST_RULES_FILE and each court's holiday file in it: there, and
    read as a holiday file."""
    found: list[Finding] = []
    own = _given(values, deadlines.HOLIDAYS_VAR)
    if own is not None:
        found.append(_holiday_file("全院节假日文件", Path(own), deadlines.HOLIDAYS_VAR))
    given = _given(values, deadlines.RULES_VAR)
    if given is None:
        return found
    rules = Path(given)
    fix = f"{deadlines.RULES_VAR}（各院的答复时限、升级和节假日）"
    try:
        raw = json.loads(rules.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        return [*found, Finding(f"规则文件：读不出 {rules}（{exc.strerror or exc}）", False, fix)]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [*found, Finding(f"规则文件：{rules} 不是有效的 JSON（{exc}）", False, fix)]
    per_court = raw.get("courts") if isinstance(raw, dict) else None
    for name, court in (per_court or {}).items() if isinstance(per_court, dict) else ():
        holidays = court.get("holidays") if isinstance(court, dict) else None
        if holidays is None:
            continue
        if not isinstance(holidays, str) or not holidays.strip():
            found.append(Finding(f"{name}的节假日文件：没有写文件名", False, fix))
            continue
        found.append(
            _holiday_file(
                f"{name}的节假日文件", rules.parent / holidays, f"{fix}的 courts.{name}.holidays"
            )
        )
    try:
        deadlines.load_rules(rules)
    except ConfigError as exc:
        if ".holidays: " not in str(exc):  # those are named above, court by court
            found.append(Finding(f"规则文件有误：{exc}", False, fix))
    return found


def _holiday_file(label: str, path: Path, fix: str) -> Finding:
    if not path.is_file():
        return Finding(f"{label}：没有这个文件 {path}", False, fix)
    try:
        calendar = deadlines.load_holidays(path)
    except ConfigError as exc:
        why = str(exc).removeprefix(f"{deadlines.HOLIDAYS_VAR}: ")
        return Finding(f"{label}：读不懂（{why}）", False, fix)
    return Finding(
        f"{label}：{len(calendar.off)} 天休息、{len(calendar.work)} 天调休上班", True, fix
    )


WECOM_FIX = "、".join(WECOM_NEEDED) + "（企业微信管理后台：我的企业、应用管理；五项都填，或都不填）"


def wecom_findings(values: Mapping[str, str]) -> list[Finding]:
    """The WeCom app for staff: off (none of WECOM_*), or all five, each in its shape."""
    given = {name: _given(values, name) for name in WECOM_NEEDED}
    if not any(given.values()):
        return [Finding("企业微信：未启用（工作人员用公众号）", True, WECOM_FIX)]
    found: list[Finding] = []
    missing = [name for name, value in given.items() if value is None]
    if missing:
        found.append(Finding("企业微信：缺少 " + "、".join(missing), False, WECOM_FIX))
    corp_id, agent_id, _, token, aes_key = (given[n] for n in WECOM_NEEDED)
    if corp_id is not None and not (corp_id.isascii() and corp_id.isalnum() and len(corp_id) <= 64):
        found.append(
            Finding(
                f"企业微信 CorpID 格式不对：“{corp_id}”应是字母和数字（如 ww…）",
                False,
                "WECOM_CORP_ID（我的企业 → 企业ID）",
            )
        )
    if agent_id is not None and not (agent_id.isdigit() and len(agent_id) <= 10):
        found.append(
            Finding(
                f"企业微信 AgentId 格式不对：“{agent_id}”应是数字",
                False,
                "WECOM_AGENT_ID（应用管理 → 应用的 AgentId）",
            )
        )
    if token is not None and not (3 <= len(token) <= 32 and token.isascii() and token.isalnum()):
        found.append(
            Finding(
                "企业微信 Token 格式不对：应是 3 到 32 个字母或数字",
                False,
                "WECOM_TOKEN（应用的“接收消息”设置）",
            )
        )
    if aes_key is not None and not courts_file.aes_key_ok(aes_key):
        found.append(
            Finding(
                f"企业微信 EncodingAESKey 格式不对：应是 43 位，现在是 {len(aes_key)} 位",
                False,
                "WECOM_AES_KEY（应用的“接收消息”设置，随机获取）",
            )
        )
    if not found:
        found.append(Finding(f"企业微信：已设置（AgentId {agent_id}）", True, WECOM_FIX))
    return found


def summary(found: list[Finding]) -> str:
    lines = [("✔ " if f.ok else ("✘ " if f.needed else "· ")) + f.what for f in found]
    todo = [f for f in found if not f.ok and f.needed]
    if todo:
        lines.append(f"还有 {len(todo)} 项要设置才能正式使用：")
        lines += [f"  - {fix}" for fix in dict.fromkeys(f.fix for f in todo)]  # each fix once
    else:
        lines.append("可以正式使用。")
    return "\n".join(lines)
