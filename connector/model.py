"""The normalised events every source is translated into, independent of the CRM.

CRM webhooks, backfills and product-usage ingestion all produce these; the worker folds them
into per-account facts. `account` is always the CRM record id of the account (company).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from connector import bounds

# Account attributes the facts store understands; others are kept but not scored.
ACCOUNT_ATTRIBUTES = (
    "name", "domain", "seats", "arr", "renewal_date", "segment", "owner", "lifecycle",
    "customer_since", "created",
)  # fmt: skip
# The longest value kept per attribute (SHORT_TEXT for the others).
_ATTRIBUTE_LIMITS = {"name": bounds.NAME}

InteractionChannel = Literal["email", "call", "meeting", "note"]
# Who started it: the customer reaching out, or us.
InteractionDirection = Literal["customer", "ours"]
CollaborationKind = Literal[
    "feedback", "feature_request", "beta", "referral", "case_study", "joint_plan"
]
TicketPriority = Literal["low", "medium", "high", "urgent"]
OutcomeKind = Literal["renewed", "churned"]
# Net Promoter Score (0-10), customer satisfaction (1-5), customer effort (1-7).
SurveyKind = Literal["nps", "csat", "ces"]
# The scale of each kind's score, both ends included.
SURVEY_SCALES: Mapping[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
AttributeOrigin = Literal["crm", "native"]


@dataclass(frozen=True, kw_only=True)
class AccountAttributes:
    """Attribute values as of `at`; per attribute, the latest `at` wins."""

    account: str
    at: datetime
    attributes: Mapping[str, str | None]
    # Who says so: the CRM (its webhooks, reads and backfills) or a native sender (the ingest
    # API, a CSV). Where both give an attribute, the precedence setting decides (facts.py).
    origin: AttributeOrigin = "crm"

    def __post_init__(self) -> None:
        # A CRM's text (a 600-character name, a NUL in a hydrated record) fits its column
        # here, so an event no sender can correct never fails the worker; intakes refuse such
        # text before this (connector.bounds). A typed value that does not parse (a date in
        # a format of the portal's own) is left out: the record does not carry a usable
        # value, which must not erase the good one held.
        object.__setattr__(
            self,
            "attributes",
            {
                name: bounds.clipped(value, _ATTRIBUTE_LIMITS.get(name, bounds.SHORT_TEXT))
                for name, value in self.attributes.items()
                if bounds.attribute_problem(name, value) is None
            },
        )


@dataclass(frozen=True, kw_only=True)
class AccountDeleted:
    account: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ContactUpsert:
    """A person at the account; `executive` None means "decide from the title"."""

    account: str
    at: datetime
    contact: str
    title: str | None = None
    executive: bool | None = None
    left: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "title", bounds.clipped(self.title, bounds.TEXT))


@dataclass(frozen=True, kw_only=True)
class Interaction:
    """An email, call, meeting or note. With `source_id` (the CRM's engagement id) a later
    version of the same engagement replaces the earlier one instead of counting twice."""

    account: str
    at: datetime
    channel: InteractionChannel
    direction: InteractionDirection
    contact: str | None = None
    source_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class Usage:
    """A user of the product was active at `at`."""

    account: str
    at: datetime
    user: str
    feature: str | None = None


@dataclass(frozen=True, kw_only=True)
class Collaboration:
    account: str
    at: datetime
    kind: CollaborationKind


@dataclass(frozen=True, kw_only=True)
class Ticket:
    """A support ticket opened at `at` (a redelivery of the same ticket counts once)."""

    account: str
    at: datetime
    ticket: str
    priority: TicketPriority


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How a renewal ended, for backtesting thresholds against what really happened; `arr`
    is the ARR renewed or lost, where the source gives it."""

    account: str
    at: datetime
    outcome: OutcomeKind
    arr: float | None = None


@dataclass(frozen=True, kw_only=True)
class SurveyResponse:
    """A person's answer to a survey (NPS, CSAT, CES): the customer's own voice. `score` is
    on the kind's scale (SURVEY_SCALES); the comment is theirs, untrusted text."""

    account: str
    at: datetime
    kind: SurveyKind
    score: float
    respondent: str
    comment: str | None = None


@dataclass(frozen=True, kw_only=True)
class CsmSentiment:
    """A CSM's judgement of an account, set at `at` and in force until `until`: a rating
    (red, amber, green) with a reason from the configuration's list, an optional note and its
    author; a rating of None clears the one in force. Set through the admin API; the note is
    a person's words, untrusted text."""

    account: str
    at: datetime
    rating: Literal["red", "amber", "green"] | None
    author: str
    reason: str | None = None
    note: str | None = None
    until: datetime | None = None


NormalisedEvent = (
    AccountAttributes
    | AccountDeleted
    | ContactUpsert
    | Interaction
    | Usage
    | Collaboration
    | Ticket
    | Outcome
    | SurveyResponse
    | CsmSentiment
)
