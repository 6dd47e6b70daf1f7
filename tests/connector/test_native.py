"""The native event format: validation, and the round trip of every normalised event."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from connector.model import (
    AccountAttributes,
    AccountDeleted,
    Collaboration,
    ContactUpsert,
    Interaction,
    NormalisedEvent,
    Outcome,
    Ticket,
    Usage,
)
from connector.native import NATIVE_EVENT, to_native, to_normalised

AT = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "event",
    [
        AccountAttributes(account="1", at=AT, attributes={"seats": "50", "arr": "1200.5"}),
        AccountDeleted(account="1", at=AT),
        ContactUpsert(account="1", at=AT, contact="c", title="CEO", executive=True, left=True),
        Interaction(account="1", at=AT, channel="call", direction="customer", contact="c",
                    source_id="calls:9"),
        Interaction(account="1", at=AT, channel="note", direction="ours"),
        Usage(account="1", at=AT, user="u", feature="export"),
        Collaboration(account="1", at=AT, kind="joint_plan"),
        Ticket(account="1", at=AT, ticket="t", priority="urgent"),
        Outcome(account="1", at=AT, outcome="churned"),
    ],
)  # fmt: skip
def test_every_normalised_event_survives_the_native_round_trip(event: NormalisedEvent) -> None:
    parsed = NATIVE_EVENT.validate_python(to_native(event))
    # As a backfill stores and decodes it: the CRM's values.
    normalised = to_normalised(parsed, received_at=datetime(2000, 1, 1, tzinfo=UTC), origin="crm")
    assert normalised == event


def test_missing_time_defaults_to_when_the_event_was_received() -> None:
    parsed = NATIVE_EVENT.validate_python({"type": "usage", "account": "1", "user": "u"})
    assert to_normalised(parsed, received_at=AT).at == AT


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"type": "usage", "account": "1"}, "usage.user"),
        ({"type": "usage", "account": "1", "user": "u", "at": "2026-11-23T12:00:00"}, "usage.at"),
        ({"type": "ticket", "account": "1", "ticket": "t", "priority": "p0"}, "ticket.priority"),
        ({"type": "teleport", "account": "1"}, "union_tag_invalid"),
        ({"type": "usage", "account": "", "user": "u"}, "usage.account"),
        ({"type": "usage", "account": "1", "user": "u", "extra": 1}, "usage.extra"),
        ({"type": "account", "account": "1", "attributes": {"seats": -1}},
         "account.attributes.seats"),
    ],
)  # fmt: skip
def test_invalid_native_event_is_refused_naming_the_field(document, where) -> None:
    with pytest.raises(ValidationError) as caught:
        NATIVE_EVENT.validate_python(document)
    locations = [".".join(map(str, e["loc"])) for e in caught.value.errors()]
    assert any(
        where in loc or where == e["type"]
        for loc, e in zip(locations, caught.value.errors(), strict=True)
    ), locations
