"""The portfolio on a large book: `webhooks.portfolio.portfolio` (what GET /api/v1/portfolio
answers) through the service's read-only engine, on a book of 100,000 live customer accounts,
each with the state in force before the 91-day window and about 3 health changes in it, an ARR
history (the value in force before the window, and a change in it for a third of them),
segments, owners (with names in the owner cache) and renewal dates, on SQLite and PostgreSQL.
Target: under 2 s, unfiltered and filtered.

The book is written straight into the tables (the worker would take an hour to score it). Each
case is timed 3 times after a warm-up run; the table shows the median and the slowest.
`python -m bench portfolio [--accounts N] [--backend sqlite|postgresql|both]`; without options
BENCH_PORTFOLIO_ACCOUNTS and BENCH_PORTFOLIO_BACKEND (default both) apply."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from bench.harness import on_each_backend
from webhooks import portfolio
from webhooks.accounts_view import AccountQuery
from webhooks.store.db import create_engine, create_read_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import (
    Account,
    AttributeChange,
    CRMOwnerContact,
    HealthSnapshot,
    core_table,
)

ACCOUNTS = 100_000
TARGET_SECONDS = 2.0
BACKENDS = ("sqlite", "postgresql")
CONNECTION = "default"
RUNS = 3
CHUNK = 10_000
BANDS = ("healthy", "neutral", "at_risk", "onboarding", "unknown")
BAND_WEIGHTS = (40, 30, 20, 5, 5)
SEGMENTS = ("enterprise", "mid-market", "smb", "startup")
OWNERS = 200
# What each case asks: the whole book, then one segment's at-risk accounts renewing within 90
# days (the filters the page's pickers send).
CASES: dict[str, AccountQuery] = {
    "unfiltered": AccountQuery(),
    "filtered": AccountQuery(
        bands=("at_risk", "neutral"), segments=("enterprise",), renewal_within_days=180
    ),
}


@dataclass(frozen=True, kw_only=True)
class Options:
    accounts: int = ACCOUNTS
    backends: tuple[str, ...] = BACKENDS

    @classmethod
    def parse(cls, argv: list[str]) -> Options:
        env = os.environ
        parser = argparse.ArgumentParser(
            prog="python -m bench portfolio",
            description=f"GET /api/v1/portfolio on a large book; target under {TARGET_SECONDS} s.",
        )
        parser.add_argument(
            "--accounts",
            type=int,
            default=int(env.get("BENCH_PORTFOLIO_ACCOUNTS", ACCOUNTS)),
            help="accounts in the book (default %(default)s)",
        )
        parser.add_argument(
            "--backend",
            choices=(*BACKENDS, "both"),
            default=env.get("BENCH_PORTFOLIO_BACKEND", "both"),
            help="PostgreSQL: a throwaway database on 127.0.0.1:5432 (default %(default)s)",
        )
        found = parser.parse_args(argv)
        if found.accounts < 1:
            parser.error("--accounts: at least 1")
        if found.backend not in (*BACKENDS, "both"):
            parser.error(f"BENCH_PORTFOLIO_BACKEND={found.backend!r}: sqlite, postgresql or both")
        backends = BACKENDS if found.backend == "both" else (found.backend,)
        return cls(accounts=found.accounts, backends=backends)


@dataclass
class Book:
    """Rows of the tables, built once and written to each backend."""

    accounts: list[dict[str, Any]] = field(default_factory=list)
    health: list[dict[str, Any]] = field(default_factory=list)
    arr: list[dict[str, Any]] = field(default_factory=list)
    owners: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, accounts: int, *, now: datetime, seed: int = 91) -> Book:
        rng = random.Random(seed)
        book = cls()
        for n in range(1, accounts + 1):
            book._account(n, rng, now)
        book.owners = [
            {"connection": CONNECTION, "owner_id": f"owner-{n}", "email": f"o{n}@example.com",
             "name": f"Owner {n}", "found": True, "fetched_at": now}
            for n in range(OWNERS)
        ]  # fmt: skip
        return book

    def _account(self, n: int, rng: random.Random, now: datetime) -> None:
        # Older history (as retention keeps it, up to two years), then ~3 changes in the
        # window (1 to 5).
        older = sorted(rng.uniform(91, 730) for _ in range(rng.randrange(1, 5)))
        changes = sorted(rng.uniform(0.01, 90) for _ in range(rng.choice((1, 2, 3, 3, 4, 5))))
        times = [now - timedelta(days=days) for days in (*reversed(older), *reversed(changes))]
        score = rng.randrange(0, 101)
        band = rng.choices(BANDS, BAND_WEIGHTS)[0]
        for at in times:
            score = max(0, min(100, score + rng.randrange(-25, 26)))
            band = rng.choices(BANDS, BAND_WEIGHTS)[0]
            self.health.append({"account_id": n, "computed_at": at, "score": score, "band": band})
        # ARR history: one to three values before the window, a change in it for a third.
        arr = float(rng.randrange(5, 500) * 1000)
        for days in sorted(
            (rng.uniform(91, 730) for _ in range(rng.randrange(1, 4))), reverse=True
        ):
            arr = float(rng.randrange(5, 500) * 1000)
            at = now - timedelta(days=days)
            self.arr.append({"account_id": n, "name": "arr", "at": at, "value": str(arr)})
        if rng.random() < 1 / 3:
            arr = round(arr * rng.uniform(0.7, 1.4), 2)
            at = now - timedelta(days=rng.uniform(0, 90))
            self.arr.append({"account_id": n, "name": "arr", "at": at, "value": str(arr)})
        renewal = now.date() + timedelta(days=rng.randrange(-30, 400))
        self.accounts.append(
            {
                "id": n, "connection": CONNECTION, "crm": "hubspot", "crm_id": str(n),
                "name": f"Account {n}", "attributes": {}, "band": band, "score": score,
                "customer": True, "created_at": times[0], "health_updated_at": times[-1],
                "segment": rng.choice(SEGMENTS), "owner": f"owner-{rng.randrange(OWNERS)}",
                "arr": arr if rng.random() > 0.03 else None, "renewal_date": renewal,
                "trend_30d": rng.randrange(-20, 21),
            }
        )  # fmt: skip


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


async def write(url: str, book: Book) -> None:
    engine = create_engine(url)
    try:
        for model, rows in (
            (Account, book.accounts),
            (HealthSnapshot, book.health),
            (AttributeChange, book.arr),
            (CRMOwnerContact, book.owners),
        ):
            for chunk in _chunks(rows):
                async with engine.begin() as connection:
                    await connection.execute(insert(core_table(model)), chunk)
        if url.startswith("postgresql"):
            # Planner statistics and the visibility map, as autovacuum keeps them on a live
            # server. Outside a transaction: VACUUM cannot run in one, and an ANALYZE rolled
            # back with its transaction leaves no statistics.
            autocommit = await engine.connect()
            try:
                await autocommit.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
            finally:
                await autocommit.close()
    finally:
        await engine.dispose()


@dataclass
class Result:
    backend: str
    accounts: int
    health_rows: int
    arr_rows: int
    build_seconds: float
    # Per case: the seconds of each timed run, and what the answer held.
    runs: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)

    def met(self) -> bool:
        return all(max(runs) < TARGET_SECONDS for runs in self.runs.values())


async def measure(url: str, backend: str, book: Book, now: datetime) -> Result:
    await asyncio.to_thread(upgrade_to_head, url)
    started = time.perf_counter()
    await write(url, book)
    result = Result(
        backend=backend,
        accounts=len(book.accounts),
        health_rows=len(book.health),
        arr_rows=len(book.arr),
        build_seconds=time.perf_counter() - started,
    )
    engine = create_read_engine(url) or create_engine(url)
    sessions = create_session_factory(engine)
    try:
        for case, query in CASES.items():

            async def once(query: AccountQuery = query) -> portfolio.Portfolio:
                return await portfolio.portfolio(
                    sessions, connection=CONNECTION, query=query, now=now, currency="USD"
                )

            await once()  # warm-up: imports, statement caches, the database's own caches
            seconds = []
            for _ in range(RUNS):
                begun = time.perf_counter()
                answer = await once()
                seconds.append(time.perf_counter() - begun)
            result.runs[case] = seconds
            result.answers[case] = (
                f"{answer.totals.accounts:,} accounts, {len(answer.history)} days, "
                f"{len(answer.movers.items)} movers, {answer.renewals.total:,} renewals"
            )
    finally:
        await engine.dispose()
    return result


async def run_portfolio(options: Options) -> tuple[list[Result], list[str]]:
    """Results per backend, and the backends skipped (no PostgreSQL server)."""
    now = datetime.now(UTC)
    book = Book.of(options.accounts, now=now)
    return await on_each_backend(
        options.backends, "portfolio", lambda url, backend: measure(url, backend, book, now)
    )


def table_rows(results: list[Result], skipped: list[str]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for result in results:
        rows.append(
            (
                f"  {result.backend}: book",
                f"{result.accounts:,} accounts, {result.health_rows:,} health rows, "
                f"{result.arr_rows:,} ARR rows; written in {result.build_seconds:.1f} s",
            )
        )
        for case, seconds in result.runs.items():
            verdict = "meets target" if max(seconds) < TARGET_SECONDS else "MISSES target"
            rows.append(
                (
                    f"  {result.backend}: portfolio, {case}",
                    f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s "
                    f"({result.answers[case]}); {verdict}",
                )
            )
    rows += [(f"  {backend}", "skipped: no server at 127.0.0.1:5432") for backend in skipped]
    return rows


async def run(options: Options | None = None) -> list[tuple[str, str]]:
    options = options or Options.parse([])
    results, skipped = await run_portfolio(options)
    return [
        (
            f"Portfolio (GET /api/v1/portfolio), {options.accounts:,} accounts",
            f"webhooks.portfolio.portfolio on the read-only engine; {RUNS} runs after a "
            f"warm-up; target < {TARGET_SECONDS:.0f} s",
        ),
        *table_rows(results, skipped),
    ]
