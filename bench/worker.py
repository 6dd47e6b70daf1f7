"""Worker throughput (events/s from inbox to scored and staged) on SQLite and PostgreSQL, and
the time to recompute 100,000 accounts with 90 days of facts after a configuration change.

BENCH_RECOMPUTE_DENSITY sets the usage those accounts have: `sparse` (default: 3 users on 3 of
90 days, 9 usage rows an account, the figure earlier runs compared) or `realistic` (25 users,
about 10 of them active each day of the 60-day usage window: ~600 rows an account, what the
growth benchmark's customers hold). BENCH_RECOMPUTE_ACCOUNTS changes the 100,000.

`seed_facts` builds the books other benchmarks read too: the preview's, and with a `History`
the calibration benchmark's (facts over many months and known outcomes, for backtests)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from bench.harness import create_pg_database, drop_pg_database
from webhooks.connections import ConnectionRegistry
from webhooks.store import configs, inbox
from webhooks.store.db import SessionFactory, create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import (
    Account,
    AttributeChange,
    CollaborationFact,
    ContactFact,
    InteractionFact,
    OutcomeFact,
    SourceKind,
    TicketFact,
    UsageMonth,
)
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

EVENTS = 50_000
EVENT_ACCOUNTS = 2_000
RECOMPUTE_ACCOUNTS = 100_000
USERS_PER_ACCOUNT = 25
# The days read_facts looks back over usage (the 30-day window and the 30 before it).
USAGE_WINDOW_DAYS = 60
DENSITIES = ("sparse", "realistic")
FEATURES = tuple(f"feature-{n}" for n in range(12))


def recompute_density() -> str:
    density = os.environ.get("BENCH_RECOMPUTE_DENSITY", "sparse")
    if density not in DENSITIES:
        raise SystemExit(f"BENCH_RECOMPUTE_DENSITY={density!r}: choose sparse or realistic")
    return density


def recompute_accounts() -> int:
    return int(os.environ.get("BENCH_RECOMPUTE_ACCOUNTS", str(RECOMPUTE_ACCOUNTS)))


def _events(now: datetime, rng: random.Random) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for n in range(EVENTS):
        account = str(rng.randrange(EVENT_ACCOUNTS))
        at = (now - timedelta(days=rng.uniform(0, 60))).isoformat()
        roll = rng.random()
        if roll < 0.8:
            # Feature-level usage, as products send it: a dozen features, a few used far more.
            feature = FEATURES[min(int(rng.expovariate(0.35)), len(FEATURES) - 1)]
            events.append({"type": "usage", "account": account, "at": at, "user": f"u{n % 50}",
                           "feature": feature})  # fmt: skip
        elif roll < 0.95:
            events.append({"type": "interaction", "account": account, "at": at,
                           "channel": "email", "direction": rng.choice(("customer", "ours")),
                           "contact": f"c{n % 5}"})  # fmt: skip
        else:
            events.append({"type": "ticket", "account": account, "at": at, "ticket": f"t{n}",
                           "priority": rng.choice(("low", "high"))})  # fmt: skip
    return events


async def _declare_accounts(sessions: SessionFactory, pipeline: Pipeline, now: datetime) -> None:
    declared = [
        {"type": "account", "account": str(n), "at": now.isoformat(), "attributes": {}}
        for n in range(EVENT_ACCOUNTS)
    ]
    async with sessions() as session, session.begin():
        await inbox.insert_events(
            session, source="native", connection="default",
            events=[inbox.NewEvent(dedup_key=f"account-{e['account']}", kind="account", payload=e)
                    for e in declared],
            received_at=now,
        )  # fmt: skip
    while (await pipeline.process_inbox()).claimed:
        pass


async def _throughput(url: str) -> float:
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    events = _events(now, random.Random(5))
    pipeline = Pipeline(
        sessions=sessions, connections=ConnectionRegistry([]), options=WorkerOptions()
    )
    # The accounts' records first, untimed: events only count for known accounts, and a
    # source without a connector declares them with `account` events.
    await _declare_accounts(sessions, pipeline, now)
    for start in range(0, EVENTS, 5000):
        async with sessions() as session, session.begin():
            await inbox.insert_events(
                session, source="native", connection="default",
                events=[inbox.NewEvent(dedup_key=str(start + i), kind=str(e["type"]), payload=e)
                        for i, e in enumerate(events[start : start + 5000])],
                received_at=now,
            )  # fmt: skip
    started = time.perf_counter()
    processed = 0
    while (report := await pipeline.process_inbox()).claimed:
        processed += report.processed
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert processed == EVENTS, processed
    return EVENTS / elapsed


def _usage_rows(
    ids: range, *, density: str, today: date, rng: random.Random
) -> list[dict[str, object]]:
    """The accounts' usage as stored: per account, month and user, the bits of the active days."""
    active: list[tuple[int, date, str]] = []
    if density == "sparse":
        active = [
            (i, today - timedelta(days=d), f"u{u}")
            for i in ids
            for u in range(3)
            for d in rng.sample(range(90), 3)
        ]
    else:
        for i in ids:
            # Each user's chance of using the product on a day: about 10 of 25 a day.
            chances = [rng.betavariate(2, 3) for _ in range(USERS_PER_ACCOUNT)]
            for d in range(USAGE_WINDOW_DAYS):
                day = today - timedelta(days=d)
                active += [
                    (i, day, f"u{u}") for u, chance in enumerate(chances) if rng.random() < chance
                ]
    months: dict[tuple[int, date, str], int] = defaultdict(int)
    for i, day, user in active:
        months[(i, day.replace(day=1), user)] |= 1 << (day.day - 1)
    return [
        {"account_id": i, "month": month, "user": user, "days": days}
        for (i, month, user), days in months.items()
    ]


async def seed_facts(
    url: str,
    *,
    accounts: int = RECOMPUTE_ACCOUNTS,
    density: str = "sparse",
    history: History | None = None,
    now: datetime | None = None,
) -> None:
    """`accounts` accounts (ids 1..accounts, connection default). Without `history`: each with
    90 days of interactions, a ticket and usage of the `density` (see the module's docstring),
    everything known since `now`. With it: the book `History` describes (sparse usage only)."""
    if history is not None and density != "sparse":
        raise ValueError("a book with a history has sparse usage only")
    engine = create_engine(url)
    rng = random.Random(9)
    now = now or datetime.now(UTC)
    # Realistic usage is ~600 rows an account: smaller chunks keep the rows built at once small.
    chunk = 5000 if density == "sparse" and history is None else 500
    since = now if history is None else history.start(now)
    async with engine.begin() as connection:
        for start in range(0, accounts, chunk):
            ids = range(start + 1, min(start + chunk, accounts) + 1)
            tables = (
                _recent_rows(ids, density=density, now=now, rng=rng)
                if history is None
                else _history_rows(ids, history=history, now=now, rng=rng)
            )
            for model, rows in tables:
                if rows:
                    await connection.execute(insert(model), rows)
        kinds = ("usage", "interaction", "ticket") + (() if history is None else ("collaboration",))
        await connection.execute(
            insert(SourceKind),
            [{"connection": "default", "kind": k, "first_seen_at": since} for k in kinds],
        )
    await engine.dispose()


Rows = list[dict[str, object]]


def _recent_rows(
    ids: range, *, density: str, now: datetime, rng: random.Random
) -> Iterator[tuple[type, Rows]]:
    """The accounts of a book without history: seats set now, the last 90 days of facts."""
    yield (
        Account,
        [
            {
                "id": i,
                "connection": "default",
                "crm": "hubspot",
                "crm_id": str(i),
                "attributes": {"seats": {"value": "20", "at": now.isoformat()}},
                "band": "unknown",
                "created_at": now,
                "last_usage_at": now - timedelta(days=rng.uniform(0, 20)),
                "last_interaction_at": now,
            }
            for i in ids
        ],
    )
    yield UsageMonth, _usage_rows(ids, density=density, today=now.date(), rng=rng)
    yield (
        InteractionFact,
        [
            {
                "account_id": i,
                "at": now - timedelta(days=rng.uniform(0, 90)),
                "channel": "email",
                "direction": rng.choice(("customer", "ours")),
                "contact": f"c{rng.randrange(4)}",
            }
            for i in ids
            for _ in range(3)
        ],
    )
    yield TicketFact, [
        {"account_id": i, "ticket": "t", "opened_at": now - timedelta(days=10),
         "priority": "low", "updated_at": now} for i in ids
    ]  # fmt: skip


# History books: the days before its churn over which a churned account's engagement fades
# (in the first half a day of use is kept with odds 1/2, in the second 1/4; interactions alike).
FADE_DAYS = 120
COLLABORATION_KINDS = ("feedback", "feature_request", "beta", "referral", "case_study")
EXECUTIVE = "exec"


@dataclass(frozen=True, kw_only=True)
class History:
    """A book with a past, for backtests: every account known since `days` ago (its record,
    its seats and ARR in the attribute history, every kind of source), each with its own
    engagement, 0..1 (`engagement(account id)`), that sets how many of its `seats` use the
    product and how often, how often it talks with us and starts the conversation, reaches an
    executive, co-innovates, opens and escalates tickets, and where its ARR went. An account
    in `outcomes` (id: (time, churned)) renewed or churned then, with an outcome row; a
    churned account's engagement fades over the FADE_DAYS before, and its facts stop there."""

    days: int
    engagement: Callable[[int], float]
    outcomes: Mapping[int, tuple[datetime, bool]] = field(default_factory=dict)
    seats: int = 8

    def start(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)


def _days_mask(month: date, first: date, last: date) -> int:
    """The bits (bit d-1 for day d) of the days of `month` from `first` to `last`."""
    following = (month + timedelta(days=32)).replace(day=1)
    low, high = max(first, month), min(last, following - timedelta(days=1))
    if low > high:
        return 0
    return ((1 << high.day) - 1) ^ ((1 << (low.day - 1)) - 1)


def _times(
    rng: random.Random, per_day: float, start: datetime, end: datetime, fade: datetime | None
) -> Iterator[datetime]:
    """The moments of a Poisson process of `per_day` from `start` to `end`, thinned in the
    fade (see FADE_DAYS) when there is one."""
    if per_day <= 0:
        return
    at, span = start, (end - start).total_seconds() / 86_400
    while (gap := rng.expovariate(per_day)) < span:
        at += timedelta(days=gap)
        span -= gap
        if fade is not None and at > fade:
            keep = 0.5 if at < fade + timedelta(days=FADE_DAYS / 2) else 0.25
            if rng.random() >= keep:
                continue
        yield at


def _history_rows(
    ids: range, *, history: History, now: datetime, rng: random.Random
) -> Iterator[tuple[type, Rows]]:
    start = history.start(now)
    first_month = start.date().replace(day=1)
    months = [first_month]
    while months[-1] < now.date().replace(day=1):
        months.append((months[-1] + timedelta(days=32)).replace(day=1))
    tables: dict[type, Rows] = {
        model: []
        for model in (
            Account, UsageMonth, InteractionFact, TicketFact, CollaborationFact, ContactFact,
            AttributeChange, OutcomeFact,
        )
    }  # fmt: skip
    for i in ids:
        level = history.engagement(i)
        outcome = history.outcomes.get(i)
        end = outcome[0] if outcome is not None and outcome[1] else now
        fade = end - timedelta(days=FADE_DAYS) if end < now else None
        windows = [(m, _days_mask(m, start.date(), end.date())) for m in months]
        halves = (
            []
            if fade is None
            else [
                (
                    _days_mask(m, fade.date(), (fade + timedelta(days=FADE_DAYS / 2)).date()),
                    _days_mask(m, (fade + timedelta(days=FADE_DAYS / 2)).date(), end.date()),
                )
                for m in months
            ]
        )
        last_day: date | None = None
        for user in range(1 + round(5 * level)):
            # The share of days this user is active on: 1/4 (two ANDs of random bits) to 1/32.
            ands = 2 + sum(rng.random() > level for _ in range(3))
            per_day = 1 + rng.randrange(8)
            for n, (month, window) in enumerate(windows):
                bits = window
                for _ in range(ands):
                    bits &= rng.getrandbits(31)
                if halves:
                    first_half, second_half = halves[n]
                    bits &= ~(first_half & ~rng.getrandbits(31))
                    bits &= ~(second_half & ~(rng.getrandbits(31) & rng.getrandbits(31)))
                if not bits:
                    continue
                tables[UsageMonth].append(
                    {"account_id": i, "month": month, "user": f"u{user}", "days": bits,
                     "events": bits.bit_count() * per_day}
                )  # fmt: skip
                day = month + timedelta(days=bits.bit_length() - 1)
                last_day = day if last_day is None or day > last_day else last_day
        times = list(_times(rng, (0.5 + 4 * level) / 90, start, end, fade))
        tables[InteractionFact] += [
            {
                "account_id": i,
                "at": at,
                "channel": rng.choice(("email", "call", "meeting")),
                "direction": "customer" if rng.random() < 0.1 + 0.5 * level else "ours",
                "contact": EXECUTIVE
                if rng.random() < 0.3 * level
                else f"c{rng.randrange(1 + round(3 * level))}",
            }
            for at in times
        ]
        tables[TicketFact] += [
            {"account_id": i, "ticket": f"t{n}", "opened_at": at, "updated_at": at,
             "priority": rng.choice(("high", "urgent") if rng.random() < 0.45 - 0.35 * level
                                    else ("low", "medium"))}
            for n, at in enumerate(_times(rng, (2.5 - 2 * level) / 90, start, end, None))
        ]  # fmt: skip
        tables[CollaborationFact] += [
            {"account_id": i, "at": at, "kind": rng.choice(COLLABORATION_KINDS)}
            for at in _times(rng, 3 * level / 180, start, end, fade)
        ]
        tables[ContactFact].append(
            {"account_id": i, "contact": EXECUTIVE, "title": "CEO", "executive": True,
             "updated_at": start}
        )  # fmt: skip
        arr = float(rng.randrange(20, 200) * 1000)
        arr_now = round(arr * (0.85 + 0.3 * level), -2)
        arr_at = start + (end - start) * rng.random()
        tables[AttributeChange] += [
            {"account_id": i, "name": "seats", "at": start, "value": str(history.seats)},
            {"account_id": i, "name": "arr", "at": start, "value": str(arr)},
            {"account_id": i, "name": "arr", "at": arr_at, "value": str(arr_now)},
        ]
        if outcome is not None:
            tables[OutcomeFact].append(
                {"account_id": i, "at": outcome[0], "arr": arr_now,
                 "outcome": "churned" if outcome[1] else "renewed"}
            )  # fmt: skip
        tables[Account].append(
            {
                "id": i,
                "connection": "default",
                "crm": "hubspot",
                "crm_id": str(i),
                "attributes": {
                    "seats": {"value": str(history.seats), "at": start.isoformat()},
                    "arr": {"value": str(arr_now), "at": arr_at.isoformat()},
                },
                "band": "unknown",
                "created_at": start,
                # The end of the last day of use (usage is kept per day), not after the end.
                "last_usage_at": None
                if last_day is None
                else min(
                    end,
                    datetime(last_day.year, last_day.month, last_day.day, tzinfo=UTC)
                    + timedelta(days=1),
                ),
                "last_interaction_at": max(times, default=None),
            }
        )
    # The accounts first: every other row refers to one.
    yield from tables.items()


async def recompute(url: str, *, accounts: int = RECOMPUTE_ACCOUNTS) -> float:
    """Seconds to score every account after a configuration change."""
    engine = create_engine(url)
    sessions = create_session_factory(engine)
    async with sessions() as session, session.begin():
        await configs.request_recompute(
            session, config_id=None, reason="benchmark", now=datetime.now(UTC)
        )
    pipeline = Pipeline(
        sessions=sessions, connections=ConnectionRegistry([]), options=WorkerOptions()
    )
    # As a started worker does (webhooks.cli.service.worker): no full collections walking
    # what was built before the job.
    gc.freeze()
    started = time.perf_counter()
    rescored = 0
    while count := await pipeline.recompute_step():
        rescored += count
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert rescored == accounts, rescored
    return elapsed


async def run() -> list[tuple[str, str]]:
    return [*(await run_throughput()), *(await run_recompute())]


async def run_throughput() -> list[tuple[str, str]]:
    """The throughput rows alone (`python -m bench.worker throughput`)."""
    rows: list[tuple[str, str]] = [
        (f"worker, {EVENTS:,} native events over {EVENT_ACCOUNTS:,} accounts", "")
    ]
    # This VM's speed varies by tens of percent between runs: report the median of three
    # fresh databases, with the spread, rather than one lucky or unlucky run.
    rates = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'worker.db'}"
            await asyncio.to_thread(upgrade_to_head, url)
            rates.append(await _throughput(url))
    rows.append(("  SQLite, one worker, median of 3 (target >= 5,000/s)", _median(rates)))
    rates = []
    for _ in range(3):
        database = await create_pg_database("crm_health_bench_worker")
        if database is None:
            rows.append(("  PostgreSQL, one worker", "skipped: no server at 127.0.0.1:5432"))
            return rows
        try:
            await asyncio.to_thread(upgrade_to_head, database[1])
            rates.append(await _throughput(database[1]))
        finally:
            await drop_pg_database(database[0])
    rows.append(("  PostgreSQL, one worker, median of 3", _median(rates)))
    return rows


def _median(rates: list[float]) -> str:
    rates = sorted(rates)
    return f"{rates[1]:,.0f} events/s (runs {rates[0]:,.0f}..{rates[2]:,.0f})"


async def run_recompute() -> list[tuple[str, str]]:
    """The recompute rows alone (`python -m bench.worker recompute`)."""
    rows: list[tuple[str, str]] = []
    density, accounts = recompute_density(), recompute_accounts()
    rows.append((f"recompute {accounts:,} accounts, 90 days of facts, {density} usage", ""))
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'recompute.db'}"
        await asyncio.to_thread(upgrade_to_head, url)
        seeding = time.perf_counter()
        await seed_facts(url, accounts=accounts, density=density)
        seeded = time.perf_counter() - seeding
        seconds = await recompute(url, accounts=accounts)
        rows.append(
            (
                "  SQLite (target <= 60 s)",
                f"{seconds:.1f} s ({accounts / seconds:,.0f}/s; seeding took {seeded:.0f} s)",
            )
        )
    return rows


if __name__ == "__main__":
    from webhooks.logging import configure_logging

    configure_logging(level="warning")
    chosen = {"recompute": run_recompute, "throughput": run_throughput}.get(
        sys.argv[1] if sys.argv[1:] else "", run
    )
    for name, value in asyncio.run(chosen()):
        print(f"{name:60} | {value}")
