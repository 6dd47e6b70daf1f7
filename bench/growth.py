"""Growth: a simulated year of a mid-size customer base through the service's own intake and
worker (issue 24), with what the store holds and costs at days 30, 90, 180 and 365, and DuckDB
computing the same indicators over the raw events beside the service's full recompute.

The service believes it is the simulated day: intake stamps each request with the simulated
time, the worker runs on a simulated clock, and every event carries a simulated timestamp.
Events arrive in 3-hour windows, each drained as it comes; on a checkpoint day and the two
before it they arrive at once, so that their drains measure the worker's capacity (the median
of the three). PostgreSQL's WAL is the benchmark database's
own (pg_walinspect), not the whole server's.

Settings (environment): BENCH_GROWTH_SCALE (accounts = 2,000 x scale, default 0.1),
BENCH_GROWTH_DAYS (default 365), BENCH_GROWTH_DATABASE (sqlite, postgresql or both; default
both; PostgreSQL at 127.0.0.1:5432 in a throwaway database)."""

from __future__ import annotations

import asyncio
import base64
import csv
import gc
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bench.harness import create_pg_database, drop_pg_database
from connector.segment import SegmentOptions
from signals.model import AccountFacts
from webhooks import intake, retention
from webhooks.connections import ConnectionRegistry, SegmentSource
from webhooks.inbox_writer import InboxWriter
from webhooks.metrics import Metrics
from webhooks.retention import RetentionPolicy
from webhooks.store import accounts, configs, facts, inbox
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import Account, Base
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

BASE_ACCOUNTS = 2_000
USERS_PER_ACCOUNT = 25
CHECKPOINTS = (30, 90, 180, 365)
START = datetime(2025, 1, 1, tzinfo=UTC)
CONNECTION = "default"
WRITE_KEY = "growth-bench-write-key"
# Users whose day's usage arrives through Segment batches rather than native events.
SEGMENT_SHARE = 0.4
SEGMENT_BATCH = 100
NATIVE_BATCH = 1_000
# Accounts whose usage stops during the year (and whose renewal then fails).
CHURN_SHARE = 0.04
RESCORE_SAMPLES = 5
# Days whose events arrive at once, ending with each checkpoint: the worker's events/s is the
# median of their drains. One drain of a day's events takes a fraction of a second, so a single
# one measures the machine's moment as much as the worker.
CAPACITY_DAYS = 3
# The WAL records between two positions that touch a relation of the connected database (its
# block references name it: "rel <tablespace>/<database oid>/<relation>").
_WAL_OF_THIS_DATABASE = """
SELECT coalesce(sum(record_length), 0)
FROM pg_get_wal_records_info(
    '0/0'::pg_lsn + CAST(:start AS numeric), '0/0'::pg_lsn + CAST(:end AS numeric))
WHERE block_ref ~ (' rel [0-9]+/'
                   || (SELECT oid FROM pg_database WHERE datname = current_database()) || '/')"""
# A day's events arrive in this many windows (every three hours) on days that measure nothing.
ARRIVAL_WINDOWS = 8
# Accounts whose DuckDB indicators are checked against the service's read_facts.
COMPARED_ACCOUNTS = 20
FEATURES = ("report", "dashboard", "export", "search", "editor", "api", "settings", "invite")
COLLABORATION_KINDS = ("feedback", "feature_request", "beta", "referral", "case_study")
PRIORITIES = ("low", "low", "medium", "medium", "high", "urgent")
# The raw events as DuckDB keeps them: one wide table, a column per field any type has.
RAW_COLUMNS = {
    "account": "VARCHAR", "type": "VARCHAR", "ts": "TIMESTAMP", "user": "VARCHAR",
    "direction": "VARCHAR", "contact": "VARCHAR", "executive": "BOOLEAN", "left": "BOOLEAN",
    "ticket": "VARCHAR", "priority": "VARCHAR", "kind": "VARCHAR",
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Options:
    scale: float = 0.1
    days: int = 365
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    seed: int = 24

    @classmethod
    def from_env(cls) -> Options:
        chosen = os.environ.get("BENCH_GROWTH_DATABASE", "both")
        if chosen not in ("sqlite", "postgresql", "both"):
            raise SystemExit(f"BENCH_GROWTH_DATABASE={chosen!r}: choose sqlite, postgresql or both")
        return cls(
            scale=float(os.environ.get("BENCH_GROWTH_SCALE", "0.1")),
            days=int(os.environ.get("BENCH_GROWTH_DAYS", "365")),
            databases=("sqlite", "postgresql") if chosen == "both" else (chosen,),
        )

    @property
    def accounts(self) -> int:
        return max(1, round(BASE_ACCOUNTS * self.scale))

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """The issue's days within the run, and the run's last day."""
        return tuple(sorted({*(d for d in CHECKPOINTS if d <= self.days), self.days}))


# --- the generator ------------------------------------------------------------------------------


Event = dict[str, Any]


@dataclass
class _Customer:
    id: str
    # Each user's chance of using the product on a given day: about 10 of 25 a day.
    activity: list[float]
    contacts: list[str]
    executive: str
    seats: int
    arr: float
    billing_day: int
    renewal_day: int
    churn_day: int | None
    next_contact: int = 0
    next_ticket: int = 0
    open_tickets: list[str] = field(default_factory=list)


@dataclass
class Day:
    """One simulated day's traffic: native events (each with its id) and Segment calls
    (`raw_rows` gives DuckDB's copy of them)."""

    native: list[Event] = field(default_factory=list)
    segment: list[Event] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.native) + len(self.segment)

    def arrivals(self, start: datetime, windows: int) -> list[Day]:
        """The day's events cut into `windows` equal spans of the day by their own time, in
        order: what reaches the service by the end of each span."""
        span = 86_400 / windows
        parts = [Day() for _ in range(windows)]

        def window(stamp: str) -> int:
            seconds = (datetime.fromisoformat(stamp) - start).total_seconds()
            return min(windows - 1, max(0, int(seconds // span)))

        for event in self.native:
            parts[window(event["at"])].native.append(event)
        for call in self.segment:
            parts[window(call["timestamp"])].segment.append(call)
        return parts


class Generator:
    """A seeded customer base: the same options give the same events, day by day."""

    def __init__(self, *, accounts: int, seed: int, days: int) -> None:
        self._rng = random.Random(seed)
        self._serial = 0
        rng = self._rng
        churners = set(rng.sample(range(accounts), k=round(accounts * CHURN_SHARE)))
        self.customers = [
            _Customer(
                id=f"acct-{n:05d}",
                activity=[rng.betavariate(2, 3) for _ in range(USERS_PER_ACCOUNT)],
                contacts=[f"acct-{n:05d}.c{c}" for c in range(6)],
                executive=f"acct-{n:05d}.c0",
                seats=USERS_PER_ACCOUNT,
                arr=float(rng.randrange(20, 200) * 1000),
                billing_day=rng.randrange(28),
                renewal_day=rng.randrange(30, 365),
                churn_day=rng.randrange(45, max(46, days)) if n in churners else None,
                next_contact=6,
            )
            for n in range(accounts)
        ]

    def _id(self) -> str:
        self._serial += 1
        return f"g{self._serial}"

    @staticmethod
    def _stamp(at: datetime) -> str:
        return at.isoformat().replace("+00:00", "Z")

    def setup(self, at: datetime) -> Day:
        """Before day 0: each account's record, its contacts and its product account."""
        day = Day()
        for customer in self.customers:
            day.native.append(self._attributes(customer, at, name=True))
            for contact in customer.contacts:
                day.native.append(self._contact(customer, contact, at))
            day.segment.append(
                {
                    "type": "group",
                    "messageId": self._id(),
                    "userId": f"{customer.id}.u0",
                    "groupId": customer.id,
                    "timestamp": self._stamp(at),
                    "traits": {"crm_id": customer.id, "name": f"Customer {customer.id}"},
                }
            )
        return day

    def _attributes(self, customer: _Customer, at: datetime, *, name: bool = False) -> Event:
        attributes: dict[str, Any] = {"seats": customer.seats, "arr": customer.arr}
        if name:
            attributes["name"] = f"Customer {customer.id}"
        return {"id": self._id(), "type": "account", "account": customer.id,
                "at": self._stamp(at), "attributes": attributes}  # fmt: skip

    def _contact(
        self, customer: _Customer, contact: str, at: datetime, *, left: bool = False
    ) -> Event:
        return {"id": self._id(), "type": "contact", "account": customer.id,
                "at": self._stamp(at), "contact": contact,
                "executive": contact == customer.executive, "left": left}  # fmt: skip

    def day(self, number: int) -> Day:
        rng = self._rng
        start = START + timedelta(days=number)
        day = Day()

        def moment() -> datetime:
            return start + timedelta(seconds=rng.randrange(86_400))

        for customer in self.customers:
            churned = customer.churn_day is not None and number >= customer.churn_day
            if not churned:
                self._usage(customer, day, moment)
            # About one interaction a day, a third of them started by the customer.
            for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 2))):
                day.native.append(
                    {
                        "id": self._id(),
                        "type": "interaction",
                        "account": customer.id,
                        "at": self._stamp(moment()),
                        "channel": rng.choice(("email", "call", "meeting", "note")),
                        "direction": "customer" if rng.random() < 0.35 else "ours",
                        "contact": rng.choice(customer.contacts),
                    }
                )
            if rng.random() < 0.05:
                customer.next_ticket += 1
                ticket = f"{customer.id}.t{customer.next_ticket}"
                customer.open_tickets.append(ticket)
                day.native.append(self._ticket(customer, ticket, moment(), rng.choice(PRIORITIES)))
            elif customer.open_tickets and rng.random() < 0.01:
                # An open ticket escalated: its priority changes, its opening does not.
                ticket = customer.open_tickets.pop(rng.randrange(len(customer.open_tickets)))
                day.native.append(self._ticket(customer, ticket, moment(), "urgent"))
            if not churned and rng.random() < 0.015:
                day.native.append(
                    {"id": self._id(), "type": "collaboration", "account": customer.id,
                     "at": self._stamp(moment()), "kind": rng.choice(COLLABORATION_KINDS)}
                )  # fmt: skip
            if rng.random() < 0.01:
                # A contact leaves and someone new joins.
                gone = rng.choice([c for c in customer.contacts if c != customer.executive])
                customer.contacts.remove(gone)
                customer.next_contact += 1
                joined = f"{customer.id}.c{customer.next_contact}"
                customer.contacts.append(joined)
                left_at = moment()
                day.native.append(self._contact(customer, gone, left_at, left=True))
                day.native.append(self._contact(customer, joined, left_at + timedelta(seconds=1)))
            if number % 28 == customer.billing_day:
                # The monthly invoice: seats and ARR drift (down for an account about to churn).
                shrinking = customer.churn_day is not None and number >= customer.churn_day - 60
                customer.seats = max(5, customer.seats + rng.choice((-1, 0, 0, 1, 2)) - shrinking)
                customer.arr = round(customer.arr * (0.97 if shrinking else rng.uniform(1, 1.03)))
                day.native.append(self._attributes(customer, moment()))
            if number == customer.renewal_day:
                outcome = "churned" if customer.churn_day is not None and churned else "renewed"
                day.native.append({"id": self._id(), "type": "outcome", "account": customer.id,
                                   "at": self._stamp(moment()), "outcome": outcome})  # fmt: skip
        return day

    def _ticket(self, customer: _Customer, ticket: str, at: datetime, priority: str) -> Event:
        return {"id": self._id(), "type": "ticket", "account": customer.id,
                "at": self._stamp(at), "ticket": ticket, "priority": priority}  # fmt: skip

    def _usage(self, customer: _Customer, day: Day, moment: Callable[[], datetime]) -> None:
        rng = self._rng
        for number, chance in enumerate(customer.activity):
            if rng.random() >= chance:
                continue
            user = f"{customer.id}.u{number}"
            through_segment = rng.random() < SEGMENT_SHARE
            # About 1.44 events per active user-day: 15.5 events per account and day in all.
            count = 1
            while rng.random() < 0.306:
                count += 1
            for _ in range(count):
                at, feature = self._stamp(moment()), rng.choice(FEATURES)
                if through_segment:
                    day.segment.append(
                        {
                            "type": "track",
                            "messageId": self._id(),
                            "userId": user,
                            "event": f"{feature} used",
                            "timestamp": at,
                            "context": {"groupId": customer.id},
                            "properties": {"feature": feature},
                        }
                    )
                else:
                    day.native.append({"id": self._id(), "type": "usage", "account": customer.id,
                                       "at": at, "user": user, "feature": feature})  # fmt: skip


def raw_rows(day: Day) -> Iterator[list[object]]:
    """Each event of the day as a DuckDB row (RAW_COLUMNS), the account's facts as sent."""
    for event in day.native:
        kind = event["type"]
        if kind in ("account", "outcome"):
            continue
        yield [
            event["account"], kind, event["at"].replace("Z", ""), event.get("user"),
            event.get("direction"), event.get("contact"), event.get("executive"),
            event.get("left"), event.get("ticket"), event.get("priority"), event.get("kind"),
        ]  # fmt: skip
    for call in day.segment:
        if call["type"] == "track":
            yield [call["context"]["groupId"], "usage", call["timestamp"].replace("Z", ""),
                   call["userId"], None, None, None, None, None, None, None]  # fmt: skip


# --- DuckDB: the same indicators over the raw events --------------------------------------------


class RawEvents:
    """The generator's events as emitted, in DuckDB: appended to a CSV file day by day and
    loaded at each checkpoint, so only the indicator queries are timed."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / "pending.csv"
        self._file = self._path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self.db = duckdb.connect(str(folder / "raw.duckdb"))
        columns = ", ".join(f'"{name}" {kind}' for name, kind in RAW_COLUMNS.items())
        self.db.execute(f"CREATE TABLE events ({columns})")

    def add(self, day: Day) -> None:
        self._writer.writerows(raw_rows(day))

    def load(self) -> None:
        self._file.close()
        if self._path.stat().st_size:
            self.db.execute(
                "INSERT INTO events SELECT * FROM read_csv(?, header = false, columns = ?)",
                [str(self._path), RAW_COLUMNS],
            )
        self._file = self._path.open("w", newline="")
        self._writer = csv.writer(self._file)

    def close(self) -> None:
        self._file.close()
        self.db.close()


INDICATORS_SQL = """
WITH current_contacts AS (
    SELECT account, contact, arg_max("left", ts) AS gone, arg_max(executive, ts) AS executive
    FROM events WHERE type = 'contact' GROUP BY account, contact
),
usage AS (
    SELECT account,
        count(DISTINCT "user") FILTER (WHERE ts::DATE > $today - 30) AS active_users_30d,
        count(DISTINCT "user") FILTER (WHERE ts::DATE <= $today - 30) AS active_users_prev_30d,
        count(DISTINCT (ts::DATE, "user")) FILTER (WHERE ts::DATE > $today - 30) AS user_days
    FROM events WHERE type = 'usage' AND ts::DATE > $today - 60 GROUP BY account
),
last_use AS (
    SELECT account, max(ts) AS last_usage_at FROM events WHERE type = 'usage' GROUP BY account
),
interactions AS (
    SELECT i.account, count(*) AS total, count(*) FILTER (WHERE direction = 'customer') AS mine,
        count(DISTINCT i.contact) FILTER (WHERE NOT coalesce(c.gone, false)) AS engaged,
        count(DISTINCT i.contact) FILTER (WHERE NOT coalesce(c.gone, false) AND c.executive)
            AS executives
    FROM events i LEFT JOIN current_contacts c USING (account, contact)
    WHERE i.type = 'interaction' AND i.ts > $as_of - INTERVAL 90 DAY GROUP BY i.account
),
tickets AS (
    SELECT account, count(*) AS opened,
        count(*) FILTER (WHERE priority IN ('high', 'urgent')) AS escalated
    FROM (SELECT account, ticket, min(ts) AS opened_at, arg_max(priority, ts) AS priority
          FROM events WHERE type = 'ticket' GROUP BY account, ticket)
    WHERE opened_at > $as_of - INTERVAL 90 DAY GROUP BY account
),
collaboration AS (
    SELECT account, count(*) AS events FROM events
    WHERE type = 'collaboration' AND ts > $as_of - INTERVAL 180 DAY GROUP BY account
),
accounts AS (SELECT DISTINCT account FROM events)
SELECT a.account,
    coalesce(u.active_users_30d, 0), coalesce(u.active_users_prev_30d, 0),
    coalesce(u.user_days, 0) / 30.0, l.last_usage_at,
    coalesce(i.mine, 0), coalesce(i.total, 0),
    coalesce(i.mine, 0) / nullif(i.total, 0),
    coalesce(t.opened, 0), coalesce(t.escalated, 0), coalesce(c.events, 0),
    coalesce(i.engaged, 0), coalesce(i.executives, 0)
FROM accounts a
LEFT JOIN usage u USING (account) LEFT JOIN last_use l USING (account)
LEFT JOIN interactions i USING (account) LEFT JOIN tickets t USING (account)
LEFT JOIN collaboration c USING (account)
"""
# The AccountFacts fields the query gives, in its column order (after the account).
INDICATOR_FIELDS = (
    "active_users_30d", "active_users_prev_30d", "mean_daily_active_users_30d",
    "last_usage_at", "customer_interactions_90d", "total_interactions_90d", "customer_share",
    "tickets_90d", "escalations_90d", "collaboration_events_180d", "contacts_engaged_90d",
    "executives_engaged_90d",
)  # fmt: skip


def duckdb_indicators(raw: RawEvents, as_of: datetime) -> tuple[dict[str, tuple[Any, ...]], float]:
    """Every account's indicators computed by DuckDB over the raw events, and the seconds it
    took."""
    started = time.perf_counter()
    rows = raw.db.execute(
        INDICATORS_SQL,
        {"today": as_of.date(), "as_of": as_of.replace(tzinfo=None)},
    ).fetchall()
    seconds = time.perf_counter() - started
    return {row[0]: tuple(row[1:]) for row in rows}, seconds


def service_indicators(snapshot: AccountFacts) -> tuple[Any, ...]:
    """The service's facts in the order of INDICATOR_FIELDS; None (no evidence yet) stays
    None, and the customer's share is derived as the customer-share indicator does."""
    total, mine = snapshot.total_interactions_90d, snapshot.customer_interactions_90d
    values: dict[str, Any] = {
        name: getattr(snapshot, name) for name in INDICATOR_FIELDS if name != "customer_share"
    }
    values["customer_share"] = None if not total or mine is None else mine / total
    last = values["last_usage_at"]
    values["last_usage_at"] = None if last is None else last.astimezone(UTC).replace(tzinfo=None)
    return tuple(values[name] for name in INDICATOR_FIELDS)


def mismatches(service: tuple[Any, ...], duck: tuple[Any, ...]) -> list[str]:
    """Where the two differ. A count the service leaves None (its source could not have seen
    the whole window yet) must be zero in DuckDB: the same evidence, read more cautiously."""
    found = []
    for name, mine, theirs in zip(INDICATOR_FIELDS, service, duck, strict=True):
        if mine is None and (theirs is None or theirs == 0):
            continue
        if isinstance(mine, float) and isinstance(theirs, float | int):
            if math.isclose(mine, theirs, rel_tol=1e-9):
                continue
        elif mine == theirs:
            continue
        found.append(f"{name}: service {mine!r}, DuckDB {theirs!r}")
    return found


# --- one database under test --------------------------------------------------------------------


@dataclass
class Checkpoint:
    day: int
    database: str
    events: int
    rows: dict[str, int]
    # Bytes per table, its indexes (and on PostgreSQL its partitions and TOAST) included.
    table_bytes: dict[str, int]
    size_bytes: int
    used_bytes: int
    wal_per_event: float | None
    worker_events_per_second: float
    rescore_ms: float
    recompute_seconds: float
    duckdb_seconds: float
    # The sampled accounts' indicators: {crm id: (the service's, DuckDB's)}.
    compared: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]]
    differences: list[str]

    @property
    def bytes_per_event(self) -> float:
        return self.used_bytes / self.events


class Target:
    """One database driven through the service: intake and worker on the simulated clock."""

    def __init__(self, name: str, url: str, clock: Callable[[], datetime]) -> None:
        self.name = name
        self.url = url
        self.clock = clock
        self.engine: AsyncEngine = create_engine(url)
        self.sessions = create_session_factory(self.engine)
        self.connections = ConnectionRegistry(
            [],
            segment_sources=[
                SegmentSource(connection=CONNECTION, write_key=WRITE_KEY, options=SegmentOptions())
            ],
        )
        self.writer = InboxWriter(self.engine)
        self.metrics = Metrics()
        self.pipeline = Pipeline(
            sessions=self.sessions,
            connections=self.connections,
            options=WorkerOptions(),
            clock=clock,
            metrics=self.metrics,
        )
        self.wal_mark: int | None = None
        self.events_at_mark = 0
        self.wal_scope = ""
        self._wal_session: AsyncConnection | None = None
        self._wal_slot = f"crm_health_bench_growth_{os.getpid()}"
        self._wal_read_to = 0
        self._wal_total = 0

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    async def send(self, day: Day) -> None:
        """The day's events through the service's intake, as its routes call it."""
        now = self.clock()
        for start in range(0, len(day.native), NATIVE_BATCH):
            body = json.dumps({"events": day.native[start : start + NATIVE_BATCH]}).encode()
            await intake.accept_native(
                sessions=self.sessions, connection=CONNECTION, body=body, now=now,
                metrics=self.metrics,
            )  # fmt: skip
        authorization = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        for start in range(0, len(day.segment), SEGMENT_BATCH):
            body = json.dumps(
                {"batch": day.segment[start : start + SEGMENT_BATCH],
                 "sentAt": now.isoformat().replace("+00:00", "Z")}
            ).encode()  # fmt: skip
            await intake.accept_segment(
                writer=self.writer, connections=self.connections, call="batch", body=body,
                authorization=authorization, now=now, metrics=self.metrics,
            )  # fmt: skip

    async def drain(self) -> float:
        """Worker passes until one finds nothing to do; the seconds they took."""
        started = time.perf_counter()
        while await self.pipeline.run_once():
            pass
        return time.perf_counter() - started

    async def maintenance(self, now: datetime) -> None:
        """The store's daily upkeep as of `now`, once per simulated day after the worker
        drained: retention with the service's default policy (what the worker's schedule runs;
        here outside the drain, so the worker's events/s stay the events' alone)."""
        await retention.prune(self.sessions, policy=RetentionPolicy(), now=now)
        if not self.sqlite:
            # What autovacuum does in a real day (it is on by default; this machine's server
            # runs with it off): a simulated day lasts seconds, so without it every deleted
            # or updated row would stay as a dead tuple and the size would measure that.
            await self._vacuum("")
        if self.sqlite:
            async with self.engine.begin() as connection:
                await connection.exec_driver_sql("PRAGMA optimize")

    async def autovacuum(self) -> None:
        """What PostgreSQL's autovacuum does to the inbox during a day (this server runs with
        it off): each arrival window's claims and settlements leave twice its rows dead in the
        day's partition, over the 20% of the table that triggers it, so it vacuums that
        partition and later inserts reuse the space. Autovacuum works table by table, and the
        other partitions gained no dead rows, so they are left alone (vacuuming every
        partition each time cost about 30 bytes of WAL an event in statistics updates).
        SQLite reuses freed space within a page by itself."""
        if not self.sqlite:
            await self._vacuum(inbox.partition_name(self.clock().date()))

    async def _vacuum(self, table: str) -> None:
        """PostgreSQL's VACUUM of one table, or of the database for "" (outside a transaction,
        where VACUUM must run)."""
        async with self.engine.connect() as connection:
            bare = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await bare.exec_driver_sql(f"VACUUM {table}".strip())

    async def rows(self) -> dict[str, int]:
        async with self.engine.connect() as connection:
            return {
                table.name: int(
                    (await connection.execute(select(func.count()).select_from(table))).scalar_one()
                )
                for table in Base.metadata.sorted_tables
            }

    async def size(self) -> tuple[int, int]:
        """(bytes the database takes, bytes its tables use): SQLite's pages, less its free
        ones; PostgreSQL's tables with their indexes and TOAST."""
        async with self.engine.connect() as connection:
            if self.sqlite:
                pages, free, page_size = [
                    int((await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one())
                    for name in ("page_count", "freelist_count", "page_size")
                ]
                return pages * page_size, (pages - free) * page_size
            used = (
                await connection.execute(
                    text(
                        "SELECT sum(pg_total_relation_size(format('%I.%I', schemaname, "
                        "tablename)::regclass)) FROM pg_tables WHERE schemaname = 'public'"
                    )
                )
            ).scalar_one()
            return int(used), int(used)

    async def table_bytes(self) -> dict[str, int]:
        """Bytes each table takes with its indexes, largest first: SQLite's `dbstat` pages by
        the table they belong to; PostgreSQL's partitions counted in their parent."""
        async with self.engine.connect() as connection:
            if self.sqlite:
                query = (
                    "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat AS d "
                    "LEFT JOIN sqlite_master AS m ON m.name = d.name GROUP BY 1"
                )
            else:
                query = (
                    "SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid)) "
                    "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                    "LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid "
                    "LEFT JOIN pg_class AS p ON p.oid = i.inhparent "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1"
                )
            result = await connection.execute(text(query))
            sizes = {str(row[0]): int(row[1]) for row in result.all()}
        return dict(sorted(sizes.items(), key=lambda item: -item[1]))

    async def wal_bytes(self) -> int | None:
        """WAL PostgreSQL wrote for this database since the first call (None on SQLite): the
        records that touch its relations, read with pg_walinspect as the run goes, so other
        databases' writes on a shared server do not count. A temporary replication slot of
        this target's own session holds the segments not read yet (the server would recycle
        them at its next checkpoint) and goes with the session. Without the extension or a
        free slot: the whole server's WAL."""
        if self.sqlite:
            return None
        if self._wal_session is None:
            self._wal_session = await (await self.engine.connect()).execution_options(
                isolation_level="AUTOCOMMIT"
            )
            try:
                await self._wal_session.exec_driver_sql(
                    "CREATE EXTENSION IF NOT EXISTS pg_walinspect"
                )
                await self._wal_session.execute(
                    text("SELECT pg_create_physical_replication_slot(:slot, true, true)"),
                    {"slot": self._wal_slot},
                )
                self.wal_scope = "this database"
            except DBAPIError:
                self.wal_scope = "the whole server (no pg_walinspect or replication slot)"
            self._wal_read_to = await self._flushed()
            return 0
        flushed = await self._flushed()
        if flushed > self._wal_read_to:
            if self.wal_scope == "this database":
                added = (await self._wal_session.execute(text(_WAL_OF_THIS_DATABASE), {
                    "start": self._wal_read_to, "end": flushed,
                })).scalar_one()  # fmt: skip
                await self._wal_session.execute(
                    text(
                        "SELECT pg_replication_slot_advance("
                        ":slot, '0/0'::pg_lsn + CAST(:end AS numeric))"
                    ),
                    {"slot": self._wal_slot, "end": flushed},
                )
            else:
                added = flushed - self._wal_read_to
            self._wal_total += int(added)
            self._wal_read_to = flushed
        return self._wal_total

    async def _flushed(self) -> int:
        assert self._wal_session is not None
        lsn = await self._wal_session.execute(
            text("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
        )
        return int(lsn.scalar_one())

    async def rescore_latency(self, accounts: Sequence[str], raw: RawEvents | None) -> float:
        """Median milliseconds from one usage event's intake to its account rescored; the
        events join the raw log when `raw` is given (once, whichever databases run)."""
        timings = []
        now = self.clock()
        for n, account in enumerate(accounts):
            event = {"id": f"rescore-{now:%Y%m%d}-{n}", "type": "usage", "account": account,
                     "at": now.isoformat(), "user": f"{account}.u0"}  # fmt: skip
            started = time.perf_counter()
            await intake.accept_native(
                sessions=self.sessions, connection=CONNECTION,
                body=json.dumps({"events": [event]}).encode(), now=now, metrics=self.metrics,
            )  # fmt: skip
            report = await self.pipeline.process_inbox()
            timings.append(time.perf_counter() - started)
            if report.rescored != 1:
                raise RuntimeError(f"{self.name}: the rescore event rescored {report.rescored}")
            if raw is not None:
                raw.add(Day(native=[event]))
        return statistics.median(timings) * 1000

    async def recompute(self) -> float:
        """Seconds for the recompute job a configuration change queues, all accounts."""
        async with self.sessions() as session, session.begin():
            await configs.request_recompute(
                session, config_id=None, reason="growth benchmark", now=self.clock()
            )
        started = time.perf_counter()
        while await self.pipeline.recompute_step():
            pass
        return time.perf_counter() - started

    async def snapshots(self, crm_ids: Sequence[str]) -> dict[str, AccountFacts]:
        """The service's own read of the accounts' facts, as scoring gets them."""
        async with self.sessions() as session:
            found = await accounts.read_rows(
                session, accounts.select_rows().where(Account.crm_id.in_(crm_ids))
            )
            snapshots = await facts.read_facts(session, accounts=found, as_of=self.clock())
        return {account.crm_id: snapshots[account.id] for account in found}

    async def close(self) -> None:
        if self._wal_session is not None:
            await self._wal_session.close()
        await self.writer.aclose()
        await self.engine.dispose()


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Growth:
    options: Options
    checkpoints: list[Checkpoint]
    seconds: float


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def _checkpoint(
    target: Target,
    *,
    day: int,
    events: int,
    events_per_second: float,
    raw: RawEvents,
    log_raw: bool,
    rescored: Sequence[str],
    compared: Sequence[str],
) -> Checkpoint:
    """Everything measured on one database at the end of a checkpoint day; `events` counts
    what it was sent so far, the rescore events included."""
    rescore_ms = await target.rescore_latency(rescored, raw if log_raw else None)
    raw.load()
    duck, duck_seconds = duckdb_indicators(raw, target.clock())
    recompute_seconds = await target.recompute()
    snapshots = await target.snapshots(compared)
    pairs = {crm_id: (service_indicators(snapshots[crm_id]), duck[crm_id]) for crm_id in compared}
    size, used = await target.size()
    wal = await target.wal_bytes()
    wal_per_event = None
    if wal is not None and target.wal_mark is not None:
        wal_per_event = (wal - target.wal_mark) / (events - target.events_at_mark)
        target.wal_mark, target.events_at_mark = wal, events
    return Checkpoint(
        day=day,
        database=target.name,
        events=events,
        rows=await target.rows(),
        table_bytes=await target.table_bytes(),
        size_bytes=size,
        used_bytes=used,
        wal_per_event=wal_per_event,
        worker_events_per_second=events_per_second,
        rescore_ms=rescore_ms,
        recompute_seconds=recompute_seconds,
        duckdb_seconds=duck_seconds,
        compared=pairs,
        differences=[
            f"{crm_id} {problem}"
            for crm_id, (mine, theirs) in pairs.items()
            for problem in mismatches(mine, theirs)
        ],
    )


async def _live(
    targets: Sequence[Target], day: Day, clock: _Clock, day_start: datetime, *, windows: int
) -> dict[str, float]:
    """Send the day's events to every target in `windows` arrivals, each drained as it comes;
    the seconds the last drain took on each."""
    drained: dict[str, float] = {}
    for part, arrival in enumerate(day.arrivals(day_start, windows), start=1):
        clock.now = day_start + timedelta(days=part / windows)
        for target in targets:
            await target.send(arrival)
            drained[target.name] = await target.drain()
            if part < windows:
                await target.autovacuum()
    return drained


async def simulate(options: Options, *, folder: Path, urls: dict[str, str]) -> Growth:
    """Run the simulated days on every database of `urls` in lockstep (one generator, one
    raw log) and measure at each checkpoint."""
    started = time.perf_counter()
    clock = _Clock()
    generator = Generator(accounts=options.accounts, seed=options.seed, days=options.days)
    raw = RawEvents(folder)
    targets = [Target(name, url, clock) for name, url in urls.items()]
    sample_rng = random.Random(options.seed + 1)
    crm_ids = [customer.id for customer in generator.customers]
    checkpoints: list[Checkpoint] = []
    capacities: dict[str, list[float]] = {target.name: [] for target in targets}
    sent = 0
    try:
        clock.now = START - timedelta(seconds=1)
        setup = generator.setup(clock.now)
        raw.add(setup)
        for target in targets:
            await target.send(setup)
            await target.drain()
            target.wal_mark = await target.wal_bytes()
            if target.wal_scope:
                print(f"{target.name}: WAL measured for {target.wal_scope}", flush=True)
        # As `crm-health serve` and `worker` do once started: what exists now lives as long
        # as the process, out of the collector's sight, so that full collections do not walk
        # it again and again (here that is also the benchmark's own generator).
        gc.freeze()
        for number in range(options.days):
            day = generator.day(number)
            raw.add(day)
            sent += day.events
            measured = number + 1 in options.checkpoints
            # Events reach the service as they happen and the worker keeps up: each arrival
            # window's events are sent at its end and drained. On a checkpoint day and the
            # days just before it they all arrive at its end instead, as a backlog after an
            # outage would, so that the drain measures what the worker can do.
            capacity = any(0 <= c - (number + 1) < CAPACITY_DAYS for c in options.checkpoints)
            drained = await _live(
                targets, day, clock, START + timedelta(days=number),
                windows=1 if capacity else ARRIVAL_WINDOWS,
            )  # fmt: skip
            if capacity:
                for target in targets:
                    capacities[target.name].append(day.events / drained[target.name])
            for target in targets:
                await target.maintenance(clock.now)
                await target.wal_bytes()
            if not measured:
                continue
            rescored = sample_rng.sample(crm_ids, k=min(RESCORE_SAMPLES, len(crm_ids)))
            compared = sample_rng.sample(crm_ids, k=min(COMPARED_ACCOUNTS, len(crm_ids)))
            sent += len(rescored)
            for target in targets:
                checkpoint = await _checkpoint(
                    target,
                    day=number + 1,
                    events=sent,
                    events_per_second=statistics.median(capacities[target.name]),
                    raw=raw,
                    log_raw=target is targets[0],
                    rescored=rescored,
                    compared=compared,
                )
                checkpoints.append(checkpoint)
                capacities[target.name] = []
                print(describe(checkpoint), flush=True)
    finally:
        for target in targets:
            await target.close()
        raw.close()
    return Growth(options=options, checkpoints=checkpoints, seconds=time.perf_counter() - started)


# --- the report ---------------------------------------------------------------------------------


def _count(value: float) -> str:
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


def _mb(value: int) -> str:
    return f"{value / 1e6:.1f} MB"


def describe(checkpoint: Checkpoint) -> str:
    """One checkpoint in full: every table's rows, then the figures."""
    tables = ", ".join(f"{name} {_count(n)}" for name, n in checkpoint.rows.items() if n)
    largest = ", ".join(
        f"{name} {_mb(size)} ({size / checkpoint.events:,.1f} B/ev)"
        for name, size in list(checkpoint.table_bytes.items())[:8]
    )
    wal = "" if checkpoint.wal_per_event is None else f", WAL {checkpoint.wal_per_event:,.0f} B/ev"
    same = (
        f"indicators equal for {len(checkpoint.compared)} accounts"
        if not checkpoint.differences
        else f"{len(checkpoint.differences)} INDICATOR DIFFERENCES: {checkpoint.differences[:3]}"
    )
    return (
        f"day {checkpoint.day} {checkpoint.database}: {_count(checkpoint.events)} events; "
        f"size {_mb(checkpoint.size_bytes)} ({_mb(checkpoint.used_bytes)} used), "
        f"{checkpoint.bytes_per_event:,.0f} B/event{wal}; worker "
        f"{checkpoint.worker_events_per_second:,.0f} ev/s; rescore {checkpoint.rescore_ms:.1f} "
        f"ms; recompute {checkpoint.recompute_seconds:.2f} s, DuckDB "
        f"{checkpoint.duckdb_seconds:.2f} s; {same}\n  rows: {tables}\n  bytes: {largest}"
    )


TABLE_COLUMNS = (
    "day", "database", "events", "rows (all tables)", "size", "B/event", "WAL B/event",
    "worker ev/s", "rescore ms", "recompute s", "DuckDB s",
)  # fmt: skip


def table_rows(growth: Growth) -> list[tuple[str, ...]]:
    return [
        (
            str(c.day),
            c.database,
            _count(c.events),
            _count(sum(c.rows.values())),
            _mb(c.used_bytes),
            f"{c.bytes_per_event:,.0f}",
            "-" if c.wal_per_event is None else f"{c.wal_per_event:,.0f}",
            f"{c.worker_events_per_second:,.0f}",
            f"{c.rescore_ms:.1f}",
            f"{c.recompute_seconds:.2f}",
            f"{c.duckdb_seconds:.2f}",
        )
        for c in growth.checkpoints
    ]


def targets(growth: Growth) -> list[str]:
    """The issue's targets, per database: 'PASS ...' or 'FAIL ...' each; a target whose days
    the run did not reach is not judged."""
    verdicts = []
    for database in growth.options.databases:
        at = {c.day: c for c in growth.checkpoints if c.database == database}
        first, last = at.get(30), at.get(365)
        checks: list[tuple[str, bool]] = []
        if last is not None and 90 in at:
            checks.append(
                ("size(365) <= 1.5 x size(90)", last.used_bytes <= 1.5 * at[90].used_bytes)
            )
        if last is not None:
            checks.append(("<= 60 B retained/event at 365", last.bytes_per_event <= 60))
            checks.append(
                ("recompute(365) <= DuckDB(365)", last.recompute_seconds <= last.duckdb_seconds)
            )
            if first is not None:
                ratio = last.worker_events_per_second / first.worker_events_per_second
                checks.append(("worker ev/s(365) within 10% of day 30", ratio >= 0.9))
            if database == "sqlite":
                checks.append(("worker >= 5,000 ev/s", last.worker_events_per_second >= 5000))
        if database == "postgresql":
            wal = [c.wal_per_event for c in at.values() if c.wal_per_event is not None]
            if wal:
                checks.append(("PG WAL <= 2 KB/event", max(wal) <= 2048))
        verdicts += [f"{'PASS' if ok else 'FAIL'} {database}: {name}" for name, ok in checks]
    return verdicts


def print_table(growth: Growth) -> None:
    rows = [TABLE_COLUMNS, *table_rows(growth)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for n, row in enumerate(rows):
        print(" | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("-|-".join("-" * width for width in widths))
    print("targets: " + "; ".join(targets(growth)))


async def run_growth(options: Options) -> Growth:
    """Every database of the options on fresh storage (PostgreSQL: a database dropped after)."""
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        urls: dict[str, str] = {}
        dropped: str | None = None
        if "sqlite" in options.databases:
            urls["sqlite"] = f"sqlite+aiosqlite:///{folder / 'growth.db'}"
        if "postgresql" in options.databases:
            database = await create_pg_database("crm_health_bench_growth")
            if database is None:
                raise RuntimeError("PostgreSQL: no server at 127.0.0.1:5432")
            dropped, urls["postgresql"] = database
        try:
            for url in urls.values():
                await asyncio.to_thread(upgrade_to_head, url)
            return await simulate(options, folder=folder, urls=urls)
        finally:
            if dropped is not None:
                await drop_pg_database(dropped)


async def run() -> list[tuple[str, str]]:
    options = Options.from_env()
    print(
        f"growth: {options.accounts:,} accounts x {USERS_PER_ACCOUNT} users, {options.days} "
        f"days, {', '.join(options.databases)}, checkpoints {options.checkpoints}",
        flush=True,
    )
    growth = await run_growth(options)
    print_table(growth)
    rows = [
        (
            f"growth: {options.accounts:,} accounts x {USERS_PER_ACCOUNT} users, "
            f"{options.days} simulated days (scale {options.scale})",
            f"{growth.seconds / 60:.1f} min in all",
        )
    ]
    for c, cells in zip(growth.checkpoints, table_rows(growth), strict=True):
        rows.append(
            (
                f"  day {c.day}, {c.database}",
                ", ".join(
                    f"{name} {cell}"
                    for name, cell in zip(TABLE_COLUMNS[2:], cells[2:], strict=True)
                ),
            )
        )
    rows.append(("  targets (issue 24)", "; ".join(targets(growth)) or "none reached"))
    return rows
