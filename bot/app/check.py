"""What is still demo or missing before a court goes live (`mst check`; `mst serve` prints
the same summary when it starts). Each finding names the setting or command that fixes it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

from bot.app.config import Settings
from bot.core import settings as settings_defaults
from bot.rules import courts
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


async def findings(settings: Settings, db: Database | None) -> list[Finding]:
    found = settings_findings(settings)
    if db is not None:
        found += await court_findings(db)
    return found


def summary(found: list[Finding]) -> str:
    lines = [("✔ " if f.ok else ("✘ " if f.needed else "· ")) + f.what for f in found]
    todo = [f for f in found if not f.ok and f.needed]
    if todo:
        lines.append(f"还有 {len(todo)} 项要设置才能正式使用：")
        lines += [f"  - {f.fix}" for f in todo]
    else:
        lines.append("可以正式使用。")
    return "\n".join(lines)
