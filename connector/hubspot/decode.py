"""HubSpot webhook events stored in the inbox, as normalised events: planned from the event, and
completed with the records read back from HubSpot when the event alone does not say enough."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from pydantic import ValidationError

from connector.decoding import CRMDecoded, DecodeTarget, StoredRow
from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRetriesExhausted,
    PayloadError,
    retry_after,
)
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.events import HubSpotEvent
from connector.hubspot.hydrate import EventPlan, HydrationOptions, plan_event
from connector.model import NormalisedEvent

log = structlog.get_logger(__name__)


MISSING_CREDENTIALS = (
    "connection {connection!r} has no HubSpot API credentials, and this event needs records "
    "read from HubSpot: set CRM_HEALTH_HUBSPOT_ACCESS_TOKEN (or install the app)"
)


async def decode(claimed: Sequence[StoredRow], target: DecodeTarget) -> CRMDecoded:
    """Webhook events, with the records they need read in batches (hydration)."""
    connection = target.name
    connector = target.connector
    hubspot = connector if isinstance(connector, HubSpotConnector) else None
    options = hubspot.hydration if hubspot is not None else HydrationOptions()
    decoded = CRMDecoded()
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
    hubspot: HubSpotConnector, plans: Mapping[int, EventPlan], decoded: CRMDecoded
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
        wait = (retry_after(exc), f"HubSpot hydration waits for the CRM: {exc}")
        decoded.unavailable.update((row_id, wait) for row_id in plans)
        return {}
    except (CRMHTTPError, PayloadError) as exc:
        error = f"HubSpot hydration failed: {exc}"
        decoded.failed.update((row_id, error) for row_id in plans)
        return {}
    return dict(zip(plans, read, strict=True))
