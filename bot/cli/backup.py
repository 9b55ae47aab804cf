"""Backups and moving up: `mst backup OUT_DIR`, `mst restore IN_DIR`, `mst migrate-data --to URL`.

A backup is a directory: the database (PostgreSQL: pg_dump's custom format; SQLite: the
online backup API's copy), the data dir's secret and signing key (and the heads pinned by
`mst audit witness`), the latest signed tree head of the audit log as JSON, and a
manifest with each file's SHA-256. It holds the keys: keep it as you keep the server.

A restore goes only into a database that holds no data, then proves the record whole with
the same check as `mst audit verify --full`, and that it still holds the head the backup
named and every head the court posted."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.app.config import SECRET_FILE_NAME, SIGNING_KEY_FILE_NAME, Settings

FORMAT = "mst-backup/1"
MANIFEST = "manifest.json"
HEAD_FILE = "head.json"
KEYS_DIR = "keys"
WITNESS_DIR = "witness"
DUMP_FILES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}
KEY_FILES = (SECRET_FILE_NAME, SIGNING_KEY_FILE_NAME)
# When this process started (this module is imported with the parser): a key file newer
# than this was made by load_settings in this very run, on a server with none yet.
_STARTED = time.time()


def add(sub: Any) -> None:
    """This group's commands on the `mst` parser."""
    s = sub.add_parser(
        "backup",
        help="a consistent copy of the database (pg_dump, or SQLite's online backup), the "
        "secret and signing key, the latest signed audit head, and a manifest of SHA-256s, "
        "into OUT_DIR (new or empty); the server may keep running",
    )
    s.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    s.add_argument("--json", action="store_true", help="one JSON object: what was written")
    s.set_defaults(run=backup)
    s = sub.add_parser(
        "restore",
        help="put a backup back into an EMPTY database (DATABASE_URL) and its keys into the "
        "data dir, then check the record as `mst audit verify --full` does and against the "
        "heads it had signed and posted; exit 1 if anything does not hold",
    )
    s.add_argument("in_dir", type=Path, metavar="IN_DIR")
    s.add_argument(
        "--force",
        action="store_true",
        help="replace key files in the data dir that differ from the backup's",
    )
    s.add_argument("--json", action="store_true", help="one JSON object: what was restored, checks")
    s.set_defaults(run=restore)
    s = sub.add_parser(
        "migrate-data",
        help="copy every table from this database (DATABASE_URL, e.g. the SQLite default) "
        "into an empty PostgreSQL database, then check its audit record and row counts; "
        "stop `mst serve` and `mst worker` first",
    )
    s.add_argument(
        "--to", required=True, dest="target", metavar="URL", help="postgresql://user@host/db"
    )
    s.add_argument("--batch", type=int, default=1000, help="rows copied at a time")
    s.add_argument("--json", action="store_true", help="one JSON object: counts and checks")
    s.set_defaults(run=migrate_data)


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _say(args: argparse.Namespace, line: str) -> None:
    """Progress for a person (stderr, so --json's stdout stays one object)."""
    if not args.json:
        print(line, file=sys.stderr)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """A logger's info lines are not this command's output."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- backup ----------------------------------------------------------------------------------


async def backup(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app.jobs import extend_log
    from bot.app.transparency import head_json
    from bot.rules import rulebook
    from storage import backup as store
    from storage import db as database
    from storage import transparency

    out: Path = args.out_dir
    if not _usable(out):
        print(f"mst: {out} exists and is not empty: give a new directory", file=sys.stderr)
        return 2
    backend = _backend(settings.database_url)
    signer = rulebook.of(settings).signer
    db = database.connect(settings.database_url)
    try:
        with _quiet("alembic"):
            revision, _ = await database.revisions(db)
        if revision is None:
            print("mst: the database has no schema: nothing to back up", file=sys.stderr)
            return 1
        if signer is not None:  # the head kept with the backup covers every event so far
            try:
                with _quiet("bot.app.jobs"):
                    await extend_log(db, signer)
            except transparency.LogDamaged as exc:  # back it up all the same: it is evidence
                print(f"mst: 注意：审计日志已损坏（{exc}），仍照原样备份", file=sys.stderr)
        async with db.sessions() as session:
            head = await transparency.latest_head(session)
            posted = await transparency.published(session, limit=1)
        with store.private_umask():
            os.makedirs(out, exist_ok=True)
            dump = out / DUMP_FILES[backend]
            _say(args, f"数据库（{backend}）备份中…")
            try:
                if backend == "postgresql":
                    await store.pg_dump(settings.database_url, dump)
                else:
                    await store.sqlite_backup(settings.database_url, dump)
            except store.BackupError as exc:
                shutil.rmtree(out, ignore_errors=True)  # no half backup left to mistake
                print(f"mst: backup failed: {exc}", file=sys.stderr)
                return 1
            keys = _copy_keys(settings, out)
            head_doc: dict[str, Any] = {
                "head": None if head is None else head_json(head),
                "public_key": None
                if signer is None
                else base64.b64encode(signer.public_key).decode(),
                "key_id": None if signer is None else signer.key_id,
                "published": None
                if not posted
                else {
                    "size": posted[0].size,
                    "root": posted[0].root,
                    "published_at": posted[0].published_at.isoformat(),
                    "by": posted[0].by,
                },
            }
            (out / HEAD_FILE).write_text(
                json.dumps(head_doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            files = _inventory(out)
            manifest = {
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": {"backend": backend, "file": dump.name, "revision": revision},
                "keys": keys,
                "head": None if head is None else {"size": head.size, "root": head.root},
                "files": files,
            }
            (out / MANIFEST).write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps({"dir": str(out), **manifest}, ensure_ascii=False))
        return 0
    size = sum(f["bytes"] for f in files.values())
    print(f"已备份到 {out}：{len(files)} 个文件，共 {size} 字节，清单 {MANIFEST}（SHA-256）。")
    print(
        "审计日志树头："
        + (f"{head.size} 条，根 {head.root[:16]}…" if head is not None else "还没有签名树头")
    )
    for name, where in keys.items():
        if where == "environment":
            print(f"注意：{name} 来自环境变量，不在备份里：请另行保管（例如 mst.env）。")
    print("备份里有密钥：请像保管服务器一样保管它。")
    return 0


def _usable(out: Path) -> bool:
    """A backup goes into a new or empty directory, never beside another."""
    return not out.exists() or (out.is_dir() and not any(out.iterdir()))


def _inventory(out: Path) -> dict[str, dict[str, Any]]:
    """Every file written, with its SHA-256 and size: the manifest's list."""
    from storage.backup import sha256_file

    return {
        str(p.relative_to(out)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def _copy_keys(settings: Settings, out: Path) -> dict[str, str]:
    """The data dir's key files into OUT/keys; for each key where it came from: "file"
    (in the backup) or "environment" (MST_SECRET_KEY / MST_SIGNING_KEY: kept elsewhere)."""
    keys: dict[str, str] = {}
    for name in KEY_FILES:
        src = settings.data_dir / name
        value = src.read_text().strip() if src.is_file() else None
        in_use = (
            settings.secret_key
            if name == SECRET_FILE_NAME
            else base64.b64encode(settings.signing_key or b"").decode()
        )
        if value is not None:
            (out / KEYS_DIR).mkdir(exist_ok=True)
            shutil.copyfile(src, out / KEYS_DIR / name)
        keys[name] = "file" if value == in_use else "environment"
    witness = settings.data_dir / ".mst_witness"  # other courts' heads, pinned by witness
    if witness.is_dir():
        for f in sorted(witness.glob("*.json")):
            (out / WITNESS_DIR).mkdir(exist_ok=True)
            shutil.copyfile(f, out / WITNESS_DIR / f.name)
    return keys


# -- restore ---------------------------------------------------------------------------------


@dataclass
class Checked:
    """The record's check after a restore or a copy, as `mst audit verify --full` makes it,
    and the heads compared."""

    intact: bool = False
    events: int = 0
    leaves: int = 0
    heads: int = 0
    size: int = 0
    root: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "events": self.events,
            "log_leaves": self.leaves,
            "signed_heads": self.heads,
            "size": self.size,
            "root": self.root,
            "problems": self.problems,
        }


async def check_record(
    settings: Settings,
    db: Any,
    *,
    expect_head: dict[str, Any] | None = None,
    posted_elsewhere: dict[str, Any] | None = None,
) -> Checked:
    """verify_full (every chain, message and signed head, as `mst audit verify --full`),
    then: the head `expect_head` names is there, unchanged; every head the court posted is
    the log's past (same root at its size, and the latest head extends it)."""
    from bot.rules import rulebook
    from storage import audit, transparency

    signer = rulebook.of(settings).signer
    found = Checked()
    async with db.sessions() as session:
        if signer is not None:
            verdict, logv = await transparency.verify_full(
                session, signer.public_key, past_keys=signer.past_keys
            )
            found.problems += verdict.problems + logv.problems
            found.leaves, found.heads = logv.leaves, logv.heads
        else:
            verdict = await audit.verify(session)
            found.problems += verdict.problems
        found.events = verdict.events
        latest = await transparency.latest_head(session)
        if latest is not None:
            found.size, found.root = latest.size, latest.root
        if expect_head is not None:
            there = await transparency.head_at(session, int(expect_head["size"]))
            if there is None:
                found.problems.append(
                    f"the backup's head (size {expect_head['size']}) is not in the database"
                )
            elif there.root != expect_head["root"] or (
                "signature" in expect_head and there.signature != expect_head["signature"]
            ):
                found.problems.append(
                    f"the head of size {there.size} differs from the one the backup kept"
                )
        posted = await transparency.published(session, limit=100000)
        if posted_elsewhere is not None and not any(
            p.size == posted_elsewhere["size"] and p.root == posted_elsewhere["root"]
            for p in posted
        ):
            found.problems.append(
                f"the head posted last (size {posted_elsewhere['size']}) is not recorded as posted"
            )
        for p in posted:
            try:
                then = await transparency.head_at(session, p.size)
                if then is None or then.root != p.root:
                    raise transparency.LogDamaged(f"no head of size {p.size} with the posted root")
                if latest is not None and latest.size > p.size:
                    await transparency.consistency(session, p.size, latest.size)
            except transparency.LogDamaged as exc:
                found.problems.append(f"posted head (size {p.size}): {exc}")
    found.intact = not found.problems
    return found


async def restore(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app.config import load_settings
    from storage import backup as store
    from storage import db as database

    src: Path = args.in_dir
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError(f"not a backup of this kind ({manifest.get('format')!r})")
        head_doc = json.loads((src / HEAD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"mst: {src}: not a backup `mst backup` made: {exc}", file=sys.stderr)
        return 2
    damaged = [
        name
        for name, f in manifest["files"].items()
        if not (src / name).is_file() or store.sha256_file(src / name) != f["sha256"]
    ]
    if damaged:
        print(
            f"mst: the backup is damaged (SHA-256 differs, or missing): {', '.join(damaged)}; "
            "nothing restored",
            file=sys.stderr,
        )
        return 1
    backend = manifest["database"]["backend"]
    if backend != _backend(settings.database_url):
        print(
            f"mst: this is a backup of a {backend} database and DATABASE_URL is "
            f"{_backend(settings.database_url)}: restore it into {backend}, then "
            "`mst migrate-data --to …` moves it",
            file=sys.stderr,
        )
        return 2
    # The keys: a different one already in the data dir is someone's; refused, unless it
    # was made by this very run (load_settings makes one on a server that had none).
    replace: list[tuple[Path, Path]] = []
    for name in KEY_FILES:
        kept = src / KEYS_DIR / name
        if not kept.is_file():
            continue
        here = settings.data_dir / name
        if here.is_file() and here.read_bytes().strip() != kept.read_bytes().strip():
            fresh = here.stat().st_mtime >= _STARTED
            if not (fresh or args.force):
                print(
                    f"mst: {here} holds another key than the backup's: it may be another "
                    "installation's. Nothing restored. Move it away, or give --force to "
                    "replace it.",
                    file=sys.stderr,
                )
                return 1
        if not here.is_file() or here.read_bytes() != kept.read_bytes():
            replace.append((kept, here))
    db = database.connect(settings.database_url)
    try:
        full = await store.holds_data(db)
        if full:
            print(
                "mst: DATABASE_URL already holds data ("
                + ", ".join(full[:5])
                + (", …" if len(full) > 5 else "")
                + "): restore goes only into an empty database (a new one, or one that "
                "`mst migrate` only gave its schema). Nothing restored.",
                file=sys.stderr,
            )
            return 1
        clean = await store.has_tables(db)
    finally:
        await db.dispose()
    dump = src / manifest["database"]["file"]
    _say(args, f"数据库恢复中（{backend}）…")
    try:
        if backend == "postgresql":
            await store.pg_restore(settings.database_url, dump, clean=clean)
        else:
            await store.sqlite_restore(dump, settings.database_url)
    except store.BackupError as exc:
        print(f"mst: restore failed: {exc}", file=sys.stderr)
        return 1
    loaded = database.connect(settings.database_url)
    try:  # statistics for what was loaded (a dump holds none)
        await store.analyze(loaded)
    finally:
        await loaded.dispose()
    with store.private_umask():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        for kept, here in replace:
            staged = here.with_name(here.name + ".restoring")
            shutil.copyfile(kept, staged)
            os.replace(staged, here)
        for f in sorted((src / WITNESS_DIR).glob("*.json")):
            (settings.data_dir / ".mst_witness").mkdir(exist_ok=True)
            shutil.copyfile(f, settings.data_dir / ".mst_witness" / f.name)
    # The keys as they are now (a restored file; or MST_SIGNING_KEY, which wins over it).
    settings = load_settings()
    db = database.connect(settings.database_url)
    try:
        with _quiet("alembic"):
            current, head = await database.revisions(db)
        migrated = current != head
        if migrated:  # a backup from before an upgrade: brought up to this code's schema
            with _quiet("alembic"):
                await database.migrate(db)
        checked = await check_record(
            settings,
            db,
            expect_head=head_doc.get("head"),
            posted_elsewhere=head_doc.get("published"),
        )
    finally:
        await db.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "restored": str(src),
                    "backend": backend,
                    "revision": manifest["database"]["revision"],
                    "migrated": migrated,
                    "keys_written": [str(here) for _, here in replace],
                    "check": checked.as_dict(),
                },
                ensure_ascii=False,
            )
        )
        return 0 if checked.intact else 1
    print(f"已从 {src} 恢复数据库（{backend}）" + ("，并升级了表结构" if migrated else "") + "。")
    for _, here in replace:
        print(f"密钥已写入 {here}")
    _print_check(checked)
    return 0 if checked.intact else 1


def _print_check(checked: Checked) -> None:
    # The verdict last, as `mst audit verify` prints it (scripts read it there).
    for problem in checked.problems:
        print(f"  ✘ {problem}")
    if checked.intact:
        print(
            f"审计记录完好：{checked.events} 条事件，签名树头 {checked.heads} 个，"
            f"最新树头 {checked.size} 条（根 {(checked.root or '—')[:16]}），与备份和已公布的树头一致。"
        )
    else:
        print(f"审计记录有问题：{len(checked.problems)} 处（见上）。")


# -- migrate-data ----------------------------------------------------------------------------


async def migrate_data(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app.config import ConfigError, _database_url
    from storage import backup as store
    from storage import db as database
    from storage import transparency

    try:
        target_url = _database_url(args.target)
    except ConfigError as exc:
        print(f"mst: --to: {exc}", file=sys.stderr)
        return 2
    if _backend(target_url) != "postgresql":
        print("mst: --to must be a PostgreSQL URL (postgresql://user@host/db)", file=sys.stderr)
        return 2
    if target_url == settings.database_url:
        print("mst: --to names the database DATABASE_URL already uses", file=sys.stderr)
        return 2
    if args.batch < 1:
        print("mst: --batch must be at least 1", file=sys.stderr)
        return 2
    source = database.connect(settings.database_url)
    target = database.connect(target_url)
    try:
        with _quiet("alembic"):
            current, head = await database.revisions(source)
        if current != head:
            print(
                f"mst: this database's schema is at {current}, this code's at {head}: "
                "run `mst migrate` first",
                file=sys.stderr,
            )
            return 1
        try:
            full = await store.holds_data(target)
        except Exception as exc:  # unreachable, no such database, refused: one line
            said = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1]
            print(f"mst: cannot use {_shown(target_url)}: {''.join(said)}", file=sys.stderr)
            return 1
        if full:
            print(
                f"mst: {_shown(target_url)} already holds data ({', '.join(full[:5])}): "
                "copy only into an empty database. Nothing copied.",
                file=sys.stderr,
            )
            return 1
        with _quiet("alembic"):
            await database.migrate(target)
        _say(args, f"复制到 {_shown(target_url)} …")
        copied = await store.copy_tables(source, target, batch=args.batch)
        await store.analyze(target, list(copied))  # statistics for what was loaded
        there = await store.row_counts(target, list(copied))
        here = await store.row_counts(source, list(copied))
        mismatched = {t: (here[t], there[t]) for t in copied if here[t] != there[t]}
        async with source.sessions() as session:
            source_head = await transparency.latest_head(session)
        checked = await check_record(
            settings,
            target,
            expect_head=None
            if source_head is None
            else {
                "size": source_head.size,
                "root": source_head.root,
                "signature": source_head.signature,
            },
        )
        for table, (a, b) in mismatched.items():
            checked.problems.append(f"{table}: {a} rows here, {b} there")
        checked.intact = not checked.problems
    finally:
        await source.dispose()
        await target.dispose()
    if args.json:
        print(
            json.dumps(
                {"to": _shown(target_url), "rows": copied, "check": checked.as_dict()},
                ensure_ascii=False,
            )
        )
        return 0 if checked.intact else 1
    total = sum(copied.values())
    print(
        f"已复制 {len(copied)} 张表、{total} 行到 {_shown(target_url)}，行数逐表一致"
        if not mismatched
        else f"已复制 {total} 行，但有表的行数不一致"
    )
    _print_check(checked)
    if checked.intact:
        print(
            "下一步：把 DATABASE_URL 设为新库，重启 mst serve 和 mst worker；"
            "原来的 SQLite 文件留作备份。"
        )
    return 0 if checked.intact else 1


def _shown(url: str) -> str:
    """A URL without its password, to print."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
