"""Alert channels: the messages each one sends (checked field by field), how failures map to
ChannelError, e-mail through a real local SMTP server, and the channels file."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import html
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from html import escape as html_escape
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connector.base import CRMConnector
from connector.dynamics.api import DynamicsConnector
from connector.http import RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.salesforce.api import DEFAULT_API_VERSION as SALESFORCE_API
from connector.salesforce.api import SalesforceConnector
from webhooks.alerts.channels import (
    ChannelsFileError,
    CRMTaskChannel,
    EmailChannel,
    HTTPSender,
    SlackChannel,
    SMTPOptions,
    TeamsChannel,
    WebhookChannel,
    load_channels,
    read_channels_file,
)
from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.crm_task import due_at
from webhooks.alerts.channels.slack import MAX_BLOCKS, slack_message
from webhooks.alerts.channels.teams import DIGEST_LIMIT
from webhooks.alerts.channels.teams import markdown as teams_markdown
from webhooks.alerts.notice import AlertNotice, Channel, ChannelError
from webhooks.settings import Settings

SLACK_URL = "https://hooks.slack.test/services/T000/B000/XXXXSECRETPATH"
SLACK_SECRET_PART = "XXXXSECRETPATH"
TEAMS_URL = "https://teams.flow.test/workflows/abc/triggers/manual/paths/invoke?sig=TEAMSSIG123"
HOOK_URL = "https://receiver.test/hooks/crm-health"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
HUBSPOT = "https://hubspot.api.test"
RECORD_URL = "https://app.hubspot.com/contacts/123/record/0-2/101"

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


def make_notice(**overrides: Any) -> AlertNotice:
    values: dict[str, Any] = {
        "alert_id": 42,
        "kind": "fired",
        "rule": "entered-at-risk",
        "title": "Acme Corp is at risk",
        "reason": "band neutral -> at risk, score 64 -> 38",
        "connection": "default",
        "crm": "hubspot",
        "record_id": "101",
        "account_name": "Acme Corp",
        "owner_id": "64492917",
        "score": 38,
        "band": "at_risk",
        "previous_score": 64,
        "previous_band": "neutral",
        "trend_30d": -12,
        "drivers": (
            "Seat utilisation 42% (at-risk threshold 50%)",
            "No customer-initiated contact in 45 days",
        ),
        "record_url": RECORD_URL,
        "at": AT,
    }
    values.update(overrides)
    return AlertNotice(**values)


def recovered_notice(**overrides: Any) -> AlertNotice:
    values: dict[str, Any] = {
        "kind": "recovered",
        "reason": "band at risk -> neutral, score 38 -> 61",
        "score": 61,
        "band": "neutral",
        "previous_score": 38,
        "previous_band": "at_risk",
        "trend_30d": 23,
        "drivers": ("Seat utilisation 71%",),
    }
    values.update(overrides)
    return make_notice(**values)


def several(count: int) -> list[AlertNotice]:
    return [
        make_notice(
            alert_id=index,
            record_id=str(1000 + index),
            account_name=f"Account {index}",
            title=f"Account {index} is at risk",
            record_url=f"https://crm.test/record/{1000 + index}",
        )
        for index in range(1, count + 1)
    ]


async def _no_sleep(seconds: float) -> None:
    return None


def make_sender(*, attempts: int = 1) -> HTTPSender:
    return HTTPSender(
        RetryingClient(
            base_url="",
            name="alerts",
            policy=RetryPolicy(max_attempts=attempts, base_delay_seconds=0),
            sleep=_no_sleep,
        )
    )


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


@pytest.fixture
async def sender() -> AsyncIterator[HTTPSender]:
    made = make_sender(attempts=2)
    made.attach()  # the test's own share: channels closing do not close it under the test
    yield made
    await made.detach()


# --- Slack -------------------------------------------------------------------------------------


@respx.mock
async def test_slack_alert_is_a_block_kit_message_with_fields_drivers_button_and_context(
    sender: HTTPSender,
) -> None:
    route = respx.post(SLACK_URL).respond(200, text="ok")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    await channel.send([make_notice()])

    body = sent_json(route)
    assert body["text"] == (
        "\U0001f534 Acme Corp is at risk: band neutral -&gt; at risk, score 64 -&gt; 38"
    )
    header, facts, drivers, actions, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "\U0001f534 Acme Corp is at risk", "emoji": True},
    }
    assert facts["type"] == "section"
    assert facts["text"] == {
        "type": "mrkdwn",
        "text": "band neutral -&gt; at risk, score 64 -&gt; 38",
        "verbatim": True,
    }
    assert [field["text"] for field in facts["fields"]] == [
        f"*Account*\n<{RECORD_URL}|Acme Corp>",
        "*Score*\n38 (at risk), was 64 (neutral)",
        "*Trend 30d*\n-12",
        "*Owner*\n64492917",
    ]
    assert all(field["type"] == "mrkdwn" for field in facts["fields"])
    assert drivers == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Why*\n\u2022 Seat utilisation 42% (at-risk threshold 50%)\n"
            "\u2022 No customer-initiated contact in 45 days",
            "verbatim": True,
        },
    }
    assert actions == {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in CRM", "emoji": True},
                "url": RECORD_URL,
                "action_id": "open_in_crm",
            }
        ],
    }
    assert context["type"] == "context"
    [line] = context["elements"]
    assert line["type"] == "mrkdwn"
    assert line["text"] == (
        "Alert · rule `entered-at-risk` · default (hubspot) · alert 42 · "
        f"<!date^{int(AT.timestamp())}^{{date_short_pretty}} {{time}}|2026-11-23 12:00 UTC>"
    )
    await channel.aclose()


@respx.mock
async def test_slack_recovered_notice_has_a_check_mark_and_says_recovered(
    sender: HTTPSender,
) -> None:
    route = respx.post(SLACK_URL).respond(200, text="ok")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    await channel.send([recovered_notice()])

    body = sent_json(route)
    header, facts, drivers, _actions, context = body["blocks"]
    assert header["text"]["text"] == "\u2705 Acme Corp recovered"
    assert facts["text"]["text"] == (
        "Resolved: Acme Corp is at risk. band at risk -&gt; neutral, score 38 -&gt; 61"
    )
    assert facts["fields"][1]["text"] == "*Score*\n61 (neutral), was 38 (at risk)"
    assert facts["fields"][2]["text"] == "*Trend 30d*\n+23"
    assert drivers["text"]["text"] == "*Drivers now*\n\u2022 Seat utilisation 71%"
    assert context["elements"][0]["text"].startswith("Recovered · ")
    assert body["text"].startswith("\u2705 Acme Corp recovered: Resolved:")


def test_slack_message_without_record_url_has_no_button_and_no_link() -> None:
    message = slack_message([make_notice(record_url=None, account_name=None)])

    assert [block["type"] for block in message["blocks"]] == [
        "header",
        "section",
        "section",
        "context",
    ]
    assert message["blocks"][1]["fields"][0]["text"] == "*Account*\nrecord 101"


def test_slack_message_escapes_control_characters_and_never_links_other_schemes() -> None:
    notice = make_notice(
        account_name="R&D <Labs>",
        title="R&D <Labs> is at risk",
        record_url="javascript:alert(1)",
    )

    message = slack_message([notice])

    assert message["blocks"][1]["fields"][0]["text"] == "*Account*\nR&amp;D &lt;Labs&gt;"
    assert "javascript" not in json.dumps(message)
    # Headers are plain text: shown as written.
    assert message["blocks"][0]["text"]["text"] == "\U0001f534 R&D <Labs> is at risk"


def test_slack_header_is_cut_to_slacks_150_characters() -> None:
    message = slack_message([make_notice(title="A" * 400)])

    header = message["blocks"][0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("\u2026")


@respx.mock
async def test_slack_digest_lists_each_account_compactly_in_one_message(
    sender: HTTPSender,
) -> None:
    route = respx.post(SLACK_URL).respond(200, text="ok")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender, digest="daily")
    notices = [*several(2), recovered_notice(alert_id=7, account_name="Globex", record_url=None)]

    await channel.send(notices)

    assert route.call_count == 1
    body = sent_json(route)
    header, first, second, third, context = body["blocks"]
    assert header["text"]["text"] == "Customer health: 2 alerts, 1 recovered"
    assert first["text"]["text"] == (
        "\U0001f534 *Account 1 is at risk*\n"
        "<https://crm.test/record/1001|Account 1> · score 38 (at risk), was 64 (neutral) · "
        "trend -12 · owner 64492917 · rule entered-at-risk\n"
        "_Why:_ Seat utilisation 42% (at-risk threshold 50%) (+1 more)"
    )
    assert second["text"]["text"].startswith("\U0001f534 *Account 2 is at risk*\n<https://")
    assert third["text"]["text"].startswith("\u2705 *Globex recovered*\nGlobex · score 61")
    assert context["elements"][0]["text"].startswith("crm-health digest of 3 · latest <!date^")
    assert body["text"] == "Customer health: 2 alerts, 1 recovered: Account 1, Account 2, Globex"


def test_slack_digest_beyond_fifty_blocks_summarises_the_rest() -> None:
    message = slack_message(several(60))

    blocks = message["blocks"]
    assert len(blocks) == MAX_BLOCKS
    sections = [block for block in blocks if block["type"] == "section"]
    entries = [block for block in sections if block["text"]["text"].startswith("\U0001f534")]
    assert len(entries) == MAX_BLOCKS - 3
    assert blocks[-2]["text"]["text"] == (
        "\u2026 and 13 more (13 alerts): see the alert list in crm-health."
    )
    assert message["text"].endswith("Account 10 and 50 more")


def test_an_overflow_digest_says_how_many_were_held_over_the_daily_limit() -> None:
    held = [replace(notice, over_daily_limit=50) for notice in several(12)]
    assert words.digest_title(held) == "Customer health: 12 more alerts over the daily limit of 50"
    mixed = [*held[:2], recovered_notice(over_daily_limit=50)]
    assert words.digest_title(mixed) == (
        "Customer health: 3 more over the daily limit of 50 (2 alerts, 1 recovered)"
    )
    header = slack_message(held)["blocks"][0]["text"]["text"]
    assert header == "Customer health: 12 more alerts over the daily limit of 50"
    assert words.digest_title(several(2)) == "Customer health: 2 alerts"


def test_slack_overflow_digest_beyond_fifty_blocks_counts_the_rest_plainly() -> None:
    message = slack_message([replace(n, over_daily_limit=50) for n in several(60)])
    assert message["blocks"][-2]["text"]["text"] == (
        "\u2026 and 13 more (13 alerts): see the alert list in crm-health."
    )


def test_slack_digest_of_exactly_the_room_left_shows_everyone() -> None:
    message = slack_message(several(MAX_BLOCKS - 2))

    assert len(message["blocks"]) == MAX_BLOCKS
    assert message["blocks"][-2]["text"]["text"].startswith("\U0001f534 *Account 48 is")


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
@respx.mock
async def test_retryable_answers_that_outlast_the_retries_are_a_retryable_channel_error(
    sender: HTTPSender, status: int
) -> None:
    route = respx.post(SLACK_URL).respond(status, text="try later")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert route.call_count == 2  # RetryingClient's own retries ran first
    assert caught.value.retryable is True
    message = str(caught.value)
    assert f"status {status}" in message
    assert "try later" in message
    assert "hooks.slack.test" in message
    assert SLACK_SECRET_PART not in message
    assert "/services/" not in message


@respx.mock
async def test_a_400_is_not_retryable_and_quotes_a_short_excerpt_of_the_answer(
    sender: HTTPSender,
) -> None:
    route = respx.post(SLACK_URL).respond(400, text="invalid_blocks " + "x" * 500)
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert route.call_count == 1
    assert caught.value.retryable is False
    message = str(caught.value)
    assert "status 400: invalid_blocks" in message
    assert len(message) < 320
    assert SLACK_SECRET_PART not in message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("status", [403, 404, 410])
@respx.mock
async def test_other_4xx_answers_are_not_retryable(sender: HTTPSender, status: int) -> None:
    respx.post(SLACK_URL).respond(status, text="no_service")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is False
    assert f"status {status}" in str(caught.value)


@respx.mock
async def test_an_unreachable_receiver_is_retryable_and_the_url_stays_hidden(
    sender: HTTPSender,
) -> None:
    respx.post(SLACK_URL).mock(side_effect=httpx.ConnectError(f"cannot reach {SLACK_URL}"))
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is True
    assert "unreachable (ConnectError) after 2 attempt(s)" in str(caught.value)
    assert SLACK_SECRET_PART not in str(caught.value)
    assert caught.value.__cause__ is None


@respx.mock
async def test_an_answer_echoing_the_url_or_secret_is_scrubbed(sender: HTTPSender) -> None:
    respx.post(HOOK_URL).respond(400, text=f"bad request to {HOOK_URL} signed with {SECRET}")
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert SECRET not in str(caught.value)
    assert "/hooks/crm-health" not in str(caught.value)
    assert "[hidden]" in str(caught.value)


def test_an_http_channels_repr_shows_the_host_not_the_url() -> None:
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=make_sender())

    assert repr(channel) == "SlackChannel(name='cs-slack', host='hooks.slack.test')"


# --- Teams -------------------------------------------------------------------------------------


@respx.mock
async def test_teams_alert_is_an_adaptive_card_attachment_with_facts_drivers_and_link(
    sender: HTTPSender,
) -> None:
    route = respx.post(TEAMS_URL).respond(202)
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender)

    await channel.send([make_notice()])

    body = sent_json(route)
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, reason, facts, why, drivers, footer = card["body"]
    assert title == {
        "type": "TextBlock",
        "text": "\U0001f534 Acme Corp is at risk",
        "wrap": True,
        "size": "Large",
        "weight": "Bolder",
        "color": "Attention",
    }
    assert reason["text"] == "band neutral -> at risk, score 64 -> 38"
    assert facts == {
        "type": "FactSet",
        "facts": [
            {"title": "Account", "value": "Acme Corp"},
            {"title": "Score", "value": "38 (at risk), was 64 (neutral)"},
            {"title": "Trend 30d", "value": "-12"},
            {"title": "Owner", "value": "64492917"},
        ],
    }
    assert why["text"] == "Why"
    assert drivers["text"] == (
        "- Seat utilisation 42% (at-risk threshold 50%)\r- No customer-initiated contact in 45 days"
    )
    assert footer["isSubtle"] is True
    assert footer["text"] == (
        "rule entered-at-risk · default (hubspot) · alert 42 · 2026-11-23 12:00 UTC"
    )
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open in CRM", "url": RECORD_URL}
    ]
    await channel.aclose()


@respx.mock
async def test_teams_recovered_card_is_green_with_a_check_mark(sender: HTTPSender) -> None:
    route = respx.post(TEAMS_URL).respond(202)
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender)

    await channel.send([recovered_notice(record_url=None)])

    card = sent_json(route)["attachments"][0]["content"]
    assert card["body"][0]["text"] == "\u2705 Acme Corp recovered"
    assert card["body"][0]["color"] == "Good"
    assert card["body"][3]["text"] == "Drivers now"
    assert "actions" not in card


@respx.mock
async def test_teams_digest_is_one_card_listing_the_accounts(sender: HTTPSender) -> None:
    route = respx.post(TEAMS_URL).respond(202)
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender, digest="hourly")

    await channel.send([*several(2), recovered_notice(alert_id=9, account_name="Globex")])

    assert route.call_count == 1
    card = sent_json(route)["attachments"][0]["content"]
    title, first, second, third, footer = card["body"]
    assert title["text"] == "Customer health: 2 alerts, 1 recovered"
    assert first["type"] == "Container"
    assert [item["text"] for item in first["items"]] == [
        "\U0001f534 Account 1 is at risk",
        "Account 1 · score 38 (at risk), was 64 (neutral) · trend -12 · owner 64492917 · "
        "rule entered-at-risk",
        "Why: Seat utilisation 42% (at-risk threshold 50%) (+1 more)",
    ]
    assert first["selectAction"] == {
        "type": "Action.OpenUrl",
        "title": "Open in CRM",
        "url": "https://crm.test/record/1001",
    }
    assert second["items"][0]["text"] == "\U0001f534 Account 2 is at risk"
    assert third["items"][0]["text"] == "\u2705 Globex recovered"
    assert third["items"][0]["color"] == "Good"
    assert footer["text"] == "crm-health digest of 3 · latest 2026-11-23 12:00 UTC"


@respx.mock
async def test_teams_digest_over_its_limit_summarises_the_rest(sender: HTTPSender) -> None:
    route = respx.post(TEAMS_URL).respond(202)
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender, digest="daily")

    await channel.send(several(DIGEST_LIMIT + 5))

    body = sent_json(route)["attachments"][0]["content"]["body"]
    containers = [element for element in body if element["type"] == "Container"]
    assert len(containers) == DIGEST_LIMIT
    assert body[-2]["text"] == "\u2026 and 5 more (5 alerts): see the alert list in crm-health."
    assert len(json.dumps(sent_json(route)).encode()) < 28_000


@respx.mock
async def test_teams_errors_never_show_the_signed_url(sender: HTTPSender) -> None:
    respx.post(TEAMS_URL).respond(400, text="bad card")
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is False
    assert "teams.flow.test" in str(caught.value)
    assert "TEAMSSIG123" not in str(caught.value)
    assert "/workflows/" not in str(caught.value)


# --- signed webhook ----------------------------------------------------------------------------


def _headers(request: httpx.Request) -> dict[str, str]:
    return {
        name: request.headers[name]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }


@respx.mock
async def test_webhook_body_verifies_with_the_standard_webhooks_library(
    sender: HTTPSender,
) -> None:
    route = respx.post(HOOK_URL).respond(204)
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)

    await channel.send([make_notice()])

    request = route.calls.last.request
    headers = _headers(request)
    assert headers["webhook-id"] == "alert-42-fired"
    assert headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    payload = Webhook(SECRET).verify(request.content, headers)
    assert payload == {
        "type": "account.health_alert",
        "timestamp": "2026-11-23T12:00:00Z",
        "data": {
            "alert_id": 42,
            "kind": "fired",
            "rule": "entered-at-risk",
            "title": "Acme Corp is at risk",
            "reason": "band neutral -> at risk, score 64 -> 38",
            "severity": "medium",
            "also": [],
            "connection": "default",
            "crm": "hubspot",
            "record_id": "101",
            "account_name": "Acme Corp",
            "owner_id": "64492917",
            "score": 38,
            "band": "at_risk",
            "previous_score": 64,
            "previous_band": "neutral",
            "trend_30d": -12,
            "drivers": [
                "Seat utilisation 42% (at-risk threshold 50%)",
                "No customer-initiated contact in 45 days",
            ],
            "record_url": RECORD_URL,
            "at": "2026-11-23T12:00:00Z",
        },
    }


@respx.mock
async def test_a_tampered_webhook_body_fails_verification(sender: HTTPSender) -> None:
    route = respx.post(HOOK_URL).respond(200)
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)
    await channel.send([make_notice()])
    request = route.calls.last.request
    tampered = request.content.replace(b'"score":38', b'"score":88')
    assert tampered != request.content

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, _headers(request))
    other_secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other_secret).verify(request.content, _headers(request))


@respx.mock
async def test_the_webhook_id_is_the_same_for_every_attempt_at_a_notice(
    sender: HTTPSender,
) -> None:
    route = respx.post(HOOK_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200)]
    )
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)

    with pytest.raises(ChannelError):
        await channel.send([make_notice()])
    await channel.send([make_notice()])  # the outbox's next attempt

    ids = {call.request.headers["webhook-id"] for call in route.calls}
    assert ids == {"alert-42-fired"}
    assert route.call_count == 3
    last = route.calls.last.request
    Webhook(SECRET).verify(last.content, _headers(last))


@respx.mock
async def test_a_recovered_webhook_has_its_own_type_and_id(sender: HTTPSender) -> None:
    route = respx.post(HOOK_URL).respond(200)
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)

    await channel.send([recovered_notice()])

    request = route.calls.last.request
    payload = Webhook(SECRET).verify(request.content, _headers(request))
    assert payload["type"] == "account.health_recovered"
    assert payload["data"]["kind"] == "recovered"
    assert request.headers["webhook-id"] == "alert-42-recovered"


@respx.mock
async def test_a_webhook_digest_sends_the_list_under_a_stable_id(sender: HTTPSender) -> None:
    route = respx.post(HOOK_URL).respond(200)
    channel = WebhookChannel(
        name="signed", url=HOOK_URL, secret=SECRET, sender=sender, digest="daily"
    )
    notices = [*several(2), recovered_notice(alert_id=9)]

    await channel.send(notices)
    await channel.send(list(reversed(notices)))

    first, second = route.calls
    payload = Webhook(SECRET).verify(first.request.content, _headers(first.request))
    assert payload["type"] == "account.health_alert_digest"
    assert payload["data"]["count"] == 3
    assert [alert["alert_id"] for alert in payload["data"]["alerts"]] == [1, 2, 9]
    assert [alert["kind"] for alert in payload["data"]["alerts"]] == [
        "fired",
        "fired",
        "recovered",
    ]
    assert first.request.headers["webhook-id"].startswith("digest-")
    assert "." not in first.request.headers["webhook-id"]
    assert first.request.headers["webhook-id"] == second.request.headers["webhook-id"]


@pytest.mark.parametrize(
    "secret",
    ["not-prefixed", "whsec_***", "whsec_" + base64.b64encode(b"short").decode()],
)
def test_a_malformed_webhook_secret_is_refused_without_quoting_it(secret: str) -> None:
    with pytest.raises(ValueError, match=r"whsec_|random bytes") as caught:
        WebhookChannel(name="signed", url=HOOK_URL, secret=secret, sender=make_sender())

    assert secret not in str(caught.value)


# --- e-mail over a real SMTP server ------------------------------------------------------------


@dataclass
class Mailbox:
    """What the local SMTP server received, and how it answers recipients."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: Any, address: str, options: object
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: Any
    ) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SMTPServer:
    mailbox: Mailbox
    port: int


def _authenticate(
    server: object, session: object, envelope: object, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"alerts",
        b"s3cret-pw",
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SMTPServer(mailbox=mailbox, port=port)
    finally:
        controller.stop()


def smtp_options(port: int, **overrides: Any) -> SMTPOptions:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Customer health <health@example.com>",
        "timeout_seconds": 5,
    }
    values.update(overrides)
    return SMTPOptions(**values)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content().replace("\r\n", "\n"),
    )


async def test_an_email_reaches_the_smtp_server_with_a_text_and_an_html_part(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail",
        to=["cs-leads@example.com", "Owner <owner@example.com>"],
        smtp=smtp_options(smtp_server.port),
    )

    await channel.send([make_notice()])

    [(sender, recipients, raw)] = smtp_server.mailbox.messages
    assert sender == "health@example.com"
    assert recipients == ["cs-leads@example.com", "owner@example.com"]
    message = _parse(raw)
    assert message["Subject"] == "[crm-health] Acme Corp is at risk"
    assert message["From"] == "Customer health <health@example.com>"
    assert message["To"] == "cs-leads@example.com, Owner <owner@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-CRM-Health-Alerts"] == "42-fired"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    text, html = _parts(message)
    assert text.splitlines() == [
        "\U0001f534 Acme Corp is at risk",
        "",
        "band neutral -> at risk, score 64 -> 38",
        "",
        f"Account:   Acme Corp <{RECORD_URL}>",
        "Score:     38 (at risk), was 64 (neutral)",
        "Trend 30d: -12",
        "Owner:     64492917",
        "",
        "Why:",
        "  - Seat utilisation 42% (at-risk threshold 50%)",
        "  - No customer-initiated contact in 45 days",
        "",
        f"Open in CRM: {RECORD_URL}",
        "",
        "-- ",
        "rule entered-at-risk · default (hubspot) · alert 42 · 2026-11-23 12:00 UTC",
    ]
    assert "band neutral -&gt; at risk, score 64 -&gt; 38" in html
    assert f'<a href="{RECORD_URL}">Acme Corp</a>' in html
    assert "<li>Seat utilisation 42% (at-risk threshold 50%)</li>" in html
    assert ">Open in CRM</a>" in html
    assert "<td" in html
    assert "Owner</th>" in html


async def test_html_in_notice_text_is_escaped_in_the_html_part(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(smtp_server.port)
    )
    notice = make_notice(
        account_name='<script>alert("x")</script>',
        title="<b>Acme</b> & co is at risk",
        drivers=("<img src=x onerror=alert(1)>",),
        record_url='https://crm.test/r?a=1&b="2"',
    )

    await channel.send([notice])

    _, html = _parts(_parse(smtp_server.mailbox.messages[0][2]))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; co is at risk" in html
    assert "<img" not in html
    assert 'href="https://crm.test/r?a=1&amp;b=&quot;2&quot;"' in html


async def test_a_recovered_email_says_so_in_the_subject(smtp_server: SMTPServer) -> None:
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(smtp_server.port)
    )

    await channel.send([recovered_notice()])

    message = _parse(smtp_server.mailbox.messages[0][2])
    assert message["Subject"] == "[crm-health] Acme Corp recovered"
    text, html = _parts(message)
    assert text.startswith("\u2705 Acme Corp recovered\n\nResolved: Acme Corp is at risk.")
    assert "Drivers now:" in text
    assert "#2e7d32" in html


async def test_an_email_digest_lists_every_account_in_one_message(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(smtp_server.port), digest="daily"
    )

    await channel.send([*several(3), recovered_notice(alert_id=9, account_name="Globex")])

    [(_, _, raw)] = smtp_server.mailbox.messages
    message = _parse(raw)
    assert message["Subject"] == "[crm-health] Customer health: 3 alerts, 1 recovered"
    assert message["X-CRM-Health-Alerts"] == "1-fired, 2-fired, 3-fired, 9-recovered"
    text, html = _parts(message)
    assert text.splitlines()[0] == "Customer health: 3 alerts, 1 recovered"
    for name in ("Account 1", "Account 2", "Account 3", "Globex"):
        assert f"   {name} · score" in text
        assert name in html
    assert "   https://crm.test/record/1002" in text
    assert '<a href="https://crm.test/record/1003">Account 3</a>' in html


async def test_an_email_logs_in_when_a_username_is_set(smtp_server: SMTPServer) -> None:
    channel = EmailChannel(
        name="cs-mail",
        to=["cs@example.com"],
        smtp=smtp_options(smtp_server.port, username="alerts", password="s3cret-pw"),
    )

    await channel.send([make_notice()])

    assert len(smtp_server.mailbox.messages) == 1


async def test_a_wrong_smtp_password_is_not_retryable_and_not_shown(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail",
        to=["cs@example.com"],
        smtp=smtp_options(smtp_server.port, username="alerts", password="wrong-pw-123"),
    )

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is False
    assert "535" in str(caught.value)
    assert "wrong-pw-123" not in str(caught.value)
    assert "wrong-pw-123" not in repr(channel.smtp)
    assert not smtp_server.mailbox.messages


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("450 4.2.1 Mailbox busy, try later", True), ("550 5.1.1 No such user", False)],
)
async def test_a_refused_recipient_is_retryable_only_for_a_4xx_reply(
    smtp_server: SMTPServer, reply: str, retryable: bool
) -> None:
    smtp_server.mailbox.refuse["cs@example.com"] = reply
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(smtp_server.port)
    )

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is retryable
    assert reply.split(maxsplit=1)[0] in str(caught.value)


async def test_one_refused_recipient_among_several_still_delivers_to_the_others(
    smtp_server: SMTPServer,
) -> None:
    smtp_server.mailbox.refuse["gone@example.com"] = "550 5.1.1 No such user"
    channel = EmailChannel(
        name="cs-mail",
        to=["cs@example.com", "gone@example.com"],
        smtp=smtp_options(smtp_server.port),
    )

    await channel.send([make_notice()])

    [(_, recipients, _)] = smtp_server.mailbox.messages
    assert recipients == ["cs@example.com"]


async def test_a_refused_smtp_connection_is_retryable() -> None:
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(_free_port(), timeout_seconds=2)
    )

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is True
    assert "unreachable (ConnectionRefusedError" in str(caught.value)


async def test_starttls_against_a_server_without_it_is_a_configuration_error(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail",
        to=["cs@example.com"],
        smtp=smtp_options(smtp_server.port, security="starttls"),
    )

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is False
    assert "STARTTLS" in str(caught.value)


async def test_a_server_that_never_answers_times_out_as_retryable() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()  # accepts the connection, never greets
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = EmailChannel(
        name="cs-mail", to=["cs@example.com"], smtp=smtp_options(port, timeout_seconds=0.3)
    )
    try:
        with pytest.raises(ChannelError) as caught:
            await channel.send([make_notice()])
    finally:
        done.set()
        server.close()
        await server.wait_closed()

    assert caught.value.retryable is True
    assert "timed out" in str(caught.value)


# --- CRM task ----------------------------------------------------------------------------------


@pytest.fixture
async def hubspot() -> AsyncIterator[HubSpotConnector]:
    connector = HubSpotConnector.create(
        connection="default",
        access_token="tok",
        api_base=HUBSPOT,
        policy=RetryPolicy(max_attempts=1),
    )
    yield connector
    await connector.aclose()


def _lookup(connector: CRMConnector) -> Any:
    return lambda name: connector if name == "default" else None


@respx.mock
async def test_a_crm_task_is_created_on_the_account_for_its_owner(
    hubspot: HubSpotConnector,
) -> None:
    route = respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(201, json={"id": "9001"})
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    channel = CRMTaskChannel(
        name="owner-task", connector_for=_lookup(hubspot), clock=lambda: friday
    )

    await channel.send([make_notice()])

    sent = sent_json(route)
    assert sent["properties"] == {
        "hs_timestamp": "2026-11-30T09:00:00.000Z",  # the next business day: Monday
        "hs_task_subject": "Customer health: Acme Corp is at risk",
        # HubSpot renders task notes as HTML: escaped text, one <br> per line break.
        "hs_task_body": (
            "band neutral -&gt; at risk, score 64 -&gt; 38<br>"
            "<br>"
            "Score: 38 (at risk), was 64 (neutral)<br>"
            "Trend 30d: -12<br>"
            "<br>"
            "Why:<br>"
            "- Seat utilisation 42% (at-risk threshold 50%)<br>"
            "- No customer-initiated contact in 45 days<br>"
            "<br>"
            "Raised by crm-health: rule entered-at-risk · default (hubspot) · alert 42 · "
            "2026-11-23 12:00 UTC"
        ),
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hs_task_type": "TODO",
        "hubspot_owner_id": "64492917",
    }
    assert sent["associations"] == [
        {
            "to": {"id": "101"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}],
        }
    ]
    assert route.calls.last.request.headers["authorization"] == "Bearer tok"


class _SalesforceSession(httpx.Auth):
    """Stands in for connector.salesforce.auth: a bearer, and the org's instance as host."""

    def auth_flow(self, request: httpx.Request):
        request.url = request.url.copy_with(host="acme.my.salesforce.com")
        request.headers["Host"] = "acme.my.salesforce.com"
        request.headers["Authorization"] = "Bearer sf-token"
        yield request


@respx.mock
async def test_a_salesforce_task_is_created_on_the_account_for_its_owner() -> None:
    connector = SalesforceConnector.create(
        connection="default",
        auth=_SalesforceSession(),
        login_url="https://login.salesforce.com",
        policy=RetryPolicy(max_attempts=1),
    )
    route = respx.post(
        f"https://acme.my.salesforce.com/services/data/{SALESFORCE_API}/sobjects/Task"
    ).respond(201, json={"id": "00T5e00000AbCdEEAZ", "success": True, "errors": []})
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    channel = CRMTaskChannel(
        name="owner-task", connector_for=_lookup(connector), clock=lambda: friday
    )
    try:
        await channel.send([make_notice(crm="salesforce", owner_id="0055e000002OwnerAAA")])
    finally:
        await connector.aclose()

    sent = sent_json(route)
    assert sent["WhatId"] == "101"
    assert sent["OwnerId"] == "0055e000002OwnerAAA"
    assert sent["Subject"] == "Customer health: Acme Corp is at risk"
    assert sent["ActivityDate"] == "2026-11-30"  # the next business day: Monday
    assert sent["Priority"] == "High"
    assert sent["Status"] == "Not Started"
    assert sent["Description"].startswith("band neutral -> at risk, score 64 -> 38")


class _DataverseToken(httpx.Auth):
    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = "Bearer d365-token"
        yield request


@respx.mock
async def test_a_dynamics_task_is_created_regarding_the_account_for_its_owner() -> None:
    account = "a1b2c3d4-0000-4000-8000-00000000a001"
    owner = "8b8b8b8b-0000-4000-8000-000000008b01"
    connector = DynamicsConnector.create(
        connection="default",
        auth=_DataverseToken(),
        org_url="https://contoso.crm.dynamics.com",
        prefix="crmh",
        option_value_prefix=10000,
        solution="CustomerHealth",
        policy=RetryPolicy(max_attempts=1),
    )
    route = respx.post("https://contoso.crm.dynamics.com/api/data/v9.2/tasks").respond(
        201, json={"activityid": "e0e0e0e0-0000-4000-8000-00000000e001"}
    )
    friday = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    channel = CRMTaskChannel(
        name="owner-task", connector_for=_lookup(connector), clock=lambda: friday
    )
    try:
        await channel.send([make_notice(crm="dynamics", record_id=account, owner_id=owner)])
    finally:
        await connector.aclose()

    sent = sent_json(route)
    assert sent["regardingobjectid_account_task@odata.bind"] == f"/accounts({account})"
    assert sent["ownerid@odata.bind"] == f"/systemusers({owner})"
    assert sent["subject"] == "Customer health: Acme Corp is at risk"
    assert sent["scheduledend"].startswith("2026-11-30T09:00:00")  # Monday, 09:00 UTC
    assert sent["prioritycode"] == 2  # High


@respx.mock
async def test_a_neutral_alert_makes_a_medium_task_without_owner_when_none_is_known(
    hubspot: HubSpotConnector,
) -> None:
    route = respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(201, json={"id": 5})
    channel = CRMTaskChannel(name="owner-task", connector_for=_lookup(hubspot), clock=lambda: AT)

    await channel.send([make_notice(band="neutral", owner_id=None)])

    properties = sent_json(route)["properties"]
    assert properties["hs_task_priority"] == "MEDIUM"
    assert "hubspot_owner_id" not in properties
    assert properties["hs_timestamp"] == "2026-11-24T09:00:00.000Z"


@respx.mock
async def test_a_recovered_notice_creates_no_task(hubspot: HubSpotConnector) -> None:
    route = respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(201, json={"id": "1"})
    channel = CRMTaskChannel(name="owner-task", connector_for=_lookup(hubspot))

    await channel.send([recovered_notice()])

    assert route.call_count == 0


@respx.mock
async def test_several_notices_make_one_task_each(hubspot: HubSpotConnector) -> None:
    route = respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(201, json={"id": "1"})
    channel = CRMTaskChannel(name="owner-task", connector_for=_lookup(hubspot))

    await channel.send([*several(2), recovered_notice(alert_id=3)])

    records = [
        json.loads(call.request.content)["associations"][0]["to"]["id"] for call in route.calls
    ]
    assert records == ["1001", "1002"]


async def test_a_connection_without_crm_credentials_is_not_retryable() -> None:
    channel = CRMTaskChannel(name="owner-task", connector_for=lambda name: None)

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is False
    assert "connection 'default' is unknown or has no CRM credentials" in str(caught.value)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (400, False), (401, False)])
@respx.mock
async def test_crm_task_failures_map_to_retryable_or_not(
    hubspot: HubSpotConnector, status: int, retryable: bool
) -> None:
    respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(
        status, json={"status": "error", "message": "nope"}
    )
    channel = CRMTaskChannel(name="owner-task", connector_for=_lookup(hubspot))

    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])

    assert caught.value.retryable is retryable
    assert f"status {status}" in str(caught.value)
    assert "tok" not in str(caught.value).replace("task", "")


def test_tasks_fall_due_at_nine_on_the_next_business_day() -> None:
    assert due_at(datetime(2026, 11, 23, 18, 0, tzinfo=UTC)) == datetime(
        2026, 11, 24, 9, 0, tzinfo=UTC
    )
    assert due_at(datetime(2026, 11, 28, 10, 0, tzinfo=UTC)) == datetime(
        2026, 11, 30, 9, 0, tzinfo=UTC
    )


# --- the channels file -------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return path


def _settings(path: Path | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"alert_channels_file": path}
    values.update(overrides)
    return Settings.model_validate(values)


FULL_FILE = """
channels:
  - name: cs-slack
    type: slack
    url: ${TEST_SLACK_URL}
  - name: cs-teams
    type: teams
    url: ${TEST_TEAMS_URL}
    digest: hourly
  - name: signed
    type: webhook
    url: https://receiver.test/hooks/crm-health
    secret: ${TEST_WEBHOOK_SECRET}
  - name: cs-mail
    type: email
    to: [cs-leads@example.com, "Owner <owner@example.com>"]
    digest: daily
  - name: owner-task
    type: crm_task
"""


@pytest.fixture
def channel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", SLACK_URL)
    monkeypatch.setenv("TEST_TEAMS_URL", TEAMS_URL)
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)


async def _close_all(channels: dict[str, Channel]) -> None:
    for channel in channels.values():
        await channel.aclose()


@pytest.mark.usefixtures("channel_env")
async def test_the_channels_file_builds_every_type_with_secrets_from_the_environment(
    tmp_path: Path,
) -> None:
    settings = _settings(
        _write(tmp_path, FULL_FILE), smtp_host="mail.test", smtp_from_address="h@example.com"
    )

    channels, grants = load_channels(settings, connector_for=lambda name: None)

    # No connection's admin may route to a channel the file does not open to it; a CRM task
    # lands in the account's own CRM, so it is open to every connection.
    assert grants == {
        "cs-slack": frozenset(),
        "cs-teams": frozenset(),
        "signed": frozenset(),
        "cs-mail": frozenset(),
        "owner-task": frozenset({"*"}),
    }
    assert {name: (c.kind, c.digest) for name, c in channels.items()} == {
        "cs-slack": ("slack", "none"),
        "cs-teams": ("teams", "hourly"),
        "signed": ("webhook", "none"),
        "cs-mail": ("email", "daily"),
        "owner-task": ("crm_task", "none"),
    }
    mail = channels["cs-mail"]
    assert isinstance(mail, EmailChannel)
    assert mail.to == ("cs-leads@example.com", "Owner <owner@example.com>")
    assert mail.smtp.effective_port == 587
    assert SLACK_SECRET_PART not in repr(read_channels_file(settings.alert_channels_file))  # type: ignore[arg-type]
    await _close_all(channels)


@pytest.mark.usefixtures("channel_env")
async def test_loaded_http_channels_share_one_client_closed_with_the_last(
    tmp_path: Path,
) -> None:
    router = respx.MockRouter(assert_all_called=False)
    slack = router.post(SLACK_URL).respond(200, text="ok")
    hook = router.post(HOOK_URL).respond(200)
    settings = _settings(
        _write(tmp_path, FULL_FILE), smtp_host="mail.test", smtp_from_address="h@example.com"
    )
    channels, _ = load_channels(
        settings, connector_for=lambda name: None, transport=httpx.MockTransport(router.handler)
    )

    await channels["cs-slack"].send([make_notice()])
    await channels["signed"].send([make_notice()])

    assert slack.call_count == 1
    assert hook.call_count == 1
    http_channels = [channels[name] for name in ("cs-slack", "cs-teams", "signed")]
    shared = {id(channel._sender) for channel in http_channels}  # type: ignore[attr-defined]
    assert len(shared) == 1
    client = http_channels[0]._sender.client._client  # type: ignore[attr-defined]
    await channels["cs-slack"].aclose()
    await channels["cs-slack"].aclose()  # closing twice counts once
    await channels["signed"].aclose()
    assert not client.is_closed
    await channels["cs-teams"].aclose()
    assert client.is_closed
    await _close_all(channels)


def test_no_channels_file_means_no_channels() -> None:
    assert load_channels(_settings(None), connector_for=lambda name: None) == ({}, {})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("channels:\n  - {name: a, type: sms}\n", "channels.0.type"),
        ("channels:\n  - {name: 'A b', type: crm_task}\n", "channels.0.name"),
        ("channels:\n  - {name: a, type: crm_task, colour: red}\n", "channels.0.colour"),
        ("channels:\n  - {name: a, type: slack}\n", "channels.0.url: required"),
        ("channels:\n  - {name: a, type: teams, url: 'ftp://x.test/y'}\n", "channels.0.url: must"),
        (
            "channels:\n  - {name: a, type: crm_task}\n  - {name: b, type: crm_task}\n"
            "  - {name: c, type: slack, url: 'not a url'}\n",
            "channels.2.url",
        ),
        ("channels:\n  - {name: a, type: webhook, url: 'https://x.test'}\n", "channels.0.secret"),
        ("channels:\n  - {name: a, type: email}\n", "channels.0.to"),
        ("channels:\n  - {name: a, type: email, to: [ok@x.test, nope]}\n", "channels.0.to.1"),
        ("channels:\n  - {name: a, type: crm_task, to: [ok@x.test]}\n", "channels.0.to: only"),
        (
            "channels:\n  - {name: a, type: slack, url: 'https://x.test/a', secret: s}\n",
            "channels.0.secret: not used",
        ),
        ("channels:\n  - {name: a, type: crm_task, digest: daily}\n", "channels.0.digest"),
        ("channels:\n  - {name: a, type: crm_task, digest: weekly}\n", "channels.0.digest"),
        (
            "channels:\n  - {name: a, type: crm_task}\n  - {name: a, type: crm_task}\n",
            "channels.1.name: 'a' is already the name of channels.0",
        ),
        (
            "channels:\n  - {name: a, type: crm_task, connections: ['a b']}\n",
            "channels.0.connections.0",
        ),
        ("channels:\n  - {name: a, type: crm_task, connections: emea}\n", "channels.0.connections"),
        ("channels:\n  - {name: a, type: crm_task, daily_limit: -1}\n", "channels.0.daily_limit"),
        ("channels:\n  - {name: a, type: crm_task, daily_limit: lots}\n", "channels.0.daily_limit"),
        ("channels:\n  - {name: a, type: crm_task, daily_limit: 2.5}\n", "channels.0.daily_limit"),
        ("channels:\n  - {name: a, type: crm_task, daily_limit: true}\n", "channels.0.daily_limit"),
        ("channels: [\n", "not valid YAML at line"),
        ("nothing: here\n", "channels"),
        ("", r"\(file\)"),
    ],
)
def test_an_invalid_channels_file_names_the_field(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ChannelsFileError, match=named.replace(".", r"\.")):
        read_channels_file(_write(tmp_path, text))


def test_an_unset_variable_is_named_with_its_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "channels:\n  - {name: a, type: slack, url: '${NOPE_SLACK_X}'}\n")

    with pytest.raises(ChannelsFileError, match=r"channels\.0\.url: \$\{NOPE_SLACK_X\} is not set"):
        read_channels_file(path)


def test_a_channels_daily_limit_defaults_to_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_DAILY_LIMIT", "12")
    path = _write(
        tmp_path,
        """
channels:
  - {name: unset, type: crm_task}
  - {name: zero, type: crm_task, daily_limit: 0}
  - {name: own, type: crm_task, daily_limit: 3}
  - {name: endless, type: crm_task, daily_limit: none}
  - {name: from-env, type: crm_task, daily_limit: '${TEST_DAILY_LIMIT}'}
""",
    )
    channels, _ = load_channels(
        _settings(path, alert_daily_limit=7), connector_for=lambda name: None
    )
    assert {name: channel.daily_limit for name, channel in channels.items()} == {
        "unset": 7,
        "zero": 7,
        "own": 3,
        "endless": None,
        "from-env": 12,
    }


def test_the_default_daily_limit_is_50_and_at_least_1() -> None:
    assert _settings(None).alert_daily_limit == 50
    with pytest.raises(ValidationError, match="alert_daily_limit"):
        _settings(None, alert_daily_limit=0)


def test_a_missing_channels_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ChannelsFileError, match="cannot read alert channels file"):
        read_channels_file(tmp_path / "absent.yaml")


def test_secrets_never_appear_in_channels_file_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_secret = "whsec_" + base64.b64encode(b"tooshort-secret").decode()
    monkeypatch.setenv("TEST_BAD_SECRET", bad_secret)
    monkeypatch.setenv("TEST_BAD_URL", "ftp://hooks.slack.test/services/T0/B0/SUPERSECRETPATH")
    path = _write(
        tmp_path,
        """
channels:
  - name: a
    type: slack
    url: ${TEST_BAD_URL}
  - name: b
    type: webhook
    url: https://receiver.test/h
    secret: ${TEST_BAD_SECRET}
  - name: c
    type: teams
    url: https://
""",
    )

    with pytest.raises(ChannelsFileError) as caught:
        read_channels_file(path)

    message = str(caught.value)
    assert "channels.0.url: must be an https://" in message
    assert "channels.1.secret: must encode 24 to 64 random bytes, not 15" in message
    assert "channels.2.url: has no host" in message
    assert "SUPERSECRETPATH" not in message
    assert bad_secret not in message
    assert bad_secret[6:] not in message
    assert caught.value.__cause__ is None


def test_a_yaml_error_does_not_quote_the_offending_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "channels:\n  - {name: a, url: 'https://x.test/SECRETLINE' : oops\n")

    with pytest.raises(ChannelsFileError) as caught:
        read_channels_file(path)

    assert "not valid YAML at line" in str(caught.value)
    assert "SECRETLINE" not in str(caught.value)


def test_a_value_with_yaml_syntax_from_the_environment_stays_one_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ODD_URL", "https://x.test/a'b: c, {d}] #e")
    path = _write(tmp_path, "channels:\n  - {name: a, type: slack, url: '${TEST_ODD_URL}'}\n")

    [spec] = read_channels_file(path)

    assert spec.url == "https://x.test/a'b: c, {d}] #e"


def test_an_email_channel_needs_the_smtp_settings(tmp_path: Path) -> None:
    path = _write(tmp_path, "channels:\n  - {name: mail, type: email, to: [a@x.test]}\n")

    with pytest.raises(ChannelsFileError, match=r"channels\.0 \(mail\).*CRM_HEALTH_SMTP_HOST"):
        load_channels(_settings(path), connector_for=lambda name: None)


def test_smtp_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_HEALTH_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("CRM_HEALTH_SMTP_SECURITY", "ssl")
    monkeypatch.setenv("CRM_HEALTH_SMTP_USERNAME", "alerts")
    monkeypatch.setenv("CRM_HEALTH_SMTP_PASSWORD", "pw-from-env")
    monkeypatch.setenv("CRM_HEALTH_SMTP_FROM_ADDRESS", "Health <health@example.com>")
    monkeypatch.setenv("CRM_HEALTH_ALERT_CHANNELS_FILE", "/etc/crm-health/channels.yaml")

    settings = Settings()

    assert settings.smtp_host == "mail.example.com"
    assert settings.smtp_security == "ssl"
    assert settings.smtp_port is None
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "pw-from-env"
    assert "pw-from-env" not in repr(settings)
    assert settings.alert_channels_file == Path("/etc/crm-health/channels.yaml")


async def test_every_channel_satisfies_the_channel_protocol() -> None:
    sender = make_sender()
    channels: list[Channel] = [
        SlackChannel(name="s", url=SLACK_URL, sender=sender),
        TeamsChannel(name="t", url=TEAMS_URL, sender=sender),
        WebhookChannel(name="w", url=HOOK_URL, secret=SECRET, sender=sender),
        EmailChannel(name="e", to=["a@x.test"], smtp=smtp_options(25)),
        CRMTaskChannel(name="c", connector_for=lambda name: None),
    ]

    assert [channel.kind for channel in channels] == [
        "slack",
        "teams",
        "webhook",
        "email",
        "crm_task",
    ]
    assert all(channel.digest == "none" for channel in channels)
    await _close_all({channel.name: channel for channel in channels})
    assert sender.client._client.is_closed


# --- hostile text: names and drivers from a CRM are shown as written, never as markup ----------

PHISH = "[Action required: re-verify your HubSpot login](https://evil.example/phish) Contoso"
# A right-to-left override and an isolate: "Contoso gpj.exe" would read as "Contoso exe.jpg".
HOSTILE = f"{PHISH} *bold* _it_ ~del~ `code` <@here> <!channel> \u202egpj.exe\u2066x\u2069"
# The same text once invisible characters are gone and the link's scheme is defanged.
SHOWN = (
    "[Action required: re-verify your HubSpot login](https[:]//evil.example/phish) Contoso"
    " *bold* _it_ ~del~ `code` <@here> <!channel> gpj.exex"
)
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def hostile_notice(**overrides: Any) -> AlertNotice:
    values: dict[str, Any] = {
        "account_name": HOSTILE,
        "title": f"{HOSTILE} is at risk\r\nBcc: victim@example.com",
        "reason": f"{HOSTILE}: band neutral -> at risk",
        "owner_id": f"owner {HOSTILE}",
        "drivers": (f"Champion {HOSTILE} left",),
    }
    values.update(overrides)
    return make_notice(**values)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _no_bidi(text: str) -> bool:
    return not BIDI & set(text)


@respx.mock
async def test_slack_shows_a_hostile_account_name_as_written_without_links_or_mentions(
    sender: HTTPSender,
) -> None:
    route = respx.post(SLACK_URL).respond(200, text="ok")
    channel = SlackChannel(name="cs-slack", url=SLACK_URL, sender=sender)

    await channel.send([hostile_notice()])

    body = sent_json(route)
    dumped = json.dumps(body, ensure_ascii=False)
    assert "evil.example" in dumped
    assert "https://evil.example" not in dumped
    assert _no_bidi(dumped)
    mrkdwn = [
        block
        for block in _blocks_and_elements(body["blocks"])
        if isinstance(block, dict) and block.get("type") == "mrkdwn"
    ]
    # No bare URL, channel name or mention is made into a link by Slack itself.
    assert mrkdwn
    assert all(block["verbatim"] is True for block in mrkdwn)
    for text in [body["text"], *(block["text"] for block in mrkdwn)]:
        # The only <...> are those crm-health writes: the record link and the date.
        assert re.findall(r"<(?!https://app\.hubspot\.com/|!date\^)", text) == []
        # Besides crm-health's own bold titles and rule code span, no formatting mark stands
        # next to a word: each is fenced by zero-width spaces.
        theirs = re.sub(r"\*(Account|Score|Trend 30d|Owner|Why)\*|`[\w-]+`|<!date\^.*>", "", text)
        assert re.findall(r"(?<!\u200b)[*_~`]|[*_~`](?!\u200b)", theirs) == []
    account = body["blocks"][1]["fields"][0]["text"]
    assert _slack_shown(account) == f"*Account*\n<{RECORD_URL}|{SHOWN}>"


def _blocks_and_elements(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _blocks_and_elements(item)
    elif isinstance(value, list):
        for item in value:
            yield from _blocks_and_elements(item)


def _slack_shown(text: str) -> str:
    """What Slack shows of escaped mrkdwn text (entities decoded, zero-width spaces unseen)."""
    return (
        text.replace("\u200b", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )


@respx.mock
async def test_teams_shows_a_hostile_account_name_as_written_in_text_blocks_and_facts(
    sender: HTTPSender,
) -> None:
    route = respx.post(TEAMS_URL).respond(202)
    channel = TeamsChannel(name="cs-teams", url=TEAMS_URL, sender=sender)

    await channel.send([hostile_notice()])

    card = sent_json(route)["attachments"][0]["content"]
    dumped = json.dumps(card, ensure_ascii=False)
    assert "https://evil.example" not in dumped
    assert _no_bidi(dumped)
    texts = [block["text"] for block in _blocks_and_elements(card["body"]) if "text" in block] + [
        fact["value"]
        for block in card["body"]
        if block["type"] == "FactSet"
        for fact in block["facts"]
    ]
    for text in texts:
        # Every Markdown character from the name is escaped: no link, no emphasis, no code.
        assert re.findall(r"(?<!\\)[\[\]*_~`<]", text) == []
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert re.sub(r"\\(.)", r"\1", facts["Account"]) == SHOWN
    assert [action["url"] for action in card["actions"]] == [RECORD_URL]


async def test_an_email_shows_a_hostile_account_name_as_written_with_a_clean_subject(
    smtp_server: SMTPServer,
) -> None:
    channel = EmailChannel(
        name="cs-mail", to=["cs-leads@example.com"], smtp=smtp_options(smtp_server.port)
    )

    await channel.send([hostile_notice()])

    [(_, recipients, raw)] = smtp_server.mailbox.messages
    assert recipients == ["cs-leads@example.com"]
    message = _parse(raw)
    subject = message["Subject"]
    assert subject == f"[crm-health] {SHOWN} is at risk Bcc: victim@example.com"
    assert "\r" not in subject
    assert "\n" not in subject
    assert message["Bcc"] is None
    text, html = _parts(message)
    for part in (subject, text, html):
        assert _no_bidi(part)
        assert "https://evil.example" not in part
    assert f"Account:   {SHOWN} <{RECORD_URL}>" in text.splitlines()
    assert re.findall(r'href="([^"]*)"', html) == [RECORD_URL, RECORD_URL]
    assert "<@here>" not in html
    assert f'<a href="{RECORD_URL}">{html_escape(SHOWN)}</a>' in html


@respx.mock
async def test_a_webhook_carries_a_hostile_account_name_as_data_without_bidi_controls(
    sender: HTTPSender,
) -> None:
    route = respx.post(HOOK_URL).respond(204)
    channel = WebhookChannel(name="signed", url=HOOK_URL, secret=SECRET, sender=sender)

    await channel.send([hostile_notice()])

    request = route.calls.last.request
    data = Webhook(SECRET).verify(request.content, _headers(request))["data"]
    assert all(_no_bidi(text) for text in _strings(data))
    # JSON is data: the receiver escapes it for wherever it shows it, so it arrives as written.
    written = "".join(char for char in HOSTILE if char not in BIDI)
    assert data["account_name"] == written
    assert data["drivers"] == [f"Champion {written} left"]
    assert data["record_url"] == RECORD_URL


@respx.mock
async def test_a_crm_task_shows_a_hostile_account_name_without_links_or_bidi_controls(
    hubspot: HubSpotConnector,
) -> None:
    route = respx.post(f"{HUBSPOT}/crm/v3/objects/tasks").respond(201, json={"id": "9001"})
    channel = CRMTaskChannel(name="owner-task", connector_for=_lookup(hubspot), clock=lambda: AT)

    await channel.send([hostile_notice()])

    properties = sent_json(route)["properties"]
    for name in ("hs_task_subject", "hs_task_body"):
        assert _no_bidi(properties[name])
        assert "https://evil.example" not in properties[name]
    assert properties["hs_task_subject"] == (
        f"Customer health: {SHOWN} is at risk Bcc: victim@example.com"
    )
    assert f"- Champion {html.escape(SHOWN)} left" in properties["hs_task_body"].split("<br>")
    assert "<a" not in properties["hs_task_body"]


@pytest.mark.parametrize("char", [*sorted(BIDI), "\u200b", "\u200d", "\u00ad", "\ufeff", "\x1b"])
def test_every_bidi_control_and_invisible_character_is_stripped(char: str) -> None:
    assert words.strip_invisible(f"Con{char}toso\tLtd\n") == "Contoso\tLtd\n"


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("see https://evil.example/x", "see https[:]//evil.example/x"),
        ("HTTP://a.example and ftp://b.example", "HTTP[:]//a.example and ftp[:]//b.example"),
        ("https[:]//already.example", "https[:]//already.example"),
        ("Contoso: 12:30, ratio 1:2", "Contoso: 12:30, ratio 1:2"),
    ],
)
def test_urls_someone_else_wrote_are_defanged_once(written: str, shown: str) -> None:
    assert words.defang(written) == shown
    assert words.defang(words.defang(written)) == shown


@pytest.mark.parametrize(
    ("written", "escaped"),
    [
        ("[a](https://x)", "\\[a\\](https://x)"),
        ("*b* _i_ ~s~ `c` <u> a\\b", "\\*b\\* \\_i\\_ \\~s\\~ \\`c\\` \\<u> a\\\\b"),
        ("- not a list\n+ nor this\n12. nor this", "\\- not a list\n\\+ nor this\n12\\. nor this"),
        ("score 38 (at risk) -> -12", "score 38 (at risk) -> -12"),
    ],
)
def test_teams_markdown_escapes_only_what_would_format(written: str, escaped: str) -> None:
    assert teams_markdown(written) == escaped
