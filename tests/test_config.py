"""Settings: defaults from CONTRACT.md, `.env` under the environment, the kept secret,
and one clear error naming the variable for every bad value."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bot.app.config import SECRET_FILE_NAME, ConfigError, Settings, load_settings
from tests.conftest import AES_KEY


def load(tmp_path: Path, env_file: Path | None = None, **env: str) -> Settings:
    """Settings from exactly `env` (plus a data dir under tmp_path): nothing from the host."""
    return load_settings({"MST_DATA_DIR": str(tmp_path / "data"), **env}, env_file=env_file)


# -- defaults ------------------------------------------------------------------------------


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    s = load(tmp_path)
    assert s.database_url == "sqlite+aiosqlite:///./mst.db"
    assert s.is_sqlite
    assert s.redis_url is None
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.wechat.api_base == "https://api.weixin.qq.com"
    assert s.wechat.aes_key is None
    assert not s.wechat.safe_mode
    # Demo Official Account values, so a fresh checkout runs.
    assert s.wechat.app_id and s.wechat.app_secret and s.wechat.token
    assert 3 <= len(s.wechat.token) <= 32 and s.wechat.token.isalnum()
    assert s.jobs_in_process is True
    assert s.data_dir == tmp_path / "data"
    assert len(s.secret_key) >= 32


def test_data_dir_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings({}, env_file=None)
    assert s.data_dir == Path(".")
    assert (tmp_path / SECRET_FILE_NAME).is_file()


def test_blank_values_fall_back_to_the_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, PUBLIC_BASE_URL="   ", REDIS_URL="", WECHAT_AES_KEY=" ")
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.redis_url is None
    assert s.wechat.aes_key is None


def test_values_are_read(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        DATABASE_URL="postgresql+asyncpg://mst:pw@db.example:5432/mst",
        REDIS_URL="redis://cache.example:6379/2",
        MST_SECRET_KEY="k" * 40,
        PUBLIC_BASE_URL="https://court.example/mst/",
        WECHAT_APP_ID="wxabc",
        WECHAT_APP_SECRET="sekrit",
        WECHAT_TOKEN="Token123",
        WECHAT_AES_KEY=AES_KEY,
        WECHAT_API_BASE="http://127.0.0.1:9999/",
        MST_JOBS_IN_PROCESS="0",
    )
    assert s.database_url == "postgresql+asyncpg://mst:pw@db.example:5432/mst"
    assert not s.is_sqlite
    assert s.redis_url == "redis://cache.example:6379/2"
    assert s.secret_key == "k" * 40
    assert s.public_base_url == "https://court.example/mst"  # no trailing slash
    assert (s.wechat.app_id, s.wechat.app_secret, s.wechat.token) == (
        "wxabc",
        "sekrit",
        "Token123",
    )
    assert s.wechat.aes_key == AES_KEY and s.wechat.safe_mode
    assert s.wechat.api_base == "http://127.0.0.1:9999"
    assert s.jobs_in_process is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
    ],
)
def test_database_urls_get_the_async_driver(tmp_path: Path, raw: str, expected: str) -> None:
    assert load(tmp_path, DATABASE_URL=raw).database_url == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)]
)
def test_jobs_flag(tmp_path: Path, value: str, expected: bool) -> None:
    assert load(tmp_path, MST_JOBS_IN_PROCESS=value).jobs_in_process is expected


# -- .env --------------------------------------------------------------------------------


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text(
        "# court settings\n"
        "PUBLIC_BASE_URL=https://from-file.example\n"
        "WECHAT_TOKEN=fromfile\n"
        'REDIS_URL="redis://file.example:6379/1"\n'
    )
    s = load(tmp_path, env_file, PUBLIC_BASE_URL="https://from-env.example")
    assert s.public_base_url == "https://from-env.example"
    assert s.wechat.token == "fromfile"
    assert s.redis_url == "redis://file.example:6379/1"


def test_dotenv_in_the_working_directory_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("WECHAT_APP_ID=wxfromdotenv\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings({"MST_DATA_DIR": str(tmp_path)})
    assert s.wechat.app_id == "wxfromdotenv"


def test_a_missing_env_file_is_fine(tmp_path: Path) -> None:
    s = load(tmp_path, tmp_path / "no-such.env")
    assert s.public_base_url == "http://127.0.0.1:8080"


def test_bad_value_in_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PUBLIC_BASE_URL=ftp://files.example\n")
    with pytest.raises(ConfigError, match="PUBLIC_BASE_URL"):
        load(tmp_path, env_file)


# -- the generated secret ----------------------------------------------------------------


def test_secret_is_generated_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = load(tmp_path)
    path = tmp_path / "data" / SECRET_FILE_NAME
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    assert path.read_text().strip() == first.secret_key
    second = load(tmp_path)
    assert second.secret_key == first.secret_key
    # A different data dir is a different installation with its own key.
    other = load_settings({"MST_DATA_DIR": str(tmp_path / "other")}, env_file=None)
    assert other.secret_key != first.secret_key


def test_secret_from_the_environment_writes_no_file(tmp_path: Path) -> None:
    s = load(tmp_path, MST_SECRET_KEY="e" * 32)
    assert s.secret_key == "e" * 32
    assert not (tmp_path / "data" / SECRET_FILE_NAME).exists()


def test_an_unusable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="MST_SECRET_KEY") as caught:
        load_settings({"MST_DATA_DIR": str(not_a_dir)}, env_file=None)
    assert str(not_a_dir) in str(caught.value)


def test_the_court_time_zone_is_a_setting_and_put_in_force(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from bot.core import clock

    assert load(tmp_path).timezone == "Asia/Shanghai"
    assert clock.say_time(datetime(2026, 12, 1, 21, 34, tzinfo=UTC)) == "12月2日 周三 上午5:34"
    assert load(tmp_path, MST_TIMEZONE="Asia/Urumqi").timezone == "Asia/Urumqi"
    assert clock.say_time(datetime(2026, 12, 1, 21, 34, tzinfo=UTC)) == "12月2日 周三 上午3:34"


# -- bad values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgresql+psycopg2://u@h/db"),
        ("REDIS_URL", "http://cache.example"),
        ("REDIS_URL", "localhost:6379"),
        ("PUBLIC_BASE_URL", "ftp://x"),
        ("PUBLIC_BASE_URL", "court.example"),
        ("PUBLIC_BASE_URL", "https://"),
        ("WECHAT_API_BASE", "api.weixin.qq.com"),
        ("WECHAT_TOKEN", "ab"),
        ("WECHAT_TOKEN", "t" * 33),
        ("WECHAT_TOKEN", "has space"),
        ("WECHAT_TOKEN", "令牌令牌"),
        ("WECHAT_AES_KEY", "short"),
        ("WECHAT_AES_KEY", AES_KEY + "A"),
        ("WECHAT_AES_KEY", "!" * 43),
        ("MST_SECRET_KEY", "too-short"),
        ("MST_JOBS_IN_PROCESS", "maybe"),
        ("MST_TIMEZONE", "Mars/Olympus"),
        ("MST_TIMEZONE", "+08:00"),
        ("WECHAT_ACCOUNT_QR", "/nonexistent/account.png"),
        ("WECHAT_ACCOUNT_QR", "README.md"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **{name: value})
    message = str(caught.value)
    assert name in message
    assert "\n" not in message  # one line for the operator
