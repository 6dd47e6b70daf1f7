"""Parse Salesforce Outbound Messages with a hardened XML parser, acknowledge them, and turn the
sObjects they carry into normalised events.

An Outbound Message is a SOAP 1.1 `notifications` call in the namespace
`http://soap.sforce.com/2005/09/outbound`: `OrganizationId`, `ActionId`, `SessionId`,
`EnterpriseUrl`, `PartnerUrl` and 1..100 `Notification` elements, each an `Id` (the
notification's own id) and an `sObject` whose `xsi:type` names the object (`sf:Account`) and
whose children (namespace `urn:sobject.enterprise.soap.sforce.com`) are the fields the admin
selected. Salesforce redelivers until it receives `ACK_ENVELOPE`, possibly more than once, with
the same notification Id: that Id is the dedup key.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Final
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import iterparse  # type: ignore[import-untyped]

from connector import bounds
from connector.base import SENTIMENT_AUTHOR_ATTRIBUTE, property_attribute
from connector.errors import PayloadError
from connector.jsonparse import MAX_DEPTH
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
    InteractionDirection,
    NormalisedEvent,
    Outcome,
    Ticket,
    TicketPriority,
)

SOAP_ENVELOPE_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS: Final = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS: Final = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"

# The WSDL declares `<element name="Notification" maxOccurs="100" ...>`.
MAX_NOTIFICATIONS_PER_MESSAGE: Final = 100

# The acknowledgement Salesforce waits for (the WSDL's `notificationsResponse` with one boolean
# `Ack`); one Ack covers every notification of the message, and any other answer, even a 200,
# makes Salesforce deliver the whole message again.
ACK_ENVELOPE: Final = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack>"
    b"</notificationsResponse>"
    b"</soapenv:Body>"
    b"</soapenv:Envelope>"
)
ACK_CONTENT_TYPE: Final = "text/xml; charset=utf-8"

# Key prefixes of Salesforce record ids: which object an id in a polymorphic field (WhatId,
# WhoId) points to.
ACCOUNT_ID_PREFIX: Final = "001"
CONTACT_ID_PREFIX: Final = "003"

_ENVELOPE = f"{{{SOAP_ENVELOPE_NS}}}Envelope"
_BODY = f"{{{SOAP_ENVELOPE_NS}}}Body"
_SOBJECT = f"{{{OUTBOUND_NS}}}sObject"
_XSI_TYPE = f"{{{XSI_NS}}}type"
_XSI_NIL = f"{{{XSI_NS}}}nil"
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def ack_response() -> bytes:
    """The body to answer an Outbound Message with, once its notifications are stored."""
    return ACK_ENVELOPE


def fault_response(message: str, *, sender_at_fault: bool) -> bytes:
    """A SOAP 1.1 Fault for a message that was not taken. Salesforce keeps the message queued
    and shows `faultstring` as the delivery failure reason in its Outbound Messages monitor,
    so an admin reads there what to fix."""
    code = "soapenv:Client" if sender_at_fault else "soapenv:Server"
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{code}</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One notification: its own `id` (stable across redeliveries), the sObject's type
    ("Account") and the selected fields by API name; `xsi:nil="true"` is None."""

    id: str
    sobject_type: str
    fields: dict[str, str | None]

    @property
    def dedup_key(self) -> str:
        # Redeliveries keep the Id: "your listener client should check the notification IDs
        # delivered in the notification before processing" (SOAP API guide, outbound messaging).
        return self.id

    @property
    def record_id(self) -> str:
        """The Id of the record the notification is about (the sObject's `sf:Id`)."""
        value = self.fields.get("Id")
        if not value:
            raise PayloadError(f"{self.where}: sObject has no sf:Id")
        return value

    @property
    def where(self) -> str:
        return f"Notification {self.id} ({self.sobject_type})"


@dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    """A parsed `notifications` call. The SessionId is deliberately not kept: it is a live API
    session of the org, a secret, and the connector authenticates with OAuth instead."""

    organization_id: str
    action_id: str
    notifications: tuple[Notification, ...]
    enterprise_url: str | None = None
    partner_url: str | None = None


def _describe(tag: str) -> str:
    namespace, found, local = tag[1:].partition("}")
    return f"{local} (namespace {namespace})" if found and tag.startswith("{") else tag


def _parse_document(body: bytes) -> tuple[Element, dict[Element, dict[str, str]]]:
    """The root element and, per sObject element, the namespace prefixes in scope there.

    `xsi:type="sf:Account"` is a QName in an attribute value, which ElementTree does not
    resolve, so the prefix declarations are followed while parsing.
    """
    scopes: list[dict[str, str]] = [{}]
    declared: dict[str, str] = {}
    sobject_scopes: dict[Element, dict[str, str]] = {}
    root: Element | None = None
    events = iterparse(
        io.BytesIO(body),
        events=("start-ns", "start", "end"),
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        for event, item in events:
            if event == "start-ns":
                prefix, uri = item
                declared[prefix] = uri
            elif event == "start":
                scope = {**scopes[-1], **declared} if declared else scopes[-1]
                declared = {}
                scopes.append(scope)
                if len(scopes) > MAX_DEPTH + 1:
                    # An Outbound Message is 7 levels deep: stop before building a deep tree.
                    raise PayloadError(f"XML nested deeper than {MAX_DEPTH} levels")
                if root is None:
                    root = item
                if item.tag == _SOBJECT:
                    sobject_scopes[item] = scope
            else:
                scopes.pop()
    except DefusedXmlException as exc:
        # Raised at the DOCTYPE itself, before any entity is declared, let alone expanded.
        raise PayloadError(
            "body has a DTD, entity declaration or external reference "
            f"({type(exc).__name__}); Salesforce never sends one, so it is refused"
        ) from exc
    except ParseError as exc:
        raise PayloadError(f"body is not well-formed XML: {exc}") from exc
    if root is None:  # pragma: no cover - expat reports an empty document as a ParseError
        raise PayloadError("body has no XML element")
    return root, sobject_scopes


def _text(parent: Element, name: str, where: str, *, required: bool) -> str | None:
    element = parent.find(f"{{{OUTBOUND_NS}}}{name}")
    value = None if element is None else (element.text or "").strip()
    if required and not value:
        raise PayloadError(f"{where}.{name} is missing or empty")
    return value or None


def _sobject_type(sobject: Element, scope: Mapping[str, str], where: str) -> str:
    declared = sobject.get(_XSI_TYPE)
    if declared is None:
        raise PayloadError(f"{where}.sObject has no xsi:type (the sObject type, e.g. sf:Account)")
    prefix, _, local = declared.strip().rpartition(":")
    if scope.get(prefix) != SOBJECT_NS or not _IDENTIFIER.fullmatch(local):
        raise PayloadError(
            f"{where}.sObject xsi:type {declared!r} is not a type of namespace {SOBJECT_NS}"
        )
    return local


def _sobject_fields(sobject: Element) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for child in sobject:
        namespace, _, name = child.tag[1:].partition("}")
        # Compound fields (addresses) arrive as nested elements; nothing here maps them.
        if namespace != SOBJECT_NS or len(child):
            continue
        nil = (child.get(_XSI_NIL) or "").strip() in {"true", "1"}
        values[name] = None if nil else (child.text or "")
    return values


# Fields holding record ids, which are stored as account, contact or ticket ids. XML cannot
# carry NUL or a lone surrogate (expat refuses both), so lengths are all to check.
_ID_FIELDS: Final = ("Id", "AccountId", "WhoId", "WhatId")


def _check_lengths(
    where: str, notification_id: str, sobject_type: str, values: Mapping[str, str | None]
) -> None:
    checks = [
        ("Id", notification_id, bounds.EVENT_ID),
        ("sObject xsi:type", sobject_type, bounds.EVENT_KIND),
        *((f"sObject.{name}", values.get(name) or "", bounds.ACCOUNT_ID) for name in _ID_FIELDS),
    ]
    for name, value, limit in checks:
        if len(value.strip()) > limit:
            raise PayloadError(f"{where}.{name}: at most {limit} characters (got {len(value)})")


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """Parse an Outbound Message body; PayloadError naming the element when it is not one.

    The parser refuses any DTD, entity declaration or external reference outright (billion
    laughs, XXE), and more than the 100 notifications Salesforce sends at most.
    """
    root, sobject_scopes = _parse_document(body)
    if root.tag != _ENVELOPE:
        raise PayloadError(
            f"root element is {_describe(root.tag)}, not a SOAP 1.1 Envelope ({SOAP_ENVELOPE_NS})"
        )
    soap_body = root.find(_BODY)
    if soap_body is None:
        raise PayloadError("soapenv:Envelope has no soapenv:Body")
    notifications = soap_body.find(f"{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        found = ", ".join(_describe(child.tag) for child in soap_body) or "nothing"
        raise PayloadError(
            f"soapenv:Body has no notifications element of namespace {OUTBOUND_NS} (found {found})"
        )
    organization_id = _text(notifications, "OrganizationId", "notifications", required=True)
    action_id = _text(notifications, "ActionId", "notifications", required=True)
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not items:
        raise PayloadError("notifications has no Notification element: expected 1 to 100")
    if len(items) > MAX_NOTIFICATIONS_PER_MESSAGE:
        raise PayloadError(
            f"notifications has {len(items)} Notification elements: Salesforce sends at most "
            f"{MAX_NOTIFICATIONS_PER_MESSAGE}"
        )
    parsed: list[Notification] = []
    for index, item in enumerate(items):
        where = f"Notification[{index}]"
        notification_id = _text(item, "Id", where, required=True)
        where = f"{where} (Id {notification_id})"
        sobject = item.find(_SOBJECT)
        if sobject is None:
            raise PayloadError(f"{where} has no sObject")
        sobject_type = _sobject_type(sobject, sobject_scopes.get(sobject, {}), where)
        values = _sobject_fields(sobject)
        if not (values.get("Id") or "").strip():
            raise PayloadError(f"{where}.sObject has no sf:Id")
        # Named by position: an over-long Id is not worth quoting.
        _check_lengths(f"Notification[{index}]", notification_id or "", sobject_type, values)
        parsed.append(
            Notification(id=notification_id or "", sobject_type=sobject_type, fields=values)
        )
    return OutboundMessage(
        organization_id=organization_id or "",
        action_id=action_id or "",
        notifications=tuple(parsed),
        enterprise_url=_text(notifications, "EnterpriseUrl", "notifications", required=False),
        partner_url=_text(notifications, "PartnerUrl", "notifications", required=False),
    )


# --- mapping -----------------------------------------------------------------------------------

DEFAULT_CASE_PRIORITIES: Final[Mapping[str, TicketPriority]] = {
    "Low": "low",
    "Medium": "medium",
    "High": "high",
    "Critical": "urgent",
    "Urgent": "urgent",
}
# A priority the org added itself, or none at all, cannot be ranked: count it as ordinary.
_FALLBACK_PRIORITY: Final[TicketPriority] = "medium"


@dataclass(frozen=True, kw_only=True)
class SalesforceMapping(AccountMapping):
    """How an org's sObjects become normalised events; every default is a standard field.

    Account attributes: the Account field carrying each one, None leaves it unmapped. Seats,
    ARR, renewal date and segment live in custom fields of each org's own naming, so they are
    unmapped by default; `AnnualRevenue` is the customer's own revenue, not what they pay us,
    so it is never ARR unless an admin says so.

    Contacts are executives when `executive_title` (a case-insensitive regex, as for HubSpot)
    matches their Title. Case priorities map by picklist value (`case_priorities`, matched
    case-insensitively; anything else counts as medium).

    An Opportunity says how a renewal ended when it is closed and its `renewal_type_field`
    holds one of `renewal_types` (None counts every closed opportunity). Won is `renewed`, lost
    is `churned`, from IsWon/IsClosed when the outbound message carries them, else from the
    stage name (`won_stages`, `lost_stages`).
    """

    name: str | None = "Name"
    domain: str | None = "Website"
    owner: str | None = "OwnerId"
    # The Account's Type picklist ("Prospect", "Customer - Direct"...): HealthConfig.customers
    # decides which values are customers.
    lifecycle: str | None = "Type"
    # When the record was created: where no customer-since date is known, the start of a
    # customer's onboarding period.
    created: str | None = "CreatedDate"
    case_priorities: Mapping[str, TicketPriority] = field(
        default_factory=lambda: dict(DEFAULT_CASE_PRIORITIES)
    )
    renewal_type_field: str | None = "Type"
    renewal_types: frozenset[str] = frozenset({"Renewal"})
    won_stages: frozenset[str] = frozenset({"Closed Won"})
    lost_stages: frozenset[str] = frozenset({"Closed Lost"})
    _priorities: Mapping[str, TicketPriority] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name in (*ACCOUNT_ATTRIBUTES, "renewal_type_field"):
                value = getattr(self, item.name)
                if value is not None and not _IDENTIFIER.fullmatch(value):
                    raise ValueError(f"SalesforceMapping.{item.name} must be a field name or None")
        super().__post_init__()
        object.__setattr__(
            self,
            "_priorities",
            {value.casefold(): priority for value, priority in self.case_priorities.items()},
        )

    def outbound_fields(self, sobject_type: str) -> tuple[str, ...]:
        """The fields an outbound message for `sobject_type` must select for this mapping."""
        base = {
            "Account": (
                "Id", "IsDeleted", "SystemModstamp", "LastModifiedById",
                *self.mapped_attributes().values(),
            ),
            "Contact": ("Id", "AccountId", "Title", "IsDeleted", "SystemModstamp"),
            "Task": (
                "Id", "AccountId", "WhatId", "WhoId", "TaskSubtype", "CallType",
                "ActivityDate", "CreatedDate", "IsDeleted", "LastModifiedById",
            ),
            "Event": (
                "Id", "AccountId", "WhatId", "WhoId", "ActivityDateTime", "CreatedDate",
                "IsDeleted",
            ),
            "Case": ("Id", "AccountId", "Priority", "CreatedDate"),
            "Opportunity": (
                "Id", "AccountId", "IsClosed", "IsWon", "StageName", "CloseDate",
                "SystemModstamp",
            ),
        }  # fmt: skip
        if sobject_type not in base:
            raise ValueError(f"no mapping for Salesforce object {sobject_type!r}")
        names = base[sobject_type]
        if sobject_type == "Opportunity" and self.renewal_type_field is not None:
            names = (*names, self.renewal_type_field)
        return tuple(dict.fromkeys(names))

    def case_priority(self, value: str | None) -> TicketPriority:
        return self._priorities.get((value or "").strip().casefold(), _FALLBACK_PRIORITY)


DEFAULT_MAPPING: Final = SalesforceMapping()

# Who set the CSM's sentiment on the record: the account attribute beside the sentiment's.
_USER_ID = re.compile(r"005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?")


@dataclass(frozen=True, kw_only=True)
class AccountReads:
    """What a connection's field plan adds to every Account read or delivered: `properties`,
    the org's own fields custom indicators read (API names as configured, e.g. `NPS__c`),
    each into the attribute `property_attribute(name)`; `inputs`, the picklists people set,
    by neutral name (the attribute) -> API name."""

    properties: tuple[str, ...] = ()
    inputs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # These names go into SOQL: only field names, never anything a query could read.
        for name in (*self.properties, *self.inputs.values()):
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"{name!r} is not a Salesforce field name")

    @property
    def fields(self) -> tuple[str, ...]:
        """The Account fields to select for them."""
        return tuple(dict.fromkeys((*self.properties, *self.inputs.values())))

    def within(self, available: Collection[str]) -> AccountReads:
        """Only the fields among `available` (names compared as Salesforce does, ignoring
        case): what a query can select without being refused as a whole."""
        known = {name.casefold() for name in available}
        return AccountReads(
            properties=tuple(name for name in self.properties if name.casefold() in known),
            inputs={
                neutral: name for neutral, name in self.inputs.items() if name.casefold() in known
            },
        )


NO_ACCOUNT_READS: Final = AccountReads()


class _Fields:
    """Typed, checked reads of one notification's fields; errors name the notification.
    `reads` are what the field plan adds to an Account's; `delivered` says the notification
    tells of a change (an Outbound Message), not a record listed by a backfill."""

    def __init__(
        self,
        notification: Notification,
        received_at: datetime | None,
        *,
        reads: AccountReads = NO_ACCOUNT_READS,
        delivered: bool = True,
    ) -> None:
        self.notification = notification
        self.received_at = received_at
        self.reads = reads
        self.delivered = delivered

    def has(self, name: str) -> bool:
        return name in self.notification.fields

    def spelled(self, name: str) -> str | None:
        """The field `name` as the notification spells it (Salesforce's own case, which a
        configured name need not match), or None when it does not carry it."""
        if name in self.notification.fields:
            return name
        folded = name.casefold()
        return next((key for key in self.notification.fields if key.casefold() == folded), None)

    def text(self, name: str) -> str | None:
        value = self.notification.fields.get(name)
        return None if value is None else value.strip() or None

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value in {"true", "1"}:
            return True
        if value in {"false", "0"}:
            return False
        raise PayloadError(f"{self.notification.where}.{name} is not a boolean: {value!r}")

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(
                f"{self.notification.where}.{name} is not a date or time: {value!r}"
            ) from None
        # Salesforce sends datetimes in UTC with a Z; a date field (ActivityDate) has no time.
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

    def at(self, *names: str) -> datetime:
        """The first of `names` present, else when the record last changed, else when the
        message was received."""
        candidates = (*names, "SystemModstamp", "LastModifiedDate")
        for name in candidates:
            moment = self.time(name)
            if moment is not None:
                return moment
        if self.received_at is not None:
            return self.received_at
        raise PayloadError(
            f"{self.notification.where} carries none of {', '.join(dict.fromkeys(candidates))}: "
            "select one in the outbound message"
        )

    def account_of_activity(self) -> str | None:
        """A Task's or Event's account: AccountId (Salesforce derives it from WhatId/WhoId),
        else WhatId when it points at an Account."""
        account = self.text("AccountId")
        if account is not None:
            return account
        what = self.text("WhatId")
        return what if what is not None and what.startswith(ACCOUNT_ID_PREFIX) else None

    def contact_of_activity(self) -> str | None:
        who = self.text("WhoId")
        # WhoId may be a Lead ("00Q"), who is no contact of an account yet.
        return who if who is not None and who.startswith(CONTACT_ID_PREFIX) else None


def _account_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    notification = record.notification
    account = notification.record_id
    if record.flag("IsDeleted"):
        return [AccountDeleted(account=account, at=record.at())]
    attributes: dict[str, str | None] = {}
    for attribute, name in options.mapped_attributes().items():
        # A field the message does not carry says nothing; a nil one clears the attribute.
        if not record.has(name):
            continue
        value = record.text(name)
        attributes[attribute] = website_domain(value) if attribute == "domain" else value
    attributes.update(_planned_attributes(record))
    if not attributes:
        return []
    return [AccountAttributes(account=account, at=record.at(), attributes=attributes)]


def _planned_attributes(record: _Fields) -> dict[str, str | None]:
    """The field plan's reads and inputs the record carries, as text (None when empty), and
    who set the sentiment when a delivered change carries its rating or reason."""
    planned = [
        *((property_attribute(name), name) for name in record.reads.properties),
        *record.reads.inputs.items(),
    ]
    attributes: dict[str, str | None] = {}
    for attribute, name in planned:
        spelled = record.spelled(name)
        if spelled is not None:
            attributes[attribute] = record.text(spelled)
    if record.delivered and any(neutral in attributes for neutral in record.reads.inputs):
        # The change's author is who last modified the record; a listed record's last
        # modifier may have changed anything else since, so it names no author.
        author = record.text("LastModifiedById")
        if author is not None and _USER_ID.fullmatch(author):
            attributes[SENTIMENT_AUTHOR_ATTRIBUTE] = f"Salesforce user {author}"
    return attributes


def _contact_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    account = record.text("AccountId")
    if account is None:
        return []
    title = record.text("Title")
    executive = None if title is None else options.title_pattern.search(title) is not None
    return [
        ContactUpsert(
            account=account,
            at=record.at(),
            contact=record.notification.record_id,
            title=title,
            executive=executive,
            left=record.flag("IsDeleted") is True,
        )
    ]


_TASK_CHANNELS: Final[Mapping[str, InteractionChannel]] = {"Email": "email", "Call": "call"}
# CallType "Internal" is a call among colleagues: no interaction with the customer.
_CALL_DIRECTIONS: Final[Mapping[str, InteractionDirection]] = {
    "Inbound": "customer",
    "Outbound": "ours",
}


def _task_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    account = record.account_of_activity()
    channel = _TASK_CHANNELS.get(record.text("TaskSubtype") or "")
    # A plain to-do (TaskSubtype "Task") or a list email is no conversation with the customer.
    if account is None or channel is None or record.flag("IsDeleted"):
        return []
    direction: InteractionDirection = "ours"
    if channel == "call":
        call_type = record.text("CallType")
        if call_type is not None:
            if call_type not in _CALL_DIRECTIONS:
                return []
            direction = _CALL_DIRECTIONS[call_type]
    return [
        Interaction(
            account=account,
            at=record.at("ActivityDate", "CreatedDate"),
            channel=channel,
            direction=direction,
            contact=record.contact_of_activity(),
            source_id=f"Task:{record.notification.record_id}",
        )
    ]


def _event_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    account = record.account_of_activity()
    if account is None or record.flag("IsDeleted"):
        return []
    return [
        Interaction(
            account=account,
            at=record.at("ActivityDateTime", "StartDateTime", "ActivityDate", "CreatedDate"),
            channel="meeting",
            # Nothing on an Event says who asked for the meeting.
            direction="ours",
            contact=record.contact_of_activity(),
            source_id=f"Event:{record.notification.record_id}",
        )
    ]


def _case_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    account = record.text("AccountId")
    if account is None:
        return []
    return [
        Ticket(
            account=account,
            at=record.at("CreatedDate"),
            ticket=record.notification.record_id,
            priority=options.case_priority(record.text("Priority")),
        )
    ]


def _opportunity_events(record: _Fields, options: SalesforceMapping) -> list[NormalisedEvent]:
    account = record.text("AccountId")
    if account is None:
        return []
    if options.renewal_type_field is not None and (
        record.text(options.renewal_type_field) not in options.renewal_types
    ):
        return []
    closed = record.flag("IsClosed")
    won = record.flag("IsWon")
    stage = record.text("StageName")
    if closed is False:
        return []
    if won is None and stage in options.won_stages:
        won = True
    elif stage in options.lost_stages and won is not True:
        won, closed = False, True
    if won is None or (won is False and closed is not True):
        # Closed in a stage of the org's own naming without IsWon, or still open.
        return []
    return [
        Outcome(
            account=account,
            at=record.at("CloseDate"),
            outcome="renewed" if won else "churned",
        )
    ]


_MAPPERS: Final[Mapping[str, Callable[[_Fields, SalesforceMapping], list[NormalisedEvent]]]] = {
    "Account": _account_events,
    "Contact": _contact_events,
    "Task": _task_events,
    "Event": _event_events,
    "Case": _case_events,
    "Opportunity": _opportunity_events,
}


# The objects notifications are understood for; others are acknowledged and ignored.
MAPPED_OBJECTS: Final = frozenset(_MAPPERS)
# Objects the service itself writes (health fields on Account, alert Tasks): their
# notifications may be echoes of our own changes.
ECHO_OBJECTS: Final = frozenset({"Account", "Task"})
_ID_LENGTH: Final = 15


def made_by(notification: Notification, user_id: str) -> bool:
    """True when the record was last changed by `user_id` (15- and 18-character ids alike)."""
    if notification.sobject_type not in ECHO_OBJECTS:
        return False
    changed_by = notification.fields.get("LastModifiedById") or ""
    return changed_by != "" and changed_by[:_ID_LENGTH] == user_id[:_ID_LENGTH]


def to_normalised(
    notification: Notification,
    options: SalesforceMapping = DEFAULT_MAPPING,
    *,
    received_at: datetime | None = None,
    reads: AccountReads = NO_ACCOUNT_READS,
    delivered: bool = True,
) -> list[NormalisedEvent]:
    """The normalised events one notification means; none for other objects.

    Times come from the record (SystemModstamp, LastModifiedDate, or the object's own date
    fields); `received_at` is the fallback when the message selected none of them. An
    Account also carries the field plan's `reads` it holds as attributes; `delivered` is
    False for a record a backfill listed rather than a change Salesforce sent.
    PayloadError names the notification and field when a value is not what Salesforce sends.
    """
    mapper = _MAPPERS.get(notification.sobject_type)
    if mapper is None:
        return []
    record = _Fields(notification, received_at, reads=reads, delivered=delivered)
    return mapper(record, options)
