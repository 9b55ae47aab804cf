"""What a process is configured with, in small typed groups (how arq keeps a component's
settings in one object): the core, and one group per channel. Read from the environment by
bot/app/config.py (CONTRACT.md names the variables); each layer is handed only its group —
a flow sees `FlowSettings`, never a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path

from bot.core.clock import DEFAULT_TIMEZONE
from bot.core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./mst.db"
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_WECHAT_API_BASE = "https://api.weixin.qq.com"
# Demo values so a fresh checkout runs; a court sets its own.
DEMO_WECHAT_APP_ID = "wx0000000000demo00"
DEMO_WECHAT_APP_SECRET = "demo-app-secret"
DEMO_WECHAT_TOKEN = "mashangtong"
DEMO_TEMPLATE_ID = "demo-reply-waiting"


@dataclass(frozen=True)
class WeChatSettings:
    """The Official Account: its credentials, its callback's token and key, its API."""

    app_id: str = DEMO_WECHAT_APP_ID
    app_secret: str = DEMO_WECHAT_APP_SECRET
    token: str = DEMO_WECHAT_TOKEN
    aes_key: str | None = None
    api_base: str = DEFAULT_WECHAT_API_BASE
    # Template for "a reply is waiting" when the 48-hour customer-service window is closed.
    template_id: str = DEMO_TEMPLATE_ID
    # What the landing page a printed code opens shows, so a person can follow the account:
    # its name (公众号名称) and an image of its own QR code (PNG or JPEG).
    account_name: str | None = None
    account_qr: Path | None = None

    @property
    def safe_mode(self) -> bool:
        return self.aes_key is not None


@dataclass(frozen=True)
class CourtAccount:
    """A court with an Official Account of its own (MST_COURTS_FILE, bot.app.courts): the
    court's name as its Court row has it, the short slug its callback URL and its followers'
    addresses carry (`/wechat/<slug>`, `wx:<slug>:<openid>`: bot.core.addresses), and the
    account's settings. Courts not listed share `Settings.wechat` (the province's)."""

    court: str
    slug: str
    wechat: WeChatSettings


DEMO_MP_APP_ID = "wx00000000mpdemo00"
DEMO_MP_APP_SECRET = "demo-mp-secret"
DEMO_SUBSCRIBE_TEMPLATE_ID = "demo-reply-arrived"
DEFAULT_WECHAT_OPEN_BASE = "https://open.weixin.qq.com"


@dataclass(frozen=True)
class MiniProgramSettings:
    """The mini-program (小程序) and the H5 pages: the mini-program's credentials, its
    subscribe-message template for "a reply arrived", where WeChat's web authorisation
    page is (open.weixin.qq.com; the local fake in tests and the demo), how long an app
    session lasts."""

    # Unset (None): mini-program login is off (CONTRACT.md); `mst demo` and the tests set
    # the demo values, which the local fake WeChat accepts.
    app_id: str | None = None
    app_secret: str | None = None
    subscribe_template_id: str = DEMO_SUBSCRIBE_TEMPLATE_ID
    open_base: str = DEFAULT_WECHAT_OPEN_BASE
    session_days: int = 7
    # The page the mini-program opens on a scan (its scene: the case's short code).
    page: str = "pages/case/index"

    @property
    def enabled(self) -> bool:
        return bool(self.app_id and self.app_secret)


DEFAULT_WECOM_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_WECOM_OPEN_BASE = "https://open.weixin.qq.com"  # OAuth in WeCom's own browser
DEFAULT_WECOM_LOGIN_BASE = "https://login.work.weixin.qq.com"  # the QR sign-in page


@dataclass(frozen=True)
class WeComSettings:
    """The court's WeCom (企业微信) app for staff (bot.channels.wecom): the corp, the app's
    AgentId and Secret, its callback's Token and EncodingAESKey, the API's root. Set all
    five WECOM_* values or none (None: WeCom off). Where WeCom's sign-in pages are is not
    an environment variable: the demo and the tests point them at the local fake."""

    corp_id: str
    agent_id: int
    secret: str
    token: str
    aes_key: str
    api_base: str = DEFAULT_WECOM_API_BASE
    open_base: str = DEFAULT_WECOM_OPEN_BASE
    login_base: str = DEFAULT_WECOM_LOGIN_BASE


@dataclass(frozen=True)
class ConsoleSettings:
    """The staff web console (/console). `trusted_proxies` (MST_CONSOLE_TRUSTED_PROXIES: IPs
    or CIDRs, comma-separated; unset: none) are our own reverse proxies: only on a request
    one of them passed on is X-Forwarded-For read, for the address the sign-in lockout counts
    and the record keeps. Anyone else's X-Forwarded-For is ignored (a guesser could write
    a fresh address into each request)."""

    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def parse(cls, trusted_proxies: str | None) -> ConsoleSettings:
        networks = []
        for part in (trusted_proxies or "").split(","):
            if not part.strip():
                continue
            try:
                networks.append(ip_network(part.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    "MST_CONSOLE_TRUSTED_PROXIES: not an IP address or CIDR: "
                    f"{part.strip()!r} (e.g. 127.0.0.1,10.0.0.0/8)"
                ) from None
        return cls(tuple(networks))

    def trusts(self, address: IPv4Address | IPv6Address) -> bool:
        return any(address in network for network in self.trusted_proxies)


@dataclass(frozen=True)
class FlowSettings:
    """All a flow reads: where the links it gives point, and the court's caps."""

    public_base_url: str
    complaint_daily_cap: int
    complaint_message_daily_cap: int


@dataclass(frozen=True)
class Settings:
    """The core: storage, the secret, where people reach us, jobs, limits, the court's
    files and time zone; `wechat` is the Official Account's group."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str = ""
    # The transparency log's Ed25519 private key (32 bytes; MST_SIGNING_KEY, or kept in the
    # data dir). None (settings built in code): no tree heads are signed.
    signing_key: bytes | None = None
    # Public keys (32 bytes each) the log signed with before a rotation
    # (MST_PAST_SIGNING_KEYS): heads they signed still verify.
    past_signing_keys: tuple[bytes, ...] = ()
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL
    wechat: WeChatSettings = field(default_factory=WeChatSettings)
    # Courts with their own Official Account (MST_COURTS_FILE); the rest share `wechat`.
    courts: tuple[CourtAccount, ...] = ()
    miniprogram: MiniProgramSettings = field(default_factory=MiniProgramSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    # The WeCom app for staff (WECOM_*); None: WeCom off.
    wecom: WeComSettings | None = None
    # Bearer token the court's enforcement system uses to push events; unset: endpoint off.
    enforcement_token: str | None = None
    data_dir: Path = field(default_factory=lambda: Path("."))
    # Background jobs on a timer inside the web process (embedded default);
    # off when `mst worker` (arq) runs them, and in tests that drive jobs by hand.
    jobs_in_process: bool = True
    anchor_interval_s: float = 300.0
    # How often the outbox is looked at when nothing wakes it (new rows wake it at once).
    outbox_interval_s: float = 2.0
    # How often mediation reminders (day before, hour before) are looked for.
    reminder_interval_s: float = 60.0
    # Largest callback body accepted; WeChat's messages are a few KiB at most.
    max_callback_bytes: int = 64 * 1024
    # How far a callback's timestamp may be from our clock (WeChat retries within 15 s).
    timestamp_tolerance_s: int = 300
    # Callbacks worked on at once per process. Beyond it a callback waits for its turn up
    # to `admit_wait_s` (and never past what its answer by 4 s allows), then gets 503
    # (WeChat retries): how many get in follows how fast the server really is.
    max_in_flight: int = 64
    admit_wait_s: float = 3.0
    # Messages per user per minute before we ask them to slow down.
    user_rate_per_minute: int = 30
    # Staff answer many people at once; over this their command is refused, visibly.
    staff_rate_per_minute: int = 120
    # Per user and case, per China calendar day: complaints, and messages added to them.
    complaint_daily_cap: int = 1
    complaint_message_daily_cap: int = 5
    # Deadlines (bot/rules/deadlines.py): the court's holiday file for years past the
    # official calendar's data, and deadline rules per court (JSON). Checked at start-up.
    holidays_file: Path | None = None
    rules_file: Path | None = None
    # Every time a person reads, and the working day deadlines count in (an IANA name).
    timezone: str = DEFAULT_TIMEZONE
    # LOG_FORMAT: "json" or "text"; None: text on a terminal, JSON elsewhere (bot.app.logs).
    log_format: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def flow(self) -> FlowSettings:
        return FlowSettings(
            self.public_base_url, self.complaint_daily_cap, self.complaint_message_daily_cap
        )
