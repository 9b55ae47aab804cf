"""deploy/dockerfile_steps.py, the Dockerfile replayed without a container engine (issue 19):
its reading of the Dockerfile, .dockerignore and compose.yaml, and its path and port
mapping. The replay itself (venv, pip install, migrate, serve, health check) runs once in
scripts/test, as its own part."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dockerfile_steps", ROOT / "deploy" / "dockerfile_steps.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


steps = _load()


@pytest.fixture
def replay() -> Iterator[Any]:
    args = argparse.Namespace(
        context=str(ROOT),
        dockerfile=str(ROOT / "Dockerfile"),
        keep=False,
        port=0,
        apt=False,
        no_pip_cache=False,
        python=None,
        verbose=False,
    )
    made = steps.Replay(args)
    try:
        yield made
    finally:
        shutil.rmtree(made.base, ignore_errors=True)


def test_every_instruction_of_the_dockerfile_is_replayed(replay: Any) -> None:
    keywords = [ins.keyword for ins in replay.instructions]
    assert keywords[0] == "FROM" and "HEALTHCHECK" in keywords and "USER" in keywords
    missing = {k for k in keywords if not hasattr(replay, f"do_{k.lower()}")}
    assert missing == set()  # a new instruction needs its replay, not a silent skip


def test_continuations_and_comments_inside_them() -> None:
    found = steps.parse_dockerfile(
        "# top\nFROM python:3.11-slim\n\nRUN a \\\n    # inside\n    && b\nENV X=1 \\\n  Y='two words'\n"
    )
    assert [(i.line, i.keyword, i.args) for i in found] == [
        (2, "FROM", "python:3.11-slim"),
        (4, "RUN", "a && b"),
        (7, "ENV", "X=1 Y='two words'"),
    ]
    assert steps.parse_env(found[2].args) == [("X", "1"), ("Y", "two words")]
    assert steps.expand("${A}/x/$B/${C:-d}", {"A": "1", "B": "2"}) == "1/x/2/d"


def test_the_health_check_is_read_with_its_timings(replay: Any) -> None:
    [ins] = [i for i in replay.instructions if i.keyword == "HEALTHCHECK"]
    check = steps.parse_healthcheck(ins.args, ["/bin/sh", "-c"])
    assert check.command[0] == "python" and "/healthz" in check.command[-1]
    assert (check.interval, check.timeout, check.start_period, check.retries) == (30, 5, 30, 3)
    assert steps.duration("1m30s") == 90 and steps.duration("500ms") == 0.5


def test_dockerignore_leaves_out_what_the_image_lacks() -> None:
    ignore = steps.DockerIgnore((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    assert ignore.excluded("bot/app/__pycache__/x.cpython-311.pyc")
    assert ignore.excluded("mst.db") and ignore.excluded(".venv/bin/python")
    assert ignore.excluded("tests/test_x.py") and ignore.excluded("deploy/dockerfile_steps.py")
    assert not ignore.excluded("bot/app/config.py") and not ignore.excluded("pyproject.toml")
    negated = steps.DockerIgnore("docs\n!docs/keep.md\n**/*.tmp\n")
    assert negated.excluded("docs/a.md") and not negated.excluded("docs/keep.md")
    assert negated.excluded("a/b/c.tmp") and negated.excluded("c.tmp")


def test_image_paths_go_under_the_root_and_nothing_else(replay: Any) -> None:
    root = str(replay.root)
    assert {"/opt/mst", "/var/lib/mst", "/usr/local"} <= set(replay.prefixes)
    assert (
        replay.map_text("sqlite+aiosqlite:////var/lib/mst/mst.db")
        == f"sqlite+aiosqlite:///{root}/var/lib/mst/mst.db"
    )
    assert (
        replay.map_text("rm -rf /opt/mst/build /opt/mst/*.egg-info")
        == f"rm -rf {root}/opt/mst/build {root}/opt/mst/*.egg-info"
    )
    assert replay.map_text("/srv/opt/mst /dev/null /opt/mstx") == "/srv/opt/mst /dev/null /opt/mstx"
    assert replay.map_text("/usr/local/bin:/usr/bin").startswith(f"{root}/usr/local/bin:")


def test_the_port_and_host_are_mapped_and_migrate_comes_from_compose(replay: Any) -> None:
    replay.exposed, replay.port = [8080], 41234
    argv = ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert replay.container_argv(argv) == ["serve", "--host", "127.0.0.1", "--port", "41234"]
    assert replay.container_argv(["python", "-c", "u('http://127.0.0.1:8080/healthz')"])[-1] == (
        "u('http://127.0.0.1:41234/healthz')"
    )
    assert replay.one_shot_commands() == [("migrate", ["migrate"])]
