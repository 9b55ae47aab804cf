"""What both benchmarks share: where `mst` is, fresh databases, server processes, /proc.

Everything here talks to 127.0.0.1 only, and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# Only these two: the other databases / Redis dbs on the machine belong to other people's tests.
# Another database and Redis db for a second run beside this one (each run drops its schema
# and flushes its db): BENCH_PG_URL=…/test_d BENCH_REDIS_URL=redis://127.0.0.1:6379/14.
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test_c")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
# Variables the project reads; cleared from the child's environment so nothing leaks in.
PROJECT_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "PUBLIC_BASE_URL",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "WECHAT_AES_KEY",
    "WECHAT_API_BASE",
    "MST_SECRET_KEY",
    "MST_DATA_DIR",
    "MST_JOBS_IN_PROCESS",
)


def mst_path(explicit: str | None = None) -> str:
    """`mst` from the project's venv (the bin dir of the interpreter running us, else .venv)."""
    candidates = [explicit] if explicit else []
    candidates += [
        str(Path(sys.executable).parent / "mst"),
        str(REPO / ".venv" / "bin" / "mst"),
        shutil.which("mst") or "",
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    raise SystemExit("bench: cannot find the `mst` command; run from the project's venv")


def aes_key() -> str:
    """A valid 43-character EncodingAESKey (32 random bytes, base64 without the '=')."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


def child_env(**values: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARS}
    env.update({k: v for k, v in values.items() if v is not None})
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def check_local(url: str) -> None:
    from urllib.parse import urlparse

    host = urlparse(url.replace("+asyncpg", "")).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"bench: refusing a non-local service URL {url!r}")


async def _reset_pg(url: str) -> None:
    import asyncpg

    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncpg.connect(plain, timeout=10)
    except asyncpg.InvalidCatalogNameError:  # a fresh machine: the benchmark's own database
        base, name = plain.rsplit("/", 1)
        admin = await asyncpg.connect(f"{base}/postgres", timeout=10)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close(timeout=5)
        conn = await asyncpg.connect(plain, timeout=10)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS public CASCADE", timeout=60)
        await conn.execute("CREATE SCHEMA public", timeout=10)
    finally:
        await conn.close(timeout=5)


def reset_pg(url: str = PG_URL) -> None:
    check_local(url)
    asyncio.run(_reset_pg(url))


def flush_redis(url: str = REDIS_URL) -> None:
    import redis

    check_local(url)
    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class Ran:
    wall_s: float
    cpu_s: float  # the command's own user+system CPU
    box_busy_s: float | None  # every process's CPU on the machine meanwhile
    output: str


def run_measured(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float) -> Ran:
    """`run`, also measuring the command's CPU and the whole machine's."""
    before, box0 = os.times(), machine_cpu_s()
    wall, output = run(cmd, env=env, cwd=cwd, timeout=timeout)
    after, box1 = os.times(), machine_cpu_s()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    box = None if box0 is None or box1 is None else box1 - box0
    return Ran(wall, cpu, box, output)


def run(cmd: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, str]:
    """Run a command to completion; (wall seconds, combined output). Fails loudly."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return wall, proc.stdout


@dataclass
class Server:
    """A server subprocess with its log in a file (a pipe nobody reads would fill up)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int
    _log: IO[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before it was healthy:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return json.loads(resp.read() or b"{}")
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not healthy within {timeout:.0f} s ({last}):\n{self.log_tail()}"
        )

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The server process and all its descendants (`mst serve --workers K` forks K)."""
        return process_tree(self.proc.pid)

    def rss_mb(self) -> float | None:
        """VmRSS summed over the process tree (pages shared after fork count once per process)."""
        return _sum(proc_rss_mb(pid) for pid in self.pids())

    def peak_rss_mb(self) -> float | None:
        """VmHWM (each process's peak RSS) summed over the process tree."""
        return _sum(proc_status_mb(pid, "VmHWM") for pid in self.pids())

    def cpu_s(self) -> float | None:
        """user+system CPU of the process tree (live processes; all their threads)."""
        return _sum(proc_cpu_s(pid) for pid in self.pids())

    def stop(self, timeout: float = 10.0) -> list[int]:
        """SIGINT to the server's whole process group (it was started in its own session),
        so forked workers stop too; SIGKILL to the group after `timeout`. Returns the pids
        that were still there after the parent exited and had to be killed."""
        leftovers: list[int] = []
        if self.proc.poll() is None:
            pgid = self.proc.pid  # start_new_session: the group's id is the leader's pid
            _killpg(pgid, signal.SIGINT)  # aiohttp's run_app shuts down cleanly on it
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(pgid, signal.SIGKILL)
                self.proc.wait(5)
            deadline = time.monotonic() + timeout
            while (left := group_members(pgid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if left:
                leftovers = left
                _killpg(pgid, signal.SIGKILL)
        self._log.close()
        return leftovers


def start_server(
    name: str, cmd: Sequence[str], *, env: dict[str, str], cwd: Path, port: int, log_dir: Path
) -> Server:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            # Something else listens there: measuring it instead of our server would be worse
            # than failing.
            raise RuntimeError(
                f"port {port} on 127.0.0.1 is in use ({exc}); pick --port-base"
            ) from exc
    log_path = log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
    log = log_path.open("ab")
    # Its own session (and process group): stop() signals the group, children included.
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Server(name, proc, log_path, port, log)


def proc_rss_mb(pid: int) -> float | None:
    return proc_status_mb(pid, "VmRSS")


def proc_status_mb(pid: int, field: str) -> float | None:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM) in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/<tid>/children (no psutil)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    return out


def group_members(pgid: int) -> list[int]:
    """Live processes in a process group (field 5 of /proc/<pid>/stat), zombies excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _sum(values: Any) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) if got else None


def proc_cpu_s(pid: int) -> float | None:
    """user+system CPU seconds of one process, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float | None:
    """CPU seconds the whole machine spent busy (all cores, all processes), from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal ...
    busy = sum(int(first[i]) for i in (1, 2, 3, 6, 7, 8) if i < len(first))
    return busy / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def pct(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(_width(c[i]) for c in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append(
            "  ".join(
                c + " " * (w - _width(c)) if i < 2 else " " * (w - _width(c)) + c
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def _width(s: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (f" + {len(dirty)} modified files" if dirty else "")


def save_results(kind: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    return path


class _Timed(Protocol):
    latency: float


Answer = TypeVar("Answer", bound=_Timed)


async def open_loop(
    start: Callable[[int, float], Awaitable[Answer]], n: int, rate: float, timeout_s: float
) -> tuple[list[Answer | None], float]:
    """Request i starts at t0 + i/rate whether or not earlier ones were answered (`start(i,
    due)` sends it; its answer has a `latency`), so queueing shows in the latencies. Those
    not answered within the phase plus `timeout_s` are None. Returns the answers and the
    wall time from the first scheduled start to the last completion."""
    tasks: list[asyncio.Task[Answer]] = []
    t0 = time.perf_counter() + 0.02
    give_up = t0 + n / rate + timeout_s
    i = 0
    while i < n and time.perf_counter() < give_up:
        now = time.perf_counter()
        while i < n and t0 + i / rate <= now:
            tasks.append(asyncio.create_task(start(i, t0 + i / rate)))  # type: ignore[arg-type]
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, give_up - time.perf_counter()))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    results: list[Answer | None] = [
        t.result() if t.done() and not t.cancelled() else None for t in tasks
    ]
    results += [None] * (n - len(results))
    ends = [t0 + k / rate + r.latency for k, r in enumerate(results) if r is not None]
    return results, (max(ends) - t0) if ends else 0.0


async def fill_courts(conn: Any, cases: int) -> None:
    """Two courts, 50 judges over 8 teams, and `cases` cases (one in ten of the second
    court), with fixed ids: the world the history benchmarks (bench.dashboard, bench.stats)
    fill their tickets into. `conn`: an asyncpg connection."""
    await conn.execute("INSERT INTO court (id, name) VALUES (1, '本院'), (2, '他院')")
    await conn.execute(
        """INSERT INTO staff (id, username, name, court_id, roles, team, active, created_at)
        SELECT g, 'j' || g, '法官' || g, CASE WHEN g <= 40 THEN 1 ELSE 2 END, 'judge',
               '第' || (g % 8) || '庭', true, now()
        FROM generate_series(1, 50) g"""
    )
    await conn.execute(
        """INSERT INTO "case" (id, court_id, case_number, case_type, cause, judge_id,
                               created_at, updated_at)
        SELECT g, CASE WHEN g % 10 = 0 THEN 2 ELSE 1 END, '(2026)案' || g, '民事', '',
               CASE WHEN g % 10 = 0 THEN 41 + g % 10 ELSE 1 + g % 40 END, now(), now()
        FROM generate_series(1, $1) g""",
        cases,
    )


async def fill_tickets(conn: Any, tickets: int, cases: int, start: Any, span_s: float) -> None:
    """`tickets` tickets over `cases` cases, spread evenly from `start` over `span_s`
    seconds, with a rating for one in three: the history bench.dashboard and bench.stats
    count. Ids are fixed (1…N); `conn`: an asyncpg connection."""
    # Spread over five years; 90 % answered within 0-3 days, due 2 days on; closing due
    # 10 days on, 80 % closed 5 days on.
    await conn.execute(
        """INSERT INTO ticket (id, case_id, court_id, kind, status, openid, team, created_at,
            due_at, close_due_at, holder_due_at, level, holder_since, first_reply_at,
            closed_at)
        SELECT g, 1 + g % $2, CASE WHEN (1 + g % $2) % 10 = 0 THEN 2 ELSE 1 END,
            (ARRAY['question','question','complaint','asset_lead'])[1 + g % 4],
            CASE WHEN g % 10 = 0 THEN 'open' WHEN g % 10 = 1 THEN 'answered' ELSE 'closed' END,
            'u' || (g % 50000), '第' || (g % 8) || '庭', c, c + interval '2 days',
            c + interval '10 days', c + interval '2 days', CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END,
            c, CASE WHEN g % 10 = 0 THEN NULL ELSE c + (g % 72) * interval '1 hour' END,
            CASE WHEN g % 10 > 1 THEN c + interval '5 days' END
        FROM (SELECT g, $3::timestamptz + (g::float8 / $1 * $4) * interval '1 second' AS c
              FROM generate_series(1, $1) g) s""",
        tickets,
        cases,
        start,
        span_s,
    )
    await conn.execute(
        """INSERT INTO rating (case_id, ticket_id, openid, score, comment, created_at,
                               updated_at)
        SELECT case_id, id, openid, 1 + id % 3, '', created_at + interval '3 days',
               created_at + interval '3 days'
        FROM ticket WHERE id % 3 = 0"""
    )
