"""Reconcile: read the health fields back from each CRM in batches and re-send every value that
differs from what the database says the CRM should carry (after an outage, an edit by hand in
the CRM, a restored CRM backup). Run by `crm-health reconcile` and, on a schedule, by the worker.

Each batch costs one read of the CRM (the connector's batch size); an account whose values
match costs nothing more. Differing ones are queued in the write-back outbox
(`writeback.resend`), which the worker delivers as usual; records the CRM no longer has are
counted and reported, not re-sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from connector.base import VOLATILE_FIELDS, CRMConnector, FieldValue
from connector.errors import CRMHTTPError, CRMRateLimitPaused, PayloadError
from webhooks.clock import Clock
from webhooks.connections import ConnectionRegistry
from webhooks.errors import NotConfigured, NotFound
from webhooks.progress import Progress
from webhooks.store import reconciles, writeback
from webhooks.store.db import SessionFactory

log = structlog.get_logger(__name__)

# A scheduled step holds the schedule this long at most: one batch read, retries included.
LEASE_SECONDS = 900.0
# After a failed read (the CRM down, or refusing the credentials) the run resumes this much
# later, or when a paused CRM allows.
RETRY_SECONDS = 300.0
# How often an idle worker asks the database whether a run is due.
CHECK_SECONDS = 60.0


@dataclass(kw_only=True)
class BatchResult:
    checked: int = 0
    matching: int = 0
    resent: int = 0
    # Differing, but being sent right now: left to that send.
    sending: int = 0
    missing: int = 0
    last_account_id: int = 0


@dataclass(kw_only=True)
class Summary:
    """One connection's reconcile: accounts checked, how many matched, were queued again,
    were being sent already, or are gone from the CRM; `error` when it stopped early."""

    connection: str
    crm: str
    checked: int = 0
    matching: int = 0
    resent: int = 0
    sending: int = 0
    missing: int = 0
    error: str | None = None

    def add(self, batch: BatchResult) -> None:
        self.checked += batch.checked
        self.matching += batch.matching
        self.resent += batch.resent
        self.sending += batch.sending
        self.missing += batch.missing

    def counts(self) -> dict[str, int]:
        return {
            key: value
            for key, value in asdict(self).items()
            if key not in {"connection", "crm", "error"}
        }

    def text(self) -> str:
        line = (
            f"{self.connection} ({self.crm}): {self.checked} checked, {self.matching} matching, "
            f"{self.resent} re-sent, {self.missing} missing in the CRM"
        )
        if self.sending:
            line += f", {self.sending} being sent already"
        if self.error:
            line += f"; stopped: {self.error}"
        return line


# --- comparing like with like ----------------------------------------------------------------


def _canonical(value: FieldValue) -> float | str | None:
    """A value as a number when it is one, in whatever type the CRM answered ("42", 42,
    "42.0"); text with CRLF as LF and trailing blanks dropped per line (how CRMs store long
    text); empty text as no value."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = "\n".join(
        line.rstrip() for line in str(value).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    ).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def same_value(expected: FieldValue, actual: FieldValue) -> bool:
    """Whether the CRM holds the value owed, across the types CRMs answer in."""
    left, right = _canonical(expected), _canonical(actual)
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=0.0, abs_tol=1e-9)
    return left == right


def differing_fields(
    connector: CRMConnector, owed: Mapping[str, Any], held: Mapping[str, FieldValue]
) -> list[str]:
    """The health fields whose value in the CRM (`held`, as read back) is not the one owed,
    after the connector's own write formatting; volatile fields do not count."""
    compared = {
        name: value
        for name, value in owed.items()
        if name in connector.field_plan.written and name not in VOLATILE_FIELDS
    }
    try:
        expected = connector.stored_health(compared)
    except ValueError:
        # Values the CRM cannot take: sending them again reports why, row by row.
        return sorted(compared)
    return [name for name in compared if not same_value(expected.get(name), held.get(name))]


# --- one batch -------------------------------------------------------------------------------


async def reconcile_batch(
    *,
    sessions: SessionFactory,
    connection: str,
    connector: CRMConnector,
    after_account_id: int,
    clock: Clock,
) -> BatchResult:
    """Check the next batch of the connection's accounts after `after_account_id` (one CRM
    read) and queue the differing ones again. Raises what the connector raises when the read
    fails (the CRMHTTPError family, PayloadError); nothing is queued then."""
    async with sessions() as session:
        rows = await reconciles.owed_after(
            session,
            connection=connection,
            after_account_id=after_account_id,
            limit=connector.max_batch_size,
        )
    result = BatchResult(last_account_id=after_account_id)
    if not rows:
        return result
    held = await connector.read_health([row.record_id for row in rows])
    differing: list[int] = []
    for row in rows:
        values = held.get(row.record_id)
        if values is None:
            result.missing += 1
            log.info(
                "reconcile_record_missing",
                connection=connection,
                account=row.account_id,
                record=row.record_id,
            )
        elif differing_fields(connector, row.fields, values):
            differing.append(row.account_id)
        else:
            result.matching += 1
    if differing:
        async with sessions() as session, session.begin():
            result.resent = await writeback.resend(session, account_ids=differing, now=clock())
    result.sending = len(differing) - result.resent
    result.checked = len(rows)
    result.last_account_id = rows[-1].account_id
    return result


def _log_summary(summary: Summary, *, scheduled: bool) -> None:
    log.info(
        "reconcile_connection",
        connection=summary.connection,
        crm=summary.crm,
        scheduled=scheduled,
        error=summary.error,
        **summary.counts(),
    )


# --- on demand (the command) -----------------------------------------------------------------


async def reconcile(
    *,
    sessions: SessionFactory,
    connections: ConnectionRegistry,
    clock: Clock,
    only: str | None = None,
    progress: Progress | None = None,
) -> list[Summary]:
    """Reconcile every connection with CRM credentials, or only the one named.

    NotFound for an unknown connection name; NotConfigured when there is nothing to read
    from. A connection whose CRM fails a read stops there (its summary says why); the
    others are still reconciled.
    """
    writers = connections.writers()
    if only is not None:
        if connections.get(only) is None:
            raise NotFound(f"unknown connection {only!r}")
        if only not in writers:
            raise NotConfigured(f"connection {only!r} has no CRM credentials to read with")
        names = [only]
    else:
        if not writers:
            raise NotConfigured(
                "no CRM credentials configured (e.g. CRM_HEALTH_HUBSPOT_ACCESS_TOKEN): "
                "nothing to reconcile"
            )
        names = sorted(writers)
    summaries = []
    for name in names:
        connector = writers[name]
        summary = Summary(connection=name, crm=connector.name)
        async with sessions() as session:
            total = await reconciles.count_owed(session, connection=name)
        after = 0
        while True:
            try:
                batch = await reconcile_batch(
                    sessions=sessions,
                    connection=name,
                    connector=connector,
                    after_account_id=after,
                    clock=clock,
                )
            except (CRMHTTPError, PayloadError) as exc:
                summary.error = str(exc)
                break
            summary.add(batch)
            if progress is not None:
                progress.update(summary.checked, total, detail=name)
            if batch.checked < connector.max_batch_size:
                break
            after = batch.last_account_id
        _log_summary(summary, scheduled=False)
        summaries.append(summary)
    if progress is not None:
        progress.finish()
    return summaries


# --- on a schedule (the worker) --------------------------------------------------------------


class Scheduler:
    """The worker's scheduled reconcile: every `interval_hours` (0: never), one batch per
    worker pass, so a long run never holds up events or write-backs. The schedule lives in the
    database with a lease: of every worker in every process, one takes each step, and a run
    interrupted by a restart resumes where it stopped."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        connections: ConnectionRegistry,
        clock: Clock,
        interval_hours: float,
    ) -> None:
        self._sessions = sessions
        self._connections = connections
        self._clock = clock
        self._interval = timedelta(hours=interval_hours)
        self._next_check: datetime | None = None
        self._scheduled = False

    async def step_if_due(self) -> int:
        """One step when a run is due or under way; the accounts it checked."""
        if self._interval <= timedelta(0):
            return 0
        now = self._clock()
        if self._next_check is not None and now < self._next_check:
            return 0
        checked = await self._step(now)
        # A run under way goes on at the next pass; otherwise ask again in a while.
        self._next_check = None if checked else now + timedelta(seconds=CHECK_SECONDS)
        return checked

    async def _step(self, now: datetime) -> int:
        async with self._sessions() as session, session.begin():
            if not self._scheduled:
                await reconciles.ensure_schedule(session, name=reconciles.SCHEDULED, now=now)
                self._scheduled = True
            step = await reconciles.claim_step(
                session,
                name=reconciles.SCHEDULED,
                now=now,
                interval=self._interval,
                lease_seconds=LEASE_SECONDS,
            )
        if step is None:
            return 0
        writers = self._connections.writers()
        started_at = step.started_at or now
        if step.started_at is None:
            log.info("reconcile_started", connections=sorted(writers))
        counts = dict(step.counts)
        # The connection under way, or the next one configured (one removed meanwhile is
        # skipped; connections are walked in name order).
        following = sorted(
            name for name in writers if step.connection is None or name >= step.connection
        )
        if not following:
            return await self._finish(step, counts)
        name = following[0]
        after = step.after_account_id if name == step.connection else 0
        connector = writers[name]
        summary = Summary(connection=name, crm=connector.name, **counts.get(name, {}))
        try:
            batch = await reconcile_batch(
                sessions=self._sessions,
                connection=name,
                connector=connector,
                after_account_id=after,
                clock=self._clock,
            )
        except (CRMHTTPError, PayloadError) as exc:
            wait = exc.retry_after if isinstance(exc, CRMRateLimitPaused) else RETRY_SECONDS
            log.warning(
                "reconcile_read_failed",
                connection=name,
                crm=connector.name,
                error=str(exc)[:300],
                retry_in_seconds=wait,
            )
            async with self._sessions() as session, session.begin():
                await reconciles.fail_step(
                    session,
                    step=step,
                    error=str(exc),
                    retry_at=self._clock() + timedelta(seconds=max(wait, RETRY_SECONDS)),
                )
            return 0
        summary.add(batch)
        counts[name] = summary.counts()
        if batch.checked < connector.max_batch_size:
            _log_summary(summary, scheduled=True)
            rest = following[1:]
            if not rest:
                await self._finish(step, counts)
                return batch.checked
            name, after = rest[0], 0
        else:
            after = batch.last_account_id
        async with self._sessions() as session, session.begin():
            await reconciles.save_step(
                session,
                step=step,
                started_at=started_at,
                connection=name,
                after_account_id=after,
                counts=counts,
                now=self._clock(),
            )
        # Non-zero keeps the worker passing without its idle wait while the run goes on.
        return max(batch.checked, 1)

    async def _finish(self, step: reconciles.Step, counts: dict[str, Any]) -> int:
        async with self._sessions() as session, session.begin():
            await reconciles.finish_run(session, step=step, counts=counts, now=self._clock())
        log.info("reconcile_finished", connections=len(counts))
        return 0
