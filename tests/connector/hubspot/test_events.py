"""HubSpot webhook signatures (with HubSpot's published vectors) and parsing; what events mean
is tested with hydration (test_hubspot_hydrate.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import PayloadError, SignatureError
from connector.hubspot import events

# Vectors from HubSpot's request-validation docs and the official Python SDK's signature tests.
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
DOCS_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
SDK_BODY = b"{'example_field':'example_value'}"
SDK_URL = "https://www.example.com/webhook_uri"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def _v3_headers(body: bytes, uri: str, at: datetime, secret: str = SECRET) -> dict[str, str]:
    timestamp = _ms(at)
    return {
        "x-hubspot-request-timestamp": timestamp,
        "x-hubspot-signature-v3": events.signature_v3(secret, "POST", uri, body, timestamp),
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (DOCS_BODY, "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"),
        (SDK_BODY, "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"),
    ],
)
def test_v1_signature_matches_published_vectors(body: bytes, expected: str) -> None:
    assert events.signature_v1(SECRET, body) == expected


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        ("POST", SDK_BODY, "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"),
        ("GET", b"", "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"),
    ],
)
def test_v2_signature_matches_published_vectors(method: str, body: bytes, expected: str) -> None:
    assert events.signature_v2(SECRET, method, SDK_URL, body) == expected


def test_v3_signature_matches_published_vector() -> None:
    signature = events.signature_v3(SECRET, "POST", SDK_URL, SDK_BODY, "15000000")
    assert signature == "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="


def test_v3_signature_decodes_the_characters_hubspot_decodes() -> None:
    encoded = "https://h.example/webhooks/hubspot?tag=a%3Ab%2Cc"
    decoded = "https://h.example/webhooks/hubspot?tag=a:b,c"
    assert events.signature_v3(SECRET, "POST", encoded, b"[]", "1") == events.signature_v3(
        SECRET, "POST", decoded, b"[]", "1"
    )


def test_valid_v3_request_is_accepted() -> None:
    headers = _v3_headers(DOCS_BODY, SDK_URL, NOW - timedelta(seconds=10))
    version = events.verify_request(
        client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers, now=NOW
    )
    assert version == "v3"


def test_expired_timestamp_is_rejected() -> None:
    headers = _v3_headers(DOCS_BODY, SDK_URL, NOW - timedelta(minutes=5, seconds=1))
    with pytest.raises(SignatureError, match="300 s"):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
            now=NOW,
        )  # fmt: skip


def test_timestamp_far_in_the_future_is_rejected() -> None:
    headers = _v3_headers(DOCS_BODY, SDK_URL, NOW + timedelta(minutes=6))
    with pytest.raises(SignatureError):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
            now=NOW,
        )  # fmt: skip


def test_tampered_body_is_rejected() -> None:
    headers = _v3_headers(DOCS_BODY, SDK_URL, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY + b" ",
            headers=headers, now=NOW,
        )  # fmt: skip


def test_signature_for_another_url_is_rejected() -> None:
    headers = _v3_headers(DOCS_BODY, "https://elsewhere.example/webhooks/hubspot", NOW)
    with pytest.raises(SignatureError):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
            now=NOW,
        )  # fmt: skip


def test_non_numeric_timestamp_is_rejected() -> None:
    headers = {"x-hubspot-request-timestamp": "yesterday", "x-hubspot-signature-v3": "x"}
    with pytest.raises(SignatureError, match="epoch milliseconds"):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
            now=NOW,
        )  # fmt: skip


def test_missing_signature_is_rejected() -> None:
    with pytest.raises(SignatureError, match="no HubSpot signature"):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers={}, now=NOW
        )


def test_v1_request_is_accepted_when_legacy_is_opted_in() -> None:
    headers = {
        "x-hubspot-signature-version": "v1",
        "x-hubspot-signature": events.signature_v1(SECRET, DOCS_BODY),
    }
    version = events.verify_request(
        client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
        now=NOW, accept_legacy=True,
    )  # fmt: skip
    assert version == "v1"


def test_v2_request_is_accepted_when_legacy_is_opted_in() -> None:
    headers = {
        "x-hubspot-signature-version": "v2",
        "x-hubspot-signature": events.signature_v2(SECRET, "POST", SDK_URL, DOCS_BODY),
    }
    version = events.verify_request(
        client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
        now=NOW, accept_legacy=True,
    )  # fmt: skip
    assert version == "v2"


def test_legacy_signature_is_rejected_by_default() -> None:
    headers = {
        "x-hubspot-signature-version": "v1",
        "x-hubspot-signature": events.signature_v1(SECRET, DOCS_BODY),
    }
    with pytest.raises(SignatureError, match="only v3"):
        events.verify_request(
            client_secret=SECRET, method="POST", uri=SDK_URL, body=DOCS_BODY, headers=headers,
            now=NOW,
        )  # fmt: skip


def test_parse_batch_reads_hubspot_events() -> None:
    [event] = events.parse_batch(DOCS_BODY)
    assert event.event_id == 1
    assert event.subscription_type == "contact.creation"
    assert event.dedup_key == "62515:1"
    assert event.model_dump(by_alias=True)["changeFlag"] == "NEW"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"eventId": 1}', "JSON array"),
        (b"[]", "empty array"),
        (json.dumps([{"eventId": 1}] * 101).encode(), "at most 100"),
        (b'[{"subscriptionType": "company.creation", "portalId": 1, "occurredAt": 5}]',
         r"\[0\]\.eventId: Field required"),
        (b'[{"eventId": 1, "subscriptionType": "x", "portalId": 1, "occurredAt": 5}, 7]',
         r"\[1\]"),
    ],
)  # fmt: skip
def test_malformed_batch_is_rejected_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        events.parse_batch(body)


@pytest.mark.parametrize(
    "body",
    [
        DOCS_BODY,
        # Extra keys kept, unicode, numbers HubSpot sends as strings and as floats, merges.
        json.dumps([
            {"eventId": 7, "subscriptionType": "company.propertyChange", "portalId": 62515,
             "occurredAt": 1700000000000, "objectId": 9, "propertyName": "name",
             "propertyValue": "Zoë \u4e2d", "sourceId": "userId:1", "isSensitive": False},
            {"eventId": "8", "subscriptionType": "contact.merge", "portalId": 62515,
             "occurredAt": 1.7e12, "primaryObjectId": 4, "mergedObjectIds": [5, 6],
             "newObjectId": 4, "extra": {"nested": [1, None]}},
        ]).encode(),
    ],
)  # fmt: skip
def test_fast_parse_gives_what_validating_each_parsed_dict_gives(body: bytes) -> None:
    """parse_batch validates the bytes with pydantic's JSON parser: the events (and what the
    inbox stores of them) must be those json.loads plus validating each dict gives."""
    expected = [events.HubSpotEvent.model_validate(item) for item in json.loads(body)]
    parsed = events.parse_batch(body)
    assert parsed == expected
    assert [e.model_dump(mode="json", by_alias=True, exclude_unset=True) for e in parsed] == [
        e.model_dump(mode="json", by_alias=True, exclude_unset=True) for e in expected
    ]
