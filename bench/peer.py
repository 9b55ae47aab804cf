"""The peer: what a Python developer would write in an afternoon for the same job, for
bench.callback to measure the project against (`--peer`).

A WeRoBot app (WSGI, on Bottle) served by gunicorn with sync workers:

    PYTHONPATH=. gunicorn -w K -b 127.0.0.1:PORT bench.peer:app

on synchronous SQLAlchemy ORM (psycopg2), on the project's own PostgreSQL schema
(`mst migrate`; the rows bench.seed writes: court, judge, cases, parties, bindings).
Configured from the project's variables: DATABASE_URL (its driver is replaced by
psycopg2), WECHAT_TOKEN, WECHAT_APP_ID, WECHAT_AES_KEY (safe mode: WeRoBot checks the
signature and decrypts/encrypts itself), PUBLIC_BASE_URL (receipt links).

A text from a user with a Binding is a question about the case of their latest binding:
the conversation state is that row, looked up on every message (no Redis, no menu, no
steps). In one transaction:

- the inbound `message` row (msg_key `wx:<MsgId>`: WeChat's retry of a message already
  stored hits the unique key and is answered with an empty body, which WeChat takes as
  done);
- the litigant's open question `ticket` on that case, or a new one (held by the case's
  judge, first reply due in 2 calendar days);
- the message linked to the ticket;
- one `audit_event` on the case's chain (`case:<id>`): the chain's last row locked with
  SELECT ... FOR UPDATE, seq + 1, SHA-256 over the event's canonical JSON and the previous
  hash (the same canonical form as storage.audit.canonical);
- one `outbox` row: a customer-service notice to the judge;

then commit, and the reply in the project's words (handlers.texts.ASK_RECEIVED for a new
ticket, ASK_ADDED for a joined one). A text from anyone else is stored, audited on the
`global` chain, and answered with the welcome text (handlers.texts.WELCOME).

Two appends to the same chain can both lock the same last row and pick the same seq: the
second then fails on the (chain, seq) unique key, and the transaction is run again, up to
five times. So can two first events of an empty chain (nothing to lock yet).

Not done, where the project does: rate limits, the menu and its flows, working-day
deadlines, an event for each message in and out, storing the outbound reply, answering in
time when the database is slow (WeRoBot answers an error with an empty body).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bottle import Bottle
from sqlalchemy import ForeignKey, String, Text, create_engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from werobot import WeRoBot
from werobot.contrib.bottle import make_view

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
log = logging.getLogger("peer")

CHINA = ZoneInfo("Asia/Shanghai")
GENESIS = "0" * 64
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8080")
REPLY_DAYS = 2

# The project's words (handlers.texts), so the same reply check passes.
WELCOME = (
    "您好，这里是法院“码上通”。\n"
    "请用微信扫一扫案件材料上的二维码，\n"
    "或直接发送二维码下方的10位案件码。"
)
ASK_RECEIVED = (
    "已收到您的咨询，编号 #{ticket}。\n"
    "{who}会在 {due} 前答复您。\n"
    "回执：{receipt}\n（点开可以核对法院的记录）\n"
    "如需补充，直接发送即可；发送 0 返回菜单。"
)
ASK_ADDED = "已补充到咨询 #{ticket}，会一并转给{who}。\n发送 0 返回菜单。"
WEEKDAYS = "一二三四五六日"


# -- the tables (the project's; only the columns this app uses) -------------------------


class Base(DeclarativeBase):
    pass


class Court(Base):
    __tablename__ = "court"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str | None] = mapped_column(String(64))


class Case(Base):
    __tablename__ = "case"
    id: Mapped[int] = mapped_column(primary_key=True)
    court_id: Mapped[int] = mapped_column(ForeignKey("court.id"))
    case_number: Mapped[str] = mapped_column(String(64))
    judge_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))


class Binding(Base):
    __tablename__ = "binding"
    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    party_id: Mapped[int] = mapped_column()
    verified_at: Mapped[datetime] = mapped_column()


class Ticket(Base):
    __tablename__ = "ticket"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("case.id"))
    court_id: Mapped[int] = mapped_column(ForeignKey("court.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")
    openid: Mapped[str] = mapped_column(String(64))
    party_id: Mapped[int | None] = mapped_column()
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    team: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    due_at: Mapped[datetime | None] = mapped_column()
    holder_due_at: Mapped[datetime | None] = mapped_column()
    level: Mapped[int] = mapped_column(default=0)
    holder_since: Mapped[datetime] = mapped_column()


class Message(Base):
    __tablename__ = "message"
    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str] = mapped_column(String(16), default="wechat")
    openid: Mapped[str] = mapped_column(String(64))
    msg_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    msg_type: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text, default="")
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[datetime] = mapped_column()


class AuditEvent(Base):
    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128), default="")
    case_id: Mapped[int | None] = mapped_column()
    at: Mapped[datetime] = mapped_column()
    payload: Mapped[str] = mapped_column(Text)


class Outbox(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), default="wechat")
    recipient: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    case_id: Mapped[int | None] = mapped_column(ForeignKey("case.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[datetime] = mapped_column()


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test_c")
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme.startswith("postgresql") else url


# Each gunicorn worker imports this module after the fork: one engine (and its default
# pool, 5 connections) per worker.
engine = create_engine(database_url())
Db = sessionmaker(engine, expire_on_commit=False)


# -- the audit chain ----------------------------------------------------------------


def audit(
    db: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    case_id: int | None,
    payload: dict[str, Any],
) -> AuditEvent:
    """Append one event to its chain (`case:<id>`, or `global`), hash-chained to the last."""
    chain = "global" if case_id is None else f"case:{case_id}"
    last = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.chain == chain)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
        .with_for_update()
    ).first()
    event = AuditEvent(
        chain=chain,
        seq=last.seq + 1 if last else 1,
        prev_hash=last.hash if last else GENESIS,
        actor=actor[:64],
        action=action,
        subject=subject,
        case_id=case_id,
        at=datetime.now(UTC),
        payload=json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    )
    body = {
        "chain": event.chain,
        "seq": event.seq,
        "prev": event.prev_hash,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        "case_id": event.case_id,
        "at": event.at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "payload": event.payload,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    event.hash = hashlib.sha256(canonical.encode()).hexdigest()
    db.add(event)
    return event


# -- what a message does ------------------------------------------------------------


def say_time(moment: datetime) -> str:
    t = moment.astimezone(CHINA)
    part, hour = ("上午", t.hour) if t.hour < 12 else ("下午", t.hour - 12 if t.hour > 12 else 12)
    return f"{t.month}月{t.day}日 周{WEEKDAYS[t.weekday()]} {part}{hour}:{t.minute:02d}"


def handle_text(openid: str, msg_id: str, content: str) -> str:
    """One text message, in one transaction; returns the reply text."""
    stamp = datetime.now(UTC)
    with Db.begin() as db:
        binding = db.scalars(
            select(Binding).where(Binding.openid == openid).order_by(Binding.verified_at.desc())
        ).first()
        message = Message(
            direction="in",
            channel="wechat",
            openid=openid,
            msg_key=f"wx:{msg_id}",
            msg_type="text",
            content=content,
            case_id=binding.case_id if binding else None,
            created_at=stamp,
        )
        db.add(message)
        if binding is None:
            db.flush()
            audit(
                db,
                actor=openid,
                action="message.in",
                subject=f"message:{message.id}",
                case_id=None,
                payload={"sha256": hashlib.sha256(content.encode()).hexdigest()},
            )
            return WELCOME

        case = db.get(Case, binding.case_id)
        assert case is not None
        judge = db.get(Staff, case.judge_id) if case.judge_id else None
        ticket = db.scalars(
            select(Ticket)
            .where(
                Ticket.openid == openid,
                Ticket.case_id == case.id,
                Ticket.kind == "question",
                Ticket.status == "open",
            )
            .order_by(Ticket.id.desc())
        ).first()
        is_new = ticket is None
        if ticket is None:
            due = stamp + timedelta(days=REPLY_DAYS)
            ticket = Ticket(
                case_id=case.id,
                court_id=case.court_id,
                kind="question",
                status="open",
                openid=openid,
                party_id=binding.party_id,
                assignee_id=judge.id if judge else None,
                created_at=stamp,
                due_at=due,
                holder_due_at=due,
                holder_since=stamp,
            )
            db.add(ticket)
        db.flush()  # ids for the message and the ticket
        message.ticket_id = ticket.id
        event = audit(
            db,
            actor=openid,
            action="ticket.opened" if is_new else "ticket.message_added",
            subject=f"ticket:{ticket.id}",
            case_id=case.id,
            payload={"message_id": message.id, "kind": "question"},
        )
        if judge is not None and judge.openid:
            db.add(
                Outbox(
                    channel="wechat",
                    recipient=judge.openid,
                    kind="cs_text",
                    payload=json.dumps(
                        {
                            "text": f"{'新咨询' if is_new else '咨询补充'} #{ticket.id}"
                            f"（{case.case_number}）：{content}",
                            "case_number": case.case_number,
                        },
                        ensure_ascii=False,
                    ),
                    status="pending",
                    attempts=0,
                    next_attempt_at=stamp,
                    case_id=case.id,
                    ticket_id=ticket.id,
                    created_at=stamp,
                )
            )
        who = f"法官{judge.name}" if judge else "法院工作人员"
        if not is_new:
            return ASK_ADDED.format(ticket=ticket.id, who=who)
        return ASK_RECEIVED.format(
            ticket=ticket.id,
            who=who,
            due=say_time(stamp + timedelta(days=REPLY_DAYS)),
            receipt=f"{PUBLIC_BASE_URL}/v/{event.hash[:16]}",
        )


def stored(msg_id: str) -> bool:
    with Db() as db:
        return db.scalar(select(Message.id).where(Message.msg_key == f"wx:{msg_id}")) is not None


# -- the WeChat side ----------------------------------------------------------------

robot = WeRoBot(
    token=os.environ.get("WECHAT_TOKEN", ""),
    app_id=os.environ.get("WECHAT_APP_ID"),
    encoding_aes_key=os.environ.get("WECHAT_AES_KEY") or None,
    # WeRoBot's default session store is a SQLite file in the cwd; the state is the binding.
    session_storage=False,
)
robot.config["SESSION_STORAGE"] = False


@robot.text
def on_text(message: Any) -> str | None:
    for attempt in range(5):
        try:
            return handle_text(message.source, str(message.message_id), message.content or "")
        except IntegrityError:
            if stored(str(message.message_id)):
                return None  # WeChat's retry of a message already stored: an empty answer
            log.info("audit chain taken, trying again (%d)", attempt + 1)
            time.sleep(0.005 * (attempt + 1))
    raise RuntimeError("audit chain busy")


app = Bottle()
app.route("/wechat", ["GET", "POST"], make_view(robot))


@app.get("/healthz")
def healthz() -> dict[str, Any]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok", "database_kind": "postgresql", "redis_mode": "none"}
