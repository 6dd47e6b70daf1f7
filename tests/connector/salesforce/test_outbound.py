"""Salesforce Outbound Messages: hardened parsing, the exact Ack, and sObjects as normalised
events."""

from __future__ import annotations

import builtins
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from defusedxml import DTDForbidden  # type: ignore[import-untyped]

from connector.base import (
    SENTIMENT_FIELD,
    SENTIMENT_RATINGS,
    SENTIMENT_REASON_FIELD,
    ConfiguredField,
    CRMConnector,
    FieldPlan,
)
from connector.crm import CRMInbound
from connector.errors import PayloadError
from connector.http import RetryPolicy
from connector.model import (
    AccountAttributes,
    AccountDeleted,
    ContactUpsert,
    Interaction,
    Outcome,
    Ticket,
)
from connector.salesforce.api import SalesforceConnector
from connector.salesforce.connection import SalesforceInbound
from connector.salesforce.decode import decode
from connector.salesforce.events import (
    ACK_ENVELOPE,
    MAX_NOTIFICATIONS_PER_MESSAGE,
    AccountReads,
    Notification,
    SalesforceMapping,
    ack_response,
    parse_outbound_message,
    to_normalised,
)

# The message Salesforce posts, built element by element from the schema in the SOAP API
# Developer Guide, "Understanding the Outbound Messaging WSDL"
# (developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm):
#   <schema elementFormDefault="qualified" ... targetNamespace="http://soap.sforce.com/2005/09/outbound">
#     <import namespace="urn:enterprise.soap.sforce.com" />
#     <import namespace="urn:sobject.enterprise.soap.sforce.com" />
#     <element name="notifications"> ... <element name="OrganizationId" type="ent:ID" />
#       <element name="ActionId" type="ent:ID" />
#       <element name="SessionId" type="xsd:string" nillable="true" />
#       <element name="EnterpriseUrl" type="xsd:string" />
#       <element name="PartnerUrl" type="xsd:string" />
#       <element name="Notification" maxOccurs="100" type="tns:OpportunityNotification" />
#   <complexType name="OpportunityNotification"> ... <element name="Id" type="ent:ID" />
#       <element name="sObject" type="ens:Opportunity" />
# The guide publishes the schema, not a captured message; the ids and values below are ours.
DOCS_MESSAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00D5e000000KQ2eEAG</OrganizationId>
   <ActionId>04k5e000000CaRkAAK</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.example.com/services/Soap/c/61.0/00D5e000000KQ2e</EnterpriseUrl>
   <PartnerUrl>https://acme.my.example.com/services/Soap/u/61.0/00D5e000000KQ2e</PartnerUrl>
   <Notification>
    <Id>04l5e00000Gx7QzAAJ</Id>
    <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0015e00000ZkM3hAAF</sf:Id>
     <sf:Industry>Manufacturing</sf:Industry>
     <sf:Name>Acme Corporation</sf:Name>
     <sf:OwnerId>0055e000001AbCdAAK</sf:OwnerId>
     <sf:SystemModstamp>2026-11-23T10:15:30.000Z</sf:SystemModstamp>
     <sf:Website>https://www.acme.example/en</sf:Website>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>
"""

ORG = "00D5e000000KQ2eEAG"
ACCOUNT = "0015e00000ZkM3hAAF"
CONTACT = "0035e00000AbCdEAAV"
RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _message(*sobjects: tuple[str, str], organization: str = ORG) -> bytes:
    """An outbound message with one Notification per (sObject type, field elements)."""
    notifications = "".join(
        f"<Notification><Id>04l5e00000Gx{index:04d}AAJ</Id>"
        f'<sObject xsi:type="sf:{sobject_type}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{fields}</sObject></Notification>"
        for index, (sobject_type, fields) in enumerate(sobjects)
    )
    return (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{organization}</OrganizationId><ActionId>04k5e000000CaRkAAK</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://e.example/c</EnterpriseUrl>'
        f"<PartnerUrl>https://e.example/u</PartnerUrl>{notifications}"
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def _fields(**values: str | None) -> str:
    return "".join(
        f'<sf:{name} xsi:nil="true"/>' if value is None else f"<sf:{name}>{value}</sf:{name}>"
        for name, value in values.items()
    )


def _one(sobject_type: str, **values: str | None) -> Notification:
    (notification,) = parse_outbound_message(
        _message((sobject_type, _fields(**values)))
    ).notifications
    return notification


def _events(
    sobject_type: str, options: SalesforceMapping | None = None, /, **values: str | None
) -> list[Any]:
    notification = _one(sobject_type, **values)
    if options is None:
        return to_normalised(notification, received_at=RECEIVED)
    return to_normalised(notification, options, received_at=RECEIVED)


# --- parsing -----------------------------------------------------------------------------------


def test_documented_message_is_parsed() -> None:
    message = parse_outbound_message(DOCS_MESSAGE)

    assert message.organization_id == ORG
    assert message.action_id == "04k5e000000CaRkAAK"
    assert message.partner_url == "https://acme.my.example.com/services/Soap/u/61.0/00D5e000000KQ2e"
    (notification,) = message.notifications
    assert notification.id == "04l5e00000Gx7QzAAJ"
    assert notification.sobject_type == "Account"
    assert notification.record_id == ACCOUNT
    assert notification.fields["Name"] == "Acme Corporation"
    assert notification.fields["Industry"] == "Manufacturing"


def test_documented_message_maps_to_account_attributes() -> None:
    (notification,) = parse_outbound_message(DOCS_MESSAGE).notifications

    assert to_normalised(notification) == [
        AccountAttributes(
            account=ACCOUNT,
            at=datetime(2026, 11, 23, 10, 15, 30, tzinfo=UTC),
            attributes={
                "name": "Acme Corporation",
                "domain": "acme.example",
                "owner": "0055e000001AbCdAAK",
            },
        )
    ]


def test_session_id_is_not_kept() -> None:
    body = DOCS_MESSAGE.replace(
        b'<SessionId xsi:nil="true"/>', b"<SessionId>00D5e!AQ0AQ.secret-session</SessionId>"
    )
    message = parse_outbound_message(body)

    assert "secret-session" not in repr(message)


def test_notification_id_is_the_dedup_key() -> None:
    first = parse_outbound_message(DOCS_MESSAGE).notifications[0]
    redelivered = parse_outbound_message(DOCS_MESSAGE).notifications[0]

    assert first.dedup_key == redelivered.dedup_key == "04l5e00000Gx7QzAAJ"


def test_nil_field_is_none_and_empty_field_is_blank() -> None:
    notification = _one("Account", Id=ACCOUNT, Website=None, Name="")

    assert notification.fields["Website"] is None
    assert notification.fields["Name"] == ""


def test_any_prefixes_are_resolved_by_namespace() -> None:
    body = (
        b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" '
        b'xmlns:i="http://www.w3.org/2001/XMLSchema-instance" '
        b'xmlns:o="urn:sobject.enterprise.soap.sforce.com"><e:Body>'
        b'<out:notifications xmlns:out="http://soap.sforce.com/2005/09/outbound">'
        b"<out:OrganizationId>00D5e000000KQ2eEAG</out:OrganizationId>"
        b"<out:ActionId>04k5e000000CaRkAAK</out:ActionId>"
        b"<out:Notification><out:Id>04l5e00000Gx7QzAAJ</out:Id>"
        b'<out:sObject i:type="o:Contact"><o:Id>0035e00000AbCdEAAV</o:Id>'
        b'<o:Title i:nil="1"/></out:sObject></out:Notification>'
        b"</out:notifications></e:Body></e:Envelope>"
    )
    (notification,) = parse_outbound_message(body).notifications

    assert notification.sobject_type == "Contact"
    assert notification.fields == {"Id": CONTACT, "Title": None}


def test_a_hundred_notifications_are_accepted() -> None:
    body = _message(*[("Account", _fields(Id=ACCOUNT))] * MAX_NOTIFICATIONS_PER_MESSAGE)

    assert len(parse_outbound_message(body).notifications) == 100


def test_more_than_a_hundred_notifications_are_refused() -> None:
    body = _message(*[("Account", _fields(Id=ACCOUNT))] * 101)

    with pytest.raises(PayloadError, match=r"101 Notification elements.*at most 100"):
        parse_outbound_message(body)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&lol9;</OrganizationId></notifications></soapenv:Body></soapenv:Envelope>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE notifications [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound">
<OrganizationId>&xxe;</OrganizationId><ActionId>04k5e000000CaRkAAK</ActionId>
</notifications></soapenv:Body></soapenv:Envelope>
"""


def _no_file_access(*args: object, **kwargs: object) -> object:
    raise AssertionError(f"the parser tried to open {args[:1]}")


def test_billion_laughs_is_refused_without_expanding(monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.perf_counter()
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", _no_file_access)
        with pytest.raises(PayloadError, match="DTD") as refused:
            parse_outbound_message(BILLION_LAUGHS)

    assert isinstance(refused.value.__cause__, DTDForbidden)
    assert "lollol" not in str(refused.value)
    assert time.perf_counter() - started < 1


def test_external_entity_is_refused_without_reading_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", _no_file_access)
        with pytest.raises(PayloadError, match="DTD") as refused:
            parse_outbound_message(XXE)

    assert isinstance(refused.value.__cause__, DTDForbidden)
    assert "root:" not in str(refused.value)


def test_undeclared_entity_is_refused() -> None:
    with pytest.raises(PayloadError, match="not well-formed XML"):
        parse_outbound_message(DOCS_MESSAGE.replace(b"Manufacturing", b"&xxe;"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not well-formed XML"),
        (b'{"notifications": []}', "not well-formed XML"),
        (b"<notifications/>", "root element is notifications, not a SOAP 1.1 Envelope"),
        (
            b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"/>',
            r"root element is Envelope \(namespace http://www.w3.org/2003/05/soap-envelope\)",
        ),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>',
            "has no soapenv:Body",
        ),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b"<notifications/></s:Body></s:Envelope>",
            r"no notifications element of namespace http://soap.sforce.com/2005/09/outbound "
            r"\(found notifications\)",
        ),
    ],
)
def test_body_that_is_no_outbound_message_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(PayloadError, match=problem):
        parse_outbound_message(body)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (b"<OrganizationId>00D5e000000KQ2eEAG</OrganizationId>", b"", "OrganizationId is missing"),
        (b"<ActionId>04k5e000000CaRkAAK</ActionId>", b"<ActionId> </ActionId>", "ActionId is"),
        (b"<Id>04l5e00000Gx7QzAAJ</Id>", b"", r"Notification\[0\]\.Id is missing"),
        (b'xsi:type="sf:Account" ', b"", r"Notification\[0\] \(Id 04l5e00000Gx7QzAAJ\)"
         r"\.sObject has no xsi:type"),
        (b'xsi:type="sf:Account"', b'xsi:type="xsd:Account"', "is not a type of namespace"),
        (b'xsi:type="sf:Account"', b'xsi:type="sf:"', "is not a type of namespace"),
        (b"<sf:Id>0015e00000ZkM3hAAF</sf:Id>", b"", r"\.sObject has no sf:Id"),
    ],
)  # fmt: skip
def test_malformed_notifications_name_the_element(old: bytes, new: bytes, problem: str) -> None:
    assert old in DOCS_MESSAGE
    with pytest.raises(PayloadError, match=problem):
        parse_outbound_message(DOCS_MESSAGE.replace(old, new))


def test_notification_without_sobject_is_refused() -> None:
    start = DOCS_MESSAGE.index(b"<sObject")
    end = DOCS_MESSAGE.index(b"</sObject>") + len(b"</sObject>")
    with pytest.raises(PayloadError, match=r"Notification\[0\] \(Id 04l5e00000Gx7QzAAJ\) has no"):
        parse_outbound_message(DOCS_MESSAGE[:start] + DOCS_MESSAGE[end:])


def test_message_without_notifications_is_refused() -> None:
    with pytest.raises(PayloadError, match="no Notification element"):
        parse_outbound_message(_message())


# --- the acknowledgement -----------------------------------------------------------------------


def test_ack_is_the_documented_envelope_byte_for_byte() -> None:
    assert ACK_ENVELOPE == (
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        b'<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
        b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
    )
    assert ack_response() == ACK_ENVELOPE


def test_ack_is_a_true_notifications_response() -> None:
    ack = ET.fromstring(ACK_ENVELOPE)  # noqa: S314 - our own constant, not untrusted input
    value = ack.findtext(
        "{http://schemas.xmlsoap.org/soap/envelope/}Body"
        "/{http://soap.sforce.com/2005/09/outbound}notificationsResponse"
        "/{http://soap.sforce.com/2005/09/outbound}Ack"
    )
    assert value == "true"


# --- Account -----------------------------------------------------------------------------------

MODSTAMP = "2026-11-20T08:30:00.000Z"
AT = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)


def test_account_maps_only_the_fields_the_message_carries() -> None:
    events = _events("Account", Id=ACCOUNT, Name="Acme", SystemModstamp=MODSTAMP)

    assert events == [AccountAttributes(account=ACCOUNT, at=AT, attributes={"name": "Acme"})]


def test_account_nil_field_clears_the_attribute() -> None:
    events = _events("Account", Id=ACCOUNT, Website=None, OwnerId=None, SystemModstamp=MODSTAMP)

    assert events[0].attributes == {"domain": None, "owner": None}


@pytest.mark.parametrize(
    ("website", "domain"),
    [
        ("https://www.Acme.example/about", "acme.example"),
        ("acme.example", "acme.example"),
        ("http://shop.acme.example:8080", "shop.acme.example"),
        ("   ", None),
    ],
)
def test_account_website_becomes_the_bare_domain(website: str, domain: str | None) -> None:
    events = _events("Account", Id=ACCOUNT, Website=website, SystemModstamp=MODSTAMP)

    assert events[0].attributes == {"domain": domain}


def test_annual_revenue_and_employees_are_not_arr_or_seats_by_default() -> None:
    events = _events(
        "Account",
        Id=ACCOUNT,
        AnnualRevenue="1.5E7",
        NumberOfEmployees="250",
        SystemModstamp=MODSTAMP,
    )

    assert events == []


def test_account_custom_fields_map_when_configured() -> None:
    options = SalesforceMapping(
        seats="Licensed_Seats__c",
        arr="AnnualRevenue",
        renewal_date="Renewal_Date__c",
        segment="Segment__c",
    )
    events = _events(
        "Account",
        options,
        Id=ACCOUNT,
        Licensed_Seats__c="40.0",
        AnnualRevenue="48000.0",
        Renewal_Date__c="2027-03-31",
        Segment__c="Enterprise",
        LastModifiedDate=MODSTAMP,
    )

    assert events == [
        AccountAttributes(
            account=ACCOUNT,
            at=AT,
            attributes={
                "seats": "40.0",
                "arr": "48000.0",
                "renewal_date": "2027-03-31",
                "segment": "Enterprise",
            },
        )
    ]


# --- Account: what the field plan adds ---------------------------------------------------------

AUTHOR = "0055e000001CsmAAAK"
PLAN = FieldPlan(
    inputs=(
        ConfiguredField(
            neutral=SENTIMENT_FIELD,
            label="CSM sentiment",
            description="The CSM's judgement.",
            options=SENTIMENT_RATINGS,
        ),
        ConfiguredField(
            neutral=SENTIMENT_REASON_FIELD,
            label="CSM sentiment reason",
            description="Why.",
            options=("champion left", "budget cut"),
        ),
    ),
    reads=("nps__c", "Renewal_Risk__c"),
)
READS = AccountReads(
    properties=PLAN.reads,
    inputs={
        SENTIMENT_FIELD: "Health_Csm_Sentiment__c",
        SENTIMENT_REASON_FIELD: "Health_Csm_Sentiment_Reason__c",
    },
)


def test_a_delivered_account_carries_reads_inputs_and_who_set_the_sentiment() -> None:
    notification = _one(
        "Account",
        Id=ACCOUNT,
        Name="Acme",
        # Salesforce spells the field its own way; the configured name is what the
        # attribute is called.
        NPS__c="42.0",
        Renewal_Risk__c=None,
        Health_Csm_Sentiment__c="amber",
        Health_Csm_Sentiment_Reason__c="champion left",
        LastModifiedById=AUTHOR,
        SystemModstamp=MODSTAMP,
    )

    events = to_normalised(notification, received_at=RECEIVED, reads=READS)

    assert events == [
        AccountAttributes(
            account=ACCOUNT,
            at=AT,
            attributes={
                "name": "Acme",
                "property:nps__c": "42.0",
                "property:Renewal_Risk__c": None,
                "health_csm_sentiment": "amber",
                "health_csm_sentiment_reason": "champion left",
                "health_csm_sentiment_author": f"Salesforce user {AUTHOR}",
            },
        )
    ]


def test_a_cleared_sentiment_is_none_with_its_author() -> None:
    events = _planned(Health_Csm_Sentiment__c=None, LastModifiedById=AUTHOR)

    assert events[0].attributes == {
        "health_csm_sentiment": None,
        "health_csm_sentiment_author": f"Salesforce user {AUTHOR}",
    }


def test_a_reason_alone_carries_its_author_too() -> None:
    # A changed reason changes the sentiment (webhooks.sentiment), so it names the author.
    events = _planned(Health_Csm_Sentiment_Reason__c="budget cut", LastModifiedById=AUTHOR)

    assert events[0].attributes == {
        "health_csm_sentiment_reason": "budget cut",
        "health_csm_sentiment_author": f"Salesforce user {AUTHOR}",
    }


@pytest.mark.parametrize(
    "fields",
    [
        # The message carries no sentiment field: its last modifier changed something else.
        {"NPS__c": "9", "LastModifiedById": AUTHOR},
        # Nobody named, or something that is no user id.
        {"Health_Csm_Sentiment__c": "red"},
        {"Health_Csm_Sentiment__c": "red", "LastModifiedById": "ana@acme.example"},
    ],
)
def test_the_author_is_left_out_where_the_delivery_does_not_tell(fields) -> None:
    (event,) = _planned(**fields)

    assert "health_csm_sentiment_author" not in event.attributes


def test_a_listed_account_names_no_author() -> None:
    notification = _one(
        "Account",
        Id=ACCOUNT,
        Health_Csm_Sentiment__c="green",
        LastModifiedById=AUTHOR,
        SystemModstamp=MODSTAMP,
    )

    (event,) = to_normalised(notification, reads=READS, delivered=False)

    assert isinstance(event, AccountAttributes)
    assert event.attributes == {"health_csm_sentiment": "green"}


def test_without_a_plan_the_same_fields_say_nothing() -> None:
    events = _events(
        "Account",
        Id=ACCOUNT,
        NPS__c="42",
        Health_Csm_Sentiment__c="red",
        LastModifiedById=AUTHOR,
        SystemModstamp=MODSTAMP,
    )

    assert events == []


def _planned(**values: str | None) -> list[Any]:
    notification = _one("Account", Id=ACCOUNT, SystemModstamp=MODSTAMP, **values)
    return to_normalised(notification, received_at=RECEIVED, reads=READS)


@dataclass(frozen=True)
class Row:
    """A claimed inbox row as connector.salesforce.intake stored the notification."""

    id: int
    kind: str
    payload: dict[str, Any]
    received_at: datetime = RECEIVED
    body: str | None = None


@dataclass(frozen=True)
class Target:
    name: str
    connector: CRMConnector | None
    crm_settings: CRMInbound | None


def _row(row_id: int, notification: Notification) -> Row:
    return Row(
        id=row_id,
        kind=notification.sobject_type,
        payload={
            "id": notification.id,
            "sobject_type": notification.sobject_type,
            "fields": notification.fields,
            "action_id": "04k5e000000CaRkAAK",
        },
    )


async def test_claimed_notifications_decode_under_the_connectors_plan() -> None:
    connector = SalesforceConnector.create(
        connection="acme-sf",
        auth=httpx.Auth(),
        login_url="https://acme.my.salesforce.com",
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
    )
    connector.plan_fields(PLAN)
    inbound = SalesforceInbound(
        organization_id=ORG, shared_secret="s3cret", mapping=SalesforceMapping()
    )
    (with_plan,) = parse_outbound_message(
        _message(
            (
                "Account",
                _fields(
                    Id=ACCOUNT,
                    NPS__c="7",
                    Health_Csm_Sentiment__c="red",
                    LastModifiedById=AUTHOR,
                    SystemModstamp=MODSTAMP,
                ),
            )
        )
    ).notifications
    # A message selecting none of the plan's fields (the org lacks Renewal_Risk__c, say):
    # decoded as before.
    (without,) = parse_outbound_message(
        _message(("Account", _fields(Id=ACCOUNT, Name="Acme", SystemModstamp=MODSTAMP)))
    ).notifications
    try:
        decoded = await decode(
            [_row(1, with_plan), _row(2, without)],
            Target(name="acme-sf", connector=connector, crm_settings=inbound),
        )
    finally:
        await connector.aclose()

    assert decoded.dead == {}
    assert decoded.events == {
        1: [
            AccountAttributes(
                account=ACCOUNT,
                at=AT,
                attributes={
                    "property:nps__c": "7",
                    "health_csm_sentiment": "red",
                    "health_csm_sentiment_author": f"Salesforce user {AUTHOR}",
                },
            )
        ],
        2: [AccountAttributes(account=ACCOUNT, at=AT, attributes={"name": "Acme"})],
    }


def test_deleted_account_is_an_account_deleted_event() -> None:
    events = _events("Account", Id=ACCOUNT, IsDeleted="true", SystemModstamp=MODSTAMP)

    assert events == [AccountDeleted(account=ACCOUNT, at=AT)]


def test_account_without_any_time_uses_the_receipt_time() -> None:
    assert _events("Account", Id=ACCOUNT, Name="Acme")[0].at == RECEIVED


def test_account_without_any_time_or_receipt_time_is_refused() -> None:
    with pytest.raises(PayloadError, match="carries none of SystemModstamp, LastModifiedDate"):
        to_normalised(_one("Account", Id=ACCOUNT, Name="Acme"))


def test_unparseable_time_names_the_field() -> None:
    with pytest.raises(PayloadError, match=r"\(Account\)\.SystemModstamp is not a date or time"):
        _events("Account", Id=ACCOUNT, Name="Acme", SystemModstamp="yesterday")


# --- Contact -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "executive"),
    [("Chief Financial Officer", True), ("VP Engineering", True), ("Product Owner", False),
     ("Support Engineer", False), (None, None)],
)  # fmt: skip
def test_contact_title_decides_executive(title: str | None, executive: bool | None) -> None:
    events = _events("Contact", Id=CONTACT, AccountId=ACCOUNT, Title=title, SystemModstamp=MODSTAMP)

    assert events == [
        ContactUpsert(
            account=ACCOUNT, at=AT, contact=CONTACT, title=title, executive=executive, left=False
        )
    ]


def test_contact_title_pattern_is_configurable() -> None:
    options = SalesforceMapping(executive_title=r"\bpartner\b")
    events = _events("Contact", options, Id=CONTACT, AccountId=ACCOUNT, Title="Managing Partner")

    assert events[0].executive is True


def test_deleted_contact_has_left() -> None:
    events = _events("Contact", Id=CONTACT, AccountId=ACCOUNT, IsDeleted="true")

    assert events[0].left is True


def test_contact_without_account_says_nothing() -> None:
    assert _events("Contact", Id=CONTACT, AccountId=None, Title="CEO") == []


# --- Task and Event ----------------------------------------------------------------------------

TASK = "00T5e00000AbCdEAAV"


@pytest.mark.parametrize(
    ("subtype", "call_type", "channel", "direction"),
    [
        ("Email", None, "email", "ours"),
        ("Call", "Inbound", "call", "customer"),
        ("Call", "Outbound", "call", "ours"),
        ("Call", None, "call", "ours"),
    ],
)
def test_task_is_an_interaction(
    subtype: str, call_type: str | None, channel: str, direction: str
) -> None:
    events = _events(
        "Task",
        Id=TASK,
        AccountId=ACCOUNT,
        WhoId=CONTACT,
        TaskSubtype=subtype,
        CallType=call_type,
        ActivityDate="2026-11-19",
    )

    assert events == [
        Interaction(
            account=ACCOUNT,
            at=datetime(2026, 11, 19, tzinfo=UTC),
            channel=channel,  # type: ignore[arg-type]
            direction=direction,  # type: ignore[arg-type]
            contact=CONTACT,
            source_id=f"Task:{TASK}",
        )
    ]


@pytest.mark.parametrize(
    ("subtype", "call_type"),
    [("Call", "Internal"), ("Task", None), ("ListEmail", None), (None, None)],
)
def test_task_that_is_no_customer_conversation_says_nothing(
    subtype: str | None, call_type: str | None
) -> None:
    events = _events("Task", Id=TASK, AccountId=ACCOUNT, TaskSubtype=subtype, CallType=call_type)

    assert events == []


def test_task_account_falls_back_to_an_account_what_id() -> None:
    events = _events(
        "Task", Id=TASK, WhatId=ACCOUNT, WhoId="00Q5e00000LeAdAAAV", TaskSubtype="Email",
        CreatedDate="2026-11-18T16:00:00.000Z",
    )  # fmt: skip

    assert events[0].account == ACCOUNT
    assert events[0].contact is None  # a lead is no contact of the account
    assert events[0].at == datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def test_task_about_something_else_than_an_account_says_nothing() -> None:
    assert _events("Task", Id=TASK, WhatId="0065e00000OpPoRAAV", TaskSubtype="Call") == []


def test_event_is_a_meeting() -> None:
    event_id = "00U5e00000AbCdEAAV"
    events = _events(
        "Event",
        Id=event_id,
        WhatId=ACCOUNT,
        WhoId=CONTACT,
        ActivityDateTime="2026-11-21T14:00:00.000Z",
    )

    assert events == [
        Interaction(
            account=ACCOUNT,
            at=datetime(2026, 11, 21, 14, 0, tzinfo=UTC),
            channel="meeting",
            direction="ours",
            contact=CONTACT,
            source_id=f"Event:{event_id}",
        )
    ]


# --- Case --------------------------------------------------------------------------------------

CASE = "5005e00000AbCdEAAV"


@pytest.mark.parametrize(
    ("salesforce", "priority"),
    [("Low", "low"), ("Medium", "medium"), ("High", "high"), ("Critical", "urgent"),
     ("critical", "urgent"), ("P0 - Outage", "medium"), (None, "medium")],
)  # fmt: skip
def test_case_is_a_ticket_with_its_priority(salesforce: str | None, priority: str) -> None:
    events = _events(
        "Case",
        Id=CASE,
        AccountId=ACCOUNT,
        Priority=salesforce,
        CreatedDate="2026-11-22T09:00:00.000Z",
    )

    assert events == [
        Ticket(
            account=ACCOUNT,
            at=datetime(2026, 11, 22, 9, 0, tzinfo=UTC),
            ticket=CASE,
            priority=priority,  # type: ignore[arg-type]
        )
    ]


def test_case_priorities_are_configurable() -> None:
    options = SalesforceMapping(case_priorities={"P0 - Outage": "urgent"})

    assert (
        _events("Case", options, Id=CASE, AccountId=ACCOUNT, Priority="P0 - Outage")[0].priority
        == "urgent"
    )


# --- Opportunity -------------------------------------------------------------------------------

OPPORTUNITY = "0065e00000OpPoRAAV"


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"IsClosed": "true", "IsWon": "true", "StageName": "Closed Won"}, "renewed"),
        ({"IsClosed": "true", "IsWon": "false", "StageName": "Closed Lost"}, "churned"),
        ({"StageName": "Closed Won"}, "renewed"),
        ({"StageName": "Closed Lost"}, "churned"),
        ({"IsClosed": "true", "IsWon": "true", "StageName": "Signed"}, "renewed"),
        ({"IsClosed": "false", "IsWon": "false", "StageName": "Negotiation"}, None),
        ({"IsWon": "false", "StageName": "Negotiation"}, None),
        ({"IsClosed": "true", "StageName": "Closed - Other"}, None),
    ],
)
def test_closed_renewal_opportunity_is_an_outcome(
    fields: dict[str, str], outcome: str | None
) -> None:
    events = _events(
        "Opportunity",
        Id=OPPORTUNITY,
        AccountId=ACCOUNT,
        Type="Renewal",
        CloseDate="2026-11-30",
        **fields,
    )

    expected = [
        Outcome(account=ACCOUNT, at=datetime(2026, 11, 30, tzinfo=UTC), outcome=outcome)  # type: ignore[arg-type]
    ]
    assert events == (expected if outcome else [])


def test_new_business_opportunity_is_no_renewal_outcome() -> None:
    events = _events(
        "Opportunity", Id=OPPORTUNITY, AccountId=ACCOUNT, Type="New Customer",
        StageName="Closed Lost",
    )  # fmt: skip

    assert events == []


def test_renewal_type_is_configurable() -> None:
    options = SalesforceMapping(
        renewal_type_field="Deal_Kind__c", renewal_types=frozenset({"Existing Business"})
    )
    events = _events(
        "Opportunity", options, Id=OPPORTUNITY, AccountId=ACCOUNT,
        Deal_Kind__c="Existing Business", StageName="Closed Won",
    )  # fmt: skip

    assert [event.outcome for event in events] == ["renewed"]


def test_every_closed_opportunity_counts_without_a_renewal_type_field() -> None:
    options = SalesforceMapping(renewal_type_field=None)
    events = _events(
        "Opportunity", options, Id=OPPORTUNITY, AccountId=ACCOUNT, StageName="Closed Lost"
    )

    assert [event.outcome for event in events] == ["churned"]


def test_malformed_boolean_names_the_field() -> None:
    with pytest.raises(PayloadError, match=r"\(Opportunity\)\.IsClosed is not a boolean"):
        _events("Opportunity", Id=OPPORTUNITY, AccountId=ACCOUNT, Type="Renewal", IsClosed="yes")


# --- other objects and options -----------------------------------------------------------------


def test_other_objects_say_nothing() -> None:
    assert _events("Lead", Id="00Q5e00000LeAdAAAV", Company="Initech") == []


def test_outbound_fields_list_what_each_mapping_needs() -> None:
    options = SalesforceMapping(seats="Licensed_Seats__c")

    assert options.outbound_fields("Account") == (
        "Id", "IsDeleted", "SystemModstamp", "LastModifiedById", "Name", "Website",
        "Licensed_Seats__c", "OwnerId", "Type", "CreatedDate",
    )  # fmt: skip
    assert "Type" in options.outbound_fields("Opportunity")
    # LastModifiedById tells our own changes (write-back, alert tasks) from everyone else's.
    assert {"TaskSubtype", "CallType", "WhatId", "LastModifiedById"} <= set(
        options.outbound_fields("Task")
    )


@pytest.mark.parametrize(
    "options",
    [{"seats": "Seats; DROP"}, {"name": ""}, {"executive_title": "(unclosed"}],
)
def test_invalid_mapping_is_refused(options: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"SalesforceMapping|executive_title"):
        SalesforceMapping(**options)  # type: ignore[arg-type]
