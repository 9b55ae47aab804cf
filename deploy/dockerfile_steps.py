#!/usr/bin/env python3
"""The Dockerfile's steps, run as a script on a machine without a container engine (issue 19).

    python deploy/dockerfile_steps.py [--keep] [--port N] [--apt] [--no-pip-cache]

It reads ../Dockerfile (and ../.dockerignore, ../compose.yaml), so a change there changes
what runs here, and carries each instruction out on this machine as faithfully as it can
without an image: the base image becomes a fresh venv made with this machine's Python of the
same minor version, the image's filesystem a temporary root directory (`/opt/mst` is
`<root>/opt/mst`), COPY copies exactly what it names (less what .dockerignore leaves out),
RUN runs in the mapped WORKDIR with the image's ENV, USER switches to that user for real
(root only), then compose's one-shot commands (`mst migrate`), ENTRYPOINT + CMD on a free
port, and the HEALTHCHECK's own command until it passes. At the end a report says, per
instruction, what was run, what was put in its place and what was left out, and why.

Exit 0 only when the install, the one-shot commands, the server and its health check all
worked. The last line is a one-line summary (scripts/test shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HEALTH_POLL_S = 0.5  # how often the health command is retried (Docker: --interval)
HEALTH_CAP_S = 60.0  # at most this long, whatever start-period + retries x interval say
STOP_GRACE_S = 10.0  # `docker stop`'s default before SIGKILL
ONE_SHOT_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 900.0
BASE_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # the python image's, less sbin dupes
# Build-time variables passed through from this machine, as `docker build` passes the proxy
# variables: pip's own configuration stands in for the image's default index.
PASS_THROUGH = re.compile(r"^(PIP_\w+|(?i:https?_proxy|no_proxy|all_proxy)|SSL_CERT_\w+)$")


# -- reading the Dockerfile --------------------------------------------------------------------


@dataclass
class Instruction:
    line: int  # where it starts in the Dockerfile
    keyword: str  # upper case
    args: str  # continuation lines joined, comment lines inside them dropped

    def short(self, width: int = 90) -> str:
        text = f"{self.keyword} {self.args}"
        text = re.sub(r"\s+", " ", text)
        return text if len(text) <= width else text[: width - 1] + "…"


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: `\\` continues a line, comment lines (also inside a continued
    instruction) and blank lines are dropped, as Docker's parser does."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, rest = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), rest.strip()))
    if pending:
        joined = " ".join(part for part in pending if part)
        keyword, _, rest = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), rest.strip()))
    return found


def exec_form(args: str) -> list[str] | None:
    """["a", "b"] (JSON exec form) or None for shell form."""
    if not args.lstrip().startswith("["):
        return None
    try:
        loaded = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(loaded, list) and all(isinstance(x, str) for x in loaded):
        return loaded
    return None


def expand(text: str, values: Mapping[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alt}, as Docker expands ENV/WORKDIR/COPY/…"""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        value = values.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value

    return re.sub(r"\$\{(\w+)(?::([-+])([^}]*))?\}|\$(\w+)", one, text)


def parse_env(args: str) -> list[tuple[str, str]]:
    """ENV a=1 b="two words" (or the old ENV a value)."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    return [(k, v) for k, _, v in (t.partition("=") for t in tokens)]


def duration(text: str) -> float:
    """A Go duration (30s, 1m30s, 500ms) in seconds."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass
class HealthCheck:
    command: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    start_period: float = 0.0
    retries: int = 3

    @property
    def budget(self) -> float:
        """How long Docker would wait before calling the container unhealthy."""
        return self.start_period + self.retries * (self.interval + self.timeout)


def parse_healthcheck(args: str, shell: list[str]) -> HealthCheck | None:
    options: dict[str, str] = {}
    rest = args.strip()
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        rest = rest.strip()
    word, _, command = rest.partition(" ")
    if word.upper() == "NONE":
        return None
    if word.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK: expected CMD or NONE, got {word!r}")
    argv = exec_form(command)
    check = HealthCheck(argv if argv is not None else [*shell, command.strip()])
    check.interval = duration(options.get("interval", "30s"))
    check.timeout = duration(options.get("timeout", "30s"))
    check.start_period = duration(options.get("start-period", "0s"))
    check.retries = int(options.get("retries", "3"))
    return check


# -- .dockerignore ---------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


class DockerIgnore:
    """The build context's filter: a path is left out when the last pattern matching it, or
    one of the directories above it, is not a `!` exception (moby's patternmatcher)."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.rules.append((negated, _pattern_regex(line)))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not negated
        return result


# -- the report --------------------------------------------------------------------------------


@dataclass
class Entry:
    where: str
    status: str  # RAN, CHECKED, SUBSTITUTED, SKIPPED, NOTED, WARNING, FAILED
    detail: str


@dataclass
class Report:
    entries: list[Entry] = field(default_factory=list)
    essentials: dict[str, bool] = field(default_factory=dict)

    def add(self, where: str, status: str, detail: str) -> None:
        self.entries.append(Entry(where, status, detail))
        first, *more = detail.splitlines() or [""]
        print(f"   [{status}] {first}", *(f"\n      {m}" for m in more), sep="", flush=True)

    @property
    def failed(self) -> bool:
        return any(e.status == "FAILED" for e in self.entries)

    def render(self) -> str:
        lines, last = [], None
        for e in self.entries:
            if e.where != last:
                lines.append(e.where)
                last = e.where
            first, *more = e.detail.splitlines() or [""]
            lines.append(f"    {e.status:<11} {first}")
            lines.extend(f"    {'':<11} {m}" for m in more)
        return "\n".join(lines)


# -- running it --------------------------------------------------------------------------------


class StepFailed(Exception):
    pass


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str  # as /etc/passwd says (an image path)


class Replay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.context = Path(args.context).resolve()
        self.dockerfile = Path(args.dockerfile).resolve()
        self.instructions = parse_dockerfile(self.dockerfile.read_text(encoding="utf-8"))
        ignore_file = self.context / ".dockerignore"
        self.ignore = DockerIgnore(
            ignore_file.read_text(encoding="utf-8") if ignore_file.is_file() else ""
        )
        self.base = Path(tempfile.mkdtemp(prefix="mst-dockerfile-"))
        self.root = self.base / "rootfs"  # the image's filesystem
        self.logs = self.base / "logs"
        self.root.mkdir()
        self.logs.mkdir()
        for path in (self.base, self.root):
            path.chmod(0o755)  # the image's user must reach its files
        self.report = Report()
        self.build_args: dict[str, str] = {}
        self.env: dict[str, str] = {}  # the image's ENV, as written (image paths)
        self.workdir = "/"
        self.user: str | None = None  # None: root
        self.shell = ["/bin/sh", "-c"]
        self.exposed: list[int] = []
        self.volumes: list[str] = []
        self.entrypoint: list[str] = []
        self.cmd: list[str] = []
        self.health: HealthCheck | None = None
        self.stop_signal = signal.SIGTERM
        self.created_users: list[str] = []
        self.created_groups: list[str] = []
        self.venv: Path | None = None
        self.python_version = ""
        self.is_root = os.geteuid() == 0
        self.prefixes = self._image_prefixes()
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.where = ""

    # paths: the image's → this machine's

    def _image_prefixes(self) -> list[str]:
        """The absolute paths the Dockerfile makes (WORKDIR, COPY destinations, VOLUME, the
        user's home) and /usr/local (where the base image's Python is: here the venv);
        in ENV values and RUN lines these are mapped under the temporary root."""
        found = {"/usr/local"}
        for ins in self.instructions:
            if ins.keyword == "WORKDIR" and ins.args.startswith("/"):
                found.add(ins.args.rstrip("/") or "/")
            elif ins.keyword in ("COPY", "ADD"):
                words = exec_form(ins.args) or shlex.split(ins.args)
                if words and words[-1].startswith("/"):
                    found.add(words[-1].rstrip("/"))
            elif ins.keyword == "VOLUME":
                found.update(v.rstrip("/") for v in (exec_form(ins.args) or ins.args.split()))
            elif ins.keyword == "RUN":
                found.update(m.rstrip("/") for m in re.findall(r"--home-dir[= ](/\S+)", ins.args))
        return sorted((p for p in found if p and p != "/"), key=len, reverse=True)

    def mapped(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def map_text(self, text: str) -> str:
        """Every known image path in `text` (an ENV value, a RUN line) put under the root."""
        alternatives = "|".join(re.escape(p) for p in self.prefixes)
        pattern = rf"(?<![\w.-])({alternatives})(?=[/\s'\"*:;)]|$)"
        return re.sub(pattern, lambda m: str(self.mapped(m.group(1))), text)

    def resolve(self, path: str) -> str:
        """An image path, relative ones against WORKDIR."""
        return os.path.normpath(path if path.startswith("/") else f"{self.workdir}/{path}")

    # environments and users

    def vars(self) -> dict[str, str]:
        return {**self.build_args, **self.env}

    def environment(self, *, build: bool) -> dict[str, str]:
        """The base image's ENV (PATH with the venv's bin for /usr/local/bin, LANG), the
        Dockerfile's ENV with its paths mapped, HOME of the current user; at build time
        also this machine's pip and proxy settings (and, unless --no-pip-cache, pip's
        cache instead of PIP_NO_CACHE_DIR)."""
        env = {"PATH": self.map_text(BASE_PATH), "LANG": "C.UTF-8"}
        if self.python_version:
            env["PYTHON_VERSION"] = self.python_version
        user = self.current_user()
        env["HOME"] = str(self.mapped(user.home)) if user else os.environ.get("HOME", "/root")
        if build:
            env.update({k: v for k, v in os.environ.items() if PASS_THROUGH.match(k)})
            env.update(self.build_args)
        env.update({k: self.map_text(v) for k, v in self.env.items()})
        if build and not self.args.no_pip_cache:
            env.pop("PIP_NO_CACHE_DIR", None)
        return env

    def current_user(self) -> User | None:
        """The USER in force, when this process can become it (root only)."""
        if self.user in (None, "root", "0") or not self.is_root:
            return None
        name, _, group = self.user.partition(":")
        try:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        except KeyError:
            raise StepFailed(f"USER {self.user}: no such user on this machine") from None
        gid = entry.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        return User(entry.pw_name, entry.pw_uid, gid, entry.pw_dir)

    def as_user(self, argv: list[str]) -> list[str]:
        user = self.current_user()
        if user is None:
            return argv
        return [
            "setpriv",
            f"--reuid={user.uid}",
            f"--regid={user.gid}",
            "--init-groups",
            "--",
            *argv,
        ]

    def run(
        self, argv: list[str], name: str, *, build: bool, timeout: float = RUN_TIMEOUT_S
    ) -> tuple[int, str, float]:
        """argv as the current user in the mapped WORKDIR; (exit code, log tail, seconds)."""
        log = self.logs / f"{len(list(self.logs.iterdir())):02d}-{name}.log"
        started = time.monotonic()
        with log.open("wb") as out:
            try:
                rc = subprocess.run(
                    self.as_user(argv),
                    cwd=self.mapped(self.workdir),
                    env=self.environment(build=build),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
                out.write(f"\n(stopped after {timeout:.0f} s)\n".encode())
        elapsed = time.monotonic() - started
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        if self.args.verbose:
            print("\n".join(f"   | {line}" for line in lines))
        return rc, "\n".join(lines[-15:]), elapsed

    # the instructions

    def build(self) -> None:
        froms = [i for i in self.instructions if i.keyword == "FROM"]
        if len(froms) != 1:
            raise StepFailed(f"{len(froms)} FROM instructions: only one-stage builds are replayed")
        for ins in self.instructions:
            self.where = f"Dockerfile:{ins.line} {ins.short()}"
            print(f"-> {self.where}", flush=True)
            handler = getattr(self, f"do_{ins.keyword.lower()}", None)
            if handler is None:
                self.report.add(
                    self.where, "SKIPPED", f"{ins.keyword}: not replayed by this script"
                )
                continue
            handler(ins)

    def do_from(self, ins: Instruction) -> None:
        image = ins.args.split()[0]
        m = re.match(r"python:(\d+\.\d+)", image)
        if not m:
            raise StepFailed(f"FROM {image}: only python:X.Y images have a stand-in here")
        wanted = m.group(1)
        python = self.base_python(wanted)
        self.venv = self.mapped("/usr/local")
        rc, tail, took = self.run(
            [python, "-m", "venv", str(self.venv)], "venv", build=True, timeout=120
        )
        if rc != 0:
            self.report.add(self.where, "FAILED", f"python -m venv failed:\n{tail}")
            raise StepFailed("no venv")
        self.python_version = subprocess.run(
            [
                str(self.venv / "bin" / "python"),
                "-c",
                "import platform as p;print(p.python_version())",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        self.report.add(
            self.where,
            "SUBSTITUTED",
            f"the image {image} is not used (no container engine here): a fresh empty venv\n"
            f"made with this machine's {python} (Python {self.python_version}) at "
            f"<root>/usr/local ({took:.1f} s),\n"
            f"where the image keeps its Python; <root> = {self.root}",
        )

    def base_python(self, version: str) -> str:
        """This machine's pythonX.Y, preferring one every user may run (not a venv's)."""
        if self.args.python:
            return str(self.args.python)
        venv_bin = str(Path(sys.prefix) / "bin")
        path = os.pathsep.join(
            p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin
        )
        candidates = [
            f"/usr/local/bin/python{version}",
            f"/usr/bin/python{version}",
            shutil.which(f"python{version}", path=path),
            getattr(sys, "_base_executable", None)
            if sys.version_info[:2] == tuple(int(x) for x in version.split("."))
            else None,
        ]
        for candidate in candidates:
            if candidate and os.access(candidate, os.X_OK):
                return candidate
        raise StepFailed(f"no python{version} on this machine for the venv")

    def do_arg(self, ins: Instruction) -> None:
        for word in shlex.split(ins.args):
            name, _, default = word.partition("=")
            self.build_args.setdefault(name, default)
            self.report.add(self.where, "RAN", f"build argument {name}={self.build_args[name]!r}")

    def do_env(self, ins: Instruction) -> None:
        pairs = [(k, expand(v, self.vars())) for k, v in parse_env(ins.args)]
        self.env.update(pairs)
        shown = []
        for k, v in pairs:
            here = self.map_text(v)
            shown.append(f"{k}={v}" + (f"  (here: {here})" if here != v else ""))
            if k == "PIP_NO_CACHE_DIR" and not self.args.no_pip_cache:
                shown[-1] += "  (not for RUN here: pip reuses this machine's cache)"
        self.report.add(
            self.where, "RAN", "in the environment of every later step:\n" + "\n".join(shown)
        )

    def do_label(self, ins: Instruction) -> None:
        self.report.add(self.where, "NOTED", "metadata only")

    def do_shell(self, ins: Instruction) -> None:
        self.shell = exec_form(ins.args) or self.shell
        self.report.add(self.where, "RAN", f"shell form now runs with {self.shell}")

    def do_stopsignal(self, ins: Instruction) -> None:
        name = ins.args.strip().upper()
        self.stop_signal = (
            signal.Signals(int(name))
            if name.isdigit()
            else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]
        )
        self.report.add(self.where, "RAN", f"the server is stopped with {self.stop_signal.name}")

    def do_workdir(self, ins: Instruction) -> None:
        self.workdir = self.resolve(expand(ins.args.strip(), self.vars()))
        target = self.mapped(self.workdir)
        existed = target.exists()
        target.mkdir(parents=True, exist_ok=True)
        user = self.current_user()
        if not existed and user is not None:
            os.chown(target, user.uid, user.gid)  # BuildKit creates it as the USER
        self.report.add(
            self.where, "RAN", f"{self.workdir} → {target}" + ("" if not existed else " (existed)")
        )

    def do_user(self, ins: Instruction) -> None:
        self.user = expand(ins.args.strip(), self.vars())
        user = self.current_user()
        if user is not None:
            self.report.add(
                self.where,
                "RAN",
                f"later commands run as {user.name} (uid {user.uid}, gid {user.gid}) via setpriv",
            )
        elif self.user not in ("root", "0"):
            self.report.add(
                self.where,
                "SKIPPED",
                f"not root: later commands run as {pwd.getpwuid(os.geteuid()).pw_name}, "
                f"not as {self.user}",
            )

    def do_expose(self, ins: Instruction) -> None:
        for word in expand(ins.args, self.vars()).split():
            self.exposed.append(int(word.split("/")[0]))
        self.report.add(self.where, "NOTED", f"ports {self.exposed}: mapped to a local port below")

    def do_volume(self, ins: Instruction) -> None:
        vols = exec_form(ins.args) or ins.args.split()
        for vol in vols:
            self.volumes.append(vol)
            self.mapped(vol).mkdir(parents=True, exist_ok=True)
        self.report.add(
            self.where,
            "SUBSTITUTED",
            f"{vols}: the directory under <root> (as the image leaves it) stands in for the "
            f"named volume",
        )

    def do_entrypoint(self, ins: Instruction) -> None:
        self.entrypoint = exec_form(ins.args) or [*self.shell, ins.args]
        self.report.add(self.where, "NOTED", f"entry point {self.entrypoint}: run below")

    def do_cmd(self, ins: Instruction) -> None:
        self.cmd = exec_form(ins.args) or [*self.shell, ins.args]
        self.report.add(self.where, "NOTED", f"command {self.cmd}: run below")

    def do_healthcheck(self, ins: Instruction) -> None:
        self.health = parse_healthcheck(ins.args, self.shell)
        self.report.add(self.where, "NOTED", "run below, after the server starts")

    def do_add(self, ins: Instruction) -> None:
        if re.search(r"\s(https?|git)://", " " + ins.args):
            self.report.add(self.where, "FAILED", "ADD from a URL is not replayed")
            return
        self.do_copy(ins)

    def do_copy(self, ins: Instruction) -> None:
        words = exec_form(ins.args) or shlex.split(expand(ins.args, self.vars()))
        chown = None
        while words and words[0].startswith("--"):
            flag, _, value = words.pop(0)[2:].partition("=")
            if flag == "chown":
                chown = value
            elif flag != "chmod":
                self.report.add(self.where, "FAILED", f"COPY --{flag} is not replayed")
                return
        *sources, dest = words
        dest_image = self.resolve(dest)
        into_dir = dest.endswith("/") or len(sources) > 1
        copied: list[str] = []
        for source in sources:
            matches = sorted(glob.glob(str(self.context / source))) or []
            if not matches:
                self.report.add(self.where, "FAILED", f"{source}: not in the build context")
                continue
            for match in matches:
                src = Path(match)
                if not src.resolve().is_relative_to(self.context):
                    self.report.add(self.where, "FAILED", f"{source}: outside the build context")
                    continue
                rel = src.relative_to(self.context).as_posix()
                if self.ignore.excluded(rel):
                    self.report.add(self.where, "FAILED", f"{source}: left out by .dockerignore")
                    continue
                if src.is_dir():
                    copied.extend(self.copy_tree(src, self.mapped(dest_image)))
                else:
                    target = self.mapped(dest_image)
                    if into_dir or target.is_dir():
                        target = target / src.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target, follow_symlinks=False)
                    copied.append(rel)
        if chown and self.is_root:
            who, _, group = chown.partition(":")
            for path in self.mapped(dest_image).rglob("*"):
                shutil.chown(path, who, group or None)
        self.report.add(
            self.where,
            "RAN",
            f"{len(copied)} files → {self.mapped(dest_image)} "
            f"(the repo's files, less .dockerignore's)",
        )

    def copy_tree(self, src: Path, dest: Path) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(src):
            here = Path(dirpath)
            rel_dir = here.relative_to(self.context).as_posix()
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not self.ignore.excluded(f"{rel_dir}/{d}") or self.has_exceptions()
            )
            target_dir = dest / here.relative_to(src)
            target_dir.mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                rel = f"{rel_dir}/{name}"
                if self.ignore.excluded(rel):
                    continue
                shutil.copy2(here / name, target_dir / name, follow_symlinks=False)
                yield rel

    def has_exceptions(self) -> bool:
        return any(negated for negated, _ in self.ignore.rules)

    def do_run(self, ins: Instruction) -> None:
        argv = exec_form(ins.args)
        if argv is not None:
            self.run_generic([self.map_text(a) for a in argv], ins)
            return
        parts = [p.strip() for p in re.split(r"\s&&\s", ins.args)]
        system = ("apt-get", "apt", "groupadd", "useradd", "adduser", "addgroup")
        if not any(shlex.split(p)[0] in system for p in parts if p):
            self.run_generic([*self.shell, self.map_text(ins.args)], ins)
            return
        for part in parts:  # a system step: each command on its own
            words = shlex.split(part)
            if words[0] in ("apt-get", "apt"):
                self.apt(words)
            elif words[0] in ("groupadd", "addgroup"):
                self.groupadd(words)
            elif words[0] in ("useradd", "adduser"):
                self.useradd(words)
            elif words[:2] == ["rm", "-rf"] and all(
                w.startswith("/var/lib/apt") for w in words[2:]
            ):
                self.report.add(
                    self.where,
                    "SKIPPED",
                    f"`{part}`: the image's size only; here it would empty this machine's apt lists",
                )
            else:
                self.run_generic([*self.shell, self.map_text(part)], ins)

    def run_generic(self, argv: list[str], ins: Instruction) -> None:
        name = "install" if "pip install" in ins.args else f"run-{ins.line}"
        rc, tail, took = self.run(argv, name, build=True)
        who = self.current_user()
        shown = argv[-1] if argv[: len(self.shell)] == self.shell else shlex.join(argv)
        detail = (
            f"`{shown}`\nin {self.mapped(self.workdir)} as {who.name if who else 'root'}, "
            f"PATH starting with the venv's bin: exit {rc} in {took:.1f} s"
        )
        if rc != 0:
            self.report.add(self.where, "FAILED", f"{detail}\n{tail}")
        else:
            self.report.add(self.where, "RAN", detail)
        if name == "install":
            self.report.essentials["install"] = rc == 0
            if rc == 0 and not self.args.no_pip_cache:
                self.report.add(
                    self.where,
                    "SUBSTITUTED",
                    "from pip's configured index on this machine, with its cache "
                    "(the image: PyPI, no cache)",
                )

    def apt(self, words: list[str]) -> None:
        command = " ".join(words)
        if self.args.apt and self.is_root:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            run = subprocess.run(
                words, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
            )
            status = "RAN" if run.returncode == 0 else "FAILED"
            tail = "\n".join((run.stdout + run.stderr).splitlines()[-5:])
            self.report.add(
                self.where,
                status,
                f"`{command}` on this machine (--apt): exit {run.returncode}"
                + ("" if run.returncode == 0 else f"\n{tail}"),
            )
            return
        why = "not root" if self.args.apt else "no --apt"
        if "install" not in words:
            self.report.add(self.where, "SKIPPED", f"`{command}` ({why})")
            return
        packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        for package in packages:
            self.report.add(self.where, *self.dpkg_status(package, why))

    def dpkg_status(self, package: str, why: str) -> tuple[str, str]:
        def version(name: str) -> str | None:
            q = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status} ${Version}", name],
                capture_output=True,
                text=True,
                check=False,
            )
            ok = q.returncode == 0 and q.stdout.startswith("install ok installed")
            return q.stdout.split()[-1] if ok else None

        if shutil.which("dpkg-query") is None:
            return "WARNING", f"apt-get install {package} not run ({why}); no dpkg to check it"
        found = version(package)
        if found:
            return "CHECKED", f"apt-get install not run ({why}); {package} {found} is installed"
        deps = subprocess.run(
            ["apt-cache", "depends", "--important", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        providers = re.findall(r"Depends: (\S+)", deps)
        present = [f"{p} {v}" for p in providers if (v := version(p))]
        if present:
            return "WARNING", (
                f"apt-get install not run ({why}); {package} itself is not installed, what it "
                f"depends on is: {', '.join(present)}"
            )
        return "WARNING", f"apt-get install not run ({why}); {package} is NOT installed here"

    @staticmethod
    def split_options(words: list[str], with_value: set[str]) -> tuple[dict[str, str], list[str]]:
        options: dict[str, str] = {}
        positional: list[str] = []
        it = iter(words[1:])
        for word in it:
            if word.startswith("-"):
                name, eq, value = word.partition("=")
                options[name] = value if eq else (next(it, "") if name in with_value else "")
            else:
                positional.append(word)
        return options, positional

    def groupadd(self, words: list[str]) -> None:
        options, positional = self.split_options(words, {"-g", "--gid", "-K", "--key", "-p"})
        name = positional[-1]
        try:
            existing = grp.getgrnam(name)
            self.report.add(
                self.where, "CHECKED", f"group {name} exists already here (gid {existing.gr_gid})"
            )
            return
        except KeyError:
            pass
        if not self.is_root:
            self.report.add(self.where, "SKIPPED", f"`{' '.join(words)}`: not root")
            return
        argv = list(words)
        gid = options.get("--gid") or options.get("-g")
        if gid and self.id_taken(grp.getgrgid, gid):
            argv = self.drop_option(argv, ("--gid", "-g"))
            self.report.add(self.where, "SUBSTITUTED", f"gid {gid} is taken here: another gid")
        rc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if rc.returncode != 0:
            self.report.add(self.where, "FAILED", f"`{shlex.join(argv)}`: {rc.stderr.strip()}")
            return
        self.created_groups.append(name)
        self.report.add(
            self.where, "RAN", f"`{shlex.join(argv)}` on this machine (removed again at the end)"
        )

    def useradd(self, words: list[str]) -> None:
        with_value = {"-u", "--uid", "-g", "--gid", "-d", "--home-dir", "-s", "--shell", "-c"}
        options, positional = self.split_options(words, with_value | {"--comment", "-G", "-k"})
        name = positional[-1]
        home = options.get("--home-dir") or options.get("-d") or f"/home/{name}"
        try:
            existing = pwd.getpwnam(name)
            self.report.add(
                self.where,
                "CHECKED",
                f"user {name} exists already here (uid {existing.pw_uid}); used as it is",
            )
            self.make_home(home, existing)
            if existing.pw_dir != home and existing.pw_dir.startswith("/"):
                self.make_home(existing.pw_dir, existing)
            return
        except KeyError:
            pass
        if not self.is_root:
            self.make_home(home, None)
            self.report.add(self.where, "SKIPPED", f"`{' '.join(words)}`: not root")
            return
        # The account as the image has it, but its home is made under <root>, not here.
        argv = [w for w in words if w not in ("--create-home", "-m")]
        uid = options.get("--uid") or options.get("-u")
        if uid and self.id_taken(pwd.getpwuid, uid):
            argv = self.drop_option(argv, ("--uid", "-u"))
            self.report.add(self.where, "SUBSTITUTED", f"uid {uid} is taken here: another uid")
        argv = [argv[0], "--no-create-home", *argv[1:]]
        rc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if rc.returncode != 0:
            self.report.add(self.where, "FAILED", f"`{shlex.join(argv)}`: {rc.stderr.strip()}")
            return
        self.created_users.append(name)
        made = pwd.getpwnam(name)
        self.make_home(home, made)
        self.report.add(
            self.where,
            "RAN",
            f"`{shlex.join(argv)}` on this machine: uid {made.pw_uid}, shell {made.pw_shell}\n"
            f"(removed again at the end); its home {home} made as {self.mapped(home)}, "
            f"owned by it, as --create-home makes it",
        )

    def make_home(self, home: str, owner: pwd.struct_passwd | None) -> None:
        """The home under <root>, owned by its user (as useradd --create-home leaves it)."""
        target = self.mapped(home)
        target.mkdir(parents=True, exist_ok=True)
        if owner is not None and self.is_root:
            os.chown(target, owner.pw_uid, owner.pw_gid)

    @staticmethod
    def id_taken(lookup: Any, value: str) -> bool:
        try:
            lookup(int(value))
            return True
        except (KeyError, ValueError):
            return False

    @staticmethod
    def drop_option(argv: list[str], names: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        skip = False
        for word in argv:
            if skip:
                skip = False
                continue
            if word in names:
                skip = True
                continue
            if any(word.startswith(f"{n}=") for n in names):
                continue
            out.append(word)
        return out

    # `docker compose up`'s part: the one-shot commands, then the container's command

    def one_shot_commands(self) -> list[tuple[str, list[str]]]:
        """compose.yaml's services that the web service waits for to complete successfully
        (`migrate`), with their command; ENTRYPOINT goes in front."""
        path = self.context / "compose.yaml"
        try:
            import yaml  # type: ignore[import-untyped]  # PyYAML: the dev extra
        except ImportError:
            return []
        if not path.is_file():
            return []
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        services: dict[str, Any] = loaded.get("services", {})
        web = services.get("web", {})
        found = []
        for name, condition in (web.get("depends_on") or {}).items():
            if (condition or {}).get("condition") == "service_completed_successfully":
                command = services.get(name, {}).get("command")
                if isinstance(command, str):
                    command = shlex.split(command)
                if command:
                    found.append((name, list(command)))
        return found

    def container_argv(self, argv: list[str]) -> list[str]:
        """The container's port as this machine's free port, 0.0.0.0 as 127.0.0.1."""
        out = []
        for word in argv:
            if word == "0.0.0.0":
                word = "127.0.0.1"
            for port in self.exposed:
                if word == str(port):
                    word = str(self.port)
                word = re.sub(rf"(?<=:){port}\b", str(self.port), word)
            out.append(word)
        return out

    def serve(self) -> None:
        self.port = self.args.port or free_port()
        one_shots = self.one_shot_commands()
        where = "compose.yaml: one-shot services web waits for"
        print(f"-> {where}", flush=True)
        if not one_shots:
            self.report.add(where, "WARNING", "none found (compose.yaml or PyYAML missing)")
        for name, command in one_shots:
            argv = self.entrypoint + command
            rc, tail, took = self.run(argv, name, build=False, timeout=ONE_SHOT_TIMEOUT_S)
            detail = f"`{shlex.join(argv)}` (service {name}): exit {rc} in {took:.1f} s"
            self.report.add(
                where, "RAN" if rc == 0 else "FAILED", detail + ("" if rc == 0 else f"\n{tail}")
            )
            self.report.essentials[name] = rc == 0
            if rc != 0:
                return

        where = "ENTRYPOINT + CMD (docker run / compose up)"
        print(f"-> {where}", flush=True)
        argv = self.container_argv(self.entrypoint + self.cmd)
        self.stdout_log = self.logs / "serve.stdout"
        self.stderr_log = self.logs / "serve.stderr"
        with self.stdout_log.open("wb") as out, self.stderr_log.open("wb") as err:
            self.server = subprocess.Popen(
                self.as_user(argv),
                cwd=self.mapped(self.workdir),
                env=self.environment(build=False),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        user = self.current_user()
        self.report.add(
            where,
            "RAN",
            f"`{shlex.join(argv)}` (pid {self.server.pid}) as {user.name if user else 'this user'}"
            f" in {self.mapped(self.workdir)};\nport {self.exposed} → {self.port}, host "
            f"0.0.0.0 → 127.0.0.1; the image's ENV only (no mst.env: the embedded defaults)",
        )
        healthy = self.health_check()
        self.report.essentials["serve"] = self.server.poll() is None and healthy is not None
        if healthy is not None:
            self.after_healthy()
        self.stop()

    def health_check(self) -> float | None:
        where = "HEALTHCHECK"
        print(f"-> {where}", flush=True)
        if self.health is None:
            self.report.add(where, "FAILED", "the Dockerfile has no HEALTHCHECK")
            self.report.essentials["health"] = False
            return None
        argv = self.container_argv(self.health.command)
        deadline = time.monotonic() + min(self.health.budget, HEALTH_CAP_S)
        started = time.monotonic()
        attempts, rc, tail = 0, -1, ""
        assert self.server is not None
        while time.monotonic() < deadline and self.server.poll() is None:
            attempts += 1
            rc, tail, _ = self.run(argv, "health", build=False, timeout=self.health.timeout)
            if rc == 0:
                break
            time.sleep(HEALTH_POLL_S)
        took = time.monotonic() - started
        ok = rc == 0
        self.report.essentials["health"] = ok
        detail = (
            f"{json.dumps(argv, ensure_ascii=False)} as the container's user, timeout {self.health.timeout:.0f} s: "
            f"{'exit 0' if ok else f'failing (exit {rc})'} after {attempts} attempt(s), {took:.1f} s\n"
            f"(Docker: every {self.health.interval:.0f} s after a {self.health.start_period:.0f} s "
            f"start period, {self.health.retries} retries = {self.health.budget:.0f} s; here every "
            f"{HEALTH_POLL_S} s for at most {min(self.health.budget, HEALTH_CAP_S):.0f} s)"
        )
        if not ok:
            died = self.server.poll()
            if died is not None:
                detail += f"\nthe server exited with {died}:\n" + tail_of(self.stderr_log)
            else:
                detail += f"\n{tail}"
        self.report.add(where, "RAN" if ok else "FAILED", detail)
        return took if ok else None

    def after_healthy(self) -> None:
        where = "after the health check"
        assert self.server is not None
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (local)
                body = response.read().decode()
            self.report.add(where, "CHECKED", f"GET /healthz: {body.strip()[:300]}")
        except Exception as exc:  # reported, not fatal: the health command itself passed
            self.report.add(where, "WARNING", f"GET /healthz: {exc}")
        uid = proc_uid(self.server.pid)
        if uid is not None:
            name = pwd.getpwuid(uid).pw_name if uid >= 0 else "?"
            user = self.current_user()
            expected = user.uid if user else os.geteuid()
            self.report.add(
                where,
                "CHECKED" if uid == expected else "FAILED",
                f"the server process runs as uid {uid} ({name})",
            )
        found = self.json_log_line()
        if found is None:
            self.report.add(where, "FAILED", "no JSON log line from the server within 10 s")
            self.report.essentials["json log"] = False
        else:
            stream, line, plain = found
            note = (
                f"\n({stream}: Docker's log driver keeps both streams; {plain} line(s) there"
                " are not JSON)"
                if stream != "stdout" or plain
                else ""
            )
            self.report.add(where, "CHECKED", f"a JSON log line on {stream}: {line[:200]}{note}")
            self.report.essentials["json log"] = True

    def json_log_line(self) -> tuple[str, str, int] | None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for stream, path in (("stdout", self.stdout_log), ("stderr", self.stderr_log)):
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                good = [line for line in lines if is_json_object(line)]
                if good:
                    return stream, good[-1], len(lines) - len(good)
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        server = self.server
        if server is None or server.poll() is not None:
            return
        where = "stop (docker stop)"
        print(f"-> {where}", flush=True)
        started = time.monotonic()
        server.send_signal(self.stop_signal)
        try:
            rc = server.wait(STOP_GRACE_S)
            how = f"{self.stop_signal.name}: exit {rc} in {time.monotonic() - started:.1f} s"
            self.report.add(where, "RAN" if rc == 0 else "WARNING", how)
        except subprocess.TimeoutExpired:
            with_group(server.pid, signal.SIGKILL)
            server.wait(10)
            self.report.add(
                where,
                "WARNING",
                f"no exit {STOP_GRACE_S:.0f} s after {self.stop_signal.name}: SIGKILL",
            )
        with_group(server.pid, signal.SIGKILL)  # anything it left behind

    def cleanup(self) -> None:
        if self.server is not None and self.server.poll() is None:
            with_group(self.server.pid, signal.SIGKILL)
            self.server.wait(10)
        if self.args.keep:
            print(
                f"kept: {self.base} (rootfs/, logs/); left on this machine: "
                f"users {self.created_users or 'none'}, groups {self.created_groups or 'none'} "
                f"(userdel / groupdel them when done)"
            )
            return
        for name in self.created_users:
            subprocess.run(["userdel", name], capture_output=True, check=False, timeout=60)
        for name in self.created_groups:
            try:
                grp.getgrnam(name)
            except KeyError:
                continue  # userdel took the user's group with it
            subprocess.run(["groupdel", name], capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def with_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the server was started in a session (group) of its own


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def tail_of(path: Path, n: int = 15) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])


def not_run(args: argparse.Namespace) -> str:
    apt = (
        "apt-get ran on this machine itself (--apt), not in an image layer"
        if args.apt
        else "apt-get update/install (no --apt): the packages were checked with dpkg instead"
    )
    pip = "PyPI: pip used this machine's configured index" + (
        "" if args.no_pip_cache else " and its cache (the image sets PIP_NO_CACHE_DIR=1)"
    )
    return f"""\
Compared with `docker build` + `docker compose up`, NOT run here:
  - the base image: no python:3.11-slim layers; this machine's Debian, libraries and Python
    (above) stand in for the image's (its Debian release and Python patch level may differ)
  - no container: no namespaces, no cgroups, no image filesystem; paths are mapped under
    <root>, every other path is this machine's; the server listens on 127.0.0.1 directly
  - {apt}
  - {pip}
  - compose's postgres and redis services, their health checks, the `worker` service, and
    the web service's own command (`--workers 2`, MST_JOBS_IN_PROCESS=0, REDIS_URL,
    env_file mst.env): the image's CMD ran on its embedded defaults instead (SQLite in the
    data dir, the in-process Redis stand-in, jobs in-process, demo WeChat settings)
  - restart policies, named volumes (a directory under <root>), networks, stop_grace_period"""


def _interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary root and logs")
    parser.add_argument("--port", type=int, default=0, help="local port (default: a free one)")
    parser.add_argument("--apt", action="store_true", help="run apt-get for real (root only)")
    parser.add_argument(
        "--no-pip-cache", action="store_true", help="honour PIP_NO_CACHE_DIR as the image does"
    )
    parser.add_argument("--python", help="the interpreter for the venv (default: pythonX.Y)")
    parser.add_argument("--dockerfile", default=str(REPO / "Dockerfile"))
    parser.add_argument("--context", default=str(REPO), help="the build context")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step's output")
    args = parser.parse_args(argv)

    started = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupted)  # a CI timeout: stop the server, clean up
    replay = Replay(args)
    print(f"Replaying {replay.dockerfile} without a container engine; <root> = {replay.root}")
    aborted = ""
    try:
        replay.build()
        if replay.report.essentials.get("install") and not replay.report.failed:
            replay.serve()
        else:
            aborted = "the build failed: the container was not started"
    except StepFailed as exc:
        aborted = str(exc)
    except KeyboardInterrupt:
        aborted = "interrupted"
    finally:
        replay.cleanup()
    took = time.monotonic() - started

    report = replay.report
    print("\n== Dockerfile steps, as run on this machine (no container engine)")
    print(report.render())
    print()
    print(not_run(args))
    wanted = ["install", *(n for n, _ in replay.one_shot_commands()), "serve", "health"]
    results = {name: report.essentials.get(name, False) for name in wanted}
    ok = all(results.values()) and not report.failed and not aborted
    print()
    if aborted:
        print(f"stopped early: {aborted}")
    print(
        "essential steps: "
        + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in results.items())
    )
    if ok:
        print(f"dockerfile steps: passed ({', '.join(results)} ok) in {took:.0f} s")
    else:
        bad = [k for k, v in results.items() if not v] or ["see the report"]
        print(f"dockerfile steps: FAILED ({', '.join(bad)}) in {took:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
