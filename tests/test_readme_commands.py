"""Every `mst` command line README.md prints runs as printed, so the README cannot drift
from the CLI: each is parsed by the real argument parser, then run, in README order (later
lines see what earlier ones made), against a throwaway SQLite database in a temp dir, with
the input files the lines name prepared there.

A README line the CLI refuses (a usage error, exit 2), one that ends in a traceback, or
one that fails where the README promises it works fails this test. When a new line names
an input file this test does not know, add a rule to INPUTS; when a line is meant to
answer "not found" on a fresh database, add it to EXPECTED_EXIT with the reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import build_parser
from bot.cli.demo import COURT, ENFORCEMENT_CASE, STAFF
from tests.conftest import CASE_NUMBER
from tests.world import CONFIG_PREFIXES, MST

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COMMAND_TIMEOUT_S = 120

# Commands that run until stopped, so are not run here. Their README lines are still
# parsed by the real parser, and `mst <command> --help` must work.
LONG_RUNNING = {
    "serve": "the web server: runs until stopped",
    "worker": "the arq worker: runs until stopped (and needs a real REDIS_URL)",
    "demo": "serves the demo on port 8080 until Ctrl+C",
    "chat": "an interactive session against a running `mst demo`",
}

# Lines that name things a fresh database cannot have: the exit code they may end with,
# and why. Every other line must exit 0.
EXPECTED_EXIT: dict[tuple[str, ...], tuple[int, str]] = {
    ("check",): (1, "on demo settings and an empty database it lists what is missing: exit 1"),
    ("audit", "receipt"): (1, "the receipt is an example a litigant might bring: not found"),
    ("ticket", "history"): (1, "item #12 does not exist in a fresh database: not found"),
    ("audit", "witness"): (1, "the other court's address is an example: it cannot be reached"),
    ("menu", "push"): (1, "WeChat cannot be reached with the demo settings"),
    ("menu", "show"): (1, "WeChat cannot be reached with the demo settings"),
    ("restore",): (1, "the README's database already holds data: a restore is refused"),
    ("migrate-data",): (1, "the example PostgreSQL address cannot be reached"),
}

# -- the data the README's lines work on: its court, case number and usernames -----------

# The README's court, people and case are the demo's.
CASES = [
    {
        "court": COURT,
        "case_number": CASE_NUMBER,
        "case_type": "民事",
        "cause": "民间借贷纠纷",
        "judge": "zhangwei",
        "filed_on": "2026-11-02",
        "parties": [
            {"role": "原告", "name": "王某某", "phone": "13800001234"},
            {"role": "被告", "name": "李某", "phone": "13900005678"},
        ],
    },
    {
        "court": COURT,
        "case_number": ENFORCEMENT_CASE,
        "case_type": "执行",
        "cause": "申请执行人民币借款",
        "judge": "zhangwei",
        "filed_on": "2026-10-12",
        "parties": [
            {"role": "申请执行人", "name": "孙某", "phone": "13700002468"},
            {"role": "被执行人", "name": "周某", "phone": "13600001357"},
        ],
    },
]
EVENTS = [
    {"event_id": "readme-1", "case_number": ENFORCEMENT_CASE, "kind": "filing",
     "at": "2026-10-12T09:00:00+08:00"},
    {"event_id": "readme-2", "case_number": ENFORCEMENT_CASE, "kind": "freeze",
     "at": "2026-10-20T15:00:00+08:00", "note": "冻结被执行人银行账户一个"},
]  # fmt: skip
ROWS = {"staff": STAFF, "cases": CASES, "events": EVENTS}


def _flat(row: dict[str, Any]) -> dict[str, str]:
    """A row as a spreadsheet holds it: the JSON field names as headers, lists in one cell
    (parties as 原告:王某某:13800001234；被告:...)."""
    out = {}
    for key, value in row.items():
        if key == "parties":
            value = "；".join(f"{p['role']}:{p['name']}:{p['phone']}" for p in value)
        elif isinstance(value, list):
            value = ";".join(value)
        out[key] = str(value)
    return out


def write_jsonl(path: Path, kind: str) -> None:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS[kind]), encoding="utf-8"
    )


def write_json(path: Path, kind: str) -> None:
    path.write_text(json.dumps(ROWS[kind], ensure_ascii=False), encoding="utf-8")


def write_csv(path: Path, kind: str) -> None:
    rows = [_flat(r) for r in ROWS[kind]]
    headers = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, headers)
        writer.writeheader()
        writer.writerows(rows)


def write_xlsx(path: Path, kind: str) -> None:
    from openpyxl import Workbook

    rows = [_flat(r) for r in ROWS[kind]]
    headers = list(dict.fromkeys(k for r in rows for k in r))
    book = Workbook()
    sheet = book.active
    sheet.append(headers)
    for r in rows:
        sheet.append([r.get(h, "") for h in headers])
    book.save(path)


# Input files a README line may name, recognised by name: (pattern, kind, writer). The
# kind says which rows (ROWS) go in, the writer in what format. Extend here.
INPUTS: list[tuple[re.Pattern[str], str, Callable[[Path, str], None]]] = [
    (re.compile(rf"^{stem}[\w-]*\.{ext}$", re.I), kind, writer)
    for stem, kind in (("staff", "staff"), ("cases?", "cases"), ("events?", "events"))
    for ext, writer in (
        ("jsonl", write_jsonl),
        ("json", write_json),
        ("csv", write_csv),
        ("xlsx", write_xlsx),
    )
]
INPUT_LIKE = re.compile(r"^[\w./-]+\.(jsonl|json|csv|xlsx|xlsm)$", re.I)


# -- reading the README ------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    number: int  # where it starts in README.md
    text: str  # as printed, continuations joined
    argv: list[str]  # after `mst`

    @property
    def command(self) -> str:
        return self.argv[0] if self.argv else ""


def code_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line in a fenced or indented code block."""
    fence: str | None = None
    previous_blank, in_indented = True, False
    for number, raw in enumerate(markdown.splitlines(), start=1):
        stripped = raw.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            else:
                yield number, raw
            previous_blank = False
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            in_indented = False
            continue
        indented = raw.startswith(("    ", "\t")) and bool(stripped)
        if indented and (previous_blank or in_indented):
            in_indented = True
            yield number, raw
        elif stripped:
            in_indented = False
        previous_blank = not stripped


def readme_commands(markdown: str) -> list[Line]:
    """Every `mst ...` command in the README's code blocks: `\\` continuations joined,
    `# comments` dropped, each part of `a && mst b` taken on its own."""
    found: list[Line] = []
    pending: tuple[int, str] | None = None
    for number, raw in code_lines(markdown):
        text = raw.strip()
        if pending is not None:
            start, text = pending[0], pending[1] + " " + text
        else:
            start = number
        if text.endswith("\\"):
            pending = (start, text[:-1].rstrip())
            continue
        pending = None
        tokens = shlex.split(text, comments=True)
        part: list[str] = []
        for token in [*tokens, "&&"]:
            if token in ("&&", "||", ";", "|"):
                if part and part[0] == "mst":
                    found.append(Line(start, text, part[1:]))
                part = []
            else:
                part.append(token)
    return found


# -- running them ------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def env(workdir: Path) -> dict[str, str]:
    """The host's environment without any of our settings; a fresh SQLite database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/mst.db",
        MST_DATA_DIR=str(workdir),
        PUBLIC_BASE_URL="https://mst.court.example",
    )
    return env


def run(env: dict[str, str], cwd: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MST), *argv], env=env, cwd=cwd, capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


def parse_problem(argv: list[str]) -> str | None:
    """What the real parser says about these arguments (None: it takes them)."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        error = said.getvalue().strip().splitlines()[-1:] or [""]
        return f"the CLI's parser refuses it (exit {exc.code}): {error[0]}"
    return None


def prepare_inputs(line: Line, cwd: Path) -> list[str]:
    """Write the input files the line names; return the ones no rule in INPUTS knows."""
    unknown = []
    for token in line.argv[1:]:
        if not INPUT_LIKE.match(token) or (cwd / token).exists():
            continue
        for pattern, kind, writer in INPUTS:
            if pattern.match(Path(token).name):
                writer(cwd / token, kind)
                break
        else:
            unknown.append(token)
    return unknown


def expected_exit(line: Line) -> tuple[int, str] | None:
    for prefix, expected in EXPECTED_EXIT.items():
        if tuple(line.argv[: len(prefix)]) == prefix:
            return expected
    return None


def test_the_readme_commands_are_found() -> None:
    """The reader above sees what a person sees: so a README reshuffle cannot make the
    test below pass by finding nothing."""
    lines = readme_commands(README.read_text(encoding="utf-8"))
    commands = {line.command for line in lines}
    assert {"migrate", "import-staff", "import-cases", "qr", "slots", "audit"} <= commands
    assert {"serve", "worker", "demo", "chat"} <= commands
    [add] = [line for line in lines if line.argv[:2] == ["slots", "add"]]
    assert "--room" in add.argv and "#" not in " ".join(add.argv)  # continuation, comment


def test_reading_code_blocks_continuations_and_comments() -> None:
    markdown = (
        "Text mst not-a-command\n\n"
        "    mst one --a 'x # y'   # a comment\n"
        "    mst two \\\n"
        "        --b 1 \\\n"
        "        --c 2   # after the continuation\n"
        "    . .venv/bin/activate && mst three --as x\n"
        "\n```sh\nmst four\n```\n"
        "1. a list\n   mst not-code-either\n"
    )
    lines = readme_commands(markdown)
    assert [(line.number, line.argv) for line in lines] == [
        (3, ["one", "--a", "x # y"]),
        (4, ["two", "--b", "1", "--c", "2"]),
        (7, ["three", "--as", "x"]),
        (10, ["four"]),
    ]


def test_every_readme_command_runs_as_printed(workdir: Path, env: dict[str, str]) -> None:
    problems: list[str] = []
    ran = 0
    for line in readme_commands(README.read_text(encoding="utf-8")):
        where = f"README.md:{line.number}: mst {shlex.join(line.argv)}"
        refused = parse_problem(line.argv)
        if refused:
            problems.append(f"{where}\n    {refused}")
            continue
        if line.command in LONG_RUNNING:
            continue  # not run: see test_long_running_commands_show_their_help
        unknown = prepare_inputs(line, workdir)
        done = run(env, workdir, line.argv)
        ran += 1
        said = (done.stderr.strip() or done.stdout.strip())[-600:]
        expected = expected_exit(line)
        allowed = {0} | ({expected[0]} if expected else set())
        if "Traceback" in done.stderr:
            problems.append(f"{where}\n    ended in a traceback:\n{said}")
        elif done.returncode == 2:
            problems.append(f"{where}\n    refused as a usage error (exit 2): {said}")
        elif done.returncode not in allowed:
            hint = (
                f"\n    it names {', '.join(unknown)}: add a rule for it to INPUTS"
                if unknown
                else ""
            )
            problems.append(f"{where}\n    exit {done.returncode}: {said}{hint}")
    assert not problems, "README commands that do not run as printed:\n" + "\n".join(problems)
    assert ran >= 10  # the first day's commands, at least


@pytest.mark.parametrize("command", sorted(LONG_RUNNING))
def test_long_running_commands_show_their_help(
    command: str, workdir: Path, env: dict[str, str]
) -> None:
    done = run(env, workdir, [command, "--help"])
    assert done.returncode == 0, done.stderr
    assert f"mst {command}" in done.stdout and "Traceback" not in done.stderr


def test_a_line_the_cli_does_not_take_is_caught() -> None:
    """What the admin ran into: the README said `--mediator` where the CLI had none."""
    assert parse_problem(["slots", "add", "--mediatr", "chenjing", "--start", "2026-11-25T09:30"])
    assert parse_problem(["slots", "frobnicate"])
    assert parse_problem(["slots", "list", "--mediator", "chenjing", "--json"]) is None
