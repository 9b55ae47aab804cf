"""The audit log: append-only, hash-chained, one chain per case plus `global` (and its
shards `global.0` … `global.15` for people on no case: see chain_for).

Each event's hash is SHA-256 over the canonical JSON of its fields and the previous
event's hash, so editing, removing or reordering a row breaks the chain. Appends to one
chain are serialized (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so
writers on different cases never wait for each other. Anchors (events in `global` that
record other chains' heads) catch a removed tail.

What was said is covered by digest: each message's event (`message.in`/`message.out`, a
staff answer's `ticket.answered`) holds the SHA-256 of its text, and `verify` compares the
`message` rows with them, so an edited or deleted message is named. A message erased by
law (`erase_message`) is blanked with an event of its own (`message.erased`: who, why, the
original digest) and reported as erased, not as tampered.

`case_record` gives a case's whole record to read: its chain walked and checked as verify
walks it, each message event with the text it vouches for and that text's check.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncResult, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col

from storage.clock import now
from storage.models import AuditEvent, MediaFile, Message, Outbox, PendingFlow

GENESIS = "0" * 64
GLOBAL_CHAIN = "global"
ANCHOR = "audit.anchor"
# Anchors look back this far past the previous anchor, so an event whose id was
# assigned earlier but committed later is still covered by the next anchor.
ANCHOR_OVERLAP = timedelta(minutes=10)

# Events that vouch for one stored message by its digest (`sha256` in the payload): the
# dialog's (subject `message:<id>`) and a staff answer's (payload `message_id`).
MESSAGE_EVENTS = frozenset({"message.in", "message.out"})
ANSWERED = "ticket.answered"
ERASED = "message.erased"  # a message blanked by law (erase_message)
_IDS_PER_QUERY = 1000  # verify of one chain: its messages fetched this many at a time


_UNCOVERED = "-"  # an event written before attachments were covered: not compared


def media_digest(media_id: str | None) -> str | None:
    """What a message event records of its attachment: the SHA-256 of the stored media id
    (the bytes stay with WeChat, fetched when a judge opens them), or None for none."""
    return None if media_id is None else content_digest(media_id)


def content_digest(text: str) -> str:
    """SHA-256 of a message's text, as its audit event records it."""
    return hashlib.sha256(text.encode()).hexdigest()


GLOBAL_SHARDS = 16


def chain_for(case_id: int | None, who: str | None = None) -> str:
    """The chain an event goes on: its case's. With no case, a person's own (`who`: an
    unbound user's messages) go on one of GLOBAL_SHARDS chains picked by who they are, so
    that strangers writing at once do not all queue for one chain's lock; the rest (anchors,
    the installation's own events) on `global`. Anchors cover the shards as any chain."""
    if case_id is not None:
        return f"case:{case_id}"
    if who:
        return f"{GLOBAL_CHAIN}.{zlib.crc32(who.encode()) % GLOBAL_SHARDS}"
    return GLOBAL_CHAIN


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


_STR = json.encoder.encode_basestring  # canonical()'s quoting of a str (ensure_ascii=False)


def compute_hash(ev: Any) -> str:
    """SHA-256 of the event's canonical JSON (canonical(), keys sorted), written out
    directly when every field has its usual type: verify hashes every event, and this is a
    third of json.dumps' time. A test holds the two byte for byte equal."""
    case_id, seq = ev.case_id, ev.seq
    at = ev.at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    fields = (ev.action, ev.actor, ev.chain, ev.payload, ev.prev_hash, ev.subject)
    if (
        type(seq) is int
        and (case_id is None or type(case_id) is int)
        and all(type(f) is str for f in fields)
    ):
        action, actor, chain, payload, prev, subject = map(_STR, fields)
        text = (
            f'{{"action":{action},"actor":{actor},"at":"{at}","case_id":'
            f'{"null" if case_id is None else case_id},"chain":{chain},"payload":{payload},'
            f'"prev":{prev},"seq":{seq},"subject":{subject}}}'
        )
    else:  # a value of another type (a tampered row): hashed as canonical() would
        text = canonical(
            {
                "chain": ev.chain,
                "seq": seq,
                "prev": ev.prev_hash,
                "actor": ev.actor,
                "action": ev.action,
                "subject": ev.subject,
                "case_id": case_id,
                "at": at,
                "payload": ev.payload,
            }
        )
    return hashlib.sha256(text.encode()).hexdigest()


# Built once: these run for every message, and building a statement costs more than
# running it. Executed on the session's Core connection (no ORM layer needed).
_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:c, 0))")
_HEAD = (
    select(col(AuditEvent.seq), col(AuditEvent.hash))
    .where(col(AuditEvent.chain) == bindparam("chain"))
    .order_by(col(AuditEvent.seq).desc())
    .limit(1)
)
_INSERT = insert(AuditEvent).returning(col(AuditEvent.id))
_INSERT_ROWS = insert(AuditEvent)  # many rows at once: append_many, batch()
_LOCK_MANY = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(c, 0)) "
    "FROM (SELECT c FROM unnest(CAST(:chains AS text[])) AS c ORDER BY c) AS sorted"
)


@event.listens_for(Session, "after_transaction_end")
def _forget_heads(session: Session, transaction: SessionTransaction) -> None:
    # Cached heads are only good while this transaction holds the chain locks, and a
    # savepoint rolled back may have taken events with it: ask the database again.
    # (A flush's own sub-transaction is neither: it leaves the cache alone.)
    if transaction.parent is None or transaction.nested:
        session.info.pop("audit_heads", None)
    if transaction.parent is None:
        session.info.pop("audit_acting", None)  # acting for a party is one transaction's


async def _lock_chain(session: AsyncSession, chain: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        await (await session.connection()).execute(_LOCK, {"c": "audit:" + chain})
    # SQLite: the transaction already holds the database's write lock (BEGIN IMMEDIATE).


@dataclass(frozen=True)
class Acting:
    """Staff acting for a party (the service desk: bot.rules.desk). While set on a
    transaction, every event it appends says so: what the party would have done is the
    staff member's (`actor`), and every event names the party and the consent."""

    actor: str  # staff:<username>
    staff_id: int
    on_behalf_of: str  # the party's user (bot.core.addresses.desk_user)
    consent: str  # desk_session:<id>: the consent the assistant confirmed


def act_for(session: AsyncSession, acting: Acting) -> None:
    """Appends in this transaction are made for `acting` (until it ends: a session is one
    transaction in the dialog)."""
    session.info["audit_acting"] = acting


def acting(session: AsyncSession) -> Acting | None:
    """Who acts for whom in this transaction, if staff act for a party."""
    found = session.info.get("audit_acting")
    return found if isinstance(found, Acting) else None


@dataclass
class Appended:
    """An event as written (the fields of AuditEvent), without the ORM's bookkeeping."""

    id: int | None  # None inside batch(): the row is written when the batch ends
    chain: str
    seq: int
    prev_hash: str
    hash: str
    actor: str
    action: str
    subject: str
    case_id: int | None
    at: datetime
    payload: str


async def append(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str = "",
    case_id: int | None = None,
    payload: dict[str, Any] | None = None,
    who: str | None = None,
) -> Appended:
    """Append one event to its chain inside the caller's transaction; returns it (with hash).
    `who`: the person an event of no case is about (its chain: chain_for).

    Call it last in a transaction where you can: the chain stays locked until commit.
    Written with a plain INSERT: this runs for every message, and the ORM's unit of work
    would cost more than the statement itself."""
    chain = chain_for(case_id, who)
    acted = acting(session)
    if acted is not None:
        if actor == acted.on_behalf_of:
            actor = acted.actor
        payload = {**(payload or {}), "on_behalf_of": acted.on_behalf_of, "consent": acted.consent}
    conn = await session.connection()
    # Heads this transaction already wrote: the chain is locked by us, no need to ask again.
    heads: dict[str, tuple[int, str]] = session.info.setdefault("audit_heads", {})
    head = heads.get(chain)
    if head is None:
        await _lock_chain(session, chain)
        head = (await conn.execute(_HEAD, {"chain": chain})).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    values: dict[str, Any] = {
        "chain": chain,
        "seq": seq,
        "prev_hash": prev,
        "actor": actor[:64],
        "action": action,
        "subject": subject[:128],
        "case_id": case_id,
        # Stored with microseconds on both databases; the hash covers exactly this value.
        "at": now(),
        "payload": canonical(payload or {}),
    }
    values["hash"] = compute_hash(SimpleNamespace(**values))
    heads[chain] = (seq, values["hash"])  # the next append in this transaction starts here
    batched = _open_batch(session)
    if batched is not None:
        batched.append(values)
        return Appended(id=None, **values)
    new_id = (await conn.execute(_INSERT, values)).scalar_one()
    return Appended(id=new_id, **values)


@asynccontextmanager
async def batch(session: AsyncSession) -> AsyncIterator[None]:
    """Appends inside the block are written together, in one statement, when it ends
    (so they have no id before). The dialog wraps each message in one: a message, what the
    flow did and the answer are usually three events. If the block fails, nothing is
    written, and the caller's transaction is rolled back anyway."""
    if _open_batch(session) is not None:  # already in one: it writes ours
        yield
        return
    rows: list[dict[str, Any]] = []
    session.info["audit_batch"] = rows
    try:
        yield
    finally:
        session.info.pop("audit_batch", None)
    if rows:
        await (await session.connection()).execute(_INSERT_ROWS, rows)


def _open_batch(session: AsyncSession) -> list[dict[str, Any]] | None:
    """The rows waiting for the end of batch(), or None outside one."""
    return session.info.get("audit_batch")


async def append_many(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """Append many events at once (bulk import): chains locked in a fixed order, their heads
    read in one query, rows inserted in one statement. Each dict holds append()'s arguments."""
    conn = await session.connection()
    heads: dict[str, tuple[int, str]] = session.info.setdefault("audit_heads", {})
    chains = sorted({chain_for(e.get("case_id")) for e in events} - heads.keys())
    if chains and session.get_bind().dialect.name == "postgresql":
        # One statement; in sorted order, so two bulk writers never wait on each other in a circle.
        await conn.execute(_LOCK_MANY, {"chains": ["audit:" + c for c in chains]})
    if chains:
        latest = (
            select(col(AuditEvent.chain), func.max(col(AuditEvent.seq)).label("seq"))
            .where(col(AuditEvent.chain).in_(chains))
            .group_by(col(AuditEvent.chain))
            .subquery()
        )
        found = await conn.execute(
            select(col(AuditEvent.chain), col(AuditEvent.seq), col(AuditEvent.hash)).join(
                latest,
                (col(AuditEvent.chain) == latest.c.chain) & (col(AuditEvent.seq) == latest.c.seq),
            )
        )
        heads.update({chain: (seq, h) for chain, seq, h in found.all()})
    rows = []
    for e in events:
        chain = chain_for(e.get("case_id"))
        seq, prev = heads.get(chain, (0, GENESIS))
        values: dict[str, Any] = {
            "chain": chain,
            "seq": seq + 1,
            "prev_hash": prev,
            "actor": e["actor"][:64],
            "action": e["action"],
            "subject": e.get("subject", "")[:128],
            "case_id": e.get("case_id"),
            "at": now(),
            "payload": canonical(e.get("payload") or {}),
        }
        values["hash"] = compute_hash(SimpleNamespace(**values))
        heads[chain] = (seq + 1, values["hash"])
        rows.append(values)
    batched = _open_batch(session)
    if batched is not None:
        batched.extend(rows)
    elif rows:
        await conn.execute(_INSERT_ROWS, rows)


def anchored_heads(ev: Event) -> dict[str, tuple[int, str]] | None:
    """The chain heads an anchor recorded, or None when its payload is unreadable."""
    try:
        heads = json.loads(ev.payload).get("heads", {})
        return {str(chain): (int(seq), str(h)) for chain, (seq, h) in heads.items()}
    except (ValueError, TypeError, AttributeError):
        return None


async def anchor(session: AsyncSession) -> Appended | None:
    """Record in `global` the head of every chain that moved since the last anchor."""
    # Hold the global chain from the start, so two anchors at once record one, not two.
    await _lock_chain(session, GLOBAL_CHAIN)
    last = (
        await session.execute(
            select(AuditEvent)
            .where(col(AuditEvent.chain) == GLOBAL_CHAIN, col(AuditEvent.action) == ANCHOR)
            .order_by(col(AuditEvent.seq).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    since: datetime | None = last.at - ANCHOR_OVERLAP if last else None
    moved = select(col(AuditEvent.chain), func.max(col(AuditEvent.seq)).label("seq")).where(
        col(AuditEvent.chain) != GLOBAL_CHAIN
    )
    if since is not None:
        moved = moved.where(col(AuditEvent.at) >= since)
    moved_q = moved.group_by(col(AuditEvent.chain)).subquery()
    rows = (
        await session.execute(
            select(col(AuditEvent.chain), col(AuditEvent.seq), col(AuditEvent.hash)).join(
                moved_q,
                (col(AuditEvent.chain) == moved_q.c.chain) & (col(AuditEvent.seq) == moved_q.c.seq),
            )
        )
    ).all()
    heads = {chain: (seq, h) for chain, seq, h in rows}
    # A tampered last anchor (verify reports it) must not stop anchoring for good.
    previous = (anchored_heads(last) or {}) if last else {}
    if all(previous.get(chain) == head for chain, head in heads.items()):
        return None  # nothing new since the last anchor
    return await append(session, actor="system", action=ANCHOR, payload={"heads": heads})


@dataclass(frozen=True)
class MessageFinding:
    """A stored message that is not as its event recorded it (edited, deleted), or that
    was erased by law. `case_id`, `at` and the event are the recording event's."""

    message_id: int
    state: str  # edited | deleted | erased
    case_id: int | None
    event_id: int | None  # the event that vouches for it (None: only its erasure names it)
    event: str  # that event, for people: "case:3 #7, message.in"
    at: datetime | None  # when it was recorded
    erased_at: datetime | None = None
    erased_by: str | None = None
    reason: str | None = None


@dataclass
class Verdict:
    events: int = 0
    chains: int = 0
    anchors: int = 0
    problems: list[str] = field(default_factory=list)
    messages: int = 0  # messages compared with the digest their event recorded
    not_covered: int = 0  # messages whose event holds no digest (older staff answers)
    unrecorded: int = 0  # message rows no event names (whole-log verify only)
    edited: list[MessageFinding] = field(default_factory=list)
    deleted: list[MessageFinding] = field(default_factory=list)
    erased: list[MessageFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Vouch:
    """What one event says of one message (kept for every message while verify walks)."""

    event_id: int
    chain: str
    seq: int
    action: str
    case_id: int | None
    at: datetime
    digest: str | None
    # The attachment's: its media id's digest, None for none, _UNCOVERED where the event
    # predates attachments being covered (no `media_sha256` in its payload).
    media: str | None = None

    @property
    def where(self) -> str:
        return f"event id={self.event_id} ({self.chain} #{self.seq}, {self.action})"


@dataclass(frozen=True, slots=True)
class _Erasure:
    event_id: int
    chain: str
    seq: int
    case_id: int | None
    at: datetime
    by: str
    reason: str
    erased_digest: str | None  # of the text that was blanked


def _message_id(ev: Any, payload: dict[str, Any]) -> int | None:
    """The message an event is about: its subject `message:<id>`, or (a staff answer) the
    `message_id` of its payload."""
    if ev.action == ANSWERED:
        found = payload.get("message_id")
        return found if isinstance(found, int) and not isinstance(found, bool) else None
    kind, _, ref = ev.subject.partition(":")
    return int(ref) if kind == "message" and ref.isdigit() else None


def _message_note(ev: Event) -> tuple[int, _Vouch | _Erasure] | None:
    """What a message event (in, out, a staff answer, an erasure) says of its message:
    (message id, what it vouches for, or the erasure); None when it names none."""
    try:
        payload = json.loads(ev.payload)
    except ValueError:
        return None  # an edited payload: the hash check reports it
    if not isinstance(payload, dict):
        return None
    message_id = _message_id(ev, payload)
    if message_id is None or ev.id is None:
        return None
    if ev.action == ERASED:
        erased = payload.get("erased_sha256")
        return message_id, _Erasure(
            ev.id,
            ev.chain,
            ev.seq,
            ev.case_id,
            ev.at,
            str(payload.get("by") or ev.actor),
            str(payload.get("reason") or ""),
            erased if isinstance(erased, str) else None,
        )
    digest = payload.get("sha256")
    media = payload.get("media_sha256", _UNCOVERED)
    return message_id, _Vouch(
        ev.id,
        ev.chain,
        ev.seq,
        ev.action,
        ev.case_id,
        ev.at,
        digest if isinstance(digest, str) else None,
        media if isinstance(media, str) or media is None else _UNCOVERED,
    )


def _note_message_event(
    ev: Event, vouched: dict[int, _Vouch], erasures: dict[int, _Erasure]
) -> None:
    note = _message_note(ev)
    if note is None:
        return
    message_id, said = note
    if isinstance(said, _Erasure):
        erasures.setdefault(message_id, said)
    else:
        vouched.setdefault(message_id, said)


class _Seen:
    """The message ids verify has met a vouching event for: one bit each, in pages of
    65,536 ids, made as ids come (a log's are dense: 1,000,000 messages take 128 kB)."""

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def add(self, message_id: int) -> bool:
        """Note the id; False when it was noted before."""
        page = self._pages.get(message_id >> 16)
        if page is None:
            page = self._pages[message_id >> 16] = bytearray(8192)
        byte, bit = (message_id & 0xFFFF) >> 3, 1 << (message_id & 7)
        if page[byte] & bit:
            return False
        page[byte] |= bit
        return True

    def __contains__(self, message_id: int) -> bool:
        page = self._pages.get(message_id >> 16)
        return page is not None and bool(page[(message_id & 0xFFFF) >> 3] & 1 << (message_id & 7))


# An event's columns, read as a plain row (attribute access by name, as an AuditEvent):
# verify reads every event, and building ORM objects cost it more than hashing them.
EVENT_COLUMNS = (
    col(AuditEvent.id),
    col(AuditEvent.chain),
    col(AuditEvent.seq),
    col(AuditEvent.prev_hash),
    col(AuditEvent.hash),
    col(AuditEvent.actor),
    col(AuditEvent.action),
    col(AuditEvent.subject),
    col(AuditEvent.case_id),
    col(AuditEvent.at),
    col(AuditEvent.payload),
    col(AuditEvent.leaf_index),
)
Event = Any  # an AuditEvent, or a row of EVENT_COLUMNS: the same names
READ_BATCH = 5000  # rows a fetch, when streaming the whole log


async def _each(result: AsyncResult[*tuple[Any, ...]]) -> AsyncIterator[Any]:
    """The rows of a streamed result, fetched a batch at a time (one trip to the driver's
    thread a batch, not a row)."""
    async for batch in result.partitions():
        for row in batch:
            yield row


async def _anchor_claims(
    session: AsyncSession,
) -> AsyncIterator[tuple[Event, str, int, str]]:
    """What every anchor recorded: (anchor, chain, seq, hash), anchor by anchor, streamed."""
    rows = await session.stream(
        select(*EVENT_COLUMNS)
        .where(col(AuditEvent.chain) == GLOBAL_CHAIN, col(AuditEvent.action) == ANCHOR)
        .order_by(col(AuditEvent.seq)),
        execution_options={"yield_per": 500},
    )
    async for ev in _each(rows):
        for c, (aseq, ahash) in (anchored_heads(ev) or {}).items():
            yield ev, c, aseq, ahash


_CLAIMS_PER_QUERY = 500  # anchor claims looked up at a time (two binds each)


async def _compare_claims(session: AsyncSession, verdict: Verdict) -> None:
    """_compare_anchors for the whole log, after the walk and without keeping what it
    walked: the events the anchors claimed are looked up, a batch of claims at a time (by
    the (chain, seq) unique index), in the anchors' order."""
    claims: list[tuple[Event, str, int, str]] = []

    async def compare() -> None:
        keys = {(c, aseq) for _, c, aseq, _ in claims}
        hashes_at = {
            (c, seq): h
            for c, seq, h in (
                await session.execute(
                    select(col(AuditEvent.chain), col(AuditEvent.seq), col(AuditEvent.hash)).where(
                        tuple_(col(AuditEvent.chain), col(AuditEvent.seq)).in_(sorted(keys))
                    )
                )
            ).all()
        }
        # A claimed event not there: the chain's end as walked, for the problem's words.
        ends: dict[str, tuple[int, str]] = {}
        for c in sorted({c for c, aseq in keys if (c, aseq) not in hashes_at}):
            last = await session.scalar(
                select(func.max(col(AuditEvent.seq))).where(col(AuditEvent.chain) == c)
            )
            ends[c] = (int(last or 0), "")
        _compare_anchors(verdict, claims, hashes_at, ends)
        claims.clear()

    async for claim in _anchor_claims(session):
        claims.append(claim)
        if len(claims) >= _CLAIMS_PER_QUERY:
            await compare()
    if claims:
        await compare()


_CHECK_BATCH = 20_000  # messages verify checks at a time as it walks


async def verify(
    session: AsyncSession,
    *,
    limit_problems: int = 20,
    chain: str | None = None,
    walked: Callable[[Event, bool], None] | None = None,
) -> Verdict:
    """Walk every chain in order and check sequence, links, hashes and anchors; then every
    message an event vouches for against its row: there, and its text's SHA-256 the one
    recorded (erased ones: blank, as their erasure left them).
    `chain`: that chain only (a receipt's check), whose anchors are then not compared.
    `walked`: told of each event as it is walked, and whether it matches its hash (the
    transparency log's check uses the same read, rather than reading the log twice).

    Memory does not grow with the log: the messages are checked _CHECK_BATCH at a time as
    the walk meets them (their erasures, few, read first), what was checked kept as one bit
    a message; the anchors' claims are looked up after the walk, a batch at a time; and
    only the chain being walked has its head kept (chains come one after another)."""
    verdict = Verdict()
    heads: dict[str, tuple[int, str]] = {}  # the chain walked -> (last seq, last hash)
    erasures = await _erasures(session, chain)  # message id -> its erasure
    checker = _Checker(limit_problems)
    seen = _Seen()  # messages met with the event that vouches for them
    pending: dict[int, _Vouch] = {}  # of those, not yet checked
    used: set[int] = set()  # erasures checked with their message's event
    watched = MESSAGE_EVENTS | {ANSWERED, ERASED}
    query = select(*EVENT_COLUMNS).order_by(col(AuditEvent.chain), col(AuditEvent.seq))
    if chain is not None:
        query = query.where(col(AuditEvent.chain) == chain)
    result = await session.stream(query, execution_options={"yield_per": READ_BATCH})
    async for ev in _each(result):
        if heads and ev.chain not in heads:
            heads.clear()  # the chain before is done
        _, intact = _walk(ev, heads, verdict)
        if walked is not None:
            walked(ev, intact)
        if ev.action == ANCHOR and ev.chain == GLOBAL_CHAIN:
            verdict.anchors += 1
            # tampered: report it (if not above already), do not crash
            if anchored_heads(ev) is None and intact:
                verdict.problems.append(f"{_where(ev)}: unreadable anchor payload (edited)")
        elif ev.action in watched and (note := _message_note(ev)) is not None:
            message_id, said = note
            if isinstance(said, _Erasure):
                erasures.setdefault(message_id, said)  # one made since they were read
            elif seen.add(message_id):  # the first event to vouch for it is the one
                pending[message_id] = said
                if len(pending) >= _CHECK_BATCH:
                    await _check_batch(session, checker, pending, erasures, used)
                    pending = {}
        if len(verdict.problems) >= limit_problems:
            return verdict
    await _check_batch(session, checker, pending, erasures, used)
    if chain is None:
        await _compare_claims(session, verdict)
    # Erasures of messages no event vouches for.
    alone: dict[int, tuple[_Vouch | None, _Erasure | None]] = {
        i: (None, e) for i, e in erasures.items() if i not in used
    }
    await _check_each(session, checker, alone)
    if chain is None:
        # Every message is stored with its event: one without is an insertion.
        ids = await session.stream(
            select(col(Message.id)).order_by(col(Message.id)),
            execution_options={"yield_per": 10_000},
        )
        async for (message_id,) in _each(ids):
            if message_id not in seen and message_id not in erasures:
                checker.row(message_id or 0, "", None, None, None)
    checker.into(verdict)
    return verdict


async def _erasures(session: AsyncSession, chain: str | None) -> dict[int, _Erasure]:
    """Every erasure in the log (or the chain), in walk order, the first for each message:
    read before verify walks, so a message met before its erasure is checked as erased.
    Erasures are made one at a time, by law: few beside the log."""
    query = select(*EVENT_COLUMNS).where(col(AuditEvent.action) == ERASED)
    if chain is not None:
        query = query.where(col(AuditEvent.chain) == chain)
    found: dict[int, _Erasure] = {}
    for ev in await session.execute(query.order_by(col(AuditEvent.chain), col(AuditEvent.seq))):
        note = _message_note(ev)
        if note is not None and isinstance(note[1], _Erasure):
            found.setdefault(note[0], note[1])
    return found


async def _check_batch(
    session: AsyncSession,
    checker: _Checker,
    vouched: dict[int, _Vouch],
    erasures: dict[int, _Erasure],
    used: set[int],
) -> None:
    """Check the messages `vouched`, with their erasures if any (noted in `used`)."""
    used.update(i for i in vouched if i in erasures)
    await _check_each(session, checker, {i: (v, erasures.get(i)) for i, v in vouched.items()})


async def _check_each(
    session: AsyncSession,
    checker: _Checker,
    batch: dict[int, tuple[_Vouch | None, _Erasure | None]],
) -> None:
    """Each message of the batch against what its events say of it: (vouch, erasure)."""
    if not batch:
        return
    async for message_id, content, media_id in _rows_of(session, sorted(batch)):
        v, e = batch.pop(message_id)
        checker.row(message_id, content, media_id, v, e)
    for message_id in sorted(batch):  # recorded, but no longer there
        checker.gone(message_id, *batch[message_id])


async def _rows_of(
    session: AsyncSession, ids: list[int]
) -> AsyncIterator[tuple[int, str, str | None]]:
    """_message_rows of `ids` (sorted): those close together (a log's messages, met in
    order) read as one range, streamed; others by id."""
    if len(ids) <= _IDS_PER_QUERY or ids[-1] - ids[0] >= 4 * len(ids):
        async for row in _message_rows(session, ids):
            yield row
        return
    wanted = set(ids)
    result = await session.stream(
        select(col(Message.id), col(Message.content), col(Message.media_id))
        .where(col(Message.id) >= ids[0], col(Message.id) <= ids[-1])
        .order_by(col(Message.id)),
        execution_options={"yield_per": 2000},
    )
    async for message_id, content, media_id in _each(result):
        if message_id in wanted:
            yield message_id, content or "", media_id


async def verify_events(
    session: AsyncSession,
    events: list[Event],
    heads: dict[str, tuple[int, str]],
    *,
    limit_problems: int = 20,
) -> Verdict:
    """verify's checks over some events only (an incremental verify: the events after the
    last check): each walked in its chain's order from `heads` (each chain's last event
    before them: seq and hash; absent: the chain starts here), its hash recomputed, and the
    messages they record checked against their rows, as verify checks them. Anchors are
    counted; the heads they recorded are compared only by a whole verify."""
    verdict = Verdict()
    walked = dict(heads)
    vouched: dict[int, _Vouch] = {}
    erasures: dict[int, _Erasure] = {}
    chains: set[str] = set()
    for ev in sorted(events, key=lambda e: (e.chain, e.seq)):
        chains.add(ev.chain)
        walked.setdefault(ev.chain, (0, GENESIS))  # counted below, not as a new chain
        _walk(ev, walked, verdict)
        if ev.action == ANCHOR and ev.chain == GLOBAL_CHAIN:
            verdict.anchors += 1
        elif ev.action in MESSAGE_EVENTS or ev.action in (ANSWERED, ERASED):
            _note_message_event(ev, vouched, erasures)
        if len(verdict.problems) >= limit_problems:
            break
    verdict.chains = len(chains)
    await _check_messages(session, verdict, vouched, erasures, limit=limit_problems)
    return verdict


def _where(ev: Event) -> str:
    return f"event id={ev.id} ({ev.chain} #{ev.seq}, {ev.action})"


def _walk(ev: Event, heads: dict[str, tuple[int, str]], verdict: Verdict) -> tuple[bool, bool]:
    """One more event of a chain walked in order: counted, checked against the event before
    it (`heads`: each chain's last seq and hash so far, moved on to this one) and against its
    own hash, what is wrong reported in `verdict`. Returns (links, intact): it follows the
    event before it, and its content is what its hash says."""
    verdict.events += 1
    seq, prev = heads.get(ev.chain, (0, GENESIS))
    if ev.chain not in heads:
        verdict.chains += 1
    links = ev.seq == seq + 1 and ev.prev_hash == prev
    if ev.seq != seq + 1:
        verdict.problems.append(
            f"{_where(ev)}: sequence jumps from #{seq} — event(s) #{seq + 1}..#{ev.seq - 1} removed"
        )
    elif ev.prev_hash != prev:
        verdict.problems.append(
            f"{_where(ev)}: does not link to the event before it (reordered or removed)"
        )
    intact = compute_hash(ev) == ev.hash
    if not intact:
        verdict.problems.append(f"{_where(ev)}: content does not match its hash (edited)")
    heads[ev.chain] = (ev.seq, ev.hash)
    return links, intact


def _compare_anchors(
    verdict: Verdict,
    anchored: list[tuple[Event, str, int, str]],
    hashes_at: dict[tuple[str, int], str],
    heads: dict[str, tuple[int, str]],
) -> None:
    """Each chain head an anchor recorded (anchor, chain, seq, hash) against the chain as
    walked: still there, and the same."""
    for ev, chain, aseq, ahash in anchored:
        found = hashes_at.get((chain, aseq))
        if found is None:
            last = heads.get(chain, (0, GENESIS))[0]
            verdict.problems.append(
                f"{chain}: anchor id={ev.id} saw #{aseq}, but the chain now ends at #{last} "
                f"(events #{last + 1}..#{aseq} removed)"
            )
        elif found != ahash:
            verdict.problems.append(
                f"{chain} #{aseq}: differs from what anchor id={ev.id} recorded"
            )


async def _message_rows(
    session: AsyncSession, ids: list[int]
) -> AsyncIterator[tuple[int, str, str | None]]:
    """(id, content, media_id) of the messages `ids`, by id: a query per _IDS_PER_QUERY."""
    query = select(col(Message.id), col(Message.content), col(Message.media_id)).order_by(
        col(Message.id)
    )
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        rows = await session.execute(query.where(col(Message.id).in_(chunk)))
        for message_id, content, media_id in rows.all():
            yield message_id or 0, content or "", media_id  # a primary key: never None


async def _check_messages(
    session: AsyncSession,
    verdict: Verdict,
    vouched: dict[int, _Vouch],
    erasures: dict[int, _Erasure],
    *,
    limit: int,
    rows: AsyncIterator[tuple[int, str, str | None]] | None = None,
) -> None:
    """Each message row against the event that recorded it (and its erasure, if any);
    what is left over was recorded but is gone. Linear: one pass over the rows.
    `rows`: the (id, content, media_id) to check, by id, when the caller has read them
    (a case's record shows the very text it checked); else they are read here."""
    checker = _Checker(limit)
    if rows is None:
        rows = _message_rows(session, sorted(vouched.keys() | erasures.keys()))
    async for message_id, content, media_id in rows:
        v, e = vouched.pop(message_id, None), erasures.pop(message_id, None)
        checker.row(message_id, content, media_id, v, e)
    for message_id in sorted(vouched.keys() | erasures.keys()):
        checker.gone(message_id, vouched.get(message_id), erasures.get(message_id))
    checker.into(verdict)


class _Checker:
    """The message checks (verify's, verify_events', case_record's), kept apart from the
    walk's findings and put in the verdict at the end, in one order however they were
    made: by message id, those whose row is gone after the rest, as many problems as the
    limit leaves room for."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found = Verdict()  # the counts and findings
        self._lines: list[tuple[int, str]] = []  # (message id, problem): rows there
        self._gone: list[tuple[int, str]] = []  # rows gone

    def _finding(self, message_id: int, state: str, v: _Vouch | None, e: _Erasure | None) -> None:
        ref = v or e
        assert ref is not None
        what = (
            f"{v.chain} #{v.seq}, {v.action}"
            if v is not None
            else f"{ref.chain} #{ref.seq}, {ERASED}"
        )
        found = MessageFinding(
            message_id=message_id,
            state=state,
            case_id=ref.case_id,
            event_id=ref.event_id,
            event=what,
            at=v.at if v is not None else None,
            erased_at=e.at if e else None,
            erased_by=e.by if e else None,
            reason=e.reason if e else None,
        )
        getattr(self.found, state).append(found)

    def _problem(self, into: list[tuple[int, str]], message_id: int, line: str) -> None:
        into.append((message_id, line))
        if len(into) > 2 * self.limit + 100:  # only the first `limit` can be shown
            into.sort(key=lambda x: x[0])
            del into[self.limit :]

    def row(
        self,
        message_id: int,
        content: str,
        media_id: str | None,
        v: _Vouch | None,
        e: _Erasure | None,
    ) -> None:
        """A message row against its event (and erasure)."""
        problem = self._lines
        if v is None and e is None:
            # Every message is stored with its event: one without is an insertion.
            self.found.unrecorded += 1
            self._problem(
                problem,
                message_id,
                f"message id={message_id}: no event records it (inserted outside the record)",
            )
            return
        if e is not None:
            self.found.messages += 1
            if content or media_id:
                self._finding(message_id, "edited", v, e)
                self._problem(
                    problem,
                    message_id,
                    f"message id={message_id}: erased by event id={e.event_id}, "
                    "but holds content again (edited)",
                )
            elif (
                v is not None
                and v.digest is not None
                and e.erased_digest is not None
                and e.erased_digest != v.digest
            ):
                self._finding(message_id, "edited", v, e)
                self._problem(
                    problem,
                    message_id,
                    f"message id={message_id}: the text erased by event id={e.event_id} does "
                    f"not match the digest in {v.where} (edited before it was erased)",
                )
            else:
                self._finding(message_id, "erased", v, e)
            return
        assert v is not None
        if v.digest is None:
            self.found.not_covered += 1
            return
        self.found.messages += 1
        if content_digest(content) != v.digest:
            self._finding(message_id, "edited", v, None)
            self._problem(
                problem,
                message_id,
                f"message id={message_id}: its text does not match the digest in {v.where} (edited)",
            )
        elif v.media != _UNCOVERED and media_digest(media_id) != v.media:
            self._finding(message_id, "edited", v, None)
            self._problem(
                problem,
                message_id,
                f"message id={message_id}: its attachment is not the one recorded in {v.where} "
                "(replaced, added or removed)",
            )

    def gone(self, message_id: int, v: _Vouch | None, e: _Erasure | None) -> None:
        """Recorded (erased or not), but the row is no longer there."""
        self._finding(message_id, "deleted", v, e)
        ref = v.where if v is not None else f"its erasure, event id={e.event_id if e else '?'}"
        self._problem(
            self._gone,
            message_id,
            f"message id={message_id}: recorded by {ref}, but the row is gone (deleted)",
        )

    def into(self, verdict: Verdict) -> None:
        found = self.found
        verdict.messages += found.messages
        verdict.not_covered += found.not_covered
        verdict.unrecorded += found.unrecorded
        for state in ("edited", "deleted", "erased"):
            getattr(verdict, state).extend(
                sorted(getattr(found, state), key=lambda f: f.message_id)
            )
        lines = sorted(self._lines, key=lambda x: x[0]) + sorted(self._gone, key=lambda x: x[0])
        room = max(0, self.limit - len(verdict.problems))
        verdict.problems.extend(line for _, line in lines[:room])


@dataclass(frozen=True)
class Erased:
    """A message erased by law, as erase_message recorded it."""

    message_id: int
    case_id: int | None
    at: datetime
    by: str
    reason: str
    sha256: str  # the text's digest as first recorded (or as erased, if none was)
    receipt: str  # the hash of the erasure's event
    copies: int = 0  # notices (and a waiting flow) whose quotes of the text were blanked


class NoSuchMessage(LookupError):
    """No message has that id."""


class AlreadyErased(Exception):
    """The message was erased before: once is the record, twice is refused."""

    def __init__(self, message_id: int, at: datetime, by: str) -> None:
        super().__init__(f"message {message_id} was erased at {at.isoformat()} by {by}")
        self.message_id, self.at, self.by = message_id, at, by


async def erase_message(
    session: AsyncSession, message_id: int, *, by: str, reason: str, actor: str = "admin"
) -> Erased:
    """Blank a message's text (and its media id) where the law requires it, and record
    that in the audit log: `message.erased` (who, why, the message, the digest its event
    recorded and the one of the text erased), in the chain of the event that recorded it.
    verify then reports it erased, not edited. Raises NoSuchMessage, or AlreadyErased."""
    row = (
        await session.execute(
            select(
                col(Message.id),
                col(Message.content),
                col(Message.media_id),
                col(Message.case_id),
                col(Message.ticket_id),
            )
            .where(col(Message.id) == message_id)
            .with_for_update()  # PostgreSQL: a second erasure waits here, then finds this one
        )
    ).first()
    if row is None:
        raise NoSuchMessage(message_id)
    _, content, media_id, case_id, ticket_id = row
    names = or_(
        col(AuditEvent.subject) == f"message:{message_id}",
        and_(
            col(AuditEvent.action) == ANSWERED,
            col(AuditEvent.subject) == f"ticket:{ticket_id}",
        ),
    )
    vouched: dict[int, _Vouch] = {}
    erasures: dict[int, _Erasure] = {}
    # Its own case's chain first (the row's case is the event's); the whole log if not there.
    for where in (col(AuditEvent.chain) == chain_for(case_id), None):
        query = select(AuditEvent).where(names).order_by(col(AuditEvent.id))
        for ev in (await session.execute(query if where is None else query.where(where))).scalars():
            if ev.action in MESSAGE_EVENTS or ev.action in (ANSWERED, ERASED):
                _note_message_event(ev, vouched, erasures)
        if message_id in vouched or message_id in erasures:
            break
    if message_id in erasures:
        done = erasures[message_id]
        raise AlreadyErased(message_id, done.at, done.by)
    recorded = vouched.get(message_id)
    erased_digest = content_digest(content or "")
    original = recorded.digest if recorded and recorded.digest else erased_digest
    conn = await session.connection()
    await conn.execute(
        update(Message).where(col(Message.id) == message_id).values(content="", media_id=None)
    )
    # The audio or photo kept here goes too (its digest stays in the record).
    await conn.execute(delete(MediaFile).where(col(MediaFile.message_id) == message_id))
    copies = await _erase_copies(session, message_id, content or "")
    event = await append(
        session,
        actor=actor,
        action=ERASED,
        subject=f"message:{message_id}",
        case_id=recorded.case_id if recorded else case_id,
        payload={
            "message_id": message_id,
            "by": by,
            "reason": reason,
            "sha256": original,
            "erased_sha256": erased_digest,
            "media": media_id is not None,
            "copies": copies,
            "recorded_in": [recorded.chain, recorded.seq] if recorded else None,
        },
    )
    return Erased(
        message_id=message_id,
        case_id=event.case_id,
        at=event.at,
        by=by,
        reason=reason,
        sha256=original,
        receipt=event.hash,
        copies=copies,
    )


ERASED_WORDS = "（此内容已依法删除）"
_QUOTED_AT_LEAST = 12  # notices quote a text cut to no fewer characters (texts.gist)


def _blank_quotes(value: Any, text: str) -> Any:
    """`value` (decoded JSON) with every quote of `text` in its strings replaced: the whole
    text, or the text cut short with an ellipsis, as notices quote it."""
    if isinstance(value, str):
        out = value.replace(text, ERASED_WORDS)
        for k in range(len(text) - 1, min(_QUOTED_AT_LEAST, len(text)) - 2, -1):
            if k > 0 and text[:k] + "…" in out:
                out = out.replace(text[:k] + "…", ERASED_WORDS)
        return out
    if isinstance(value, list):
        return [_blank_quotes(v, text) for v in value]
    if isinstance(value, dict):
        return {k: _blank_quotes(v, text) for k, v in value.items()}
    return value


async def _erase_copies(session: AsyncSession, message_id: int, text: str) -> int:
    """Blank the quotes of an erased text in what was sent or is to be sent about it (the
    outbox's notices to staff and litigants, from the message's time on) and in a flow still
    waiting to run on it. Returns how many rows changed."""
    conn = await session.connection()
    changed = 0
    pending = (
        await conn.execute(
            select(col(PendingFlow.inbound)).where(col(PendingFlow.message_id) == message_id)
        )
    ).first()
    if pending is not None:
        inbound = json.loads(pending[0])
        inbound.update(text="", media_id=None)
        await conn.execute(
            update(PendingFlow)
            .where(col(PendingFlow.message_id) == message_id)
            .values(inbound=json.dumps(inbound, ensure_ascii=False))
        )
        changed += 1
    if not text.strip():
        return changed
    since = (
        await conn.execute(select(col(Message.created_at)).where(col(Message.id) == message_id))
    ).scalar_one()
    needle = json.dumps(text[:_QUOTED_AT_LEAST], ensure_ascii=False)[1:-1]
    rows = await conn.execute(
        select(col(Outbox.id), col(Outbox.payload)).where(
            col(Outbox.created_at) >= since - timedelta(seconds=1),
            col(Outbox.payload).contains(needle, autoescape=True),
        )
    )
    for outbox_id, payload in rows.all():
        try:
            blanked = _blank_quotes(json.loads(payload), text)
        except ValueError:
            continue
        fresh = json.dumps(blanked, ensure_ascii=False)
        if fresh != payload:
            await conn.execute(
                update(Outbox).where(col(Outbox.id) == outbox_id).values(payload=fresh)
            )
            changed += 1
    return changed


async def export_case(session: AsyncSession, case_id: int) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(AuditEvent)
            .where(col(AuditEvent.chain) == chain_for(case_id))
            .order_by(col(AuditEvent.seq))
        )
    ).scalars()
    return [
        {
            "seq": ev.seq,
            "at": ev.at.isoformat(),
            "actor": ev.actor,
            "action": ev.action,
            "subject": ev.subject,
            "payload": json.loads(ev.payload),
            "prev_hash": ev.prev_hash,
            "hash": ev.hash,
        }
        for ev in rows
    ]


@dataclass(frozen=True)
class RecordedMessage:
    """A message as a case's record shows it: the row as stored now, and how it compares
    with the digest its event recorded (verify's own check)."""

    message_id: int
    # ok | edited | deleted | erased (by law) | not_covered (its event holds no digest)
    # | unrecorded (a row of the case that no event records)
    check: str
    text: str | None  # as stored now; None: the row is gone ("" once erased)
    direction: str | None  # in | out; None: the row is gone
    msg_type: str | None
    openid: str | None  # whom it came from (in) or went to (out)
    ticket_id: int | None
    staff_id: int | None  # a staff answer: who answered
    media: bool  # holds a photo or voice message
    recorded_sha256: str | None  # the digest its event recorded
    finding: MessageFinding | None = None  # edited, deleted or erased: when, by whom, why


@dataclass(frozen=True)
class RecordEntry:
    """One event of a case's chain, with its own check and the message it records."""

    id: int
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    payload: Any  # as recorded (parsed JSON), or the stored text when it is not JSON
    prev_hash: str
    hash: str
    links: bool  # follows the event before it (sequence and hash)
    intact: bool  # its content is what its hash says
    message: RecordedMessage | None  # message events, staff answers and erasures


@dataclass
class CaseRecord:
    """A case's whole record in the order it was written: every event of its chain,
    checked (`verdict`: the chain, the anchors that name it, its messages, as verify
    reports them), with the messages joined in."""

    case_id: int
    chain: str
    entries: list[RecordEntry]
    verdict: Verdict
    unrecorded: list[RecordedMessage]  # the case's message rows that no event records

    @property
    def intact(self) -> bool:
        return self.verdict.ok

    @property
    def head(self) -> str | None:
        """The hash of the chain's last event (what an anchor records)."""
        return self.entries[-1].hash if self.entries else None


_MESSAGE_COLUMNS = (
    col(Message.id),
    col(Message.content),
    col(Message.media_id),
    col(Message.direction),
    col(Message.msg_type),
    col(Message.openid),
    col(Message.ticket_id),
    col(Message.staff_id),
)


async def case_record(
    session: AsyncSession, case_id: int, *, limit_problems: int = 1000
) -> CaseRecord:
    """The case's chain walked as verify walks it (each event's link and hash, the anchors
    that recorded its head), and every message it records, or that the case holds, checked
    by verify's message check: the text shown is the text checked."""
    chain = chain_for(case_id)
    verdict = Verdict()
    heads: dict[str, tuple[int, str]] = {}
    hashes_at: dict[tuple[str, int], str] = {}
    vouched: dict[int, _Vouch] = {}
    erasures: dict[int, _Erasure] = {}
    walked: list[tuple[AuditEvent, bool, bool]] = []
    events = await session.execute(
        select(AuditEvent).where(col(AuditEvent.chain) == chain).order_by(col(AuditEvent.seq))
    )
    for ev in events.scalars():
        links, intact = _walk(ev, heads, verdict)
        hashes_at[(ev.chain, ev.seq)] = ev.hash
        if ev.action in MESSAGE_EVENTS or ev.action in (ANSWERED, ERASED):
            _note_message_event(ev, vouched, erasures)
        walked.append((ev, links, intact))
    # The anchors that recorded this chain's head: a tail removed since is caught by them.
    anchored: list[tuple[AuditEvent, str, int, str]] = []
    anchors = await session.execute(
        select(AuditEvent)
        .where(
            col(AuditEvent.chain) == GLOBAL_CHAIN,
            col(AuditEvent.action) == ANCHOR,
            col(AuditEvent.payload).contains(f'"{chain}":', autoescape=True),
        )
        .order_by(col(AuditEvent.seq))
    )
    for ev in anchors.scalars():
        verdict.anchors += 1
        if compute_hash(ev) != ev.hash:
            verdict.problems.append(f"{_where(ev)}: content does not match its hash (edited)")
            continue
        seen = (anchored_heads(ev) or {}).get(chain)
        if seen is not None:
            anchored.append((ev, chain, *seen))
    _compare_anchors(verdict, anchored, hashes_at, heads)

    # The case's messages, and any other its events record, read once: checked and shown.
    rows: dict[int, Any] = {
        row.id or 0: row  # a primary key: never None
        for row in (
            await session.execute(select(*_MESSAGE_COLUMNS).where(col(Message.case_id) == case_id))
        ).all()
    }
    recorded_ids = vouched.keys() | erasures.keys()
    elsewhere = sorted(recorded_ids - rows.keys())
    for start in range(0, len(elsewhere), _IDS_PER_QUERY):
        chunk = elsewhere[start : start + _IDS_PER_QUERY]
        found = await session.execute(select(*_MESSAGE_COLUMNS).where(col(Message.id).in_(chunk)))
        rows.update({row.id or 0: row for row in found.all()})
    said = {message_id: v.digest for message_id, v in vouched.items()}
    was_vouched, was_erased = set(vouched), set(erasures)

    async def checked_rows() -> AsyncIterator[tuple[int, str, str | None]]:
        for message_id in sorted(rows):
            yield message_id, rows[message_id].content or "", rows[message_id].media_id

    await _check_messages(
        session,
        verdict,
        vouched,
        erasures,
        limit=limit_problems,
        rows=checked_rows(),
    )
    findings = {f.message_id: f for f in verdict.edited + verdict.deleted + verdict.erased}

    def message(message_id: int) -> RecordedMessage:
        row = rows.get(message_id)
        finding = findings.get(message_id)
        if finding is not None:
            check = finding.state
        elif message_id not in was_vouched and message_id not in was_erased:
            check = "unrecorded"
        elif said.get(message_id) is None:
            check = "not_covered"
        else:
            check = "ok"
        return RecordedMessage(
            message_id=message_id,
            check=check,
            text=(row.content or "") if row is not None else None,
            direction=row.direction if row is not None else None,
            msg_type=row.msg_type if row is not None else None,
            openid=row.openid if row is not None else None,
            ticket_id=row.ticket_id if row is not None else None,
            staff_id=row.staff_id if row is not None else None,
            media=row is not None and row.media_id is not None,
            recorded_sha256=said.get(message_id),
            finding=finding,
        )

    entries = []
    for ev, links, intact in walked:
        try:
            payload: Any = json.loads(ev.payload)
        except ValueError:
            payload = ev.payload
        about = None
        if isinstance(payload, dict) and (
            ev.action in MESSAGE_EVENTS or ev.action in (ANSWERED, ERASED)
        ):
            message_id = _message_id(ev, payload)
            about = message(message_id) if message_id is not None else None
        entries.append(
            RecordEntry(
                id=ev.id or 0,
                seq=ev.seq,
                at=ev.at,
                actor=ev.actor,
                action=ev.action,
                subject=ev.subject,
                payload=payload,
                prev_hash=ev.prev_hash,
                hash=ev.hash,
                links=links,
                intact=intact,
                message=about,
            )
        )
    unrecorded = [message(i) for i in sorted(rows) if i not in recorded_ids]
    return CaseRecord(case_id, chain, entries, verdict, unrecorded)


async def find_receipt(session: AsyncSession, prefix: str) -> list[AuditEvent]:
    """Events whose hash starts with `prefix` (receipts are shown shortened to people)."""
    prefix = prefix.strip().lower()
    if len(prefix) < 8 or any(c not in "0123456789abcdef" for c in prefix):
        return []
    # A range on the hash index (ix_audit_event_hash), never a scan of the log: PostgreSQL
    # does not use a btree in a non-C collation for LIKE 'prefix%'. Hashes are lowercase hex,
    # which every collation orders as C does; the prefix test stays as a check on the range.
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # "…f" → "…g": after every "…f…"
    hashed = col(AuditEvent.hash)
    rows = await session.execute(
        select(AuditEvent)
        .where(hashed >= prefix, hashed < upper, hashed.startswith(prefix, autoescape=True))
        .limit(5)
    )
    return list(rows.scalars())
