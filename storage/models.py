"""The tables. Timestamps are aware UTC (see bot.core.clock)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlmodel import Field, SQLModel

from storage.clock import now


class Court(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    # The service desk people are sent to (诉讼服务中心): what the chat tells them (mst court set).
    phone: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=200)
    hours: str | None = Field(default=None, max_length=100)


class Staff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=64)
    court_id: int = Field(foreign_key="court.id", index=True)
    roles: str = Field(max_length=200)  # comma-separated, see bot.rules.importer.ROLES
    team: str | None = Field(default=None, max_length=64)
    openid: str | None = Field(default=None, max_length=64, unique=True)
    # SHA-256 of the one-time bind code; cleared once used.
    bind_code_hash: str | None = Field(default=None, max_length=64, unique=True)
    away_until: datetime | None = None
    speciality: str | None = Field(default=None, max_length=100)  # mediators: what they handle
    # An assistant's or clerk's judges: comma-separated usernames of the same court. They see
    # and handle what is routed to those people (bot.rules.access).
    supports: str | None = Field(default=None, max_length=500)
    active: bool = True
    created_at: datetime = Field(default_factory=now)
    # The web console's sign-in (bot.rules.staff_auth): an argon2 hash, never the password;
    # a one-time set-up link kept as its SHA-256 until used or past its end; the TOTP secret
    # when the second factor is on. Sessions made before password_set_at are void.
    password_hash: str | None = Field(default=None, max_length=200)
    password_set_at: datetime | None = None
    setup_token_hash: str | None = Field(default=None, max_length=64, index=True)
    setup_expires_at: datetime | None = None
    totp_secret: str | None = Field(default=None, max_length=64)
    # Wrong tries before this moment no longer count towards the account's lockout.
    signed_in_at: datetime | None = None
    # Their userid in the court's WeCom (企业微信), lower-cased as WeCom compares them: set by
    # the staff import or a bind code sent from WeCom. Linked, they are told things there,
    # and WeCom's sign-in opens the console (bot.channels.wecom).
    wecom_userid: str | None = Field(default=None, max_length=64, unique=True, index=True)

    def has_role(self, role: str) -> bool:
        return role in self.roles.split(",")

    def supported(self) -> list[str]:
        return [u for u in (self.supports or "").split(",") if u]


class Case(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    court_id: int = Field(foreign_key="court.id", index=True)
    case_number: str = Field(max_length=64, unique=True)
    case_type: str = Field(max_length=32)
    cause: str = Field(default="", max_length=200)
    judge_id: int | None = Field(default=None, foreign_key="staff.id", index=True)
    filed_on: date | None = None
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class Party(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    role: str = Field(max_length=32)
    name: str = Field(max_length=64)
    # Only what the bot needs: the last four digits to verify, a masked form to show,
    # and a keyed hash to notice a changed number on re-import. Never the full number.
    phone_tail: str = Field(max_length=4)
    phone_masked: str = Field(max_length=16)
    phone_hash: str = Field(max_length=64)


class CaseCode(SQLModel, table=True):
    __tablename__ = "case_code"
    __table_args__ = (
        # At most one live code per case; revoked ones stay for the record.
        Index(
            "ix_case_code_one_active",
            "case_id",
            unique=True,
            sqlite_where=Column("revoked_at").is_(None),
            postgresql_where=Column("revoked_at").is_(None),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    token: str = Field(max_length=64, unique=True)
    short_code: str = Field(max_length=16, unique=True)
    issued_at: datetime = Field(default_factory=now)
    revoked_at: datetime | None = None
    revoke_reason: str | None = Field(default=None, max_length=200)


class Binding(SQLModel, table=True):
    """A WeChat user verified as a party of a case."""

    __table_args__ = (UniqueConstraint("openid", "case_id"),)
    id: int | None = Field(default=None, primary_key=True)
    openid: str = Field(max_length=64, index=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    party_id: int = Field(foreign_key="party.id")
    method: str = Field(max_length=32)  # phone_tail | phone_number | assisted
    verified_at: datetime = Field(default_factory=now)


class DeskSession(SQLModel, table=True):
    """Staff at the service desk acting for a party who is there in person (陪诉访导), with
    their consent (bot.rules.desk). Open until ended or idle; one per staff member and one
    per party at a time. Kept for the record."""

    __tablename__ = "desk_session"
    __table_args__ = (
        Index(
            "ux_desk_session_staff_open",
            "staff_id",
            unique=True,
            sqlite_where=Column("ended_at").is_(None),
            postgresql_where=Column("ended_at").is_(None),
        ),
        Index(
            "ux_desk_session_party_open",
            "party_id",
            unique=True,
            sqlite_where=Column("ended_at").is_(None),
            postgresql_where=Column("ended_at").is_(None),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    court_id: int = Field(foreign_key="court.id", index=True)
    staff_id: int = Field(foreign_key="staff.id")
    case_id: int = Field(foreign_key="case.id", index=True)
    party_id: int = Field(foreign_key="party.id", index=True)
    user: str = Field(max_length=64)  # who the flows see: bot.core.addresses.desk_user
    via: str = Field(max_length=16)  # console | wechat: where the staff member acts from
    # What the assistant confirmed: the statement read aloud (its words, as read), that the
    # person's ID was seen, and the digits they stated matched.
    consent: str = Field(sa_column=Column(Text, nullable=False))
    id_checked: bool = False
    started_at: datetime = Field(default_factory=now)
    last_active_at: datetime = Field(default_factory=now)
    ended_at: datetime | None = None
    end_reason: str | None = Field(default=None, max_length=16)  # ended | idle | replaced


class Ticket(SQLModel, table=True):
    """An item a user raised; shown to people as #<id>."""

    __table_args__ = (
        Index("ix_ticket_assignee_status", "assignee_id", "status"),
        Index("ix_ticket_status_due", "status", "holder_due_at"),
        # The dashboard: a court's items received in a period.
        Index("ix_ticket_court_created", "court_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    # The case's court, kept on the ticket so that every access rule is scoped by it first.
    court_id: int = Field(foreign_key="court.id", index=True)
    kind: str = Field(max_length=32)  # question | complaint | mediation | asset_lead
    status: str = Field(default="open", max_length=16)  # open | answered | closed
    openid: str = Field(max_length=64, index=True)
    party_id: int | None = Field(default=None, foreign_key="party.id")
    assignee_id: int | None = Field(default=None, foreign_key="staff.id")
    team: str | None = Field(default=None, max_length=64)
    # The team inbox holding the item, by role (reception, supervision, admin): its members
    # see it, claimed or not. None: routed to a person (see bot.rules.access).
    inbox: str | None = Field(default=None, max_length=16)
    # Complaints: what it is about, and the staff member it is about (never shown it).
    about: str | None = Field(default=None, max_length=32)
    subject_staff_id: int | None = Field(default=None, foreign_key="staff.id")
    created_at: datetime = Field(default_factory=now)
    due_at: datetime | None = None  # first reply promised to the litigant when it came in
    close_due_at: datetime | None = None
    holder_due_at: datetime | None = None  # first reply due from the current holder
    # Escalation: 0 with the first holder, +1 each time a deadline passes unanswered.
    level: int = 0
    holder_since: datetime = Field(default_factory=now)
    warned_at: datetime | None = None  # early warning sent to the current holder
    first_reply_at: datetime | None = None
    closed_at: datetime | None = None
    # Submitted by staff at the service desk for the party (bot.rules.desk): who helped.
    assisted_by_id: int | None = Field(default=None, foreign_key="staff.id")


class Message(SQLModel, table=True):
    """Every message in or out, stored before anyone is told it was received."""

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(max_length=3)  # in | out
    channel: str = Field(default="wechat", max_length=16)
    openid: str = Field(max_length=64, index=True)
    # WeChat's MsgId, or FromUserName+CreateTime+Event for events: the retry de-duplication key.
    msg_key: str | None = Field(default=None, max_length=128, unique=True)
    msg_type: str = Field(max_length=32)
    content: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    media_id: str | None = Field(default=None, max_length=128)
    case_id: int | None = Field(default=None, foreign_key="case.id", index=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    staff_id: int | None = Field(default=None, foreign_key="staff.id")
    created_at: datetime = Field(default_factory=now)


class Conversation(SQLModel, table=True):
    """A person's place in a flow, saved with the message that moved it (storage.conversations);
    Redis keeps the same as a cache."""

    user: str = Field(primary_key=True, max_length=64)
    state: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    updated_at: datetime = Field(default_factory=now)


class FailedAttempt(SQLModel, table=True):
    """A wrong try at a secret (a case's phone digits, a staff bind code). Limits count these
    rows, so a Redis restart hands out no fresh guesses (bot.rules.attempts)."""

    __tablename__ = "failed_attempt"
    __table_args__ = (
        Index("ix_failed_attempt_case", "kind", "case_id", "at"),
        Index("ix_failed_attempt_openid", "kind", "openid", "at"),
        Index("ix_failed_attempt_at", "kind", "at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # verify | bind
    openid: str = Field(max_length=64)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    at: datetime = Field(default_factory=now)


class PendingFlow(SQLModel, table=True):
    """A message stored on its own because its flow was too slow for WeChat's 5 s: the flow
    still has to run and its answer go out. The row goes in the transaction that does so;
    one left behind (the process stopped first) is run by the jobs (bot.dialog.dispatch.resume_stranded)."""

    __tablename__ = "pending_flow"
    message_id: int = Field(
        primary_key=True, foreign_key="message.id", sa_column_kwargs={"autoincrement": False}
    )
    inbound: str = Field(sa_column=Column(Text, nullable=False))  # the event, as JSON
    created_at: datetime = Field(default_factory=now, index=True)


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained; one chain per case plus `global`. See storage.audit."""

    __tablename__ = "audit_event"
    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_audit_chain_seq"),
        # The event's place in the transparency log (storage.transparency), given once.
        Index("ux_audit_event_leaf_index", "leaf_index", unique=True),
        # What the sequencer looks for: events not yet in the log, by id.
        Index(
            "ix_audit_event_unsequenced",
            "id",
            sqlite_where=Column("leaf_index").is_(None),
            postgresql_where=Column("leaf_index").is_(None),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=32)
    seq: int
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, index=True)
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    subject: str = Field(default="", max_length=128)
    case_id: int | None = Field(default=None, index=True)
    at: datetime
    payload: str = Field(sa_column=Column(Text, nullable=False))
    leaf_index: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class Outbox(SQLModel, table=True):
    """Outbound messages, written in the transaction that caused them; the worker delivers."""

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(default="wechat", max_length=16)
    recipient: str = Field(max_length=64)
    kind: str = Field(max_length=32)  # cs_text | template | ...
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now)
    claim_token: str | None = Field(default=None, max_length=32)
    claimed_until: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    created_at: datetime = Field(default_factory=now)
    sent_at: datetime | None = None


class MediationSlot(SQLModel, table=True):
    """A mediator's bookable time. `booked` only moves by a guarded UPDATE (see bot.rules.mediation)."""

    __tablename__ = "mediation_slot"
    __table_args__ = (
        UniqueConstraint("mediator_id", "start_at"),
        CheckConstraint("booked >= 0 AND booked <= capacity", name="ck_slot_capacity"),
    )
    id: int | None = Field(default=None, primary_key=True)
    mediator_id: int = Field(foreign_key="staff.id", index=True)
    start_at: datetime = Field(index=True)
    end_at: datetime
    capacity: int = 1
    booked: int = 0
    room_url: str = Field(max_length=300)
    created_at: datetime = Field(default_factory=now)


class Booking(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slot_id: int = Field(foreign_key="mediation_slot.id", index=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    party_id: int = Field(foreign_key="party.id")
    openid: str = Field(max_length=64, index=True)
    status: str = Field(default="booked", max_length=16)  # booked | cancelled | no_show | attended
    created_at: datetime = Field(default_factory=now)
    cancelled_at: datetime | None = None
    reminded_day_at: datetime | None = None
    reminded_hour_at: datetime | None = None


class EnforcementEvent(SQLModel, table=True):
    """One public step of an enforcement case, as the court's enforcement system reports it."""

    __tablename__ = "enforcement_event"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    external_id: str = Field(max_length=64, unique=True)
    kind: str = Field(max_length=32)
    happened_at: datetime
    amount_cents: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    note: str = Field(default="", max_length=500)
    public: bool = True
    created_at: datetime = Field(default_factory=now)


class Rating(SQLModel, table=True):
    """满意 (1) / 基本满意 (2) / 不满意 (3): of a ticket's handling, or of the service in general."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", unique=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    openid: str = Field(max_length=64, index=True)
    score: int
    comment: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class Person(SQLModel, table=True):
    """Someone, whichever channels they come through: a WeChat openid, a WeCom userid, a
    mini-program openid are identities of one person (ChannelIdentity; bot.rules.people)."""

    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=now)


class ChannelIdentity(SQLModel, table=True):
    """How a channel names a person: (channel, the channel's user id). WeChat gives one
    `unionid` to a person across the Official Account and mini-program of one 开放平台
    account: identities sharing it belong to the same person."""

    __tablename__ = "channel_identity"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_channel_identity_external"),
    )
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    channel: str = Field(max_length=16)  # as Inbound.channel: wechat | wecom | miniprogram | h5
    external_id: str = Field(max_length=128)
    unionid: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=now)


def core_table(model: type[SQLModel]) -> Table:
    """The model's Core table (its `__table__`, which SQLModel does not declare to type
    checkers), for statements built without the ORM."""
    found = inspect(model).local_table
    assert isinstance(found, Table)
    return found


class TreeHead(SQLModel, table=True):
    """A signed head of the transparency log over every audit event (storage.transparency):
    kept forever, one per size, never rewritten."""

    __tablename__ = "tree_head"
    size: int = Field(
        sa_column=Column(BigInteger, primary_key=True, autoincrement=False, nullable=False)
    )
    root: str = Field(max_length=64)  # hex
    signed_at: datetime  # whole milliseconds: what the signature covers
    signature: str = Field(max_length=128)  # hex, Ed25519
    key_id: str = Field(max_length=16)  # hex: the public key's SHA-256, first 16 characters
    # JSON: the hex roots of the tree's perfect right-edge subtrees, largest first, so the
    # next head is built in O(log n) a new leaf.
    frontier: str = Field(sa_column=Column(Text, nullable=False))


class TreeNode(SQLModel, table=True):
    """An interior node of the transparency log: the root of the perfect subtree of
    2**level leaves starting at leaf idx << level, for level >= storage.transparency's
    NODE_LEVEL. Written as heads are signed; proofs read them (O(log n) rows). Append-only."""

    __tablename__ = "tree_node"
    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(max_length=64)  # hex


class PublishedHead(SQLModel, table=True):
    """A signed head the court posted (`mst audit publish`): on its notice board, its
    website, to its supervisor. A receipt's page says whether its head is one of these.
    Append-only."""

    __tablename__ = "published_head"
    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    root: str = Field(max_length=64)  # hex, as posted
    published_at: datetime
    by: str = Field(max_length=64)  # who ran the command (the operator's login)


class AppSession(SQLModel, table=True):
    """A signed-in app user (the mini-program, or the H5 pages in WeChat's browser): an
    opaque token given to the client, kept here only as its SHA-256. Expires; revoked by
    signing out or by the court. `session_key` (the mini-program's, from jscode2session)
    stays on the server: never sent, never logged."""

    __tablename__ = "app_session"
    token_sha256: str = Field(primary_key=True, max_length=64)
    user: str = Field(max_length=64, index=True)  # the handle flows and rules know them by
    channel: str = Field(max_length=16)  # miniprogram | h5
    openid: str = Field(max_length=64)  # the channel's own id for them
    unionid: str | None = Field(default=None, max_length=64)
    session_key: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=now)
    expires_at: datetime
    revoked_at: datetime | None = None


class Subscription(SQLModel, table=True):
    """A one-time subscribe-message grant (the mini-program's 订阅消息): one grant is one
    message, used by the first notice sent after it."""

    __table_args__ = (Index("ix_subscription_unused", "user", "template_id", "used_at"),)
    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(max_length=64)
    template_id: str = Field(max_length=64)
    granted_at: datetime = Field(default_factory=now)
    used_at: datetime | None = None


class AuditCheck(SQLModel, table=True):
    """A successful `mst audit verify`: the signed head it verified up to (size and root),
    when, and how (full: every event; incremental: the events after the last check).
    The next incremental verify starts here. Append-only (the table refuses UPDATE and
    DELETE, as audit_event and tree_head do)."""

    __tablename__ = "audit_check"
    id: int | None = Field(default=None, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))  # leaves verified
    root: str = Field(max_length=64)  # hex: the root of the head of that size
    checked_at: datetime
    mode: str = Field(max_length=16)  # full | incremental
    events: int = Field(sa_column=Column(BigInteger, nullable=False))  # events this check read


class MediaFile(SQLModel, table=True):
    """The audio of a voice message a litigant sent, fetched from WeChat by a job (WeChat
    keeps it three days) and kept with the record: its bytes, their SHA-256 (an audit
    event holds the same), how long it is, and once made, a copy a browser plays.
    A media id WeChat no longer knows is recorded as `expired` and not asked for again."""

    __tablename__ = "media_file"
    message_id: int = Field(foreign_key="message.id", primary_key=True)
    status: str = Field(default="stored", max_length=16)  # stored | retry | expired
    content_type: str | None = Field(default=None, max_length=64)
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    sha256: str | None = Field(default=None, max_length=64)  # hex, of `body`
    seconds: float | None = None  # AMR's frames counted; None where the format does not say
    # For a browser's <audio> (ffmpeg's mp3), made once, on first play.
    play_type: str | None = Field(default=None, max_length=32)
    play_body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    tries: int = 0
    last_error: str | None = Field(default=None, max_length=300)
    next_try_at: datetime | None = None  # status retry: not asked again before this
    fetched_at: datetime | None = None


# The fetch job looks for voice messages of the last three days with no stored file: this
# keeps that look off the rest of the message table.
Index(
    "ix_message_voice_created",
    core_table(Message).c.created_at,
    sqlite_where=core_table(Message).c.msg_type == "voice",
    postgresql_where=core_table(Message).c.msg_type == "voice",
)
