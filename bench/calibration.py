"""Backtest and suggestion on a large book: `run_backtest` at the default horizons (30, 60, 90)
with the default 200 bootstrap resamples, then `run_suggest` at 90 days, as the service's jobs
run them (the read-only engine, its session), on a book of 100,000 accounts with 5,000 known
outcomes spread over the last 300 days, on SQLite and PostgreSQL. Target: backtest + suggest
under 60 s.

The book is `bench.worker.seed_facts` with a `History`: 450 days of facts (the oldest outcome,
its 90-day horizon and the 60-day usage window before that), each account with an engagement
that sets its facts; an account with an outcome churned with odds that fall with its
engagement (plus chance), and a churned one's engagement fades over the 120 days before.

`python -m bench calibration [--accounts N] [--outcomes N] [--backend sqlite|postgresql|both]
[--smoke] [--profile [N]]`; without options BENCH_CALIBRATION_ACCOUNTS, _OUTCOMES and _BACKEND
(default both) apply. --profile runs cProfile over the backtest and the suggestion (the
scoring threads too) and prints the top N entries and where the time went."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import gc
import io
import math
import os
import pstats
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import on_each_backend, rss_bytes
from bench.worker import History, seed_facts
from signals import calibration as rank_statistics
from webhooks import calibration
from webhooks.store import facts
from webhooks.store.db import create_engine, create_read_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head

ACCOUNTS = 100_000
OUTCOMES = 5_000
# --smoke: enough churned and renewed outcomes for a suggestion (30 of each at least).
SMOKE_ACCOUNTS = 1_000
SMOKE_OUTCOMES = 200
OUTCOME_DAYS = 300
# The oldest outcome, its longest horizon (90 days) and the 60-day usage window before it.
HISTORY_DAYS = OUTCOME_DAYS + 90 + 60
TARGET_SECONDS = 60.0
BACKENDS = ("sqlite", "postgresql")
CONNECTION = "default"
# Churn odds: logit = BASE + SLOPE x (0.5 - engagement): about 3 in 4 at engagement 0, 1 in 5
# at 0.5, 1 in 50 at 1 (about 30% of the outcomes churn).
CHURN_BASE = -1.3
CHURN_SLOPE = 5.0
RSS_SAMPLE_SECONDS = 0.01


@dataclass(frozen=True, kw_only=True)
class Options:
    accounts: int = ACCOUNTS
    outcomes: int = OUTCOMES
    backends: tuple[str, ...] = BACKENDS
    seed: int = 7
    # Top entries of a cProfile run to print (0: no profile).
    profile: int = 0

    @classmethod
    def parse(cls, argv: list[str]) -> Options:
        """The command line's options, with the environment's as defaults."""
        env = os.environ
        parser = argparse.ArgumentParser(
            prog="python -m bench calibration",
            description="Backtest + suggest on a large book; target under 60 s.",
        )
        parser.add_argument(
            "--accounts",
            type=int,
            default=int(env.get("BENCH_CALIBRATION_ACCOUNTS", ACCOUNTS)),
            help="accounts in the book (default %(default)s)",
        )
        parser.add_argument(
            "--outcomes",
            type=int,
            default=int(env.get("BENCH_CALIBRATION_OUTCOMES", OUTCOMES)),
            help=f"accounts with a known outcome in the last {OUTCOME_DAYS} days "
            "(default %(default)s)",
        )
        parser.add_argument(
            "--backend",
            choices=("sqlite", "postgresql", "both"),
            default=env.get("BENCH_CALIBRATION_BACKEND", "both"),
            help="PostgreSQL: a throwaway database on 127.0.0.1:5432 (default %(default)s)",
        )
        parser.add_argument(
            "--smoke",
            action="store_true",
            help=f"{SMOKE_ACCOUNTS:,} accounts, {SMOKE_OUTCOMES} outcomes (a quick check)",
        )
        parser.add_argument(
            "--profile",
            type=int,
            nargs="?",
            const=25,
            default=0,
            metavar="N",
            help="cProfile the backtest and suggestion; print the top N entries (default 25)",
        )
        found = parser.parse_args(argv)
        if found.backend not in (*BACKENDS, "both"):
            parser.error(f"BENCH_CALIBRATION_BACKEND={found.backend!r}: sqlite, postgresql or both")
        accounts, outcomes = found.accounts, found.outcomes
        if found.smoke:
            accounts, outcomes = SMOKE_ACCOUNTS, SMOKE_OUTCOMES
        if not 0 < outcomes <= accounts:
            parser.error("--outcomes: 1 to --accounts")
        return cls(
            accounts=accounts,
            outcomes=outcomes,
            backends=BACKENDS if found.backend == "both" else (found.backend,),
            profile=found.profile,
        )


# --- the book -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Book:
    """What `seed_facts` builds (`history`), the moment it stands at, and how many distinct
    outcome days (each one a moment read per horizon) and churns it has."""

    now: datetime
    history: History
    outcome_days: int
    churned: int

    @classmethod
    def of(cls, options: Options) -> Book:
        rng = random.Random(options.seed)
        now = datetime.now(UTC)
        levels = [rng.random() for _ in range(options.accounts)]
        outcomes: dict[int, tuple[datetime, bool]] = {}
        for account in rng.sample(range(1, options.accounts + 1), options.outcomes):
            logit = CHURN_BASE + CHURN_SLOPE * (0.5 - levels[account - 1])
            churned = rng.random() < 1 / (1 + math.exp(-logit))
            outcomes[account] = (now - timedelta(days=rng.uniform(1, OUTCOME_DAYS)), churned)
        history = History(
            days=HISTORY_DAYS, engagement=lambda account: levels[account - 1], outcomes=outcomes
        )
        return cls(
            now=now,
            history=history,
            outcome_days=len({at.date() for at, _ in outcomes.values()}),
            churned=sum(churned for _, churned in outcomes.values()),
        )


# --- measuring ----------------------------------------------------------------------------------


class PeakRss:
    """This process's resident set sampled on a thread every RSS_SAMPLE_SECONDS while the block
    runs: `peak` is the highest sample above the one at its start (the block's own growth)."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _now(self) -> int:
        return rss_bytes(os.getpid()) or 0

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            self.peak = max(self.peak, self._now() - self.start)

    def __enter__(self) -> PeakRss:
        self.start = self._now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._now() - self.start)


def _settle() -> None:
    """Garbage from the build collected and its freed heap handed back to the system (glibc),
    so each phase's RSS growth is its own; the rest frozen, as the service freezes its
    start-up heap (the scoring's collections then skip it)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    gc.freeze()


class Statements:
    """SQL statements the engine sent while counting."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._one)

    def _one(self, *_: object) -> None:
        self.count += 1


@dataclass
class Phase:
    seconds: float = 0.0
    peak_rss: int = 0
    statements: int = 0
    cases_read: int = 0


@dataclass
class Result:
    backend: str
    accounts: int
    outcomes: int
    churned: int
    outcome_days: int
    build_seconds: float = 0.0
    backtest: Phase = field(default_factory=Phase)
    suggest: Phase = field(default_factory=Phase)
    # (days, cases, AUC, interval low, interval high) per horizon.
    horizons: list[tuple[int, int, float | None, float | None, float | None]] = field(
        default_factory=list
    )
    suggestion: dict[str, Any] = field(default_factory=dict)
    profile: str = ""

    @property
    def seconds(self) -> float:
        return self.backtest.seconds + self.suggest.seconds

    @property
    def met(self) -> bool:
        return self.seconds < TARGET_SECONDS

    def cv(self) -> str:
        if self.suggestion.get("status") != "suggested":
            return f"refused: {self.suggestion.get('reason', '?')}"
        cv = self.suggestion["cross_validation"]
        return f"{_auc(cv['current_auc'])} / {_auc(cv['suggested_auc'])}"


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


async def _timed(
    engine: AsyncEngine,
    work: Callable[[Any, calibration.ProgressFn], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], Phase]:
    """`work` in a session of its own, timed, with its RSS growth, statements and cases read."""
    phase = Phase()
    statements = Statements(engine)

    async def progress(done: int, total: int) -> None:
        phase.cases_read = done

    sessions = create_session_factory(engine)
    _settle()
    try:
        with PeakRss() as rss:
            started = time.perf_counter()
            async with sessions() as session:
                result = await work(session, progress)
            phase.seconds = time.perf_counter() - started
    finally:
        gc.unfreeze()
        event.remove(engine.sync_engine, "before_cursor_execute", statements._one)
    phase.peak_rss, phase.statements = rss.peak, statements.count
    return result, phase


async def measure(url: str, backend: str, options: Options, book: Book) -> Result:
    """Build the book at `url` (a fresh database), then time the backtest and the suggestion."""
    result = Result(
        backend=backend,
        accounts=options.accounts,
        outcomes=options.outcomes,
        churned=book.churned,
        outcome_days=book.outcome_days,
    )
    await asyncio.to_thread(upgrade_to_head, url)
    started = time.perf_counter()
    await seed_facts(url, accounts=options.accounts, history=book.history, now=book.now)
    if backend == "postgresql":
        # Planner statistics, as autovacuum keeps them on a live server (a freshly loaded table
        # has none, and its plans are not what production sees).
        engine = create_engine(url)
        async with engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
        await engine.dispose()
    result.build_seconds = time.perf_counter() - started
    # The jobs read through the service's read-only engine (webhooks.calibration.JobRunner).
    engine = create_read_engine(url) or create_engine(url)
    try:
        with _profiling(options.profile, engine) as profile:
            backtest, result.backtest = await _timed(
                engine,
                lambda session, progress: calibration.run_backtest(
                    session,
                    connection=CONNECTION,
                    request=calibration.BacktestRequest(),
                    now=book.now,
                    progress=progress,
                ),
            )
            suggestion, result.suggest = await _timed(
                engine,
                lambda session, progress: calibration.run_suggest(
                    session,
                    connection=CONNECTION,
                    request=calibration.SuggestRequest(),
                    now=book.now,
                    progress=progress,
                ),
            )
        result.profile = profile.report(options.profile) if options.profile else ""
    finally:
        await engine.dispose()
    for horizon in backtest["horizons"]:
        interval = horizon.get("auc_interval") or {}
        result.horizons.append(
            (
                horizon["days"],
                horizon["churned"] + horizon["renewed"] - horizon["before_record"],
                horizon.get("auc"),
                interval.get("low"),
                interval.get("high"),
            )
        )
    result.suggestion = suggestion
    return result


# --- profiling ----------------------------------------------------------------------------------


# The reads of webhooks.store.facts a backtest makes (read_facts calls the others), timed one by
# one under --profile: wall time, and the part of it spent executing SQL.
FACT_READS = (
    "read_facts", "first_records", "_usage", "_feature_usage", "_interactions", "_counts",
    "_tickets", "_of_senders", "_attribute_at", "_last_usage_until", "_custom_values",
)  # fmt: skip


@dataclass
class Spent:
    calls: int = 0
    seconds: float = 0.0
    sql_seconds: float = 0.0
    statements: int = 0


class Profile:
    """cProfile of the event loop's thread and of each scoring thread (`evaluate`, `suggest`
    run in `asyncio.to_thread`, which the loop's profile does not see), merged; and per fact
    read (FACT_READS) and scoring call, its wall time and the SQL executed in it. Everything
    here runs one thing at a time, so the read in progress is the innermost one started."""

    def __init__(self) -> None:
        self.loop = cProfile.Profile()
        self.threads: list[cProfile.Profile] = []
        self.spent: dict[str, Spent] = {}
        self._open: list[str] = []
        self._sql_started = 0.0

    def in_thread(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(*args: Any, **kwargs: Any) -> Any:
            profile = cProfile.Profile()
            self.threads.append(profile)
            started = time.perf_counter()
            try:
                return profile.runcall(function, *args, **kwargs)
            finally:
                self._add(function.__name__, time.perf_counter() - started)

        return profiled

    def timed(self, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            self._open.append(function.__name__)
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self._open.pop()
                self._add(function.__name__, time.perf_counter() - started)

        return timed

    def _add(self, name: str, seconds: float) -> None:
        spent = self.spent.setdefault(name, Spent())
        spent.calls += 1
        spent.seconds += seconds

    def before_sql(self, *_: object) -> None:
        self._sql_started = time.perf_counter()

    def after_sql(self, *_: object) -> None:
        seconds = time.perf_counter() - self._sql_started
        # Every read open counts it (read_facts holds its helpers).
        for name in {*self._open} or {"(elsewhere)"}:
            spent = self.spent.setdefault(name, Spent())
            spent.sql_seconds += seconds
            spent.statements += 1

    def report(self, top: int) -> str:
        out = io.StringIO()
        out.write("wall time (and SQL executing, from cursor execute to its return) per call:\n")
        for name, spent in sorted(self.spent.items(), key=lambda item: -item[1].seconds):
            out.write(
                f"  {name:20} {spent.calls:6,} calls {spent.seconds:7.1f} s; SQL "
                f"{spent.statements:6,} statements {spent.sql_seconds:7.1f} s\n"
            )
        stats = pstats.Stats(self.loop, stream=out)
        for profile in self.threads:
            stats.add(profile)
        stats.strip_dirs()
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        return out.getvalue()


@contextlib.contextmanager
def _profiling(top: int, engine: AsyncEngine) -> Iterator[Profile]:
    """With `top`: the profile on, the scoring threads and the fact reads wrapped (in this
    process only; the modules are put back after)."""
    profile = Profile()
    if not top:
        yield profile
        return
    patched = [
        (calibration, "evaluate", profile.in_thread(rank_statistics.evaluate)),
        (calibration, "suggest", profile.in_thread(rank_statistics.suggest)),
        *((facts, name, profile.timed(getattr(facts, name))) for name in FACT_READS),
    ]
    kept = [(module, name, getattr(module, name)) for module, name, _ in patched]
    for module, name, replacement in patched:
        setattr(module, name, replacement)
    event.listen(engine.sync_engine, "before_cursor_execute", profile.before_sql)
    event.listen(engine.sync_engine, "after_cursor_execute", profile.after_sql)
    profile.loop.enable()
    try:
        yield profile
    finally:
        profile.loop.disable()
        event.remove(engine.sync_engine, "before_cursor_execute", profile.before_sql)
        event.remove(engine.sync_engine, "after_cursor_execute", profile.after_sql)
        for module, name, original in kept:
            setattr(module, name, original)


# --- the table ----------------------------------------------------------------------------------

TABLE_COLUMNS = (
    "backend", "accounts", "outcomes", "build s", "backtest s", "suggest s", "total s",
    "peak MiB bt/sg", "AUC 30/60/90", "CV AUC now/suggested",
)  # fmt: skip


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    return [
        (
            r.backend,
            f"{r.accounts:,}",
            f"{r.outcomes:,}",
            f"{r.build_seconds:.1f}",
            f"{r.backtest.seconds:.1f}",
            f"{r.suggest.seconds:.1f}",
            f"{r.seconds:.1f}",
            f"{_mib(r.backtest.peak_rss)} / {_mib(r.suggest.peak_rss)}",
            "/".join(_auc(auc) for _, _, auc, _, _ in r.horizons),
            r.cv(),
        )
        for r in results
    ]


def verdict(results: list[Result]) -> str:
    return "; ".join(
        f"{r.backend} {r.seconds:.1f} s: "
        + ("meets target" if r.met else f"MISSES target (< {TARGET_SECONDS:.0f} s)")
        for r in results
    )


def details(r: Result) -> str:
    cases = ", ".join(
        f"{days} d {cases:,} cases AUC {_auc(auc)} [{_auc(low)}, {_auc(high)}]"
        for days, cases, auc, low, high in r.horizons
    )
    suggested = r.suggestion
    improves = suggested.get("improves")
    return (
        f"{r.churned:,} churned over {r.outcome_days} outcome days; backtest read "
        f"{r.backtest.cases_read:,} cases in {r.backtest.statements:,} SQL statements "
        f"({cases}); suggestion read {r.suggest.cases_read:,} cases in "
        f"{r.suggest.statements:,} statements, {suggested.get('status')}"
        + ("" if improves is None else f", improves: {improves}")
    )


def print_table(results: list[Result]) -> None:
    rows = [TABLE_COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for n, row in enumerate(rows):
        print(" | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("-|-".join("-" * width for width in widths))
    for r in results:
        print(f"  {r.backend}: {details(r)}")
    print(
        f"verdict (backtest + suggest < {TARGET_SECONDS:.0f} s; peak MiB is the RSS growth "
        f"during each, sampled every {RSS_SAMPLE_SECONDS * 1000:.0f} ms): {verdict(results)}",
        flush=True,
    )


async def run_calibration(options: Options) -> tuple[list[Result], list[str]]:
    """Each backend on a fresh database (PostgreSQL: a throwaway one, dropped after); the
    backends it could not run on."""
    book = Book.of(options)
    return await on_each_backend(
        options.backends, "calibration", lambda url, backend: measure(url, backend, options, book)
    )


async def run(options: Options | None = None) -> list[tuple[str, str]]:
    options = options or Options.parse([])
    print(
        f"calibration: {options.accounts:,} accounts, {options.outcomes:,} outcomes over "
        f"{OUTCOME_DAYS} days, {HISTORY_DAYS} days of facts, {', '.join(options.backends)}; "
        f"backtest at 30/60/90 days with 200 resamples, then a suggestion at 90",
        flush=True,
    )
    results, skipped = await run_calibration(options)
    print_table(results)
    for result in results:
        if result.profile:
            print(f"\nprofile, {result.backend}:\n{result.profile}")
    rows = [
        (
            f"calibration: backtest (30/60/90 d, 200 resamples) + suggest (90 d), "
            f"{options.accounts:,} accounts, {options.outcomes:,} outcomes",
            f"target < {TARGET_SECONDS:.0f} s; peak MiB: RSS growth during each",
        )
    ]
    for result, cells in zip(results, table_rows(results), strict=True):
        rows.append(
            (
                f"  {result.backend}",
                ", ".join(
                    f"{name} {cell}"
                    for name, cell in zip(TABLE_COLUMNS[3:], cells[3:], strict=True)
                )
                + f"; {'meets target' if result.met else 'MISSES target'}",
            )
        )
    rows += [
        (f"  {backend}", f"skipped: {backend}: no server at 127.0.0.1:5432") for backend in skipped
    ]
    return rows
