"""Dataverse records as normalised events: the tables read, Web API records in the webhook's
shape, and the one mapping per table that webhooks, read-backs and backfill pages share (with
what a field plan reads from accounts)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

import structlog

from connector.base import SENTIMENT_AUTHOR_ATTRIBUTE, SENTIMENT_FIELD, property_attribute
from connector.dynamics.events import (
    DELETE_MESSAGE,
    LOGICAL_NAME,
    AttributeValue,
    DynamicsRecord,
    ExecutionContext,
    Lookup,
    guid,
    shown,
)
from connector.dynamics.fields import DynamicsFields
from connector.errors import PayloadError
from connector.mapping import (
    ACCOUNT_ATTRIBUTES,
    AccountMapping,
    website_domain,
)
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    ContactUpsert,
    Interaction,
    InteractionChannel,
    NormalisedEvent,
    Ticket,
    TicketPriority,
)

# Web API (OData) dates: Edm.DateTimeOffset in UTC, or Edm.Date for date-only columns.
_ODATA_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?"
)
_LOOKUP_PROPERTY = re.compile(r"_([a-z][a-z0-9_]*)_value")
_LOOKUP_LOGICAL_NAME_ANNOTATION: Final = "@Microsoft.Dynamics.CRM.lookuplogicalname"

log = structlog.get_logger(__name__)

# --- tables and the Web API --------------------------------------------------------------------

ENTITY_SETS: Final[Mapping[str, str]] = {
    "account": "accounts",
    "contact": "contacts",
    "email": "emails",
    "phonecall": "phonecalls",
    "appointment": "appointments",
    "incident": "incidents",
    "task": "tasks",
}
# Activity tables share the activitypointer key `activityid`.
PRIMARY_KEYS: Final[Mapping[str, str]] = {
    "account": "accountid",
    "contact": "contactid",
    "incident": "incidentid",
    "email": "activityid",
    "phonecall": "activityid",
    "appointment": "activityid",
    "task": "activityid",
}
# Lookup columns the mapping reads; the Web API names them `_<name>_value`.
_LOOKUP_COLUMNS: Final = frozenset(
    {"ownerid", "parentcustomerid", "regardingobjectid", "customerid", "parentaccountid"}
)


def _primary_key(entity: str) -> str:
    return PRIMARY_KEYS.get(entity, f"{entity}id")


def _odata_date(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{where} is not a date: {shown(value)}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def record_from_web_api(entity: str, document: Mapping[str, Any]) -> DynamicsRecord:
    """A Web API row (`GET /api/data/v9.2/<set>(<id>)`) in the webhook's shape.

    Lookups (`_parentcustomerid_value`) become `Lookup`s under their logical name; their table
    comes from the `@Microsoft.Dynamics.CRM.lookuplogicalname` annotation, so ask with
    `Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"`. ISO dates
    become aware datetimes; other annotations and expanded rows are left out.
    """
    if not LOGICAL_NAME.fullmatch(entity):
        raise ValueError(f"{entity!r} is not a table logical name")
    where = f"Web API {entity}"
    if not isinstance(document, Mapping):
        raise PayloadError(f"{where} is not a JSON object")
    key = _primary_key(entity)
    record_id = guid(document.get(key), f"{where}.{key}")
    where = f"{where} {record_id}"
    attributes: dict[str, AttributeValue] = {}
    for name, value in document.items():
        if not isinstance(name, str) or "@" in name or isinstance(value, dict | list):
            continue
        lookup = _LOOKUP_PROPERTY.fullmatch(name)
        if lookup is not None:
            column = lookup.group(1)
            if value is None:
                attributes[column] = None
                continue
            table = document.get(f"{name}{_LOOKUP_LOGICAL_NAME_ANNOTATION}")
            if not isinstance(table, str) or not LOGICAL_NAME.fullmatch(table):
                raise PayloadError(
                    f"{where}.{name} has no {_LOOKUP_LOGICAL_NAME_ANNOTATION} annotation: ask"
                    ' with Prefer: odata.include-annotations="Microsoft.Dynamics.CRM.*"'
                )
            attributes[column] = Lookup(entity=table, id=guid(value, f"{where}.{name}"))
        elif isinstance(value, str) and _ODATA_DATE.fullmatch(value):
            attributes[name] = _odata_date(value, f"{where}.{name}")
        else:
            attributes[name] = value
    return DynamicsRecord(entity=entity, id=record_id, attributes=attributes)


# --- mapping -----------------------------------------------------------------------------------

# The incident `prioritycode` choices of a new environment (global choice incident_prioritycode):
# 1 High, 2 Normal (the default), 3 Low.
DEFAULT_INCIDENT_PRIORITIES: Final[Mapping[int, TicketPriority]] = {
    1: "high",
    2: "medium",
    3: "low",
}
# A choice the organisation added itself, or none at all, cannot be ranked: count it as ordinary.
_FALLBACK_PRIORITY: Final[TicketPriority] = "medium"
_TICKET_PRIORITIES: Final = frozenset({"low", "medium", "high", "urgent"})


@dataclass(frozen=True, kw_only=True)
class DynamicsMapping(AccountMapping):
    """How an environment's rows become normalised events; every default is a standard column.

    Account attributes: the account column (logical name) carrying each one, None leaves it
    unmapped. Seats, ARR, renewal date and segment live in custom columns of each
    organisation's own naming (`new_seats`), so they are unmapped by default; `revenue` is the
    customer's own revenue, not what they pay us, so it is never ARR unless an admin says so.

    Contacts are executives when `executive_title` (a case-insensitive regex, as for HubSpot)
    matches their `jobtitle`. Incident priorities map by `prioritycode` value
    (`incident_priorities`; anything else counts as medium).
    """

    name: str | None = "name"
    domain: str | None = "websiteurl"
    owner: str | None = "ownerid"
    # The relationship type (`customertypecode`, a choice: 3 Customer, 8 Prospect...):
    # HealthConfig.customers decides which choice values are customers.
    lifecycle: str | None = "customertypecode"
    # When the row was created: where no customer-since date is known, the start of a
    # customer's onboarding period.
    created: str | None = "createdon"
    incident_priorities: Mapping[int, TicketPriority] = field(
        default_factory=lambda: dict(DEFAULT_INCIDENT_PRIORITIES)
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name in ACCOUNT_ATTRIBUTES:
                value = getattr(self, item.name)
                if value is not None and (
                    not isinstance(value, str) or not LOGICAL_NAME.fullmatch(value)
                ):
                    raise ValueError(
                        f"DynamicsMapping.{item.name} must be a column logical name (lowercase"
                        " letters, digits and underscores, e.g. new_seats) or None"
                    )
        for code, priority in self.incident_priorities.items():
            if isinstance(code, bool) or not isinstance(code, int):
                raise ValueError("DynamicsMapping.incident_priorities keys must be choice values")
            if priority not in _TICKET_PRIORITIES:
                raise ValueError(
                    f"DynamicsMapping.incident_priorities[{code}] must be one of low, medium,"
                    " high, urgent"
                )
        super().__post_init__()

    def incident_priority(self, value: AttributeValue) -> TicketPriority:
        if isinstance(value, bool) or not isinstance(value, int):
            return _FALLBACK_PRIORITY
        return self.incident_priorities.get(value, _FALLBACK_PRIORITY)


DEFAULT_MAPPING: Final = DynamicsMapping()


# --- what a field plan reads ---------------------------------------------------------------------

# Who set the CSM sentiment, next to it in the same account attributes.


@dataclass(frozen=True, kw_only=True)
class PlannedReads:
    """What a field plan reads from account rows beyond the mapping: `properties` (attribute
    `property:<name as configured>`, column logical name) as text, and `choices` (column ->
    (attribute: the input's neutral name, label by option value)) as the label. A delivery
    whose Target carries `sentiment_column` also names who set it."""

    properties: tuple[tuple[str, str], ...] = ()
    choices: Mapping[str, tuple[str, Mapping[int, str]]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    sentiment_column: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The account columns read, by logical name, once each."""
        return tuple(dict.fromkeys((*(column for _, column in self.properties), *self.choices)))


NO_PLANNED_READS: Final = PlannedReads()


def planned_reads(fields: DynamicsFields) -> PlannedReads:
    """What `fields.plan` reads: its `reads` (Dataverse logical names are lowercase, so a
    schema name like `new_NPSScore` reads `new_npsscore`, into the attribute named as
    configured) and its inputs' choice columns. ValueError for a read that is no column name."""
    properties = []
    for name in fields.plan.reads:
        column = name.lower()
        if not LOGICAL_NAME.fullmatch(column):
            raise ValueError(f"{name!r} is no Dataverse column name (e.g. new_npsscore)")
        properties.append((property_attribute(name), column))
    choices = {
        column.logical_name: (
            column.neutral,
            MappingProxyType({value: text for value, _, text in column.options}),
        )
        for column in fields.input_columns
    }
    sentiment = next(
        (column for column in fields.input_columns if column.neutral == SENTIMENT_FIELD), None
    )
    return PlannedReads(
        properties=tuple(properties),
        choices=MappingProxyType(choices),
        sentiment_column=None if sentiment is None else sentiment.logical_name,
    )


_TIMES: Final = ("modifiedon", "createdon")
_BASE_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "contact": ("parentcustomerid", "jobtitle"),
    "email": ("regardingobjectid", "directioncode", "actualend"),
    "phonecall": ("regardingobjectid", "directioncode", "actualend"),
    "appointment": ("regardingobjectid", "scheduledstart"),
    "incident": ("customerid", "prioritycode"),
}


def web_api_select(
    entity: str, mapping: DynamicsMapping = DEFAULT_MAPPING, *, planned: Sequence[str] = ()
) -> tuple[str, ...]:
    """The `$select` properties a Web API read of `entity` needs for `mapping` (lookups in their
    `_<name>_value` form), and for an account the field plan's `planned` properties (ones the
    environment has: `connector.dynamics.columns.ReadableColumns`). ValueError for a table
    nothing maps."""
    extra: Sequence[str] = ()
    if entity == "account":
        columns: tuple[str, ...] = tuple(mapping.mapped_attributes().values())
        extra = planned
    elif entity in _BASE_COLUMNS:
        columns = _BASE_COLUMNS[entity]
    else:
        raise ValueError(f"no mapping for Dynamics table {entity!r}")
    properties = (f"_{name}_value" if name in _LOOKUP_COLUMNS else name for name in columns)
    return tuple(dict.fromkeys((*properties, *extra, *_TIMES)))


class _Row:
    """Typed, checked reads of one record's columns; errors name the record and column."""

    def __init__(
        self,
        record: DynamicsRecord,
        received_at: datetime | None,
        *,
        reads: PlannedReads = NO_PLANNED_READS,
        author: str | None = None,
    ) -> None:
        self.record = record
        self.received_at = received_at
        self.where = f"{record.entity} {record.id}"
        self.reads = reads
        self.author = author

    def has(self, name: str) -> bool:
        return name in self.record.attributes

    def text(self, name: str) -> str | None:
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise PayloadError(f"{self.where}.{name} is not text: {shown(value)}")
        return value.strip() or None

    def flag(self, name: str) -> bool | None:
        value = self.record.attributes.get(name)
        if value is None or isinstance(value, bool):
            return value
        raise PayloadError(f"{self.where}.{name} is not a yes/no value: {shown(value)}")

    def account(self, name: str) -> str | None:
        """The id of the account a lookup column points at; None for a contact or nothing."""
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, Lookup):
            raise PayloadError(f"{self.where}.{name} is not a lookup: {shown(value)}")
        return value.id if value.entity == "account" else None

    def time(self, name: str) -> datetime | None:
        value = self.record.attributes.get(name)
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise PayloadError(f"{self.where}.{name} is not a date and time: {shown(value)}")
        return value

    def at(self, *names: str) -> datetime:
        """The first of `names` present, else when the row last changed or was created, else
        when the delivery was received."""
        candidates = tuple(dict.fromkeys((*names, *_TIMES)))
        for name in candidates:
            moment = self.time(name)
            if moment is not None:
                return moment
        if self.received_at is not None:
            return self.received_at
        raise PayloadError(
            f"{self.where} carries none of {', '.join(candidates)} and no receive time was given"
        )

    def deleted_at(self) -> datetime:
        # The image's modifiedon is the last change before the delete, not the delete itself.
        return self.received_at if self.received_at is not None else self.at()


def _attribute_text(value: AttributeValue) -> str | None:
    """An account attribute value as the facts store keeps it (text)."""
    if value is None or isinstance(value, str):
        return None if value is None else value.strip() or None
    if isinstance(value, Lookup):
        return value.id
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _account_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.record.id
    if deleted:
        return [AccountDeleted(account=account, at=row.deleted_at())]
    attributes: dict[str, str | None] = {}
    for attribute, column in mapping.mapped_attributes().items():
        # A column the delivery does not carry says nothing; a None one clears the attribute.
        if not row.has(column):
            continue
        raw = row.record.attributes[column]
        if attribute == "owner" and isinstance(raw, Lookup) and raw.entity != "systemuser":
            # A team owns the account: no person to assign an alert task to.
            attributes[attribute] = None
            continue
        value = _attribute_text(raw)
        attributes[attribute] = website_domain(value) if attribute == "domain" else value
    attributes.update(_planned_attributes(row))
    if not attributes:
        return []
    return [AccountAttributes(account=account, at=row.at(), attributes=attributes)]


def _planned_attributes(row: _Row) -> dict[str, str | None]:
    """The field plan's reads and inputs the row carries, and who set the sentiment."""
    reads = row.reads
    attributes: dict[str, str | None] = {}
    for attribute, column in reads.properties:
        if row.has(column):
            attributes[attribute] = _attribute_text(row.record.attributes[column])
    for column, (attribute, labels) in reads.choices.items():
        if not row.has(column):
            continue
        value = row.record.attributes[column]
        if value is None:
            attributes[attribute] = None
        elif isinstance(value, int) and not isinstance(value, bool) and value in labels:
            attributes[attribute] = labels[value]
        else:
            # A choice the plan does not list (retired from the configuration, or added by
            # hand) means nothing here; clearing the one held would lose a CSM's word.
            log.warning(
                "dynamics_choice_unknown", account=row.record.id, column=column, value=shown(value)
            )
    sentiment = reads.choices.get(reads.sentiment_column or "")
    if row.author is not None and sentiment is not None and sentiment[0] in attributes:
        attributes[SENTIMENT_AUTHOR_ATTRIBUTE] = row.author
    return attributes


def _contact_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    # parentcustomerid may be a contact (a person's "company" set to another person): no account.
    account = row.account("parentcustomerid")
    if account is None:
        return []
    title = row.text("jobtitle")
    executive = None if title is None else mapping.title_pattern.search(title) is not None
    return [
        ContactUpsert(
            account=account,
            at=row.deleted_at() if deleted else row.at(),
            contact=row.record.id,
            title=title,
            executive=executive,
            left=deleted,
        )
    ]


_CHANNELS: Final[Mapping[str, InteractionChannel]] = {"email": "email", "phonecall": "call"}


def _activity_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.account("regardingobjectid")
    if account is None or deleted:
        return []
    # directioncode: true is Outgoing (the column's default), false is Incoming.
    outgoing = row.flag("directioncode")
    return [
        Interaction(
            account=account,
            at=row.at("actualend", "createdon"),
            channel=_CHANNELS[row.record.entity],
            direction="customer" if outgoing is False else "ours",
            source_id=row.record.id,
        )
    ]


def _appointment_events(
    row: _Row, mapping: DynamicsMapping, deleted: bool
) -> list[NormalisedEvent]:
    account = row.account("regardingobjectid")
    if account is None or deleted:
        return []
    return [
        Interaction(
            account=account,
            at=row.at("scheduledstart", "createdon"),
            channel="meeting",
            # Nothing on an appointment says who asked for the meeting.
            direction="ours",
            source_id=row.record.id,
        )
    ]


def _incident_events(row: _Row, mapping: DynamicsMapping, deleted: bool) -> list[NormalisedEvent]:
    account = row.account("customerid")
    if account is None or deleted:
        return []
    return [
        Ticket(
            account=account,
            at=row.at("createdon"),
            ticket=row.record.id,
            priority=mapping.incident_priority(row.record.attributes.get("prioritycode")),
        )
    ]


_MAPPERS: Final[Mapping[str, Callable[[_Row, DynamicsMapping, bool], list[NormalisedEvent]]]] = {
    "account": _account_events,
    "contact": _contact_events,
    "email": _activity_events,
    "phonecall": _activity_events,
    "appointment": _appointment_events,
    "incident": _incident_events,
}

# The tables rows are understood for; deliveries for others are acknowledged and ignored.
MAPPED_ENTITIES: Final = frozenset(_MAPPERS)
# Tables the service itself writes (health columns on account, alert tasks): their deliveries
# may be echoes of our own changes.
ECHO_ENTITIES: Final = frozenset({"account", "task"})


def to_normalised(
    record: DynamicsRecord,
    mapping: DynamicsMapping = DEFAULT_MAPPING,
    *,
    received_at: datetime | None = None,
    message: str = "Update",
    reads: PlannedReads = NO_PLANNED_READS,
    author: str | None = None,
) -> list[NormalisedEvent]:
    """The normalised events one row means; none for other tables.

    Times come from the row (its own date columns, then modifiedon, then createdon);
    `received_at` is the fallback. For `message="Delete"` it comes first instead (pass the
    context's `operation_created_on`): an image's dates are from before the delete.
    An account also carries what `reads` (the field plan's) reads, and `author`
    (`sentiment_author`) beside the sentiment it set.
    PayloadError names the row and column when a value is not of the column's type.
    """
    mapper = _MAPPERS.get(record.entity)
    if mapper is None:
        return []
    row = _Row(record, received_at, reads=reads, author=author)
    return mapper(row, mapping, message == DELETE_MESSAGE)


def made_by(context: ExecutionContext, user_id: str) -> bool:
    """True for an account or task delivery whose change `user_id` (the service's application
    user) made or initiated, so the service can ignore the echo of its own writes."""
    if context.entity not in ECHO_ENTITIES:
        return False
    # The initiating user, not UserId: a step set to run as another user (impersonation) would
    # otherwise make every delivery look like our own.
    wanted = user_id.strip().lower()
    return wanted != "" and wanted == context.initiating_user_id


def sentiment_author(context: ExecutionContext, reads: PlannedReads) -> str | None:
    """Who set the CSM sentiment, when the delivery's Target carries its column (an image
    carries it whether or not this change touched it); None otherwise."""
    column = reads.sentiment_column
    if column is None or column not in context.target_columns:
        return None
    # The initiating user, as for echoes (made_by): UserId is whoever the step runs as.
    return f"Dynamics 365 user {context.initiating_user_id}"
