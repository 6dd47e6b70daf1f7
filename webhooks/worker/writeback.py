"""Write-back delivery: claim due outbox rows, send each connection's changed health fields to
its CRM in batches, and record what the CRM did with each record (written, refused, not
found, or to be tried again after a pause or an outage)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from connector.base import CRMConnector, RecordUpdate
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
    retry_after,
)
from webhooks.store import accounts, alerts, writeback
from webhooks.worker.context import WorkerContext, WorkerStep
from webhooks.worker.outages import Outages

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class _Delivery:
    """One claimed write-back, copied out of its session so the CRM call holds no transaction."""

    connection: str
    account_id: int
    version: int
    record_id: str
    fields: dict[str, Any]
    attempts: int


def _updates(connector: CRMConnector, chunk: Sequence[_Delivery]) -> list[RecordUpdate]:
    """The chunk's rows as the connector writes them. A row staged under an earlier
    configuration may name a custom signal's field that is gone since: the CRM keeps its last
    value, and only the fields in force are written."""
    writable = set(connector.field_plan.written)
    return [
        RecordUpdate(
            record_id=d.record_id,
            fields={name: value for name, value in d.fields.items() if name in writable},
        )
        for d in chunk
    ]


class WriteBack(WorkerStep):
    def __init__(
        self,
        context: WorkerContext,
        *,
        outages: Outages,
        fields_ready: Callable[[str], bool] = lambda connection: True,
    ) -> None:
        super().__init__(context)
        self._outages = outages
        # Whether a connection's CRM has the fields the configuration added (FieldProvisioning):
        # until it has, its rows stay unclaimed rather than be refused for a missing field.
        self._fields_ready = fields_ready
        # Connections whose CRM paused them (a used-up daily allowance), until when. Per worker
        # is enough: the deferred rows' available_at is what makes the pause durable.
        self._paused_until: dict[str, datetime] = {}

    async def deliver(self) -> int:
        """Send the due write-backs, each connection's in batches; returns how many were
        claimed. No transaction is held while a CRM is called."""
        now = self._clock()
        # A paused connection's deferred rows are not due anyway, but rows staged since are:
        # leaving the connection out keeps them unclaimed instead of sent into the pause.
        writers = {
            name: connector
            for name, connector in self._connections.writers().items()
            if self._paused_until.get(name, now) <= now and self._fields_ready(name)
        }
        if not writers:
            return 0
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
                chunk = deliveries[start : start + size]
                paused = await self._send(connection, connector, chunk)
                if paused is not None:
                    # The CRM takes no calls until then: the connection's other claimed rows
                    # wait for the same moment, unsent and without an attempt counted.
                    await self._defer(deliveries[start + size :], until=paused[0], reason=paused[1])
                    break
        return len(rows)

    async def _defer(
        self,
        deliveries: Sequence[_Delivery],
        *,
        until: datetime,
        reason: str,
        count_attempt: bool = False,
    ) -> None:
        if not deliveries:
            return
        async with self._sessions() as session, session.begin():
            await writeback.defer(
                session,
                account_ids=[delivery.account_id for delivery in deliveries],
                until=until,
                reason=reason,
                count_attempt=count_attempt,
            )

    async def _settle_sent(
        self,
        chunk: Sequence[_Delivery],
        *,
        written: Collection[str],
        failed: Mapping[str, str],
        rejected: Mapping[str, str],
        missing: Mapping[str, str],
    ) -> None:
        """Record each record's outcome of a call the CRM answered. A record the CRM does not
        have is not tried again: its account is marked not found (neither scored, listed nor
        written back, its alerts resolved) until the CRM sends the record."""
        now = self._clock()
        async with self._sessions() as session, session.begin():
            gone = {d.account_id: missing[d.record_id] for d in chunk if d.record_id in missing}
            # In account id order, the order `writeback.stage` locks rows in: a worker staging
            # the same accounts meanwhile waits instead of deadlocking with this settle.
            for delivery in sorted(chunk, key=lambda d: d.account_id):
                if delivery.record_id in written:
                    await writeback.mark_written(
                        session, account_id=delivery.account_id, version=delivery.version, now=now
                    )
                    continue
                refusal = rejected.get(delivery.record_id) or gone.get(delivery.account_id)
                await writeback.mark_write_failed(
                    session,
                    account_id=delivery.account_id,
                    version=delivery.version,
                    error=refusal or failed.get(delivery.record_id, "not written"),
                    now=now,
                    retry_in_seconds=self._options.schedule.delay(delivery.attempts + 1),
                    refused=refusal is not None,
                )
            if gone:
                await accounts.mark_not_found(session, account_ids=gone, now=now)
                await alerts.resolve_for_accounts(session, account_ids=list(gone), now=now)

    async def _send(
        self, connection: str, connector: CRMConnector, chunk: list[_Delivery]
    ) -> tuple[datetime, str] | None:
        """Deliver one chunk; returns (until, why) when the CRM paused the connection, or could
        not be reached, so the connection's other rows wait until then."""
        updates = _updates(connector, chunk)
        written: set[str] = set()
        failed: dict[str, str] = {}
        rejected: dict[str, str] = {}
        missing: dict[str, str] = {}
        unavailable: CRMHTTPError | None = None
        try:
            result = await connector.write_health(updates)
            written, failed, rejected = result.written, result.failed, result.rejected
            missing = result.missing
        except CRMRateLimitPaused as exc:
            # A used-up allowance is no failure of these rows: a day-long pause must never
            # dead-letter a write-back, so no attempt is counted.
            until = self._clock() + timedelta(seconds=exc.retry_after)
            self._paused_until[connection] = until
            await self._defer(chunk, until=until, reason=str(exc))
            self._metrics.writeback(
                connector.name, status="paused", records={"deferred": len(chunk)}
            )
            log.warning(
                "crm_paused",
                connection=connection,
                crm=connector.name,
                until=until.isoformat(),
                records=len(chunk),
            )
            return until, str(exc)
        except (CRMRetriesExhausted, CRMAuthError) as exc:
            # The CRM is down, throttling beyond the client's retries, or refusing our
            # credentials: nothing is wrong with these rows, so they wait for the connection's
            # outage backoff (capped) and are never failed for it, however long it lasts.
            unavailable = exc
            failed = {update.record_id: str(exc) for update in updates}
        except CRMHTTPError as exc:
            failed = {update.record_id: f"{exc} {exc.body[:500]}" for update in updates}
        except Exception:
            # A bug, not the CRM: the rows stay claimed until their lease runs out.
            self._metrics.writeback(connector.name, status="error", records={})
            raise
        now = self._clock()
        records: Counter[str] = Counter()
        outage_delay: float | None = None
        if unavailable is not None:
            outage_delay = self._outages.delay(connection, retry_after(unavailable))
            records["failed"] = len(chunk)
            await self._defer(
                chunk,
                until=now + timedelta(seconds=outage_delay),
                reason=failed[chunk[0].record_id],
                count_attempt=True,
            )
        else:
            # The CRM answered, even if it refused some records: its outage, if any, is over.
            self._outages.over(connection)
            await self._settle_sent(
                chunk, written=written, failed=failed, rejected=rejected, missing=missing
            )
            records["written"] = len(written)
            records["rejected"] = len(rejected)
            records["not_found"] = len(missing)
            records["failed"] = len(chunk) - len(written) - len(rejected) - len(missing)
        if written and len(written) == len(chunk):
            log.info(
                "writeback_batch", connection=connection, crm=connector.name, written=len(chunk)
            )
        else:
            errors = {**failed, **rejected, **missing}
            log.warning(
                "writeback_batch_failed",
                connection=connection,
                crm=connector.name,
                records=len(chunk),
                written=len(written),
                failed=records["failed"],
                rejected=records["rejected"],
                not_found=records["not_found"],
                retry_in_seconds=None if outage_delay is None else round(outage_delay, 1),
                error=next(iter(errors.values()), "not written")[:500],
            )
        # The call's status is its worst record's: rejected ones need a person, failed a retry.
        status = (
            "rejected"
            if records["rejected"] or records["not_found"]
            else "failed"
            if records["failed"]
            else "written"
        )
        self._metrics.writeback(connector.name, status=status, records=+records)
        if outage_delay is not None:
            # The connection's other claimed rows wait as long, unsent and without an attempt:
            # one probe per backoff step during an outage, not one call per chunk.
            until = now + timedelta(seconds=outage_delay)
            self._paused_until[connection] = until
            return until, f"waiting {outage_delay:.0f}s for the CRM: {unavailable}"[:2000]
        return None
