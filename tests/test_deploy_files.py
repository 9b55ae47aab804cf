"""The files a court puts the service into production with (issue 19, one court): the
image, compose, the systemd units, the nginx site, the settings template. What can be
checked without a Docker engine is checked here: the files parse and hold what the README
promises; the units pass `systemd-analyze verify`."""

from __future__ import annotations

import configparser
import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = ("mst-web.service", "mst-worker.service", "mst-migrate.service", "mst-backup.service")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    found = []
    for line in lines:
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text(encoding="utf-8"))
    return parser


def test_compose_has_the_services_volumes_and_aof() -> None:
    c = compose()
    services = c["services"]
    assert {"web", "worker", "postgres", "redis", "migrate"} <= set(services)
    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    # The data in named volumes, each declared.
    assert {"pgdata", "redisdata", "mstdata"} <= set(c["volumes"])
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redisdata:/data" in redis["volumes"]
    for name in ("web", "worker", "migrate"):
        s = services[name]
        assert s["env_file"] == "mst.env"  # secrets from the env file, none in the YAML
        assert "mstdata:/var/lib/mst" in s["volumes"]
        assert s["image"] == "mst:latest" and s["build"] == "."
    # mst migrate once, before web and worker; they start only when it succeeded.
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["web"]["command"][0] == "serve"
    assert services["worker"]["command"] == ["worker"]
    assert services["web"]["environment"]["MST_JOBS_IN_PROCESS"] == "0"
    assert all(p.startswith("127.0.0.1:") for p in services["web"]["ports"])
    # No secret written into the file itself.
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert "PASSWORD=" not in text and "SECRET" not in text


def test_the_env_template_names_what_compose_and_the_units_need() -> None:
    example = (ROOT / "deploy" / "mst.env.example").read_text(encoding="utf-8")
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert {
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "DATABASE_URL",
        "REDIS_URL",
        "PUBLIC_BASE_URL",
        "WECHAT_APP_ID",
        "WECHAT_APP_SECRET",
        "WECHAT_TOKEN",
        "WECHAT_AES_KEY",
        "MST_SECRET_KEY",
        "MST_SIGNING_KEY",
        "LOG_FORMAT",
    } <= names
    # compose's DATABASE_URL names compose's PostgreSQL service.
    assert re.search(
        r"^DATABASE_URL=postgresql\+asyncpg://mst:[^@]+@postgres:5432/mst$", example, re.MULTILINE
    )


def test_the_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [word for word, _ in steps].index("USER") > max(
        i for i, (word, _) in enumerate(steps) if word == "RUN"
    )  # nothing runs as root after it
    [health] = [args for word, args in steps if word == "HEALTHCHECK"]
    assert "/healthz" in health and "--interval=" in health
    assert ("ENTRYPOINT", '["mst"]') in steps
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "pip install --no-compile ." in runs  # the versions pyproject pins
    assert "postgresql-client" in runs  # pg_dump for mst backup
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "*.db", ".env", "*.env", ".mst_secret", ".mst_signing_key"} <= set(
        ignored
    )


def test_the_systemd_units_have_their_keys() -> None:
    for name in UNITS:
        u = unit(name)
        service = u["Service"]
        assert service["User"] == "mst" and service["EnvironmentFile"] == "/etc/mst/mst.env"
        assert "LOG_FORMAT=json" in service["Environment"]
        assert service["ExecStart"].startswith(("/opt/mst/venv/bin/mst ", "/bin/sh -c "))
        assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
        assert u["Unit"]["Description"]
    web, worker, migrate = (unit(n) for n in UNITS[:3])
    assert web["Service"]["ExecStart"].split()[1] == "serve"
    assert "MST_JOBS_IN_PROCESS=0" in web["Service"]["Environment"]
    assert web["Service"]["KillMode"] == "mixed"  # mst serve stops its workers itself
    assert worker["Service"]["ExecStart"] == "/opt/mst/venv/bin/mst worker"
    # mst migrate once before both: a oneshot they require and start after.
    assert migrate["Service"]["Type"] == "oneshot"
    assert migrate["Service"]["ExecStart"] == "/opt/mst/venv/bin/mst migrate"
    for u in (web, worker):
        assert u["Unit"]["Requires"] == "mst-migrate.service"
        assert "mst-migrate.service" in u["Unit"]["After"].split()
        assert u["Install"]["WantedBy"] == "multi-user.target"
    timer = unit("mst-backup.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify (systemd's own check of every directive), on copies whose
    ExecStart names this venv's mst instead of /opt/mst's, which this machine has not."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is needed (Debian: apt-get install systemd)"
    mst = str(Path(sys.executable).parent / "mst")
    for path in SYSTEMD.iterdir():
        (tmp_path / path.name).write_text(
            path.read_text(encoding="utf-8").replace("/opt/mst/venv/bin/mst", mst),
            encoding="utf-8",
        )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert set(UNITS) | {"mst-backup.timer"} <= set(names)
    run = subprocess.run(
        [analyze, "verify", *(f"./{n}" for n in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_nginx_site_has_tls_body_size_timeouts_and_the_client_address() -> None:
    conf = (ROOT / "deploy" / "nginx" / "mst.conf").read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    assert re.search(r"listen 443 ssl", code) and "ssl_certificate " in code
    assert re.search(r"client_max_body_size \d+m;", code)
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in code
    assert "proxy_set_header X-Real-IP $remote_addr;" in code
    assert "proxy_set_header X-Request-Id" in code
    # HTTP/1.1 with keepalive to the app.
    assert "proxy_http_version 1.1;" in code and 'proxy_set_header Connection "";' in code
    assert re.search(r"upstream \w+ \{[^}]*keepalive \d+;", code)
    # /wechat: nothing waits past WeChat's 5 s.
    wechat = re.search(r"location = /wechat \{([^}]*)\}", code)
    assert wechat is not None
    timeouts = dict(re.findall(r"proxy_(\w+_timeout) (\d+)s;", wechat.group(1)))
    assert timeouts and all(int(v) <= 5 for v in timeouts.values())
    assert int(timeouts["read_timeout"]) == 5


def test_every_file_the_packages_need_goes_into_the_wheel() -> None:
    """`pip install .` (the image) installs only the package data pyproject names; a page's
    template or stylesheet left out works in a checkout and fails in production."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    left_out = []
    for package, patterns in data.items():
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            inside = path.relative_to(ROOT / package).as_posix()
            if not any(fnmatch.fnmatchcase(inside, pattern) for pattern in patterns):
                left_out.append(f"{package}/{inside}")
    assert left_out == []
    assert set(data) >= {"bot", "storage"}
