"""Segment's tracking spec: request checks at intake and what stored calls mean in the worker.

The payloads are the examples of Segment's public HTTP Tracking API and Spec pages."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.errors import PayloadError, PayloadTooLargeError
from connector.model import Collaboration, SurveyResponse, Usage
from connector.segment import (
    Activity,
    GroupCall,
    SegmentOptions,
    check_request,
    interpret,
    normalised_domain,
    parse_request,
    parse_timestamp,
    split_request,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# HTTP Tracking API page: the identify, track, page and group examples.
SPEC_IDENTIFY = {
    "userId": "019mr8mf4r",
    "traits": {"email": "pgibbons@example.com", "name": "Peter Gibbons", "industry": "Technology"},
    "context": {"ip": "24.5.68.47"},
    "timestamp": "2012-12-02T00:30:08.276Z",
}
SPEC_TRACK = {
    "userId": "019mr8mf4r",
    "event": "Item Purchased",
    "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
    "context": {"ip": "24.5.68.47"},
    "timestamp": "2012-12-02T00:30:12.984Z",
}
SPEC_PAGE = {
    "userId": "019mr8mf4r",
    "name": "Tracking HTTP API",
    "timestamp": "2012-12-02T00:31:29.738Z",
}
SPEC_GROUP = {
    "userId": "019mr8mf4r",
    "groupId": "8e9df332ac",
    "traits": {"name": "Initech", "industry": "Technology", "employees": 420},
    "timestamp": "2012-12-02T00:31:38.208Z",
}
# The batch example, as published (note "2015-2-02": Segment reads it, so must we).
SPEC_BATCH = {
    "batch": [
        {
            "type": "identify",
            "userId": "019mr8mf4r",
            "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
            "timestamp": "2012-12-02T00:30:08.276Z",
        },
        {
            "type": "track",
            "userId": "019mr8mf4r",
            "event": "Song Played",
            "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
            "timestamp": "2012-12-02T00:30:12.984Z",
        },
        {
            "type": "identify",
            "userId": "971mj8mk7p",
            "traits": {"email": "cindy@example.com", "name": "Cindy Gonzalez", "age": 23},
            "timestamp": "2015-2-02T00:30:08.276Z",
        },
        {
            "type": "track",
            "userId": "971mj8mk7p",
            "event": "Song Played",
            "properties": {"name": "Get Right", "artist": "Jennifer Lopez"},
            "timestamp": "2015-2-02T00:30:12.984Z",
        },
    ],
    "writeKey": "YOUR_WRITE_KEY",
    "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
}
# Spec: Group, the complete example (forwarded by Segment: it carries receivedAt).
SPEC_GROUP_COMPLETE = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0"},
    "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "traits": {
        "name": "Initech",
        "industry": "Technology",
        "employees": 329,
        "plan": "enterprise",
        "total billed": 830,
    },
    "type": "group",
    "userId": "97980cfea0067",
    "groupId": "0e8c78ea9d97a7b8185e8632",
    "version": "1.1",
}


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def stored(document: Mapping[str, Any], call: str) -> dict[str, Any]:
    [message] = parse_request(body(document), call=call, received_at=NOW)
    return message.payload


@pytest.mark.parametrize(
    ("call", "document"),
    [
        ("identify", SPEC_IDENTIFY),
        ("track", SPEC_TRACK),
        ("page", SPEC_PAGE),
        ("group", SPEC_GROUP),
        ("group", SPEC_GROUP_COMPLETE),
    ],
)
def test_spec_examples_are_accepted_with_their_call_type(call, document):
    [message] = parse_request(body(document), call=call, received_at=NOW)
    assert message.kind == call
    assert message.payload["type"] == call


def test_spec_batch_example_is_accepted_with_context_merged_and_write_key_read():
    checked = check_request(body(SPEC_BATCH), call="batch")
    assert (checked.calls, checked.write_key) == (4, "YOUR_WRITE_KEY")
    messages = parse_request(body(SPEC_BATCH), call="batch", received_at=NOW)
    assert [m.kind for m in messages] == ["identify", "track", "identify", "track"]
    # The batch's context is merged in, and the device's details are not kept (see below).
    assert all("context" not in m.payload for m in messages)
    # The unpadded month of the published example is read as February.
    assert messages[3].payload["timestamp"].startswith("2015-02-02T00:30:12.984")


def test_message_id_is_the_dedup_key():
    [message] = parse_request(body(SPEC_GROUP_COMPLETE), call="group", received_at=NOW)
    assert message.dedup_key == "022bb90c-bbac-11e4-8dfc-aa07a5b093db"


def test_a_call_without_message_id_gets_the_same_key_when_sent_again():
    first = parse_request(body(SPEC_TRACK), call="track", received_at=NOW)[0]
    again = parse_request(body(SPEC_TRACK), call="track", received_at=NOW + timedelta(seconds=5))[0]
    other = parse_request(body({**SPEC_TRACK, "event": "Other"}), call="track", received_at=NOW)[0]
    assert first.dedup_key == again.dedup_key
    assert first.dedup_key != other.dedup_key


def test_device_clock_skew_is_corrected_with_sent_at():
    # The device clock runs an hour fast: it says it was sent at 13:00 when we got it at 12:00.
    message = stored(
        {
            "userId": "u1",
            "event": "Report Viewed",
            "timestamp": "2026-11-23T12:59:00Z",
            "sentAt": "2026-11-23T13:00:00Z",
        },
        "track",
    )
    assert parse_timestamp(message["timestamp"], "t") == NOW - timedelta(minutes=1)
    # The times it was corrected with are spent.
    assert message.keys() == {"type", "userId", "event", "timestamp"}


def test_a_call_forwarded_by_segment_keeps_its_corrected_timestamp():
    message = stored(SPEC_GROUP_COMPLETE, "group")
    assert message["timestamp"].startswith("2015-02-23T22:28:55.111")


def test_a_stored_call_keeps_what_health_reads_and_a_batch_group_id_reaches_each_call():
    # As Segment's libraries send them: device context, properties, integrations, times.
    document = {
        "batch": [
            {
                **SPEC_GROUP_COMPLETE,
                "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0", "groupId": "g-own"},
            },
            {
                "type": "track",
                "userId": "u1",
                "event": "Report Viewed",
                "properties": {"report": "pipeline", "rows": 120},
                "context": {"ip": "10.1.2.3", "library": {"name": "analytics.js"}},
                "timestamp": "2026-11-23T11:59:00Z",
            },
        ],
        "context": {"groupId": "g-batch", "locale": "en-US"},
        "sentAt": "2026-11-23T12:00:00Z",
        "writeKey": "secret-write-key",
    }
    group, track = (m.payload for m in parse_request(body(document), call="batch", received_at=NOW))
    assert group == {
        "type": "group",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "timestamp": group["timestamp"],
        "userId": "97980cfea0067",
        "anonymousId": "507f191e810c19729de860ea",
        "groupId": "0e8c78ea9d97a7b8185e8632",
        "traits": SPEC_GROUP_COMPLETE["traits"],
        "context": {"groupId": "g-own"},
    }
    assert track == {
        "type": "track",
        "userId": "u1",
        "event": "Report Viewed",
        "timestamp": track["timestamp"],
        "context": {"groupId": "g-batch"},
    }
    assert "8.8.8.8" not in json.dumps([group, track])
    assert "secret-write-key" not in json.dumps([group, track])


def test_a_call_that_fails_a_check_is_kept_whole_for_its_dead_letter():
    document = {
        "batch": [{"type": "track", "userId": "u1", "event": "E", "timestamp": "yesterday",
                   "context": {"ip": "10.1.2.3"}, "properties": {"a": 1}}],
    }  # fmt: skip
    [message] = split_request(body(document), call="batch", received_at=NOW)
    assert message.payload["context"] == {"ip": "10.1.2.3"}
    assert message.payload["properties"] == {"a": 1}
    assert "timestamp" in message.payload["_invalid"]


def test_a_time_in_the_future_is_capped_at_receipt():
    message = stored({"userId": "u1", "event": "E", "timestamp": "2030-01-01T00:00:00Z"}, "track")
    assert parse_timestamp(message["timestamp"], "t") == NOW


def test_without_timestamp_the_call_happened_when_received():
    message = stored({"userId": "u1", "event": "E"}, "track")
    assert parse_timestamp(message["timestamp"], "t") == NOW


@pytest.mark.parametrize(
    ("document", "call", "field"),
    [
        ({"event": "E"}, "track", "userId"),
        ({"userId": "u1"}, "track", "event"),
        ({"userId": "u1", "event": "  "}, "track", "event"),
        ({"userId": "u1"}, "group", "groupId"),
        ({"userId": "u1", "event": "E", "timestamp": "yesterday"}, "track", "timestamp"),
        ({"userId": "u1", "event": "E", "properties": []}, "track", "properties"),
        ({"userId": {"id": 1}, "event": "E"}, "track", "userId"),
        ({"userId": "u1"}, "alias", "previousId"),
        ({"batch": [{"userId": "u1"}]}, "batch", "batch[0].type"),
        ({"batch": [{"type": "track", "userId": "u1"}]}, "batch", "batch[0].event"),
        ({"batch": "nope"}, "batch", "batch"),
        ({"batch": [], "writeKey": 7}, "batch", "writeKey"),
    ],
)
def test_an_invalid_call_is_refused_naming_the_field(document, call, field):
    with pytest.raises(PayloadError) as caught:
        parse_request(body(document), call=call, received_at=NOW)
    assert str(caught.value).startswith(field)
    assert not isinstance(caught.value, PayloadTooLargeError)


def test_body_that_is_not_json_is_refused():
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_request(b"{nope", call="track", received_at=NOW)


def test_batch_over_500_kb_is_too_large():
    calls = [{"type": "track", "userId": "u", "event": "E" * 20_000} for _ in range(27)]
    with pytest.raises(PayloadTooLargeError, match="500 KB"):
        parse_request(body({"batch": calls}), call="batch", received_at=NOW)


def test_one_call_over_32_kb_in_a_batch_is_too_large_and_named():
    calls = [
        {"type": "track", "userId": "u", "event": "E"},
        {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 33_000}},
    ]
    with pytest.raises(PayloadTooLargeError, match=r"batch\[1\]"):
        parse_request(body({"batch": calls}), call="batch", received_at=NOW)


def test_a_single_call_over_32_kb_is_too_large():
    document = {"userId": "u", "event": "E", "properties": {"x": "y" * 33_000}}
    with pytest.raises(PayloadTooLargeError, match="32 KB"):
        parse_request(body(document), call="track", received_at=NOW)


# --- interpretation -------------------------------------------------------------------------------


def test_track_by_a_user_is_usage_in_the_context_group():
    options = SegmentOptions()
    message = stored({**SPEC_TRACK, "context": {"groupId": "12345"}}, "track")
    activity = interpret(message, options)
    assert isinstance(activity, Activity)
    assert activity.group_id == "12345"
    [usage] = activity.events("crm-1")
    assert usage == Usage(
        account="crm-1",
        at=datetime(2012, 12, 2, 0, 30, 12, 984000, tzinfo=UTC),
        user="019mr8mf4r",
        feature="Item Purchased",
    )


def test_page_and_screen_calls_count_as_usage():
    for call in ("page", "screen"):
        activity = interpret(stored(SPEC_PAGE, call), SegmentOptions())
        assert isinstance(activity, Activity)
        assert activity.usage
        assert activity.feature == "Tracking HTTP API"


def test_configured_event_names_count_as_collaboration_whatever_their_case():
    message = stored({"userId": "u1", "event": "feature  requested"}, "track")
    activity = interpret(message, SegmentOptions())
    assert isinstance(activity, Activity)
    kinds = [type(event) for event in activity.events("a")]
    assert kinds == [Usage, Collaboration]
    assert activity.collaboration == "feature_request"


def test_custom_collaboration_events_replace_the_defaults():
    options = SegmentOptions(collaboration_events={"NPS Comment Left": "feedback"})
    left = interpret(stored({"userId": "u", "event": "NPS Comment Left"}, "track"), options)
    submitted = interpret(stored({"userId": "u", "event": "Feedback Submitted"}, "track"), options)
    assert isinstance(left, Activity)
    assert left.collaboration == "feedback"
    assert isinstance(submitted, Activity)
    assert submitted.collaboration is None


def test_anonymous_page_views_are_not_usage():
    message = stored({"anonymousId": "507f191e810c19729de860ea", "name": "Pricing"}, "page")
    assert interpret(message, SegmentOptions()) is None


def test_group_call_carries_the_crm_id_trait_case_insensitively():
    message = stored({**SPEC_GROUP, "traits": {"name": "Initech", "CRM ID": 4242}}, "group")
    call = interpret(message, SegmentOptions(account_trait="crm_id"))
    assert call == GroupCall(
        group_id="8e9df332ac",
        user_id="019mr8mf4r",
        name="Initech",
        match="4242",
        at=datetime(2012, 12, 2, 0, 31, 38, 208000, tzinfo=UTC),
    )


def test_group_call_without_the_trait_has_no_match():
    call = interpret(stored(SPEC_GROUP, "group"), SegmentOptions())
    assert isinstance(call, GroupCall)
    assert call.match is None
    assert call.name == "Initech"


def test_domain_matching_reads_the_website_trait_as_a_domain():
    message = stored(
        {**SPEC_GROUP, "traits": {"website": "https://www.Initech.com/about"}}, "group"
    )
    call = interpret(message, SegmentOptions(account_match="domain", account_trait="website"))
    assert isinstance(call, GroupCall)
    assert call.match == "initech.com"


def test_identify_with_a_company_ties_the_user_to_that_group():
    message = stored(
        {**SPEC_IDENTIFY, "traits": {"company": {"id": "g-1", "name": "Initech", "crm_id": "9"}}},
        "identify",
    )
    call = interpret(message, SegmentOptions())
    assert isinstance(call, GroupCall)
    assert (call.group_id, call.user_id, call.match) == ("g-1", "019mr8mf4r", "9")


def test_identify_without_a_company_means_nothing_for_health():
    assert interpret(stored(SPEC_IDENTIFY, "identify"), SegmentOptions()) is None


def test_alias_means_nothing_for_health():
    message = stored({"previousId": "39239-239239", "userId": "019mr8mf4r"}, "alias")
    assert interpret(message, SegmentOptions()) is None


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("initech.com", "initech.com"),
        ("https://www.Initech.com/about?x=1", "initech.com"),
        ("http://initech.com:8080", "initech.com"),
        ("WWW.INITECH.COM.", "initech.com"),
        ("", None),
    ],
)
def test_domains_are_normalised(value, domain):
    assert normalised_domain(value) == domain


def test_the_worker_keeps_a_call_with_a_bad_timestamp_with_its_error():
    calls = [
        {"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"},
        {"type": "track", "userId": "u", "event": "E"},
    ]
    bad, good = split_request(body({"batch": calls}), call="batch", received_at=NOW)
    assert bad.payload["_invalid"].startswith("batch[0].timestamp")
    with pytest.raises(PayloadError, match=r"batch\[0\]\.timestamp"):
        interpret(bad.payload, SegmentOptions())
    assert "_invalid" not in good.payload


def test_the_worker_keeps_a_call_over_32_kb_with_its_error():
    calls = [{"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 33_000}}]
    [big] = split_request(body({"batch": calls}), call="batch", received_at=NOW)
    assert "32 KB" in big.payload["_invalid"]


def test_a_write_key_in_the_body_is_left_out_of_what_is_stored() -> None:
    batch = check_request(
        json.dumps(
            {"batch": [{"type": "track", "userId": "u", "event": "e", "writeKey": "k1"}],
             "writeKey": "k1", "context": {"ip": "10.0.0.1"}}
        ).encode(),
        call="batch",
    )  # fmt: skip
    assert batch.write_key == "k1"
    assert batch.redacted is not None
    assert json.loads(batch.redacted) == {
        "batch": [{"type": "track", "userId": "u", "event": "e"}],
        "context": {"ip": "10.0.0.1"},
    }
    # A single call's own properties are left as they are, whatever they are named.
    track = check_request(
        b'{"userId": "u", "event": "e", "batch": [1, "x"], "writeKey": "k1"}', call="track"
    )
    assert track.redacted is not None
    assert json.loads(track.redacted) == {"userId": "u", "event": "e", "batch": [1, "x"]}
    # Without a key in the body, the request is stored as sent (nothing re-encoded).
    plain = check_request(b'{"userId": "u", "event": "e"}', call="track")
    assert plain.redacted is None


def survey_call(properties: dict[str, object], **fields: object) -> dict[str, object]:
    return {
        "type": "track", "userId": "u1", "event": "Survey Responded",
        "timestamp": "2026-11-20T10:00:00Z", "context": {"groupId": "g1"},
        "properties": properties, **fields,
    }  # fmt: skip


def test_a_survey_answer_becomes_a_survey_response_and_no_usage():
    [message] = parse_request(
        body(survey_call({"score": "3", "survey_type": "CSAT", "comment": "slow", "plan": "x"})),
        call="track",
        received_at=NOW,
    )
    # The stored call keeps the answer's properties and no other.
    assert message.payload["properties"] == {"score": "3", "survey_type": "CSAT", "comment": "slow"}
    activity = interpret(message.payload, SegmentOptions())
    assert isinstance(activity, Activity)
    [answer] = activity.events("42")
    assert answer == SurveyResponse(
        account="42", at=datetime(2026, 11, 20, 10, tzinfo=UTC), kind="csat", score=3.0,
        respondent="u1", comment="slow",
    )  # fmt: skip


def test_an_anonymous_nps_answer_counts_under_its_anonymous_id():
    call = survey_call({"score": 10}, event="nps survey  responded")
    del call["userId"]
    call["anonymousId"] = "anon-7"
    activity = interpret(call, SegmentOptions())
    assert isinstance(activity, Activity)
    [answer] = activity.events("42")
    assert isinstance(answer, SurveyResponse)
    assert (answer.kind, answer.score, answer.respondent) == ("nps", 10.0, "anon-7")


@pytest.mark.parametrize(
    ("properties", "error"),
    [
        ({"score": 11}, "properties.score: a nps score from 0 to 10 is required (got 11)"),
        ({}, "properties.score: a nps score from 0 to 10 is required (got None)"),
        ({"score": "great"}, "properties.score"),
        ({"score": True}, "properties.score"),
        ({"score": 4, "kind": "mood"}, "properties.kind: one of nps, csat, ces (got 'mood')"),
    ],
)
def test_a_survey_answer_without_a_usable_score_is_refused_with_the_reason(properties, error):
    with pytest.raises(PayloadError, match=re.escape(error)):
        interpret(survey_call(properties), SegmentOptions())
