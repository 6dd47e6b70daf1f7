"""Per-source decoding of claimed inbox events (each CRM's through its spec in the registry;
Segment, native and backfill documents here): what each event becomes, or why it waits, is
ignored or is dead-lettered. It may call the CRM, so it runs outside any transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError

from connector.base import CRMConnector
from connector.decoding import CRMDecoded
from connector.errors import (
    PayloadError,
)
from connector.model import AttributeOrigin, NormalisedEvent
from connector.native import NATIVE_EVENT, to_normalised
from connector.registry import CRMS
from connector.segment import ProductMessage, SegmentOptions, interpret, split_request
from webhooks.connections import ConnectionRegistry
from webhooks.inbox_kinds import ADMIN_SOURCE, BACKFILL_SOURCE, SEGMENT_REQUEST
from webhooks.sentiment import SentimentDocument
from webhooks.store import inbox

log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Outcomes:
    """What becomes of claimed events that are not facts to fold now, by inbox id. A decoder
    reports these (`Decoded`), and the batch's sorting carries them to the transaction
    (webhooks.worker.staging)."""

    # Not a kind we handle.
    ignored: list[int] = field(default_factory=list)
    # Can never be decoded: dead-lettered, no retry.
    dead: dict[int, str] = field(default_factory=dict)
    # Tried again, an attempt counted.
    failed: dict[int, str] = field(default_factory=dict)
    # Tried again after so many seconds, no attempt counted: the CRM took no calls.
    paused: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Product events still to be placed on a CRM account (by connection): see webhooks.matching.
    product: dict[int, tuple[str, ProductMessage]] = field(default_factory=dict)


@dataclass(kw_only=True)
class Decoded(Outcomes):
    """What a source's decoder made of claimed events, by inbox id. Every event lands in exactly
    one of: understood (`events`, possibly empty), split (`spawn`), unavailable, or one of the
    `Outcomes`."""

    events: dict[int, list[NormalisedEvent]] = field(default_factory=dict)
    # Contacts deleted from the CRM, by the event that said so: they left every account.
    contacts_gone: dict[int, list[tuple[str, datetime]]] = field(default_factory=dict)
    # The CRM could not be reached or would not let us in (transport errors, timeouts, 5xx and
    # 429 beyond the client's retries, refused credentials): (its Retry-After or 0, why). The
    # events wait for the connection's outage backoff, no attempt counted: an outage of any
    # length must never dead-letter them.
    unavailable: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Connections whose CRM answered a read of this batch: their outage is over.
    reached: set[str] = field(default_factory=set)
    # Events an event splits into (a Segment request into its calls), stored as new inbox rows.
    spawn: dict[int, list[inbox.NewEvent]] = field(default_factory=dict)

    def add(self, other: Decoded | CRMDecoded) -> None:
        if isinstance(other, Decoded):
            self.product.update(other.product)
            self.spawn.update(other.spawn)
        self.events.update(other.events)
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


def _document_decoder(read: Callable[[inbox.Claimed], NormalisedEvent]) -> BatchDecoder:
    """Documents the service can read on its own, one event each: `read` validates a row
    (raising ValidationError for one it cannot: a dead letter with the reason)."""

    async def decode(
        claimed: Sequence[inbox.Claimed], connection: str, connector: CRMConnector | None
    ) -> Decoded:
        decoded = Decoded()
        for row in claimed:
            try:
                decoded.events[row.id] = [read(row)]
            except ValidationError as exc:
                decoded.dead[row.id] = f"undecodable payload: {exc}"
        return decoded

    return decode


def _native_decoder(origin: AttributeOrigin) -> BatchDecoder:
    """Native documents: sent by a native source, or stored by a backfill from CRM records
    (whose attributes are the CRM's: see facts.apply_attributes)."""
    return _document_decoder(
        lambda row: to_normalised(
            NATIVE_EVENT.validate_python(row.payload), received_at=row.received_at, origin=origin
        )
    )


# Sources that are no CRM: native documents, those a backfill read from a CRM, and the admin
# API's own.
DECODERS: Mapping[str, BatchDecoder] = {
    "native": _native_decoder("native"),
    BACKFILL_SOURCE: _native_decoder("crm"),
    # The admin API's: a CSM's sentiment (webhooks.sentiment).
    ADMIN_SOURCE: _document_decoder(
        lambda row: SentimentDocument.model_validate(row.payload).normalised()
    ),
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


async def decode_batch(
    claimed: Sequence[inbox.Claimed], connections: ConnectionRegistry
) -> Decoded:
    """Decode the batch per source and connection, each group with its own connector."""
    groups: dict[tuple[str, str], list[inbox.Claimed]] = defaultdict(list)
    for event in claimed:
        groups[(event.source, event.connection)].append(event)
    decoded = Decoded()
    for (source, connection), events in groups.items():
        if source == "segment":
            options = connections.segment_options(connection)
            decoded.add(decode_segment(events, connection, options))
            continue
        spec = CRMS.get(source)
        target = connections.get(connection)
        decoding: Awaitable[Decoded | CRMDecoded]
        if spec is not None:
            if target is None:
                # Intake keeps events of a portal nobody connected (under the name its install
                # would get); they wait in the dead letters until it is connected and replayed.
                reason = (
                    f"no connection {connection!r} for these {source} events: "
                    f"{spec.hints.connect}, then run `crm-health replay`"
                )
                decoded.dead.update((event.id, reason) for event in events)
                continue
            decoding = spec.decode(events, target)
        else:
            decoder = DECODERS.get(source)
            if decoder is None:
                decoded.ignored.extend(event.id for event in events)
                continue
            decoding = decoder(events, connection, None if target is None else target.connector)
        try:
            decoded.add(await decoding)
        except Exception as exc:
            # Decoders report their own failures; anything else is a bug to retry, not a
            # reason to call the CRM again event by event.
            log.exception("decoder_failed", source=source, connection=connection)
            decoded.failed.update((event.id, repr(exc)) for event in events)
    return decoded
