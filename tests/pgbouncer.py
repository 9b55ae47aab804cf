"""A real PgBouncer (Debian's `pgbouncer` package) for the tests, in front of the local
PostgreSQL (127.0.0.1:5432, trust), in transaction mode.

`PgBouncer(root).start()` writes its config into `root` (a fresh directory: listen on
127.0.0.1 at a free port, no Unix socket, `auth_type = trust`, every database forwarded to
the same name on the server, a small server pool so that client connections really take
turns on server connections), starts `pgbouncer` as a child process (as the `postgres` user
when we are root: PgBouncer refuses to run as root) and waits until it accepts connections;
`stop()` ends it. Missing binary: the test fails, saying what to install.

`own_database()` makes a database of this test run's own on the server (and drops it), so
the PgBouncer tests never touch anyone else's, whichever half of the suite runs them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

SERVER_HOST, SERVER_PORT, SERVER_USER = "127.0.0.1", 5432, "postgres"
INSTALL = "apt-get install -y pgbouncer"


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").is_file() else None
    )
    if found is None:
        pytest.fail(
            f"pgbouncer is not installed: `{INSTALL}` (Debian's package; the PgBouncer tests "
            "run a real one and are never skipped)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    def __init__(self, *, pool_size: int = 2, pool_mode: str = "transaction") -> None:
        self.binary = pgbouncer_binary()
        self.port = free_port()
        self.pool_size, self.pool_mode = pool_size, pool_mode
        # Not under pytest's tmp_path: its parents are 0700 root, and PgBouncer runs as
        # `postgres` when we are root; this directory is given to that user.
        self.dir = Path(tempfile.mkdtemp(prefix="mst-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str, *, pooler: bool = True) -> str:
        query = "?pooler=pgbouncer" if pooler else ""
        return f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{self.port}/{database}{query}"

    @property
    def log(self) -> Path:
        return self.dir / "pgbouncer.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout_s: float = 15) -> None:
        (self.dir / "users.txt").write_text(f'"{SERVER_USER}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={SERVER_HOST} port={SERVER_PORT} user={SERVER_USER}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.dir / 'users.txt'}",
                    f"pool_mode = {self.pool_mode}",
                    f"default_pool_size = {self.pool_size}",
                    "min_pool_size = 0",
                    "reserve_pool_size = 0",
                    "max_client_conn = 500",
                    f"admin_users = {SERVER_USER}",
                    "ignore_startup_parameters = extra_float_digits",
                    f"logfile = {self.log}",
                    f"pidfile = {self.dir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        argv = [self.binary, "-q", str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer will not run as root: as the postgres user, who owns its directory.
            owner = pwd.getpwnam(SERVER_USER)
            for path in [self.dir, *self.dir.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            argv[1:1] = ["-u", SERVER_USER]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(
                    f"pgbouncer exited with {self.proc.returncode}: {err.strip()} "
                    f"{self.log_text()[-2000:]}"
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer not listening within {timeout_s} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)  # SIGINT: PgBouncer's immediate stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on PgBouncer's admin console (POOLS, SERVERS, STATS …), through psql:
        the console speaks only the simple query protocol, which asyncpg does not fetch with."""
        out = subprocess.run(
            [
                "psql",
                "-X",
                "--csv",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SERVER_USER,
                "-d",
                "pgbouncer",
                "-c",
                f"SHOW {what}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return list(csv.DictReader(io.StringIO(out)))


def _server_dsn(database: str) -> str:
    return f"postgresql://{SERVER_USER}@{SERVER_HOST}:{SERVER_PORT}/{database}"


@asynccontextmanager
async def own_database(prefix: str = "mst_pgbouncer") -> AsyncIterator[str]:
    """A new, empty database on the local PostgreSQL for this test only; dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_server_dsn("postgres"), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(_server_dsn("postgres"), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
