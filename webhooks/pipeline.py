"""The worker: claim inbox events, fold them into facts, rescore each touched account once,
recompute everything after a configuration change, and deliver changed health fields to the
CRM through the write-back outbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import exc as sqlalchemy_exc

from connector.base import VOLATILE_FIELDS, CRMConnector, RecordUpdate, health_field_values
from connector.dynamics import events as dynamics_events
from connector.dynamics.api import DynamicsConnector
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
    PayloadError,
)
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import HubSpotEvent
from connector.hubspot.hydrate import EventPlan, HydrationOptions, plan_event
from connector.model import AccountAttributes, AttributeOrigin, ContactUpsert, NormalisedEvent
from connector.native import NATIVE_EVENT, to_normalised
from connector.salesforce import events as salesforce_events
from connector.salesforce.api import SalesforceConnector
from connector.segment import ProductMessage, SegmentOptions, interpret, split_request
from signals.config import HealthConfig
from signals.model import Health
from signals.scoring import score
from webhooks.alerts import delivery as alert_delivery
from webhooks.alerts import service as alert_service
from webhooks.alerts.notice import Channel
from webhooks.alerts.rules import Cause
from webhooks.connections import Connection, ConnectionRegistry
from webhooks.intake import SEGMENT_REQUEST
from webhooks.matching import Matched, match_new_domains, match_product_events
from webhooks.metrics import Metrics
from webhooks.reconcile import Scheduler as ReconcileScheduler
from webhooks.retry import RetrySchedule
from webhooks.store import accounts, alerts, configs, facts, inbox, product, writeback
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import Account

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# The inbox source of native documents a backfill read from a CRM: decoded as native events,
# their attributes count as the CRM's.
BACKFILL_SOURCE = "backfill"


@dataclass(kw_only=True)
class Decoded:
    """What a source's decoder made of claimed events, by inbox id. Every event lands in exactly
    one of: understood (`events`, possibly empty), `ignored` (not a kind we handle), `dead`
    (can never be decoded), `failed` (try again, an attempt counted) or `paused` (try again
    after so many seconds, no attempt counted: the CRM took no calls)."""

    events: dict[int, list[NormalisedEvent]] = field(default_factory=dict)
    # Contacts deleted from the CRM, by the event that said so: they left every account.
    contacts_gone: dict[int, list[tuple[str, datetime]]] = field(default_factory=dict)
    ignored: list[int] = field(default_factory=list)
    dead: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    paused: dict[int, tuple[float, str]] = field(default_factory=dict)
    # The CRM could not be reached or would not let us in (transport errors, timeouts, 5xx and
    # 429 beyond the client's retries, refused credentials): (its Retry-After or 0, why). The
    # events wait for the connection's outage backoff, no attempt counted: an outage of any
    # length must never dead-letter them.
    unavailable: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Connections whose CRM answered a read of this batch: their outage is over.
    reached: set[str] = field(default_factory=set)
    # Product events still to be placed on a CRM account (by connection): see webhooks.matching.
    product: dict[int, tuple[str, ProductMessage]] = field(default_factory=dict)
    # Events an event splits into (a Segment request into its calls), stored as new inbox rows.
    spawn: dict[int, list[inbox.NewEvent]] = field(default_factory=dict)

    def add(self, other: Decoded) -> None:
        self.events.update(other.events)
        self.product.update(other.product)
        self.spawn.update(other.spawn)
        self.contacts_gone.update(other.contacts_gone)
        self.ignored.extend(other.ignored)
        self.dead.update(other.dead)
        self.failed.update(other.failed)
        self.paused.update(other.paused)
        self.unavailable.update(other.unavailable)
        self.reached.update(other.reached)


# Decodes one connection's claimed events of one source, all at once so that CRM reads can be
# shared; gets the connection's name and CRM connector (None without API credentials). It may
# call the CRM, so it runs outside any transaction; it reports failures in `Decoded`.
BatchDecoder = Callable[[Sequence[inbox.Claimed], str, CRMConnector | None], Awaitable[Decoded]]

MISSING_CREDENTIALS = (
    "connection {connection!r} has no HubSpot API credentials, and this event needs records "
    "read from HubSpot: set CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (or install the app)"
)


async def _decode_hubspot(
    claimed: Sequence[inbox.Claimed], connection: str, connector: CRMConnector | None
) -> Decoded:
    hubspot = connector if isinstance(connector, HubSpotConnector) else None
    options = hubspot.hydration if hubspot is not None else HydrationOptions()
    decoded = Decoded()
    plans: dict[int, EventPlan] = {}
    for row in claimed:
        try:
            plan = plan_event(HubSpotEvent.model_validate(row.payload), options)
        except (ValidationError, PayloadError) as exc:
            # A stored payload that does not parse never will: dead-letter it, no retry.
            decoded.dead[row.id] = f"undecodable payload: {exc}"
            continue
        if plan is None:
            decoded.ignored.append(row.id)
        elif plan.needs_api and hubspot is None:
            decoded.failed[row.id] = MISSING_CREDENTIALS.format(connection=connection)
        else:
            plans[row.id] = plan
    needing = [row_id for row_id, plan in plans.items() if plan.needs_api]
    fetched: dict[int, list[NormalisedEvent]] = {}
    if needing and hubspot is not None:
        fetched = await _hydrate(hubspot, {row_id: plans[row_id] for row_id in needing}, decoded)
        if fetched:
            decoded.reached.add(connection)
    for row_id, plan in plans.items():
        if plan.needs_api and row_id not in fetched:
            continue
        decoded.events[row_id] = [*plan.events, *fetched.get(row_id, [])]
        if plan.contacts_deleted:
            decoded.contacts_gone[row_id] = plan.contacts_deleted
    return decoded


async def _hydrate(
    hubspot: HubSpotConnector, plans: Mapping[int, EventPlan], decoded: Decoded
) -> dict[int, list[NormalisedEvent]]:
    """The records the plans need, read in batches; on failure every event is reported in
    `decoded` at once (retrying them one by one would only multiply the calls to a CRM that
    is failing), paused or failed no sooner than the CRM's Retry-After."""
    try:
        read = await hubspot.hydrate(list(plans.values()))
    except CRMRateLimitPaused as exc:
        decoded.paused.update((row_id, (exc.retry_after, str(exc))) for row_id in plans)
        return {}
    except (CRMRetriesExhausted, CRMAuthError) as exc:
        wait = (_retry_after(exc), f"HubSpot hydration waits for the CRM: {exc}")
        decoded.unavailable.update((row_id, wait) for row_id in plans)
        return {}
    except (CRMHTTPError, PayloadError) as exc:
        error = f"HubSpot hydration failed: {exc}"
        decoded.failed.update((row_id, error) for row_id in plans)
        return {}
    return dict(zip(plans, read, strict=True))


def _retry_after(exc: CRMHTTPError) -> float:
    return (exc.retry_after or 0.0) if isinstance(exc, CRMRetriesExhausted) else 0.0


def _native_decoder(origin: AttributeOrigin) -> BatchDecoder:
    """Native documents: sent by a native source, or stored by a backfill from CRM records
    (whose attributes are the CRM's: see facts.apply_attributes)."""

    async def decode(
        claimed: Sequence[inbox.Claimed], connection: str, connector: CRMConnector | None
    ) -> Decoded:
        decoded = Decoded()
        for row in claimed:
            try:
                native = NATIVE_EVENT.validate_python(row.payload)
            except ValidationError as exc:
                decoded.dead[row.id] = f"undecodable payload: {exc}"
                continue
            decoded.events[row.id] = [
                to_normalised(native, received_at=row.received_at, origin=origin)
            ]
        return decoded

    return decode


DECODERS: Mapping[str, BatchDecoder] = {
    "hubspot": _decode_hubspot,
    "native": _native_decoder("native"),
    BACKFILL_SOURCE: _native_decoder("crm"),
}


async def decode_salesforce(claimed: Sequence[inbox.Claimed], connection: Connection) -> Decoded:
    """Outbound Message notifications under the connection's current mapping. Changes our own
    integration user made (the health write-back, alert tasks) are ignored: acting on them
    would rescore for nothing and, were anything to drift, write again in a loop."""
    decoded = Decoded()
    inbound = connection.salesforce
    if inbound is None:
        decoded.dead.update((row.id, "not a Salesforce connection") for row in claimed)
        return decoded
    own_user = await _own_salesforce_user(claimed, connection)
    for row in claimed:
        try:
            notification = salesforce_events.Notification(
                id=str(row.payload["id"]),
                sobject_type=str(row.payload["sobject_type"]),
                fields=dict(row.payload["fields"]),
            )
            if notification.sobject_type not in salesforce_events.MAPPED_OBJECTS:
                decoded.ignored.append(row.id)
                continue
            if own_user is not None and salesforce_events.made_by(notification, own_user):
                log.debug("salesforce_echo_ignored", event_id=row.id, notification=notification.id)
                decoded.events[row.id] = []
                continue
            decoded.events[row.id] = salesforce_events.to_normalised(
                notification, inbound.mapping, received_at=row.received_at
            )
        except (PayloadError, KeyError, TypeError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _own_salesforce_user(
    claimed: Sequence[inbox.Claimed], connection: Connection
) -> str | None:
    """The integration user's id, when a notification could be our own echo and the connector
    can say who it is; without it every notification is processed (at worst a needless
    rescore, as unchanged health is never written again)."""
    connector = connection.connector
    if not isinstance(connector, SalesforceConnector):
        return None
    if not any(row.kind in salesforce_events.ECHO_OBJECTS for row in claimed):
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("salesforce_user_unknown", connection=connection.name, error=str(exc)[:300])
        return None


async def decode_dynamics(claimed: Sequence[inbox.Claimed], connection: Connection) -> Decoded:
    """Dataverse execution contexts under the connection's current mapping. A context whose
    images were dropped for size (or that carries no record) is completed with a Web API read;
    changes our own application user made (write-back, alert tasks) are ignored."""
    decoded = Decoded()
    inbound = connection.dynamics
    if inbound is None:
        decoded.dead.update((row.id, "not a Dynamics 365 connection") for row in claimed)
        return decoded
    connector = connection.connector
    dynamics = connector if isinstance(connector, DynamicsConnector) else None
    own_user = await _own_dynamics_user(claimed, connection.name, dynamics)
    for row in claimed:
        try:
            if row.body is None:
                raise PayloadError("a stored Dynamics webhook without its body")
            context = dynamics_events.parse_execution_context(
                row.body.encode(), size_exceeded=bool(row.payload.get("size_exceeded"))
            )
        except PayloadError as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
            continue
        if context.entity not in dynamics_events.MAPPED_ENTITIES:
            decoded.ignored.append(row.id)
            continue
        if own_user is not None and dynamics_events.made_by(context, own_user):
            decoded.events[row.id] = []
            continue
        record = context.record
        if context.message != "Delete" and (record is None or context.size_exceeded):
            read, record = await _read_back(dynamics, context, row.id, connection.name, decoded)
            if not read:
                continue
            if record is None:
                # Deleted before we read it: its Delete webhook tells the rest.
                decoded.events[row.id] = []
                continue
        try:
            decoded.events[row.id] = (
                []
                if record is None
                else dynamics_events.to_normalised(
                    record,
                    inbound.mapping,
                    # A delete's image dates from before it: the operation's own time is exact.
                    received_at=context.operation_created_on
                    if context.message == "Delete"
                    else row.received_at,
                    message=context.message,
                )
            )
        except (PayloadError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc}"
    return decoded


async def _read_back(
    dynamics: DynamicsConnector | None,
    context: dynamics_events.ExecutionContext,
    row_id: int,
    connection: str,
    decoded: Decoded,
) -> tuple[bool, dynamics_events.DynamicsRecord | None]:
    """(True, the record or None when deleted) once read; (False, None) with the event
    reported in `decoded` when it could not be."""
    if dynamics is None:
        decoded.failed[row_id] = (
            f"connection {connection!r} has no Dynamics credentials, and this webhook needs its "
            "record read back (its images were dropped for size): set "
            "CRM_HEALTH_DYNAMICS_CLIENT_ID, _CLIENT_SECRET and _TENANT_ID"
        )
        return False, None
    try:
        record = await dynamics.hydrate(context.entity, context.record_id)
    except CRMRateLimitPaused as exc:
        decoded.paused[row_id] = (exc.retry_after, str(exc))
        return False, None
    except (CRMRetriesExhausted, CRMAuthError) as exc:
        decoded.unavailable[row_id] = (_retry_after(exc), f"Dynamics read waits for the CRM: {exc}")
        return False, None
    except (CRMHTTPError, PayloadError) as exc:
        decoded.failed[row_id] = f"Dynamics read failed: {exc}"
        return False, None
    decoded.reached.add(connection)
    return True, record


async def _own_dynamics_user(
    claimed: Sequence[inbox.Claimed], connection: str, connector: DynamicsConnector | None
) -> str | None:
    """The application user's id (WhoAmI), when a context could be our own echo."""
    if connector is None:
        return None
    entities = {row.kind.partition(":")[0] for row in claimed}
    if not entities & dynamics_events.ECHO_ENTITIES:
        return None
    try:
        return await connector.own_user_id()
    except (CRMHTTPError, PayloadError) as exc:
        log.warning("dynamics_user_unknown", connection=connection, error=str(exc)[:300])
        return None


# Decoders of CRMs whose events carry their own mapping options on the connection.
CRM_DECODERS: Mapping[str, Callable[[Sequence[inbox.Claimed], Connection], Awaitable[Decoded]]] = {
    "salesforce": decode_salesforce,
    "dynamics": decode_dynamics,
}


def decode_segment(
    claimed: Sequence[inbox.Claimed], connection: str, options: SegmentOptions
) -> Decoded:
    """Segment calls under the connection's current options (a changed trait or event list
    applies to calls still waiting); their accounts are found later, in the transaction."""
    decoded = Decoded()
    for row in claimed:
        try:
            if row.kind.startswith(SEGMENT_REQUEST):
                decoded.spawn[row.id] = _split_segment_request(row.payload, row.body)
                continue
            message = interpret(row.payload, options)
        except (PayloadError, KeyError, TypeError, ValueError) as exc:
            decoded.dead[row.id] = f"undecodable payload: {exc!r}"
            continue
        if message is None:
            decoded.ignored.append(row.id)
        else:
            decoded.product[row.id] = (connection, message)
    return decoded


def _split_segment_request(payload: Mapping[str, Any], body: str | None) -> list[inbox.NewEvent]:
    if body is None:
        raise ValueError("a stored Segment request without its body")
    calls = split_request(
        body,
        call=payload["call"],
        received_at=datetime.fromisoformat(payload["received_at"]),
    )
    return [
        inbox.NewEvent(dedup_key=call.dedup_key, kind=call.kind, payload=call.payload)
        for call in calls
    ]


# Words of OperationalErrors that are the database's trouble, not the data's (SQLite also
# reports "too many SQL variables" as one, which must count against its events).
_UNAVAILABLE_WORDS = ("locked", "busy", "connection", "terminat", "closed", "timeout", "shutdown")


def database_unavailable(exc: BaseException) -> bool:
    """The database itself failed (a lost connection, a server going away, SQLite's lock
    timeout): nothing is wrong with the events being processed, so none may lose an attempt."""
    if isinstance(exc, sqlalchemy_exc.InterfaceError | sqlalchemy_exc.DisconnectionError):
        return True
    if isinstance(exc, sqlalchemy_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy_exc.OperationalError):
        message = str(exc.orig).lower()
        return any(word in message for word in _UNAVAILABLE_WORDS)
    return False


# How often parked product events are re-checked (see product.release_resolvable).
UNMATCHED_SWEEP_SECONDS = 60.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    batch_size: int = 5000
    recompute_chunk: int = 1000
    poll_seconds: float = 0.5
    lease_seconds: float = 120.0
    # Tries of an event that fails to process before it is dead-lettered. Not for waiting on
    # a CRM: outages and refused credentials cost events no attempt, and write-backs retry
    # until the CRM takes them or refuses the record.
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    # Hours between scheduled reconciles of the CRMs' health fields (0: none).
    reconcile_interval_hours: float = 0.0
    # Which source's account attributes win where two give one (facts.apply_attributes).
    attribute_precedence: facts.Precedence = "crm"
    # Only changes caused by events newer than this notify anyone (webhooks.alerts.rules.Cause).
    alert_max_event_age: timedelta = timedelta(hours=24)

    @property
    def schedule(self) -> RetrySchedule:
        return RetrySchedule(
            base_seconds=self.retry_base_seconds, max_seconds=self.retry_max_seconds
        )


@dataclass(kw_only=True)
class BatchReport:
    claimed: int = 0
    processed: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    dead: int = 0
    # Tried again later: with an attempt counted (failed) or without (paused by the CRM).
    failed: int = 0
    paused: int = 0
    rescored: int = 0
    staged: int = 0
    # Product events waiting for their account mapping.
    unmatched: int = 0


@dataclass(kw_only=True)
class _Sorted:
    """A claimed batch sorted by what happens to each event."""

    done: list[int] = field(default_factory=list)
    ignored: list[int] = field(default_factory=list)
    ignored_kinds: Counter[str] = field(default_factory=Counter)
    dead: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    paused: dict[int, tuple[float, str]] = field(default_factory=dict)
    product: dict[int, tuple[str, ProductMessage]] = field(default_factory=dict)
    # By (source, connection, when the splitting event was received).
    spawn: dict[tuple[str, str, datetime], list[inbox.NewEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    gone: dict[str, list[tuple[str, datetime]]] = field(default_factory=lambda: defaultdict(list))
    per_account: dict[accounts.AccountKey, list[NormalisedEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # Accounts whose record this batch confirms: it came from the CRM (a webhook, a read, a
    # backfill), or a native `account` event declared it on a connection without a CRM
    # connector. Only these may be created.
    records: set[accounts.AccountKey] = field(default_factory=set)
    # {event id: the account its facts are for} of events that cannot confirm a record (usage,
    # interactions, tickets...): they wait as unmatched while their account is unknown.
    origin: dict[int, accounts.AccountKey] = field(default_factory=dict)
    # {account: when its newest event not read by a backfill happened}: whether the rescore it
    # causes is live (tells people) or history (webhooks.alerts.rules.Cause).
    newest_event: dict[accounts.AccountKey, datetime] = field(default_factory=dict)

    def saw(self, account: accounts.AccountKey, at: datetime) -> None:
        known = self.newest_event.get(account)
        if known is None or at > known:
            self.newest_event[account] = at


# Sources whose events come from the CRM itself: the records they name exist there.
CRM_SOURCES = frozenset({"hubspot", "salesforce", "dynamics", BACKFILL_SOURCE})


def _account_of(event: inbox.Claimed, decoded: Decoded) -> tuple[str, str]:
    """(connection, the first account the event's facts are about; "" when not known yet)."""
    facts_of = decoded.events.get(event.id)
    return (event.connection, facts_of[0].account if facts_of else "")


def _by_source_and_outcome(
    claimed: Sequence[inbox.Claimed], **outcomes: Collection[int]
) -> Counter[tuple[str, str]]:
    """{(source, outcome): events} of a batch, from the event ids of each outcome."""
    source_of = {event.id: event.source for event in claimed}
    return Counter(
        (source_of[event_id], outcome) for outcome, ids in outcomes.items() for event_id in ids
    )


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
        channels: Mapping[str, Channel] = alert_delivery.NO_CHANNELS,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._connections = connections
        self._options = options
        self._clock = clock
        self._channels = channels
        self._metrics = Metrics() if metrics is None else metrics
        self._config: tuple[int | None, HealthConfig] = (None, HealthConfig())
        # Connections whose CRM paused them (a used-up daily allowance), until when. Per worker
        # is enough: the deferred rows' available_at is what makes the pause durable.
        self._paused_until: dict[str, datetime] = {}
        # Failures in a row of each connection's CRM (unreachable, 5xx/429 beyond the client's
        # retries, refused credentials), for the outage backoff; forgotten once it answers.
        self._outages: dict[str, int] = {}
        self._unmatched_swept_at: datetime | None = None
        self._reconciler = ReconcileScheduler(
            sessions=sessions,
            connections=connections,
            clock=clock,
            interval_hours=options.reconcile_interval_hours,
        )

    async def run_once(self) -> int:
        """One pass: a batch of inbox events, a recompute chunk, a step of a due reconcile,
        then due write-backs and alert deliveries."""
        # Installs made through another process's OAuth callback join here.
        await self._connections.sync_installed(self._sessions)
        await self._sweep_unmatched()
        report = await self.process_inbox()
        recomputed = await self.recompute_step()
        reconciled = await self._reconciler.step_if_due()
        written = await self.deliver_writebacks()
        alerted = await self.deliver_alerts()
        return report.claimed + recomputed + reconciled + written + alerted

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

    async def _sweep_unmatched(self) -> None:
        now = self._clock()
        last = self._unmatched_swept_at
        if last is not None and (now - last).total_seconds() < UNMATCHED_SWEEP_SECONDS:
            return
        self._unmatched_swept_at = now
        async with self._sessions() as session, session.begin():
            released = await product.release_resolvable(session, now=now)
        if released:
            log.info("product_events_matched_late", released=released)

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
        # Decoding may read the CRM: once per batch, outside any transaction, and never again
        # for the isolation below (which would multiply the calls).
        decoded = await self._decode(claimed)
        # An event that broke a batch before goes on its own, so it cannot break another one.
        suspects = [event for event in claimed if event.attempts > 0]
        clean = [event for event in claimed if event.attempts == 0]
        try:
            await self._process_isolating(clean, report, decoded)
            for event in suspects:
                await self._process_isolating([event], report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                await self._hand_back(claimed)
            raise
        for kind, count in report.ignored.items():
            log.info("events_ignored_unsupported_type", kind=kind, count=count)
        log.info(
            "batch_processed",
            claimed=report.claimed,
            processed=report.processed,
            dead=report.dead,
            failed=report.failed,
            paused=report.paused,
            unmatched=report.unmatched,
            rescored=report.rescored,
            staged_writebacks=report.staged,
        )
        return report

    async def _process_isolating(
        self, events: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        """Process the events in one transaction; when that fails, split them in halves along
        account lines (each account's events stay together, so an account is rescored about
        once in the halves that pass, not once per level), down to the events that fail
        alone, which count a failed attempt (dead-lettered after the last). A poison event
        among n costs O(log n) extra transactions, not n."""
        if not events:
            return
        try:
            await self._process(events, report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(events) == 1:
                await self._count_failure(events[0], exc, report)
                return
            log.warning("batch_failed_isolating", size=len(events), error=repr(exc)[:500])
            ordered = sorted(events, key=lambda event: _account_of(event, decoded))
            await self._split(ordered, report, decoded)

    async def _split(
        self, events: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        """Isolate the failure in `events` (already in account order), known to fail together.
        When the first half passes, the failure is in the second: it is split at once rather
        than tried whole, which would only fail again (about half the failing transactions)."""
        if len(events) == 1:
            await self._process_isolating(events, report, decoded)
            return
        middle = len(events) // 2
        first, second = events[:middle], events[middle:]
        try:
            await self._process(first, report, decoded)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(first) == 1:
                await self._count_failure(first[0], exc, report)
            else:
                await self._split(first, report, decoded)
            # The second half may or may not hold a failure of its own: tried whole.
            await self._process_isolating(second, report, decoded)
            return
        await self._split(second, report, decoded)

    async def _count_failure(
        self, event: inbox.Claimed, exc: BaseException, report: BatchReport
    ) -> None:
        status = await self._record_failure(event, exc)
        if status == inbox.DEAD:
            report.dead += 1
        else:
            report.failed += 1

    async def _hand_back(self, claimed: Sequence[inbox.Claimed]) -> None:
        """Return claimed events to pending without an attempt: the database failed, not they.
        When it cannot take even that, their lease runs out and another pass claims them."""
        with contextlib.suppress(sqlalchemy_exc.SQLAlchemyError, OSError):
            async with self._sessions() as session, session.begin():
                await inbox.release(
                    session,
                    event_ids=[event.id for event in claimed],
                    available_at=self._clock(),
                    note="database unavailable during processing",
                )

    async def _record_failure(self, event: inbox.Claimed, exc: BaseException) -> str:
        async with self._sessions() as session, session.begin():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event.id,
                error=repr(exc),
                now=self._clock(),
                max_attempts=self._options.max_attempts,
                schedule=self._options.schedule,
            )
        self._metrics.processed({(event.source, "dead" if status == inbox.DEAD else "failed"): 1})
        log.warning("event_failed", event_id=event.id, status=status, error=repr(exc))
        return status

    def _crm_of(self, connection: str) -> str:
        known = self._connections.get(connection)
        return known.crm if known is not None else "native"

    async def _decode(self, claimed: Sequence[inbox.Claimed]) -> Decoded:
        """Decode the batch per source and connection, each group with its own connector."""
        groups: dict[tuple[str, str], list[inbox.Claimed]] = defaultdict(list)
        for event in claimed:
            groups[(event.source, event.connection)].append(event)
        decoded = Decoded()
        for (source, connection), events in groups.items():
            if source == "segment":
                options = self._connections.segment_options(connection)
                decoded.add(decode_segment(events, connection, options))
                continue
            crm_decoder = CRM_DECODERS.get(source)
            if crm_decoder is not None:
                target = self._connections.get(connection)
                if target is None:
                    reason = (
                        f"no connection {connection!r} for these {source} events: add it to "
                        "the connections file, then run `crm-health replay`"
                    )
                    decoded.dead.update((event.id, reason) for event in events)
                else:
                    decoded.add(await crm_decoder(events, target))
                continue
            decoder = DECODERS.get(source)
            if decoder is None:
                decoded.ignored.extend(event.id for event in events)
                continue
            known = self._connections.get(connection)
            if known is None and source not in {"native", BACKFILL_SOURCE}:
                # Intake keeps events of a portal nobody connected (under the name its install
                # would get); they wait in the dead letters until it is connected and replayed.
                reason = (
                    f"no connection {connection!r} for these {source} events: connect it (OAuth "
                    "install or the connections file), then run `crm-health replay`"
                )
                decoded.dead.update((event.id, reason) for event in events)
                continue
            try:
                decoded.add(
                    await decoder(events, connection, None if known is None else known.connector)
                )
            except Exception as exc:
                # Decoders report their own failures; anything else is a bug to retry, not a
                # reason to call the CRM again event by event.
                log.exception("decoder_failed", source=source, connection=connection)
                decoded.failed.update((event.id, repr(exc)) for event in events)
        self._wait_out_outages(claimed, decoded)
        return decoded

    def _wait_out_outages(self, claimed: Sequence[inbox.Claimed], decoded: Decoded) -> None:
        """Events whose CRM could not be read wait for their connection's outage backoff
        (growing with the failures in a row, capped), no attempt counted."""
        for connection in decoded.reached:
            self._outages.pop(connection, None)
        if not decoded.unavailable:
            return
        connection_of = {event.id: event.connection for event in claimed}
        waiting: dict[str, dict[int, tuple[float, str]]] = defaultdict(dict)
        for event_id, wait in decoded.unavailable.items():
            waiting[connection_of[event_id]][event_id] = wait
        for connection, events in waiting.items():
            delay = self._outage_delay(connection, max(after for after, _ in events.values()))
            for event_id, (_, reason) in events.items():
                decoded.paused[event_id] = (delay, reason)
            log.warning(
                "crm_unavailable_events_wait",
                connection=connection,
                events=len(events),
                retry_in_seconds=round(delay, 1),
                failures_in_a_row=self._outages[connection],
                error=next(iter(events.values()))[1][:300],
            )

    def _outage_delay(self, connection: str, retry_after: float) -> float:
        """Count one more failure in a row of the connection's CRM; how long to wait now."""
        failures = self._outages.get(connection, 0) + 1
        self._outages[connection] = failures
        return self._options.schedule.delay(failures, not_before=retry_after)

    def _sort(self, claimed: Sequence[inbox.Claimed], decoded: Decoded) -> _Sorted:
        """Where each claimed event goes, from what its decoder made of it."""
        out = _Sorted()
        for event in claimed:
            if event.id in decoded.dead:
                out.dead[event.id] = decoded.dead[event.id]
                log.warning("event_undecodable", event_id=event.id, source=event.source)
            elif event.id in decoded.failed:
                out.failed[event.id] = decoded.failed[event.id]
            elif event.id in decoded.paused:
                out.paused[event.id] = decoded.paused[event.id]
            elif event.id in decoded.product:
                # Placed on its account inside the transaction (webhooks.matching).
                out.product[event.id] = decoded.product[event.id]
            elif event.id in decoded.spawn:
                key = (event.source, event.connection, event.received_at)
                out.spawn[key].extend(decoded.spawn[event.id])
                out.done.append(event.id)
            elif event.id in decoded.events:
                crm = self._crm_of(event.connection)
                for normalised in decoded.events[event.id]:
                    account = (event.connection, crm, normalised.account)
                    out.per_account[account].append(normalised)
                    if event.source != BACKFILL_SOURCE:
                        out.saw(account, normalised.at)
                    if self._confirms(event, normalised):
                        out.records.add(account)
                    else:
                        out.origin[event.id] = account
                out.gone[event.connection].extend(decoded.contacts_gone.get(event.id, []))
                out.done.append(event.id)
            else:
                out.ignored.append(event.id)
                out.ignored_kinds[event.kind] += 1
        return out

    def _confirms(self, event: inbox.Claimed, normalised: NormalisedEvent) -> bool:
        """Whether the event is the account's record (see `_Sorted.records`)."""
        if event.source in CRM_SOURCES:
            return True
        known = self._connections.get(event.connection)
        return isinstance(normalised, AccountAttributes) and (
            known is None or known.connector is None
        )

    def _why_unknown(self, key: accounts.AccountKey) -> str:
        connection, _, crm_id = key
        known = self._connections.get(connection)
        if known is None or known.connector is None:
            return (
                f"no account {crm_id!r} in connection {connection!r}: a connection without a "
                "CRM connector declares its accounts with `account` events; send one for it "
                "(or correct the id). The events count once it arrives."
            )
        return (
            f"no account {crm_id!r} in connection {connection!r}: the CRM has not sent this "
            "record (a mistyped id, or a company not synced yet: its webhook or `crm-health "
            "backfill` brings it). The events count once it arrives."
        )

    async def _hold_unknown(
        self,
        session: AsyncSession,
        out: _Sorted,
        matched: Matched,
    ) -> tuple[set[accounts.AccountKey], dict[int, tuple[str, str]]]:
        """Take the events of accounts neither known nor confirmed by this batch out of it:
        they wait as unmatched, never creating an account. Returns the keys that exist and
        every event that waits ({event id: (match key, reason)})."""
        per_account = out.per_account
        known = await accounts.known_keys(session, keys=per_account.keys())
        waiting = dict(matched.waiting)
        unknown = {key for key in per_account if key not in known and key not in out.records}
        if not unknown:
            return known, waiting
        for event_id, key in (*out.origin.items(), *matched.origin.items()):
            if key in unknown:
                waiting[event_id] = (product.account_key(key[2]), self._why_unknown(key))
        for key in unknown:
            del per_account[key]
        out.done = [event_id for event_id in out.done if event_id not in waiting]
        log.info("events_wait_for_unknown_accounts", accounts=len(unknown))
        return known, waiting

    async def _release_confirmed(
        self,
        session: AsyncSession,
        out: _Sorted,
        locked: Mapping[accounts.AccountKey, Account],
        known: Collection[accounts.AccountKey],
        now: datetime,
    ) -> None:
        """Accounts this batch confirmed: a record the CRM sends again is found after all, and
        the events that waited for a new one go back to the worker."""
        new: dict[str, set[str]] = defaultdict(set)
        for key in out.records:
            account = locked[key]
            if account.not_found_at is not None:
                account.not_found_at = None
                account.not_found_reason = None
            if key not in known:
                new[key[0]].add(product.account_key(key[2]))
        for connection, keys in new.items():
            await product.release(session, connection=connection, keys=keys, now=now)

    async def _process(
        self, claimed: Sequence[inbox.Claimed], report: BatchReport, decoded: Decoded
    ) -> None:
        now = self._clock()
        out = self._sort(claimed, decoded)
        per_account = out.per_account
        async with self._sessions() as session, session.begin():
            for (source, connection, received_at), spawned in out.spawn.items():
                # Redelivered calls are skipped here, on their own dedup keys.
                await inbox.insert_events(
                    session,
                    source=source,
                    connection=connection,
                    events=spawned,
                    received_at=received_at,
                )
            matched = await match_product_events(
                session,
                messages=out.product,
                connections=self._connections,
                crm_of=self._crm_of,
                now=now,
            )
            for key, product_facts in matched.events.items():
                per_account[key].extend(product_facts)
                for fact in product_facts:
                    out.saw(key, fact.at)
            out.done.extend(matched.done)
            out.ignored.extend(matched.ignored)
            await self._contacts_left(session, out)
            known, waiting = await self._hold_unknown(session, out, matched)
            locked = await accounts.lock_accounts(
                session, keys=per_account.keys(), now=now, known=known
            )
            await self._release_confirmed(session, out, locked, known, now)
            await facts.fold(
                session,
                events=[
                    (locked[key], normalised)
                    for key, events in per_account.items()
                    for normalised in events
                ],
                now=now,
                precedence=self._options.attribute_precedence,
            )
            await match_new_domains(
                session,
                domains=_new_domains(per_account, locked),
                connections=self._connections,
                now=now,
            )
            live = [
                account
                for account in locked.values()
                if account.deleted_at is None and account.not_found_at is None
            ]
            await alerts.resolve_for_accounts(
                session,
                account_ids=[a.id for a in locked.values() if a.deleted_at is not None],
                now=now,
            )
            config = await self._current_config(session)
            staged = await self._rescore(
                session, live, now, config, cause=self._causes(out, locked, now)
            )
            await accounts.save(session, accounts=list(locked.values()))
            await product.park(session, waiting=waiting, now=now)
            exhausted = await self._settle(session, out, now)
        self._metrics.processed(
            _by_source_and_outcome(
                claimed,
                done=out.done,
                ignored=out.ignored,
                dead=[*out.dead, *exhausted],
                failed=[event_id for event_id in out.failed if event_id not in exhausted],
                paused=out.paused,
                unmatched=waiting,
            )
        )
        if out.failed or out.paused:
            log.warning("events_retried_later", failed=len(out.failed), paused=len(out.paused))
        # Counted once the transaction holds: a batch split after a failure counts each once.
        report.ignored.update(out.ignored_kinds)
        report.processed += len(out.done)
        report.unmatched += len(waiting)
        report.dead += len(out.dead)
        report.failed += len(out.failed)
        report.paused += len(out.paused)
        report.rescored += len(live)
        report.staged += staged

    async def _settle(self, session: AsyncSession, out: _Sorted, now: datetime) -> set[int]:
        """Record what happened to each event; returns the failed ones out of attempts (dead)."""
        await inbox.settle(session, event_ids=out.done, status=inbox.DONE, now=now)
        await inbox.settle(session, event_ids=out.ignored, status=inbox.IGNORED, now=now)
        await inbox.bury(session, errors=out.dead, now=now)
        exhausted: set[int] = set()
        for event_id, error in out.failed.items():
            status = await inbox.mark_failed_attempt(
                session,
                event_id=event_id,
                error=error,
                now=now,
                max_attempts=self._options.max_attempts,
                schedule=self._options.schedule,
            )
            if status == inbox.DEAD:
                exhausted.add(event_id)
        pauses: dict[tuple[float, str], list[int]] = defaultdict(list)
        for event_id, pause in out.paused.items():
            pauses[pause].append(event_id)
        for (retry_after, reason), event_ids in pauses.items():
            await inbox.release(
                session,
                event_ids=event_ids,
                available_at=now + timedelta(seconds=retry_after),
                note=reason,
            )
        return exhausted

    async def _contacts_left(self, session: AsyncSession, out: _Sorted) -> None:
        """A contact deleted from the CRM left every account the facts have it at."""
        for connection, contacts in out.gone.items():
            if not contacts:
                continue
            crm = self._crm_of(connection)
            where = await facts.contact_accounts(
                session, connection=connection, contacts=[contact for contact, _ in contacts]
            )
            for contact, at in contacts:
                for account in where.get(contact, []):
                    key = (connection, crm, account)
                    out.per_account[key].append(
                        ContactUpsert(account=account, at=at, contact=contact, left=True)
                    )
                    out.saw(key, at)

    def _causes(
        self, out: _Sorted, locked: Mapping[accounts.AccountKey, Account], now: datetime
    ) -> Callable[[Account], Cause]:
        """Why each account of the batch is rescored: live when one of its events (not read by a
        backfill) is newer than the alert age limit; history when all are older; backfill when
        only a backfill read it; first_load at its first scoring, whatever brought it."""
        cutoff = now - self._options.alert_max_event_age
        newest = {locked[key].id: at for key, at in out.newest_event.items() if key in locked}

        def cause(account: Account) -> Cause:
            if account.health_updated_at is None:
                return "first_load"
            at = newest.get(account.id)
            if at is None:
                return "backfill"
            return "live" if at >= cutoff else "history"

        return cause

    async def _rescore(
        self,
        session: AsyncSession,
        live: list[Account],
        now: datetime,
        config: HealthConfig,
        *,
        cause: Callable[[Account], Cause],
    ) -> int:
        """Score every given account once, keep history, queue the fields that changed;
        `cause` says why each is rescored (whether its alerts tell anyone)."""
        if not live:
            return 0
        with self._metrics.scoring_seconds.time():
            staged = await self._score_and_stage(session, live, now, config, cause)
        self._metrics.accounts_rescored.inc(len(live))
        return staged

    async def _score_and_stage(
        self,
        session: AsyncSession,
        live: list[Account],
        now: datetime,
        config: HealthConfig,
        cause: Callable[[Account], Cause],
    ) -> int:
        snapshots = await facts.read_facts(session, accounts=live, as_of=now)
        month_ago = await accounts.scores_at_or_before(
            session, account_ids=[a.id for a in live], at=now - timedelta(days=30)
        )
        versions = accounts.scoring_versions(live, config)
        previous = await accounts.previous_bands(session, accounts=live, versions=versions, at=now)
        scored = [
            (
                account,
                score(
                    snapshots[account.id],
                    config.for_connection(account.connection),
                    previous_band=previous[account.id],
                    score_30d_ago=month_ago.get(account.id),
                ),
            )
            for account in live
        ]
        # Before record_health: the alerts compare with the score and band the rows still hold.
        await self._update_alerts(session, scored, versions, now, config, cause=cause)
        await accounts.record_health(session, scored=scored, at=now, versions=versions)
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

    async def _update_alerts(
        self,
        session: AsyncSession,
        scored: Sequence[tuple[Account, Health]],
        versions: Mapping[int, str],
        now: datetime,
        config: HealthConfig,
        *,
        cause: Callable[[Account], Cause],
    ) -> None:
        """Raise and resolve alerts for freshly scored accounts, in the rescore's transaction:
        an alert and its deliveries exist exactly when the health that caused them does."""
        ids = [account.id for account, _ in scored]
        windows = {
            rule.days
            for connection in {account.connection for account, _ in scored}
            for rule in config.for_connection(connection).alerts
            if rule.enabled and rule.when == "score_drop"
        }
        # Only scores computed under the same scoring configuration: a drop that a
        # configuration change caused is not the customer's doing.
        before: dict[int, Mapping[int, int | None]] = {}
        for days in sorted(windows):
            before[days] = await accounts.scores_at_or_before(
                session, account_ids=ids, at=now - timedelta(days=days), versions=versions
            )
        states = [
            (
                account,
                alert_service.account_state(
                    account,
                    health,
                    scores_before={days: found.get(account.id) for days, found in before.items()},
                    scoring_version=versions[account.id],
                    cause=cause(account),
                ),
            )
            for account, health in scored
        ]
        await alert_service.update_alerts(
            session,
            states=states,
            rules_for=lambda connection: config.for_connection(connection).alerts,
            digests={name: channel.digest for name, channel in self._channels.items()},
            now=now,
        )

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
        job_id, after, connection = job
        chunk_size = self._options.recompute_chunk
        async with self._sessions() as session, session.begin():
            chunk = await accounts.accounts_after(
                session, after_id=after, limit=chunk_size, connection=connection
            )
            config = await self._current_config(session)
            # What a configuration change finds is recorded, but nobody is told of it.
            staged = await self._rescore(
                session, chunk, now, config, cause=lambda _account: "configuration"
            )
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

    # -- alert outbox -> channels ----------------------------------------------------------------

    async def deliver_alerts(self) -> int:
        """Send the due alert deliveries (see webhooks.alerts.delivery); returns how many."""
        return await alert_delivery.deliver_alerts(
            sessions=self._sessions,
            channels=self._channels,
            connections=self._connections,
            options=self._options,
            clock=self._clock,
            metrics=self._metrics,
        )

    # -- outbox -> CRM --------------------------------------------------------------------------

    async def deliver_writebacks(self) -> int:
        now = self._clock()
        # A paused connection's deferred rows are not due anyway, but rows staged since are:
        # leaving the connection out keeps them unclaimed instead of sent into the pause.
        writers = {
            name: connector
            for name, connector in self._connections.writers().items()
            if self._paused_until.get(name, now) <= now
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
        updates = [RecordUpdate(record_id=d.record_id, fields=d.fields) for d in chunk]
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
            outage_delay = self._outage_delay(connection, _retry_after(unavailable))
            records["failed"] = len(chunk)
            await self._defer(
                chunk,
                until=now + timedelta(seconds=outage_delay),
                reason=failed[chunk[0].record_id],
                count_attempt=True,
            )
        else:
            # The CRM answered, even if it refused some records: its outage, if any, is over.
            self._outages.pop(connection, None)
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


def _new_domains(
    per_account: Mapping[accounts.AccountKey, Sequence[NormalisedEvent]],
    locked: Mapping[accounts.AccountKey, Account],
) -> dict[str, dict[str, str]]:
    """{connection: {domain: crm_id}} of the accounts whose domain this batch set."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for key, events in per_account.items():
        account = locked[key]
        sets_domain = any(
            isinstance(event, AccountAttributes) and "domain" in event.attributes
            for event in events
        )
        if sets_domain and account.domain and account.deleted_at is None:
            found[account.connection][account.domain] = account.crm_id
    return found
