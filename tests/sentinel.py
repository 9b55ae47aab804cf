"""A real Redis Sentinel for the tests: our own redis-server master (and, when asked, a
replica) on free ports, and a sentinel (`redis-server --sentinel`, Debian's
`redis-sentinel` package or the `redis-server` binary itself) on another, watching the
master as `mymaster`. Nothing here touches the machine's Redis on 6379.

`SentinelSet(root).start()` waits until the sentinel names the master (and knows the
replica); `lose_master()` kills the master and waits for the sentinel's failover; `stop()`
ends them all. Missing binaries: the test fails, saying what to install.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

MASTER = "mymaster"
INSTALL = "apt-get install -y redis-server redis-sentinel"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `{INSTALL}`", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Callable[[], object], what: str, within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"still waiting for: {what}")
        time.sleep(0.05)


class SentinelSet:
    def __init__(self, root: Path, *, replica: bool = False) -> None:
        self.root = root
        self.server = _binary("redis-server")
        self.master_port = free_port()
        self.replica_port = free_port() if replica else None
        self.port = free_port()  # the sentinel's
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, db: int = 0) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{MASTER}/{db}"

    def client(self, port: int, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, db=db, decode_responses=True)

    def sentinel(self) -> redis.Redis:
        return self.client(self.port)

    def master_address(self) -> tuple[str, int] | None:
        with self.sentinel() as s:
            got = s.sentinel_get_master_addr_by_name(MASTER)
        return None if not got else (str(got[0]), int(got[1]))

    def _redis(self, name: str, port: int, *extra: str) -> None:
        work = self.root / name
        work.mkdir(exist_ok=True)
        log = (work / "out.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [
                self.server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _until(lambda: self.client(port).ping(), f"redis-server on {port}")

    def start(self) -> None:
        # No 5 s wait before the first full sync (diskless sync's default delay).
        self._redis("master", self.master_port, "--repl-diskless-sync-delay", "0")
        if self.replica_port is not None:
            self._redis(
                "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)
            )
            _until(
                lambda: (
                    self.client(self.replica_port or 0)
                    .info("replication")
                    .get("master_link_status")
                    == "up"
                ),
                "the replica in sync",
            )
        # The sentinel rewrites its config file: one of its own, in its own folder.
        work = self.root / "sentinel"
        work.mkdir(exist_ok=True)
        conf = work / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "protected-mode no",
                    f"dir {work}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 1",
                    f"sentinel down-after-milliseconds {MASTER} 2000",
                    f"sentinel failover-timeout {MASTER} 10000",
                    "",
                ]
            )
        )
        log = (work / "out.log").open("wb")
        self.procs["sentinel"] = subprocess.Popen(
            [self.server, str(conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _until(
            lambda: self.master_address() == ("127.0.0.1", self.master_port),
            "the sentinel naming the master",
        )
        if self.replica_port is not None:
            # Known, connected and reporting a live link to the master: one it can promote.
            _until(
                lambda: any(
                    r["flags"] == "slave" and r["master-link-status"] == "ok"
                    for r in self.sentinel().sentinel_slaves(MASTER)
                ),
                "the sentinel knowing the replica",
            )

    def lose_master(self, within_s: float = 30) -> tuple[str, int]:
        """The master dies (SIGKILL); the sentinel sees it down (2 s), fails over and names
        the replica as the master. Returns its address."""
        assert self.replica_port is not None, "a failover needs the replica"
        self.procs["master"].kill()
        self.procs["master"].wait(5)
        _until(
            lambda: self.master_address() == ("127.0.0.1", self.replica_port),
            "the sentinel naming the replica as master",
            within_s,
        )
        _until(
            lambda: self.client(self.replica_port or 0).info("replication").get("role") == "master",
            "the replica taking the master's role",
            within_s,
        )
        return "127.0.0.1", self.replica_port

    def log(self, name: str) -> str:
        path = self.root / name / "out.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()
