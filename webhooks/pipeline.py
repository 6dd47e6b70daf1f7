"""The worker: claim inbox events, fold them into facts, rescore each touched account once,
recompute everything after a configuration change, and deliver changed health fields to the
CRM through the write-back outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from connector.base import VOLATILE_FIELDS, CRMConnector, RecordUpdate, health_field_values
from connector.errors import CRMHTTPError, CRMRetriesExhausted, PayloadError
from connector.hubspot.events import HubSpotEvent, normalise
from connector.model import NormalisedEvent
from connector.native import NATIVE_EVENT, to_normalised
from signals.config import HealthConfig
from signals.model import Band
from signals.scoring import score
from webhooks.connections import ConnectionRegistry
from webhooks.store import accounts, configs, facts, inbox, writeback
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import Account

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
# Turns a stored event into normalised events; None means "not a kind we handle".
Decoder = Callable[[inbox.Claimed], list[NormalisedEvent] | None]


def _decode_hubspot(event: inbox.Claimed) -> list[NormalisedEvent] | None:
    return normalise(HubSpotEvent.model_validate(event.payload))


def _decode_native(event: inbox.Claimed) -> list[NormalisedEvent] | None:
    native = NATIVE_EVENT.validate_python(event.payload)
    return [to_normalised(native, received_at=event.received_at)]


DECODERS: Mapping[str, Decoder] = {"hubspot": _decode_hubspot, "native": _decode_native}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    batch_size: int = 5000
    recompute_chunk: int = 1000
    poll_seconds: float = 0.5
    lease_seconds: float = 120.0
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0


@dataclass(kw_only=True)
class BatchReport:
    claimed: int = 0
    processed: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    dead: int = 0
    rescored: int = 0
    staged: int = 0


@dataclass(frozen=True, kw_only=True)
class _Delivery:
    """One claimed write-back, copied out of its session so the CRM call holds no transaction."""

    connection: str
    account_id: int
    version: int
    record_id: str
    fields: dict[str, Any]
    attempts: int


class Pipeline:
    def __init__(
        self,
        *,
        sessions: SessionFactory,
        connections: ConnectionRegistry,
        options: WorkerOptions,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._connections = connections
        self._options = options
        self._clock = clock
        self._config: tuple[int | None, HealthConfig] = (None, HealthConfig())

    async def run_once(self) -> int:
        """One pass: a batch of inbox events, a recompute chunk, then due write-backs."""
        report = await self.process_inbox()
        recomputed = await self.recompute_step()
        written = await self.deliver_writebacks()
        return report.claimed + recomputed + written

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; a pass that is under way is always finished first."""
        log.info("worker_started")
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception:
                # A database outage must not kill the worker: log, wait, try again.
                log.exception("worker_pass_failed")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._options.poll_seconds)
        log.info("worker_stopped")

    async def _current_config(self, session: AsyncSession) -> HealthConfig:
        """The configuration in force, re-read only when a newer version was saved."""
        latest = await configs.current_id(session)
        if latest != self._config[0]:
            self._config = await configs.current(session)
        return self._config[1]

    # -- inbox -> facts -> health -> outbox ---------------------------------------------------

    async def process_inbox(self) -> BatchReport:
        now = self._clock()
        async with self._sessions() as session, session.begin():
            claimed = await inbox.claim_batch(
                session,
                now=now,
                limit=self._options.batch_size,
                lease_seconds=self._options.lease_seconds,
            )
        report = BatchReport(claimed=len(claimed))
        if not claimed:
            return report
        try:
            await self._process(claimed, report)
        except Exception as exc:
            if len(claimed) == 1:
                await self._record_failure(claimed[0].id, exc)
            else:
                # Isolate the event that breaks the batch so its neighbours still go through.
                log.warning("batch_failed_isolating", size=len(claimed), error=repr(exc))
                report = BatchReport(claimed=len(claimed))
                for event in claimed:
                    try:
                        await self._process([event], report)
                    except Exception as single_exc:
                        await self._record_failure(event.id, single_exc)
        for kind, count in report.ignored.items():
            log.info("events_ignored_unsupported_type", kind=kind, count=count)
        log.info(
            "batch_processed",
            claimed=report.claimed,
            processed=report.processed,
            dead=report.dead,
            rescored=report.rescored,
            staged_writebacks=report.staged,
        )
        return report

    async def _record_failure(self, event_id: int, exc: BaseException) -> None:
        async with self._sessions() as session, session.begin():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event_id,
                error=repr(exc),
                now=self._clock(),
                max_attempts=self._options.max_attempts,
                backoff_seconds=self._options.retry_base_seconds,
            )
        log.warning("event_failed", event_id=event_id, status=status, error=repr(exc))

    def _crm_of(self, connection: str) -> str:
        known = self._connections.get(connection)
        return known.crm if known is not None else "native"

    async def _process(self, claimed: Sequence[inbox.Claimed], report: BatchReport) -> None:
        now = self._clock()
        done: list[int] = []
        ignored: list[int] = []
        dead: dict[int, str] = {}
        per_account: dict[accounts.AccountKey, list[NormalisedEvent]] = defaultdict(list)
        for event in claimed:
            decoder = DECODERS.get(event.source)
            try:
                decoded = None if decoder is None else decoder(event)
            except (ValidationError, PayloadError) as exc:
                # A stored payload that does not parse never will: dead-letter it, no retry.
                dead[event.id] = f"undecodable payload: {exc}"
                log.warning("event_undecodable", event_id=event.id, source=event.source)
                continue
            if decoded is None:
                ignored.append(event.id)
                report.ignored[event.kind] += 1
                continue
            crm = self._crm_of(event.connection)
            for normalised in decoded:
                per_account[(event.connection, crm, normalised.account)].append(normalised)
            done.append(event.id)

        async with self._sessions() as session, session.begin():
            locked = await accounts.lock_accounts(session, keys=per_account.keys(), now=now)
            await facts.fold(
                session,
                events=[
                    (locked[key], normalised)
                    for key, events in per_account.items()
                    for normalised in events
                ],
                now=now,
            )
            live = [account for account in locked.values() if account.deleted_at is None]
            config = await self._current_config(session)
            staged = await self._rescore(session, live, now, config)
            await accounts.save(session, accounts=list(locked.values()))
            await inbox.settle(session, event_ids=done, status=inbox.DONE, now=now)
            await inbox.settle(session, event_ids=ignored, status=inbox.IGNORED, now=now)
            await inbox.bury(session, errors=dead, now=now)
        report.processed += len(done)
        report.dead += len(dead)
        report.rescored += len(live)
        report.staged += staged

    async def _rescore(
        self, session: AsyncSession, live: list[Account], now: datetime, config: HealthConfig
    ) -> int:
        """Score every given account once, keep history, queue the fields that changed."""
        if not live:
            return 0
        snapshots = await facts.read_facts(session, accounts=live, as_of=now)
        month_ago = await accounts.scores_at_or_before(
            session, account_ids=[a.id for a in live], at=now - timedelta(days=30)
        )
        scored = [
            (
                account,
                score(
                    snapshots[account.id],
                    config,
                    previous_band=Band(account.band),
                    score_30d_ago=month_ago.get(account.id),
                ),
            )
            for account in live
        ]
        await accounts.record_health(session, scored=scored, at=now)
        owed = []
        for account, health in scored:
            fields = health_field_values(health, updated_at=now)
            owed.append(
                writeback.Owed(
                    account_id=account.id,
                    connection=account.connection,
                    record_id=account.crm_id,
                    fields=fields,
                    fingerprint=writeback.fields_fingerprint(fields, ignore=VOLATILE_FIELDS),
                )
            )
        return await writeback.stage(session, owed=owed, now=now)

    # -- configuration change -> every account rescored -----------------------------------------

    async def recompute_step(self) -> int:
        """Rescore the next chunk of accounts of a pending recompute job (from stored facts,
        without reading the CRM); returns how many were rescored."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            job = await configs.claim_recompute(
                session, now=now, lease_seconds=self._options.lease_seconds
            )
        if job is None:
            return 0
        job_id, after = job
        chunk_size = self._options.recompute_chunk
        async with self._sessions() as session, session.begin():
            chunk = await accounts.accounts_after(session, after_id=after, limit=chunk_size)
            config = await self._current_config(session)
            staged = await self._rescore(session, chunk, now, config)
            await accounts.save(session, accounts=chunk)
            finished = len(chunk) < chunk_size
            await configs.advance_recompute(
                session,
                job_id=job_id,
                after_account_id=chunk[-1].id if chunk else after,
                rescored=len(chunk),
                finished=finished,
                now=now,
            )
        log.info(
            "recompute_chunk", job=job_id, rescored=len(chunk), staged=staged, finished=finished
        )
        return len(chunk)

    # -- outbox -> CRM --------------------------------------------------------------------------

    async def deliver_writebacks(self) -> int:
        writers = self._connections.writers()
        if not writers:
            return 0
        now = self._clock()
        async with self._sessions() as session, session.begin():
            rows = await writeback.claim_due(
                session,
                connections=list(writers),
                now=now,
                limit=self._options.batch_size,
                lease_seconds=self._options.lease_seconds,
            )
        by_connection: dict[str, list[_Delivery]] = defaultdict(list)
        for connection, account_id, version, record_id, fields, attempts in rows:
            by_connection[connection].append(
                _Delivery(
                    connection=connection,
                    account_id=account_id,
                    version=version,
                    record_id=record_id,
                    fields=fields,
                    attempts=attempts,
                )
            )
        for connection, deliveries in by_connection.items():
            connector = writers[connection]
            size = connector.max_batch_size
            for start in range(0, len(deliveries), size):
                await self._send(connection, connector, deliveries[start : start + size])
        return len(rows)

    async def _send(self, connection: str, connector: CRMConnector, chunk: list[_Delivery]) -> None:
        updates = [RecordUpdate(record_id=d.record_id, fields=d.fields) for d in chunk]
        written: set[str] = set()
        failed: dict[str, str] = {}
        retry_after: float | None = None
        try:
            result = await connector.write_health(updates)
            written, failed = result.written, result.failed
        except CRMRetriesExhausted as exc:
            retry_after = exc.retry_after
            failed = {update.record_id: str(exc) for update in updates}
        except CRMHTTPError as exc:
            failed = {update.record_id: f"{exc} {exc.body[:500]}" for update in updates}
        now = self._clock()
        async with self._sessions() as session, session.begin():
            for delivery in chunk:
                if delivery.record_id in written:
                    await writeback.mark_written(
                        session, account_id=delivery.account_id, version=delivery.version, now=now
                    )
                    continue
                backoff = min(
                    self._options.retry_base_seconds * 2**delivery.attempts,
                    self._options.retry_max_seconds,
                )
                await writeback.mark_write_failed(
                    session,
                    account_id=delivery.account_id,
                    version=delivery.version,
                    error=failed.get(delivery.record_id, "not written"),
                    now=now,
                    max_attempts=self._options.max_attempts,
                    # Never earlier than the CRM's Retry-After allowed.
                    retry_in_seconds=max(backoff, retry_after or 0.0),
                )
        log.info(
            "writeback_batch",
            connection=connection,
            crm=connector.name,
            records=len(chunk),
            written=len(written),
            failed=len(chunk) - len(written),
        )
