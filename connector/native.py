"""The native event format: normalised events as JSON (`POST /ingest/events`, backfills).

One event is `{"id"?, "type", "account", "at"?, ...type fields}`, e.g.
`{"type": "usage", "account": "123", "user": "u-9", "at": "2026-11-23T10:00:00Z"}`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from connector import bounds
from connector.model import (
    ACCOUNT_ATTRIBUTES,
    SURVEY_SCALES,
    AccountAttributes,
    AccountDeleted,
    AttributeOrigin,
    Collaboration,
    CollaborationKind,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    InteractionDirection,
    NormalisedEvent,
    Outcome,
    OutcomeKind,
    SurveyKind,
    SurveyResponse,
    Ticket,
    TicketPriority,
    Usage,
)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: bounds.EventId | None = None
    account: bounds.AccountId
    # Naive timestamps are refused: a missing offset would silently shift every window.
    at: bounds.EventTime | None = None

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


class _Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: bounds.Name | None = None
    domain: bounds.ShortText | None = None
    seats: bounds.Seats | None = None
    arr: bounds.Arr | None = None
    renewal_date: bounds.DateText | None = None
    segment: bounds.ShortText | None = None
    owner: bounds.ShortText | None = None
    # Compared with HealthConfig.customers.native ("customer" by default).
    lifecycle: bounds.ShortText | None = None
    # Since when the account is a customer: the start of its onboarding period.
    customer_since: datetime | date | None = None
    # When the record was created in its CRM (backfills carry the CRM's own date this way).
    created: datetime | date | None = None


class AccountEvent(_Event):
    type: Literal["account"]
    attributes: _Attributes

    def normalised(self, at: datetime) -> NormalisedEvent:
        values = self.attributes.model_dump(exclude_unset=True)
        return AccountAttributes(
            account=self.account,
            at=at,
            attributes={k: None if v is None else str(v) for k, v in values.items()},
        )


class AccountDeletedEvent(_Event):
    type: Literal["account_deleted"]

    def normalised(self, at: datetime) -> NormalisedEvent:
        return AccountDeleted(account=self.account, at=at)


class ContactEvent(_Event):
    type: Literal["contact"]
    contact: bounds.RecordId
    title: bounds.Text | None = None
    executive: bool | None = None
    left: bool = False

    def normalised(self, at: datetime) -> NormalisedEvent:
        return ContactUpsert(
            account=self.account,
            at=at,
            contact=self.contact,
            title=self.title,
            executive=self.executive,
            left=self.left,
        )


class InteractionEvent(_Event):
    type: Literal["interaction"]
    channel: InteractionChannel
    direction: InteractionDirection
    contact: bounds.RecordId | None = None

    def normalised(self, at: datetime) -> NormalisedEvent:
        return Interaction(
            account=self.account,
            at=at,
            channel=self.channel,
            direction=self.direction,
            contact=self.contact,
            source_id=self.id,
        )


class UsageEvent(_Event):
    type: Literal["usage"]
    user: bounds.RecordId
    feature: bounds.Feature | None = None

    def normalised(self, at: datetime) -> NormalisedEvent:
        return Usage(account=self.account, at=at, user=self.user, feature=self.feature)


class CollaborationEvent(_Event):
    type: Literal["collaboration"]
    kind: CollaborationKind

    def normalised(self, at: datetime) -> NormalisedEvent:
        return Collaboration(account=self.account, at=at, kind=self.kind)


class TicketEvent(_Event):
    type: Literal["ticket"]
    ticket: bounds.RecordId
    priority: TicketPriority

    def normalised(self, at: datetime) -> NormalisedEvent:
        return Ticket(account=self.account, at=at, ticket=self.ticket, priority=self.priority)


class OutcomeEvent(_Event):
    type: Literal["outcome"]
    outcome: OutcomeKind
    arr: bounds.Arr | None = None

    def normalised(self, at: datetime) -> NormalisedEvent:
        return Outcome(account=self.account, at=at, outcome=self.outcome, arr=self.arr)


class SurveyEvent(_Event):
    """An answer to an NPS (0-10), CSAT (1-5) or CES (1-7) survey by one respondent."""

    type: Literal["survey"]
    kind: SurveyKind
    score: float = Field(allow_inf_nan=False)
    respondent: bounds.RecordId
    comment: bounds.Comment | None = None

    @field_validator("score")
    @classmethod
    def _on_scale(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if kind is None:  # the kind's own error says what is wrong
            return value
        low, high = SURVEY_SCALES[kind]
        if not low <= value <= high:
            raise ValueError(f"{kind} scores run from {low} to {high}, not {value:g}")
        return value

    def normalised(self, at: datetime) -> NormalisedEvent:
        return SurveyResponse(
            account=self.account,
            at=at,
            kind=self.kind,
            score=self.score,
            respondent=self.respondent,
            comment=self.comment or None,
        )


NativeEvent = Annotated[
    AccountEvent
    | AccountDeletedEvent
    | ContactEvent
    | InteractionEvent
    | UsageEvent
    | CollaborationEvent
    | TicketEvent
    | OutcomeEvent
    | SurveyEvent,
    Field(discriminator="type"),
]
NATIVE_EVENT: TypeAdapter[NativeEvent] = TypeAdapter(NativeEvent)


def to_normalised(
    event: NativeEvent, *, received_at: datetime, origin: AttributeOrigin = "native"
) -> NormalisedEvent:
    """The normalised event; `at` defaults to when the event was received. `origin` is who
    the attributes come from: a native sender, or the CRM a backfill read them from."""
    normalised = event.normalised(event.at or received_at)
    if isinstance(normalised, AccountAttributes):
        return dataclasses.replace(normalised, origin=origin)
    return normalised


_TYPES: dict[type, str] = {
    AccountAttributes: "account",
    AccountDeleted: "account_deleted",
    ContactUpsert: "contact",
    Interaction: "interaction",
    Usage: "usage",
    Collaboration: "collaboration",
    Ticket: "ticket",
    Outcome: "outcome",
    SurveyResponse: "survey",
}


def to_native(event: NormalisedEvent) -> dict[str, Any]:
    """The JSON document of a normalised event (what the inbox stores for native sources)."""
    document: dict[str, Any] = {"type": _TYPES[type(event)]}
    for item in dataclasses.fields(event):
        name, value = item.name, getattr(event, item.name)
        if name == "at":
            value = value.astimezone(UTC).isoformat()
        elif name == "attributes":
            value = {k: v for k, v in value.items() if k in ACCOUNT_ATTRIBUTES}
        elif name == "origin":
            # The inbox source says it (a backfill's rows are the CRM's).
            continue
        elif name == "source_id":
            # An interaction's source id travels as the native event's own id.
            name = "id"
        if value is not None:
            document[name] = value
    return document
