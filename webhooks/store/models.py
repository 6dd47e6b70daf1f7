"""Tables: the webhook inbox, accounts and their facts, health history, the write-back outbox,
product groups and users (ingestion's account mapping), API keys, the reconcile schedule."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants room to grow.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are aware UTC in Python on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


def core_table(model: type[Base]) -> Table:
    """The Core table behind a mapped class. Bulk statements built on it run as plain
    executemany, skipping the ORM's per-row bulk-persistence work on the worker's hot path."""
    return model.metadata.tables[model.__tablename__]


class InboxDedup(Base):
    """A dedup key an event was stored under, kept for the dedup window (`received_at`, for
    retention). Claimed before the event is stored, in the same transaction: its random-key
    index lives here, away from the inbox rows, whose two status updates would otherwise add
    an entry to it each time."""

    __tablename__ = "inbox_dedup"
    # BRIN on PostgreSQL: keys arrive in time order, so a few bytes per range of pages serve
    # retention's scan, and an insert seldom writes to the index at all (a b-tree entry per
    # event was about 70 bytes of WAL).
    __table_args__ = (Index("ix_inbox_dedup_received_at", "received_at", postgresql_using="brin"),)

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime]


class InboxEvent(Base):
    """One acknowledged event, stored before the 2xx; the worker processes it later. On
    PostgreSQL the table is partitioned by day of `received_at` (migration 0022; its primary
    key there is (id, received_at)); `id` alone still names a row everywhere."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        # On PostgreSQL only events still waiting are in it: settling an event (its second
        # update) adds no index entry, and the index stays the size of the backlog, not of
        # history. SQLite cannot prove a claim's `status = 'pending'` implies an IN list, so
        # it keeps every status.
        Index(
            "ix_inbox_events_claim",
            "status",
            "available_at",
            postgresql_where=text("status IN ('pending', 'processing', 'unmatched', 'dead')"),
        ),
        # Only parked product events carry a match key: the partial index costs the hot
        # insert path nothing.
        Index(
            "ix_inbox_events_match_key",
            "connection",
            "match_key",
            sqlite_where=text("match_key IS NOT NULL"),
            postgresql_where=text("match_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    connection: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # A request stored whole, as received (a Segment batch): kept as text, since encoding it as
    # a JSON string on the request path cost more than storing it.
    body: Mapped[str | None] = mapped_column(Text)
    # A product event waiting for its account mapping ("group:<id>" or "user:<id>"): status
    # "unmatched" until a group call (or the CRM) supplies the mapping.
    match_key: Mapped[str | None] = mapped_column(String(255))


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("connection", "crm_id"),
        Index("ix_accounts_domain", "connection", "domain"),
        # The accounts API filters on these and lists most at-risk first.
        Index("ix_accounts_segment", "connection", "segment"),
        Index("ix_accounts_owner", "connection", "owner"),
        Index("ix_accounts_score", "connection", "score"),
        Index("ix_accounts_renewal", "connection", "renewal_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(64))
    crm: Mapped[str] = mapped_column(String(32))
    crm_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(512))
    # The company domain, normalised (lower case, no scheme or www.): product groups can be
    # mapped to accounts by their website.
    domain: Mapped[str | None] = mapped_column(String(255))
    # {attribute: {"value": ..., "at": iso8601}}: per attribute, the latest occurrence wins.
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Latest event time per kind of fact; None means this account has none of that kind.
    last_usage_at: Mapped[datetime | None]
    last_interaction_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    score: Mapped[int | None]
    band: Mapped[str] = mapped_column(String(16), default="unknown")
    # False when the customer rule (HealthConfig.customers) says the record is not a customer:
    # then it has no score or band, no alerts, and its CRM health fields are empty.
    customer: Mapped[bool] = mapped_column(default=True, server_default=true())
    health_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The earliest time an event told about the account (an import of last quarter's usage
    # reaches back to last quarter); None: not before `created_at`. See facts.read_facts.
    first_seen_at: Mapped[datetime | None]
    # Copies of the `segment` and `owner` attributes (kept by facts.apply_attributes), so the
    # accounts API filters on indexed columns instead of JSON paths.
    segment: Mapped[str | None] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(255))
    # Copies of the `arr` and `renewal_date` attributes as read (NULL: absent or unreadable), so
    # the portfolio sums ARR by band and the list sorts by ARR and renewal in SQL.
    arr: Mapped[float | None] = mapped_column(Float)
    renewal_date: Mapped[date | None] = mapped_column(Date)
    # The rest of the latest health (record_health): history rows are only added when score or
    # band move, so the newest of them can hold stale signals, drivers or trend.
    trend_30d: Mapped[int | None]
    signals: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    drivers: Mapped[list[str] | None] = mapped_column(JSON)
    # {"ratio": 0..1, "signals": [...], "indicators": ["signal.indicator", ...]}
    coverage: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # HealthConfig.scoring_version the score and band were computed under: hysteresis holds
    # only from a band computed under the same one (NULL: before it was recorded).
    config_version: Mapped[str | None] = mapped_column(String(16))
    # The indicators ("signal.indicator") at or past their at-risk threshold at that scoring:
    # with coverage's measured ones, what an indicator rule compares with to see a loss.
    indicators_at_risk: Mapped[list[str] | None] = mapped_column(JSON)
    # When a write-back found no such record in the CRM (404), and the CRM's words: the account
    # is neither scored, listed nor written back until the CRM sends its record again.
    not_found_at: Mapped[datetime | None]
    not_found_reason: Mapped[str | None] = mapped_column(Text)


@dataclass(slots=True, eq=False, weakref_slot=True)
class AccountRow:
    """An account's row (`Account`'s columns) as plain attributes: what the worker, a
    recompute and a preview read, score and change. Reading and setting these costs a slot
    access, where a mapped object's instrumentation (a million attribute reads, a hundred
    thousand sets and the expunges per 10,000 accounts rescored) was a tenth of a recompute's
    CPU; `accounts.save` writes the changes back. Identity-compared and weakly referable:
    `accounts` remembers each one's values as read."""

    id: int
    connection: str
    crm: str
    crm_id: str
    name: str | None
    domain: str | None
    attributes: dict[str, Any]
    last_usage_at: datetime | None
    last_interaction_at: datetime | None
    deleted_at: datetime | None
    score: int | None
    band: str
    customer: bool
    health_updated_at: datetime | None
    created_at: datetime
    first_seen_at: datetime | None
    segment: str | None
    owner: str | None
    arr: float | None
    renewal_date: date | None
    trend_30d: int | None
    signals: dict[str, Any] | None
    drivers: list[str] | None
    coverage: dict[str, Any] | None
    config_version: str | None
    indicators_at_risk: list[str] | None
    not_found_at: datetime | None
    not_found_reason: str | None


# The columns an AccountRow is built from, in its fields' order (select them in this order and
# pass a result row positionally).
ACCOUNT_ROW_COLUMNS = tuple(field.name for field in fields(AccountRow))


def _account_fk() -> Mapped[int]:
    return mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)


class UsageMonth(Base):
    """The UTC days of one month a user was active on an account, as a bitmask (bit d-1 for
    day d): an exact roll-up of one row per active day, so distinct users and user-days of
    any window, and the first and last day of use, are still known to the day, from at most
    one row per user and month the window touches."""

    __tablename__ = "usage_months"
    # On SQLite the table is its primary key's b-tree (migration 0023): a rowid table would
    # keep every key column twice, in the table and in the key's index.
    __table_args__ = ({"sqlite_with_rowid": False},)

    account_id: Mapped[int] = _account_fk()
    # The first day of the month.
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    # 31 bits at most: a signed 32-bit integer holds every month.
    days: Mapped[int] = mapped_column(Integer)
    # The events of those days: how much the user did, not only whether. None for a month
    # begun before events were counted (migration 0027): its count is not known.
    events: Mapped[int | None] = mapped_column(Integer)


class FeatureMonth(Base):
    """The same roll-up per product feature (the event's `feature`, Segment's event or page
    name), matched without regard to case: which users used a feature on which days of a
    month, and how often. Key-feature adoption and usage-based custom indicators read it."""

    __tablename__ = "feature_months"
    __table_args__ = ({"sqlite_with_rowid": False},)

    account_id: Mapped[int] = _account_fk()
    # Before the month: an account's reads of a few features are a few ranges of the key.
    feature: Mapped[str] = mapped_column(String(200), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)


class InteractionFact(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_account_time", "account_id", "at"),
        # One row per engagement the source identifies; a later version replaces it.
        Index(
            "uq_interactions_account_source",
            "account_id",
            "source_id",
            unique=True,
            sqlite_where=text("source_id IS NOT NULL"),
            postgresql_where=text("source_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    contact: Mapped[str | None] = mapped_column(String(200))
    source_id: Mapped[str | None] = mapped_column(String(200))


class ContactFact(Base):
    __tablename__ = "contacts"

    account_id: Mapped[int] = _account_fk()
    contact: Mapped[str] = mapped_column(String(200), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(500))
    executive: Mapped[bool] = mapped_column(default=False)
    left_at: Mapped[datetime | None]
    # The event time of the values held: a later event wins, an older one is ignored.
    updated_at: Mapped[datetime]
    # The event time the contact was first told of (the timeline's "contact gained"); a late
    # event older than the values held does not move it back.
    first_seen_at: Mapped[datetime | None]


class CollaborationFact(Base):
    __tablename__ = "collaboration_events"
    __table_args__ = (Index("ix_collaboration_events_account_time", "account_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))


class TicketFact(Base):
    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_account_opened", "account_id", "opened_at"),)

    account_id: Mapped[int] = _account_fk()
    ticket: Mapped[str] = mapped_column(String(200), primary_key=True)
    opened_at: Mapped[datetime]
    priority: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]


class AttributeChange(Base):
    """Values of tracked attributes over time (ARR a year ago drives momentum)."""

    __tablename__ = "attribute_history"
    __table_args__ = (Index("ix_attribute_history_lookup", "account_id", "name", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    value: Mapped[str | None] = mapped_column(String(500))


class SurveyFact(Base):
    """One answer to a survey (NPS, CSAT, CES). The same respondent answering the same kind
    at the same moment is one answer: a resend replaces it."""

    __tablename__ = "survey_responses"

    account_id: Mapped[int] = _account_fk()
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    respondent: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    # The respondent's own words: untrusted text, kept for people to read.
    comment: Mapped[str | None] = mapped_column(String(2000))


class SentimentFact(Base):
    """Every CSM sentiment set on an account, the latest first in force: the history is the
    audit of who judged what, when, until when. A row without a rating clears the one before."""

    __tablename__ = "csm_sentiments"
    __table_args__ = (Index("ix_csm_sentiments_account_time", "account_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    rating: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(60))
    # The CSM's own words: untrusted text, kept for people to read.
    note: Mapped[str | None] = mapped_column(String(1000))
    author: Mapped[str] = mapped_column(String(200))
    until: Mapped[datetime | None]


class OutcomeFact(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    # The ARR renewed or lost; NULL where the source did not say (CRM deals, older rows).
    arr: Mapped[float | None] = mapped_column(Float)


class SourceKind(Base):
    """Which kinds of facts a connection has ever sent. Where a connection sends tickets, an
    account without tickets has 0 (good); where it never did, tickets are "no data"."""

    __tablename__ = "source_kinds"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_seen_at: Mapped[datetime]


class ConfigVersion(Base):
    """Every HealthConfig ever applied; the newest row is the one in force."""

    __tablename__ = "config_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(16))
    document: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str] = mapped_column(Text, default="")
    # The version this one replaced (0: the defaults). Unique, so of two changes made against
    # the same version only one can be stored: the check-and-insert of optimistic locking.
    previous_id: Mapped[int | None] = mapped_column(BigId, unique=True, index=True)
    # The connection whose settings a connection-bound admin key changed (only
    # `connections.<scope>` differs from the previous version); NULL: a global change.
    scope: Mapped[str | None] = mapped_column(String(64))


class RecomputeJob(Base):
    """Rescoring every account (after a configuration change, or as time passes), resumable
    by account id."""

    __tablename__ = "recompute_jobs"
    __table_args__ = (Index("ix_recompute_jobs_claim", "status", "available_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    config_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("config_versions.id"))
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    after_account_id: Mapped[int] = mapped_column(BigId, default=0)
    rescored: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Only this connection's accounts (its own settings changed); NULL: every account.
    connection: Mapped[str | None] = mapped_column(String(64))
    # Why: "configuration" (a change; its findings tell nobody) or "time" (the scheduled
    # rescore that moves windows and recency on for accounts that send nothing; it tells).
    cause: Mapped[str] = mapped_column(String(16), default="configuration")


class AnalysisJob(Base):
    """A backtest or a suggestion computed in the background: what was asked (`request`), how
    far it got (`done` of `total` cases), and its result or why it failed. A job whose process
    stopped beating (`heartbeat_at`) was interrupted: it is failed, never left running."""

    __tablename__ = "analysis_jobs"
    __table_args__ = (Index("ix_analysis_jobs_connection_created", "connection", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # backtest | suggest
    connection: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(200))
    request: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # queued | running | done | failed
    done: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class BackfillCursor(Base):
    """How far a backfill got per connection and object type, so it resumes there."""

    __tablename__ = "backfill_cursors"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    after: Mapped[str | None] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(default=False)
    events: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]


class InstalledConnection(Base):
    """A CRM connection created by an OAuth install; its tokens are encrypted (webhooks.secrets).

    Connections from settings or the connections file are not stored: only what an install
    produced at run time, so every service process and worker can load it."""

    __tablename__ = "installed_connections"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    crm: Mapped[str] = mapped_column(String(32))
    # HubSpot portal (hub) id, Salesforce org id, Dynamics org URL: what inbound events carry.
    external_id: Mapped[str] = mapped_column(String(200))
    credentials: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    installed_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("crm", "external_id"),)


class HealthSnapshot(Base):
    __tablename__ = "health_history"
    __table_args__ = (Index("ix_health_history_account_time", "account_id", "computed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    computed_at: Mapped[datetime]
    score: Mapped[int | None]
    band: Mapped[str] = mapped_column(String(16))
    # No driver texts, signal scores or coverage (migrations 0024, 0025): nothing read them
    # back, and they were most of each row kept for two years. The account row holds its
    # current ones; those of a past moment follow from the facts and the configuration
    # version, both kept.
    # The scoring configuration it was computed under (see Account.config_version): a new
    # one starts a row even when score and band stay, so the history shows the change.
    config_version: Mapped[str | None] = mapped_column(String(16))


class WritebackItem(Base):
    """The latest health fields owed to the CRM for one account (one row per account).

    Keeping one row per account coalesces bursts: however often an account is rescored before
    delivery, only its newest values are sent.
    """

    __tablename__ = "crm_writeback"
    __table_args__ = (
        Index("ix_crm_writeback_claim", "status", "available_at"),
        # A connection's last success (sync status) without reading every account's row.
        Index("ix_crm_writeback_written", "connection", "written_at"),
    )

    account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    connection: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]]
    fields_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    written_version: Mapped[int | None]
    written_at: Mapped[datetime | None]
    # When the values now owed were first owed unsent (cleared once written): an outage's age.
    pending_since: Mapped[datetime | None]


class ProductGroup(Base):
    """A product account (Segment `groupId`) and the CRM account it maps to, once known."""

    __tablename__ = "product_groups"
    __table_args__ = (Index("ix_product_groups_match", "connection", "match_value"),)

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(512))
    # The mapping trait's value as last seen (a CRM record id or a normalised domain).
    match_value: Mapped[str | None] = mapped_column(String(500))
    # The CRM record this group is; None while unmatched.
    crm_id: Mapped[str | None] = mapped_column(String(64))
    # Event time of the group call applied: an older call never overwrites a newer one.
    updated_at: Mapped[datetime]
    first_seen_at: Mapped[datetime]


class ProductUser(Base):
    """The product account a user last acted in (from group calls), for track calls that carry
    no `context.groupId`."""

    __tablename__ = "product_users"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    group_id: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime]


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    # The key's first characters, safe to show, so people can tell their keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    connection: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AdminSession(Base):
    """An admin page session: the cookie carries a random id, only its SHA-256 is stored, so
    sign-out (revoked_at) ends it at once and a copy of the table cannot be replayed."""

    __tablename__ = "admin_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The key that signed in (its SHA-256: the bootstrap token has no key row); resolving it
    # on every request makes a revoked key end its sessions.
    key_hash: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class InstallGrant(Base):
    """A single-use token of the OAuth install: an install link an admin created ("link"), or
    the `state` of an install under way ("state"); only its SHA-256 is stored."""

    __tablename__ = "install_grants"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Alert(Base):
    """One alert episode of an account: raised when a rule's condition starts, with one reason
    per condition holding while it is open (`AlertReason`); resolved when the last one ends;
    re-opened (without telling anyone again) if they start again within the rules' cooldown.
    `rule`, `key`, `title`, `reason` and `severity` are those of its most severe reason."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_account_rule", "account_id", "rule", "key"),
        Index("ix_alerts_status_time", "status", "fired_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    connection: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    # What the condition is about: the band entered, the indicator, the renewal date...
    key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # open, acknowledged, snoozed, resolved
    title: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    score: Mapped[int | None]
    band: Mapped[str] = mapped_column(String(16))
    previous_score: Mapped[int | None]
    previous_band: Mapped[str | None] = mapped_column(String(16))
    trend_30d: Mapped[int | None]
    drivers: Mapped[list[str]] = mapped_column(JSON)
    # True once one of its deliveries was sent (set with it, in the same transaction): no
    # channel, deliveries still owed or failed, or a condition back within the cooldown, false.
    notified: Mapped[bool] = mapped_column(default=False)
    severity: Mapped[str] = mapped_column(String(8), server_default="medium")  # low|medium|high
    # What caused the rescore that raised it: live (recent events: people are told), history
    # (events older than the age limit), backfill, first_load, configuration (told nobody).
    cause: Mapped[str] = mapped_column(String(16), server_default="live")
    fired_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_note: Mapped[str | None] = mapped_column(Text)
    snoozed_until: Mapped[datetime | None]


class AlertReason(Base):
    """One condition of an alert episode: opened when the condition started while the episode
    was open (or opened it), resolved when it ended."""

    __tablename__ = "alert_reasons"
    __table_args__ = (
        Index("ix_alert_reasons_alert", "alert_id"),
        Index("ix_alert_reasons_rule", "rule"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigId, ForeignKey("alerts.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class AlertDelivery(Base):
    """The alert outbox: one message owed to one channel, retried with backoff until sent or
    failed for good (then retried only when someone asks)."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        Index("ix_alert_deliveries_claim", "status", "available_at"),
        Index("ix_alert_deliveries_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigId, ForeignKey("alerts.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # fired, escalated, recovered
    status: Mapped[str] = mapped_column(String(16))  # pending, processing, sent, failed
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Held back because its channel had used its daily limit: pending until the next UTC
    # midnight (available_at), then sent with the channel's other held-back notices as one
    # overflow digest.
    overflow: Mapped[bool] = mapped_column(default=False, server_default=false())


class AlertChannelBudget(Base):
    """How many messages a channel has been given leave to send on a UTC day. The worker that
    claims deliveries locks its channel's row for the day to take leave, so two workers never
    both see the last free message; a message that then fails gives its leave back."""

    __tablename__ = "alert_channel_budgets"

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(default=0)


class ConfigAudit(Base):
    """Who changed the configuration, when, how (put, rollback, apply) and which field paths."""

    __tablename__ = "config_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    from_version_id: Mapped[int | None] = mapped_column(BigId)
    to_version_id: Mapped[int] = mapped_column(BigId, ForeignKey("config_versions.id"))
    comment: Mapped[str] = mapped_column(Text, default="")
    # The changed field paths, e.g. ["bands.healthy_min", "alerts.1.points"].
    changed: Mapped[list[str]] = mapped_column(JSON)


class ReconcileSchedule(Base):
    """A periodic job of the worker, one row each: the reconcile (`name` "scheduled") and
    retention ("retention"). When the last run ended, how far the run under way got, and the
    lease of the worker taking its next step, so that at most one worker of any process runs
    a job's step at a time."""

    __tablename__ = "reconcile_schedule"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="idle")  # idle, or busy while leased
    # No step before this (a CRM that failed a read is asked again later).
    available_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    # The run under way: when it started (None between runs), the connection it is on and the
    # last account it checked there, and its counts so far by connection (retention: the table
    # it is on, and rows deleted by table).
    started_at: Mapped[datetime | None]
    connection: Mapped[str | None] = mapped_column(String(64))
    after_account_id: Mapped[int] = mapped_column(BigId, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When the last run ended (at first: when the schedule was created); the next is due one
    # interval later.
    finished_at: Mapped[datetime]
    last_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text)


class CRMOwnerContact(Base):
    """What a CRM said about a record owner (webhooks.alerts.owners): the e-mail alerts for
    the owner's accounts go to, and a name for messages. Rows are read again from the CRM
    once older than a day; an owner the CRM does not know is kept too (no e-mail), so a busy
    day asks the CRM once per owner, not once per alert."""

    __tablename__ = "crm_owners"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The owner id as the account's `owner` attribute holds it.
    owner_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(255))
    # False: the CRM has no such owner (deleted user, a team, an id of another kind).
    found: Mapped[bool] = mapped_column(default=True)
    fetched_at: Mapped[datetime]


class UserPreference(Base):
    """What one person chose to keep between visits (the owner whose accounts are "my
    accounts"), by connection and the key's name."""

    __tablename__ = "user_preferences"

    connection: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
