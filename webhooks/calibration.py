"""Scores that predict: backtests (how well a configuration's score and bands foresaw known
churn and renewals, per horizon, signal and indicator) and suggestions (thresholds and weights
the outcomes support, as a candidate configuration to preview), computed from the facts as of
each outcome minus the horizon (signals.calibration does the math). Both run as background
jobs with progress (`JobRunner`) or inline for the CLI; both only read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from signals.calibration import Case, Suggestion, evaluate, suggest
from signals.config import HealthConfig
from webhooks.errors import NotFound
from webhooks.preview import Pacer, candidate_config
from webhooks.store import analysis_jobs, configs, facts, outcomes
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import AccountRow, AnalysisJob

log = structlog.get_logger(__name__)

# Cases read per fact read: the historical read's queries are per account set and moment.
CHUNK = 200
Horizon = Annotated[int, Field(ge=1, le=365)]
# Called with (cases done, cases in all) as the work goes on.
ProgressFn = Callable[[int, int], Awaitable[None]]


async def _no_progress(done: int, total: int) -> None:
    return None


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(
        default=None, description="A HealthConfig to test; null or absent: the current one."
    )
    horizons: list[Horizon] = Field(
        default=[30, 60, 90],
        min_length=1,
        max_length=12,
        description="Days before each outcome at which it is scored (1 to 365).",
    )
    resamples: int = Field(
        default=200, ge=0, le=2000, description="Bootstrap resamples for the AUC's interval."
    )


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = Field(
        default=None,
        description="The HealthConfig to start from; null or absent: the current one.",
    )
    horizon: Horizon = Field(
        default=90, description="Days before each outcome at which the cases are scored."
    )
    min_churned: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Refuse to suggest with fewer churned (or renewed) outcomes than this.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the cross-validation folds.")


JobKind = Literal["backtest", "suggest"]


@dataclass(frozen=True)
class Cases:
    """The outcomes of one horizon as scoring cases, and the outcomes that could not be cases,
    churned and renewed: the account had no record yet at (outcome - horizon)."""

    days: int
    cases: list[Case]
    before_record_churned: int
    before_record_renewed: int

    @property
    def before_record(self) -> int:
        return self.before_record_churned + self.before_record_renewed


def _as_of(outcome_at: datetime, days: int) -> datetime:
    """The end of the UTC day `days` before the outcome's day."""
    day = outcome_at.astimezone(UTC).date() - timedelta(days=days)
    return datetime.combine(day, time.max, tzinfo=UTC)


async def known_cases(
    session: AsyncSession, *, connection: str, now: datetime
) -> list[tuple[AccountRow, datetime, bool]]:
    """(account, outcome time, churned) of every known outcome up to `now`: one per account,
    outcome and day, as a repeated event is not a second customer."""
    found: dict[tuple[int, str, date], tuple[AccountRow, datetime, bool]] = {}
    for account, at, outcome, _ in await outcomes.known_outcomes(session, connection=connection):
        if at <= now:
            key = (account.id, outcome, at.astimezone(UTC).date())
            found.setdefault(key, (account, at, outcome == outcomes.CHURNED))
    return list(found.values())


# Accounts per first-record read: well inside every database's limit of bound parameters.
FIRST_RECORDS_CHUNK = 1000


async def first_records(
    session: AsyncSession, known: Sequence[tuple[AccountRow, datetime, bool]]
) -> dict[int, datetime | None]:
    """Each outcome's account's first record, read once for every horizon (it does not depend
    on the moment scored), a chunk of accounts at a time."""
    accounts = list({account.id: account for account, _, _ in known}.values())
    first: dict[int, datetime | None] = {}
    for start in range(0, len(accounts), FIRST_RECORDS_CHUNK):
        first.update(
            await facts.first_records(
                session, accounts=accounts[start : start + FIRST_RECORDS_CHUNK]
            )
        )
    return first


async def collect_cases(
    session: AsyncSession,
    *,
    config: HealthConfig,
    known: Sequence[tuple[AccountRow, datetime, bool]],
    first: Mapping[int, datetime | None],
    days: int,
    pacer: Pacer,
    progress: ProgressFn = _no_progress,
    done_before: int = 0,
    total: int | None = None,
) -> Cases:
    """The outcomes as cases with the facts as of `days` before each (historical reads, the
    cases of one moment sharing them a chunk at a time)."""
    by_moment: dict[datetime, list[tuple[AccountRow, bool]]] = {}
    for account, at, churned in known:
        by_moment.setdefault(_as_of(at, days), []).append((account, churned))
    cases: list[Case] = []
    # {churned: outcomes whose account had no record yet then}
    before_record = {True: 0, False: 0}
    done = done_before
    for as_of, group in sorted(by_moment.items(), key=lambda item: item[0]):
        for start in range(0, len(group), CHUNK):
            part = group[start : start + CHUNK]
            unique = list({account.id: account for account, _ in part}.values())
            snapshots = await facts.read_facts(
                session, accounts=unique, as_of=as_of, historical=True, reads=config.fact_reads
            )
            for account, churned in part:
                began = first.get(account.id)
                if began is None or began > as_of:
                    # The account did not exist yet: nothing to judge, not a score of 0.
                    before_record[churned] += 1
                    continue
                cases.append(
                    Case(account=account.crm_id, churned=churned, facts=snapshots[account.id])
                )
            done += len(part)
            await pacer.tick()
            await progress(done, total if total is not None else done_before + len(known))
    return Cases(
        days=days,
        cases=cases,
        before_record_churned=before_record[True],
        before_record_renewed=before_record[False],
    )


async def _config(session: AsyncSession, document: Mapping[str, Any] | None) -> HealthConfig:
    if document is not None:
        return candidate_config(document)
    return (await configs.current(session))[1]


async def run_backtest(
    session: AsyncSession,
    *,
    connection: str,
    request: BacktestRequest,
    now: datetime,
    progress: ProgressFn = _no_progress,
) -> dict[str, Any]:
    """The backtest as the API answers it: per horizon, the score's AUC with its interval and
    ROC curve, each band's precision, recall and lift (the confusion table), each signal's and
    indicator's AUC, and the at_risk band's precision and recall as before."""
    config = (await _config(session, request.config)).for_connection(connection)
    known = await known_cases(session, connection=connection, now=now)
    horizons = sorted(set(request.horizons))
    first = await first_records(session, known)
    pacer = Pacer()
    results = []
    for position, days in enumerate(horizons):
        collected = await collect_cases(
            session,
            config=config,
            known=known,
            first=first,
            days=days,
            pacer=pacer,
            progress=progress,
            done_before=position * len(known),
            total=len(known) * len(horizons),
        )
        # Scoring every case and the bootstrap are seconds of CPU: off the event loop.
        evaluation = await asyncio.to_thread(
            evaluate, collected.cases, config, resamples=request.resamples
        )
        results.append(_horizon(collected, evaluation.model_dump(mode="json")))
    log.info("config_backtested", connection=connection, outcomes=len(known), config=config.version)
    return {
        "config_version": config.version,
        "outcomes": len(known),
        "accounts": len({account.id for account, _, _ in known}),
        "horizons": results,
        "method": METHOD,
        "computed_at": now.isoformat(),
    }


METHOD = (
    "Each known outcome (one per account, outcome and day) is scored with the facts as of the "
    "end of the UTC day `days` before it, under the configuration, without hysteresis. "
    "Attributes are the values in force then (seats, ARR and CRM properties from their "
    "history; others only when set by then); late-arriving facts count as known then. "
    "before_record: the account had no record yet then (not a case). flagged = band at_risk; "
    "precision = flagged_churned / flagged; recall = flagged_churned / churned. Limits: "
    "contact titles and the kinds of facts a connection sends are as they are now; usage "
    "recency is known to the day."
)


def _horizon(collected: Cases, evaluation: dict[str, Any]) -> dict[str, Any]:
    """One horizon's answer: the evaluation, and the at_risk band's counts and ratios the
    backtest has always given."""
    at_risk: dict[str, Any] = next(
        (band for band in evaluation.get("bands", []) if band.get("band") == "at_risk"), {}
    )
    flagged_churned = int(at_risk.get("churned", 0))
    flagged_renewed = int(at_risk.get("renewed", 0))
    scored_churned = sum(case.churned for case in collected.cases)
    churned = scored_churned + collected.before_record_churned
    renewed = len(collected.cases) - scored_churned + collected.before_record_renewed
    flagged = flagged_churned + flagged_renewed
    return {
        "days": collected.days,
        "churned": churned,
        "renewed": renewed,
        "flagged_churned": flagged_churned,
        "flagged_renewed": flagged_renewed,
        "unscored": int(evaluation.get("unscored", 0)) + collected.before_record,
        "before_record": collected.before_record,
        "precision": None if not flagged else round(flagged_churned / flagged, 4),
        "recall": None if not churned else round(flagged_churned / churned, 4),
        **{key: value for key, value in evaluation.items() if key not in _LEGACY_KEYS},
    }


_LEGACY_KEYS = frozenset({"churned", "renewed", "unscored", "cases"})


async def run_suggest(
    session: AsyncSession,
    *,
    connection: str,
    request: SuggestRequest,
    now: datetime,
    progress: ProgressFn = _no_progress,
) -> dict[str, Any]:
    """Thresholds and weights the outcomes at `request.horizon` support, as a candidate
    configuration (or why none is suggested)."""
    config = await _config(session, request.config)
    applying = config.for_connection(connection)
    known = await known_cases(session, connection=connection, now=now)
    collected = await collect_cases(
        session,
        config=applying,
        known=known,
        first=await first_records(session, known),
        days=request.horizon,
        pacer=Pacer(),
        progress=progress,
    )
    # The folds and the fit are seconds of CPU for a large book: off the event loop.
    found = await asyncio.to_thread(
        suggest,
        collected.cases,
        applying,
        min_churned=request.min_churned,
        seed=request.seed,
    )
    log.info("config_suggested", connection=connection, cases=len(collected.cases))
    result = {
        "config_version": applying.version,
        "based_on_version": None
        if request.config is not None
        else await configs.current_id(session),
        "horizon": request.horizon,
        "outcomes": len(known),
        "before_record": collected.before_record,
        **found.model_dump(mode="json"),
        "computed_at": now.isoformat(),
    }
    if isinstance(found, Suggestion):
        result["config"] = _as_document(config, found.config)
    return result


# The parts of a configuration a suggestion changes (thresholds and weights live only there):
# global, never set per connection.
_SUGGESTED_PARTS = ("signals", "custom_indicators", "custom_signals")


def _as_document(config: HealthConfig, suggested: Mapping[str, Any]) -> dict[str, Any]:
    """The suggestion as a whole document to preview and apply: `config` as stored (every
    connection's own settings kept) with the suggested thresholds and weights. The suggestion
    itself was fitted on the connection's view, which merges that connection's settings into
    the global ones and drops the others'."""
    document = config.model_dump(mode="json")
    document.update({part: suggested[part] for part in _SUGGESTED_PARTS})
    return HealthConfig.model_validate(document).model_dump(mode="json")


# -- background jobs ---------------------------------------------------------------------------


class JobOut(BaseModel):
    """A backtest or suggestion job: how far it got, then its result (or why it failed)."""

    id: int
    kind: str
    status: str = Field(description="queued, running, done or failed.")
    done: int = Field(description="Cases read so far.")
    total: int = Field(description="Cases to read in all (known once it runs).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    author: str
    request: dict[str, Any]
    result: dict[str, Any] | None = Field(
        description="The backtest or suggestion once done; null before."
    )
    error: str | None
    links: dict[str, str]

    @classmethod
    def of(cls, job: AnalysisJob) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            done=job.done,
            total=job.total,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            author=job.author,
            request=job.request,
            result=job.result,
            error=job.error,
            links={"self": f"/api/v1/config/jobs/{job.id}"},
        )


# A job reports its progress at most this often: a write per chunk would be a write per 200.
PROGRESS_SECONDS = 1.0


class JobRunner:
    """Runs backtest and suggestion jobs in this process, one at a time (others wait queued):
    each is seconds to a minute of CPU, paced so webhook intake keeps the event loop. Reads go
    to `reads` (a replica where configured); progress and results to `sessions`."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        reads: SessionFactory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._reads = reads
        self._clock = clock
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self,
        *,
        kind: JobKind,
        connection: str,
        author: str,
        request: BacktestRequest | SuggestRequest,
    ) -> JobOut:
        """Queue the job (the candidate configuration checked first: InvalidFields) and start
        it in the background; the answer is the queued job."""
        if request.config is not None:
            candidate_config(request.config)
        async with self._sessions() as session, session.begin():
            await analysis_jobs.fail_stale(session, now=self._clock())
            job = await analysis_jobs.create(
                session,
                kind=kind,
                connection=connection,
                author=author,
                request=request.model_dump(mode="json"),
                now=self._clock(),
            )
            out = JobOut.of(job)
        task = asyncio.create_task(self._run(out.id, kind, connection, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return out

    async def get(self, *, job_id: int, connection: str) -> JobOut:
        async with self._sessions() as session, session.begin():
            await analysis_jobs.fail_stale(session, now=self._clock())
            job = await analysis_jobs.get(session, job_id=job_id, connection=connection)
            if job is None:
                raise NotFound(f"no job {job_id}")
            return JobOut.of(job)

    async def wait(self) -> None:
        """Until every job started here has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _beat(self, job_id: int, done: int | None = None, total: int | None = None) -> None:
        async with self._sessions() as session, session.begin():
            await analysis_jobs.beat(
                session, job_id=job_id, now=self._clock(), done=done, total=total
            )

    async def _run(
        self,
        job_id: int,
        kind: JobKind,
        connection: str,
        request: BacktestRequest | SuggestRequest,
    ) -> None:
        while True:
            # Queued behind another job: keep beating, or it would look interrupted.
            try:
                async with asyncio.timeout(analysis_jobs.STALE_AFTER.total_seconds() / 3):
                    await self._one_at_a_time.acquire()
                break
            except TimeoutError:
                await self._beat(job_id)
        try:
            await self._run_now(job_id, kind, connection, request)
        finally:
            self._one_at_a_time.release()

    async def _run_now(
        self,
        job_id: int,
        kind: JobKind,
        connection: str,
        request: BacktestRequest | SuggestRequest,
    ) -> None:
        async with self._sessions() as session, session.begin():
            await analysis_jobs.start(session, job_id=job_id, now=self._clock())
        reported = self._clock()

        async def progress(done: int, total: int) -> None:
            nonlocal reported
            now = self._clock()
            if done < total and (now - reported).total_seconds() < PROGRESS_SECONDS:
                return
            reported = now
            await self._beat(job_id, done, total)

        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            async with self._reads() as session:
                if isinstance(request, BacktestRequest):
                    result = await run_backtest(
                        session,
                        connection=connection,
                        request=request,
                        now=self._clock(),
                        progress=progress,
                    )
                else:
                    result = await run_suggest(
                        session,
                        connection=connection,
                        request=request,
                        now=self._clock(),
                        progress=progress,
                    )
        except asyncio.CancelledError:
            error = "cancelled: the service stopped; run it again"
            raise
        except Exception as exc:
            # A bug or a database that went away: the job says so instead of running forever.
            log.exception("analysis_job_failed", job=job_id, kind=kind)
            error = f"failed: {type(exc).__name__}: {exc}"[:2000]
        finally:
            async with self._sessions() as session, session.begin():
                await analysis_jobs.finish(
                    session, job_id=job_id, result=result, error=error, now=self._clock()
                )
