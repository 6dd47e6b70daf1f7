"""Alerts to the account owner: the owner's e-mail from the CRM (cached) or the owner attribute,
the owner channel by e-mail and by Slack direct message, the fallback team channel, clear
failures, one digest per owner, and the channels file's owner entries."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from aiosmtpd.controller import Controller
from sqlalchemy import select

from connector.http import RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.sandbox.app import create_sandbox_app
from connector.sandbox.seed import SEEDED_OWNERS
from connector.sandbox.state import SandboxState
from signals.config import HealthConfig
from testkit import HUBSPOT_TOKEN, RECENCY_ONLY, make_settings, store_native
from webhooks.alerts.channels.config import ChannelsFileError, read_channels_file
from webhooks.alerts.channels.email import SMTPOptions
from webhooks.alerts.channels.http import HTTPSender
from webhooks.alerts.channels.owner import (
    SLACK_API,
    OwnerAddress,
    OwnerChannel,
    SlackDirectMessages,
)
from webhooks.alerts.notice import AlertNotice, ChannelError, Digest
from webhooks.alerts.owners import OwnerDirectory
from webhooks.configuration import check_configuration
from webhooks.store import configs
from webhooks.store.db import create_engine, create_session_factory
from webhooks.store.models import AlertDelivery
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

HUBSPOT = "https://hubspot.api.test"
BOT_TOKEN = "xoxb-1111-2222-secretpart"
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


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
        "drivers": ("Seat utilisation 42% (at-risk threshold 50%)",),
        "record_url": None,
        "at": AT,
    }
    values.update(overrides)
    return AlertNotice(**values)


@dataclass
class FakeChannel:
    name: str
    digest: Digest = "none"
    kind: str = "fake"
    daily_limit: int | None = None
    sent: list[list[AlertNotice]] = field(default_factory=list)

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        self.sent.append(list(notices))

    async def aclose(self) -> None:
        return None


@dataclass
class FakeOwners:
    """Owner e-mails by owner id; an id it does not know has no e-mail."""

    emails: dict[str, str]

    async def address_for(self, notice: AlertNotice) -> OwnerAddress:
        address = self.emails.get(notice.owner_id or "")
        if address is None:
            return OwnerAddress(
                email=None,
                missing=f"account {notice.account_name} has no owner e-mail in HubSpot",
            )
        return OwnerAddress(email=address)


# --- where the owner's e-mail comes from (stored: SQLite and PostgreSQL) --------------------------


class Clock:
    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def hubspot() -> AsyncIterator[HubSpotConnector]:
    connector = HubSpotConnector.create(
        connection="default",
        access_token="tok",
        api_base=HUBSPOT,
        policy=RetryPolicy(max_attempts=1),
        rate_limit=None,
    )
    yield connector
    await connector.aclose()


@pytest.fixture
async def directory(
    database_url: str, hubspot: HubSpotConnector
) -> AsyncIterator[tuple[OwnerDirectory, Clock]]:
    engine = create_engine(database_url)
    clock = Clock()
    connectors = {"default": hubspot}
    yield (
        OwnerDirectory(
            sessions=create_session_factory(engine),
            connector_for=connectors.get,
            clock=clock,
        ),
        clock,
    )
    await engine.dispose()


def hubspot_owner(owner_id: str = "64492917", email_address: str | None = "ana@example.com"):
    return respx.get(f"{HUBSPOT}/crm/v3/owners/{owner_id}").respond(
        200,
        json={
            "id": owner_id,
            "email": email_address,
            "type": "PERSON",
            "firstName": "Ana",
            "lastName": "Lopez",
            "archived": False,
        },
    )


@respx.mock
async def test_the_owners_email_comes_from_the_crm_once_a_day(directory) -> None:
    owners, clock = directory
    route = hubspot_owner()
    first = await owners.address_for(make_notice())
    clock.now += timedelta(hours=23)
    second = await owners.address_for(make_notice(alert_id=43))
    assert first == second == OwnerAddress(email="ana@example.com", name="Ana Lopez")
    assert route.call_count == 1, "the second alert is answered from crm_owners"
    clock.now += timedelta(hours=2)
    await owners.address_for(make_notice(alert_id=44))
    assert route.call_count == 2, "read again once a day old"


@respx.mock
async def test_an_owner_attribute_that_is_an_email_is_the_address_itself(directory) -> None:
    owners, _ = directory
    address = await owners.address_for(make_notice(owner_id="jo.becker@example.com", crm="native"))
    assert address.email == "jo.becker@example.com"
    assert not respx.calls


@respx.mock
async def test_an_owner_hubspot_does_not_know_is_remembered_and_explained(directory) -> None:
    owners, _ = directory
    route = respx.get(f"{HUBSPOT}/crm/v3/owners/77").respond(404, json={"status": "error"})
    first = await owners.address_for(make_notice(owner_id="77"))
    second = await owners.address_for(make_notice(owner_id="77"))
    assert first.email is None
    assert first.missing == (
        "account Acme Corp has no owner e-mail in HubSpot: HubSpot has no owner '77'"
    )
    assert second == first
    assert route.call_count == 1


@respx.mock
async def test_an_owner_without_an_email_in_the_crm_is_explained(directory) -> None:
    owners, _ = directory
    hubspot_owner(email_address=None)
    address = await owners.address_for(make_notice())
    assert address.email is None
    assert address.missing is not None
    assert "owner '64492917' has none there" in address.missing


@respx.mock
async def test_an_account_without_owner_is_explained_without_asking(directory) -> None:
    owners, _ = directory
    address = await owners.address_for(make_notice(owner_id=None))
    assert address == OwnerAddress(email=None, missing="account Acme Corp has no owner in HubSpot")
    assert not respx.calls


@respx.mock
async def test_a_crm_that_cannot_be_asked_uses_yesterdays_answer(directory) -> None:
    owners, clock = directory
    hubspot_owner()
    await owners.address_for(make_notice())
    clock.now += timedelta(days=2)
    respx.get(f"{HUBSPOT}/crm/v3/owners/64492917").respond(503)
    address = await owners.address_for(make_notice())
    assert address.email == "ana@example.com"


@respx.mock
async def test_a_crm_that_cannot_be_asked_about_a_new_owner_is_a_retryable_error(
    directory,
) -> None:
    owners, _ = directory
    respx.get(f"{HUBSPOT}/crm/v3/owners/64492917").respond(503)
    with pytest.raises(ChannelError, match="owner lookup in HubSpot") as caught:
        await owners.address_for(make_notice())
    assert caught.value.retryable


@respx.mock
async def test_a_missing_scope_is_a_failure_naming_the_status(directory) -> None:
    owners, _ = directory
    respx.get(f"{HUBSPOT}/crm/v3/owners/64492917").respond(
        403, json={"category": "MISSING_SCOPES", "message": "crm.objects.owners.read"}
    )
    with pytest.raises(ChannelError, match="status 403") as caught:
        await owners.address_for(make_notice())
    assert not caught.value.retryable


@respx.mock
async def test_an_owner_id_without_crm_credentials_is_explained(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        owners = OwnerDirectory(
            sessions=create_session_factory(engine), connector_for=lambda _name: None
        )
        address = await owners.address_for(make_notice(owner_id="Alex Kim"))
    finally:
        await engine.dispose()
    assert address.email is None
    assert address.missing == (
        "account Acme Corp has owner 'Alex Kim', which is not an e-mail address, and "
        "connection 'default' has no CRM credentials to look it up"
    )


# --- the owner channel by e-mail ------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: object, session: object, envelope: Any
    ) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def smtp(port: int) -> SMTPOptions:
    return SMTPOptions(
        host="127.0.0.1",
        port=port,
        security="none",
        from_address="health@example.com",
        timeout_seconds=5,
    )


async def test_an_owner_channel_via_email_mails_the_owner(mailbox) -> None:
    box, port = mailbox
    channel = OwnerChannel(
        name="owners",
        via="email",
        owners=FakeOwners({"64492917": "ana@example.com"}),
        smtp=smtp(port),
    )
    await channel.send([make_notice()])
    [(recipients, raw)] = box.messages
    assert recipients == ["ana@example.com"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == "ana@example.com"
    assert "Acme Corp" in message["Subject"]


async def test_an_owner_without_email_goes_to_the_fallback_channel(mailbox) -> None:
    _, port = mailbox
    fallback = FakeChannel("cs-slack")
    channel = OwnerChannel(
        name="owners", via="email", owners=FakeOwners({}), smtp=smtp(port), fallback=fallback
    )
    await channel.send([make_notice()])
    assert [[n.alert_id for n in message] for message in fallback.sent] == [[42]]


async def test_an_owner_without_email_and_no_fallback_fails_saying_why(mailbox) -> None:
    box, port = mailbox
    channel = OwnerChannel(name="owners", via="email", owners=FakeOwners({}), smtp=smtp(port))
    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])
    assert str(caught.value) == (
        "owner channel 'owners': account Acme Corp has no owner e-mail in HubSpot; "
        "no fallback channel is set"
    )
    assert not caught.value.retryable
    assert not box.messages


# --- the owner channel by Slack direct message ----------------------------------------------------


@pytest.fixture
async def slack_sender() -> AsyncIterator[HTTPSender]:
    sender = HTTPSender.create(policy=RetryPolicy(max_attempts=1))
    sender.attach()  # the test's own share: the channel's close must not close it under us
    yield sender
    await sender.detach()


def slack_channel(
    sender: HTTPSender, owners: FakeOwners, fallback: FakeChannel | None = None
) -> OwnerChannel:
    return OwnerChannel(
        name="owners",
        via="slack",
        owners=owners,
        slack=SlackDirectMessages(channel="owners", token=BOT_TOKEN, sender=sender),
        fallback=fallback,
    )


@respx.mock
async def test_a_slack_owner_is_found_by_email_and_gets_a_direct_message(slack_sender) -> None:
    lookup = respx.get(f"{SLACK_API}/users.lookupByEmail").respond(
        200, json={"ok": True, "user": {"id": "U0123ANA", "name": "ana"}}
    )
    post = respx.post(f"{SLACK_API}/chat.postMessage").respond(
        200, json={"ok": True, "channel": "D0456", "ts": "1700000000.000100"}
    )
    channel = slack_channel(slack_sender, FakeOwners({"64492917": "ana@example.com"}))
    await channel.send([make_notice()])
    await channel.send([make_notice(alert_id=43)])
    assert lookup.call_count == 1, "the user id is remembered"
    request = lookup.calls.last.request
    assert request.url.params["email"] == "ana@example.com"
    assert request.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    body = json.loads(post.calls.last.request.content)
    assert body["channel"] == "U0123ANA"
    assert body["blocks"][0]["type"] == "header"
    assert "Acme Corp" in body["text"]
    await channel.aclose()


@respx.mock
async def test_an_owner_slack_does_not_know_goes_to_the_fallback(slack_sender) -> None:
    respx.get(f"{SLACK_API}/users.lookupByEmail").respond(
        200, json={"ok": False, "error": "users_not_found"}
    )
    post = respx.post(f"{SLACK_API}/chat.postMessage")
    fallback = FakeChannel("cs-slack")
    channel = slack_channel(slack_sender, FakeOwners({"64492917": "ana@example.com"}), fallback)
    await channel.send([make_notice()])
    assert len(fallback.sent) == 1
    assert not post.called


@respx.mock
async def test_an_owner_slack_does_not_know_without_fallback_fails_saying_why(
    slack_sender,
) -> None:
    respx.get(f"{SLACK_API}/users.lookupByEmail").respond(
        200, json={"ok": False, "error": "users_not_found"}
    )
    channel = slack_channel(slack_sender, FakeOwners({"64492917": "ana@example.com"}))
    with pytest.raises(ChannelError, match="Slack has no user with the owner's e-mail") as caught:
        await channel.send([make_notice()])
    assert not caught.value.retryable


@respx.mock
async def test_a_refused_slack_token_is_not_retryable_and_never_shown(slack_sender) -> None:
    respx.get(f"{SLACK_API}/users.lookupByEmail").respond(
        200, json={"ok": False, "error": "invalid_auth"}
    )
    channel = slack_channel(slack_sender, FakeOwners({"64492917": "ana@example.com"}))
    with pytest.raises(ChannelError, match="invalid_auth") as caught:
        await channel.send([make_notice()])
    assert not caught.value.retryable
    assert BOT_TOKEN not in str(caught.value)
    assert "secretpart" not in repr(channel)


@respx.mock
async def test_a_slack_outage_is_retryable(slack_sender) -> None:
    respx.get(f"{SLACK_API}/users.lookupByEmail").respond(
        200, json={"ok": True, "user": {"id": "U0123ANA"}}
    )
    respx.post(f"{SLACK_API}/chat.postMessage").respond(503)
    channel = slack_channel(slack_sender, FakeOwners({"64492917": "ana@example.com"}))
    with pytest.raises(ChannelError) as caught:
        await channel.send([make_notice()])
    assert caught.value.retryable


# --- the channels file ----------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return path


def test_an_owner_channel_is_read_with_via_token_fallback_and_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    path = write(
        tmp_path,
        "channels:\n"
        "  - {name: cs-slack, type: slack, url: 'https://hooks.slack.test/T0/B0/x'}\n"
        "  - {name: owners, type: owner, via: slack, token: '${SLACK_BOT_TOKEN}',\n"
        "     fallback: cs-slack, digest: daily}\n",
    )
    [_, owners] = read_channels_file(path)
    assert (owners.type, owners.via, owners.token, owners.fallback, owners.digest) == (
        "owner",
        "slack",
        BOT_TOKEN,
        "cs-slack",
        "daily",
    )
    assert BOT_TOKEN not in repr(owners)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{name: owners, type: owner}", "channels.1.via: required for an owner channel"),
        ("{name: owners, type: owner, via: fax}", "channels.1.via: Input should be 'email'"),
        (
            "{name: owners, type: owner, via: slack}",
            "channels.1.token: required for an owner channel via slack",
        ),
        (
            "{name: owners, type: owner, via: slack, token: 'xoxp-user-token'}",
            "channels.1.token: must be a Slack bot token (xoxb-...)",
        ),
        (
            "{name: owners, type: owner, via: email, token: 'xoxb-1'}",
            "channels.1.token: only for an owner channel via slack",
        ),
        (
            "{name: owners, type: owner, via: email, fallback: nowhere}",
            "channels.1.fallback: no channel is named 'nowhere'",
        ),
        (
            "{name: owners, type: owner, via: email, fallback: owners}",
            "channels.1.fallback: 'owners' is an owner channel; name a team channel",
        ),
        (
            "{name: other, type: slack, url: 'https://hooks.slack.test/x', via: email}",
            "channels.1.via: only for owner channels",
        ),
    ],
)
def test_owner_channel_mistakes_name_the_field(tmp_path: Path, entry: str, problem: str) -> None:
    path = write(
        tmp_path,
        f"channels:\n  - {{name: team, type: email, to: [cs@example.com]}}\n  - {entry}\n",
    )
    with pytest.raises(ChannelsFileError, match=r"channels\.1\.") as caught:
        read_channels_file(path)
    assert problem in str(caught.value)
    assert "xoxp-user-token" not in str(caught.value)


def test_an_owner_channel_via_email_needs_the_smtp_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "channels:\n  - {name: owners, type: owner, via: email}\n")
    settings = make_settings("sqlite+aiosqlite://", alert_channels_file=path)
    with pytest.raises(ChannelsFileError, match="is an owner channel via email: set"):
        check_configuration(settings)


# --- through the worker: one digest per owner, failures on the delivery ---------------------------


class OwnerWorld:
    """A service with the channels file's owner channel, and a worker on a clock the test moves
    (as tests/webhooks/test_alerts_engine.py does)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        start = datetime.now(UTC) + timedelta(hours=1)
        self.now = start.replace(minute=10, second=0, microsecond=0)
        self.pipeline = Pipeline(
            sessions=service.runtime.sessions,
            connections=service.runtime.connections,
            options=WorkerOptions(),
            clock=lambda: self.now,
            channels=service.runtime.channels,
        )
        self.seen: set[str] = set()

    async def configure(self, channel: str) -> None:
        rule = {"name": "entered-at-risk", "when": "band_entered", "channels": [channel]}
        config = HealthConfig.model_validate({**RECENCY_ONLY, "alerts": [rule]})
        async with self.service.runtime.sessions() as session, session.begin():
            await configs.save(
                session, config=config, author="test", comment="alerts", now=datetime.now(UTC)
            )
        await self.pipeline.recompute_step()

    async def at_risk(self, account: str, owner: str) -> None:
        """Account `account`, owned by `owner`, last used 80 days ago: score 20, at risk. Its
        record arrives first on its own: an account's first scoring tells nobody."""
        record = {
            "type": "account",
            "account": account,
            "attributes": {"name": f"Account {account}", "owner": owner},
        }
        if account not in self.seen:
            self.seen.add(account)
            self.now += timedelta(seconds=1)
            await store_native(self.service.runtime, [{**record, "at": self.now.isoformat()}])
            await self.pipeline.process_inbox()
        self.now += timedelta(seconds=1)
        await store_native(
            self.service.runtime,
            [
                {
                    "type": "usage",
                    "account": account,
                    "user": "u1",
                    "at": (self.now - timedelta(days=80)).isoformat(),
                },
                {
                    "type": "account",
                    "account": account,
                    "attributes": {"name": f"Account {account}", "owner": owner},
                    "at": self.now.isoformat(),
                },
            ],
        )
        await self.pipeline.process_inbox()
        await self.pipeline.deliver_alerts()

    async def deliveries(self) -> list[AlertDelivery]:
        async with self.service.runtime.sessions() as session:
            query = select(AlertDelivery).order_by(AlertDelivery.id)
            return list((await session.execute(query)).scalars())


@respx.mock
async def test_a_daily_owner_digest_is_one_direct_message_per_owner(
    service_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    path = write(
        tmp_path,
        "channels:\n"
        "  - {name: owners, type: owner, via: slack, token: '${SLACK_BOT_TOKEN}', digest: daily}\n",
    )
    users = {"ana@example.com": "U0ANA", "jo@example.com": "U0JO"}

    def lookup(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"ok": True, "user": {"id": users[request.url.params["email"]]}}
        )

    respx.get(f"{SLACK_API}/users.lookupByEmail").mock(side_effect=lookup)
    post = respx.post(f"{SLACK_API}/chat.postMessage").respond(200, json={"ok": True})
    service = await service_factory(hubspot_access_token=None, alert_channels_file=path)
    w = OwnerWorld(service)
    await w.configure("owners")
    await w.at_risk("7", "ana@example.com")
    await w.at_risk("8", "jo@example.com")
    await w.at_risk("9", "ana@example.com")
    assert not post.called, "a digest waits for the end of the day"
    w.now = w.now.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    assert await w.pipeline.deliver_alerts() == 3
    sent = {
        body["channel"]: body for body in (json.loads(call.request.content) for call in post.calls)
    }
    assert set(sent) == {"U0ANA", "U0JO"}
    assert "Account 7" in sent["U0ANA"]["text"]
    assert "Account 9" in sent["U0ANA"]["text"]
    assert "Account 8" not in sent["U0ANA"]["text"]
    assert "Account 8" in sent["U0JO"]["text"]
    assert {d.status for d in await w.deliveries()} == {"sent"}


async def test_an_unreachable_owner_fails_the_delivery_with_the_reason(
    service_factory, tmp_path: Path
) -> None:
    path = write(tmp_path, "channels:\n  - {name: owners, type: owner, via: email}\n")
    service = await service_factory(
        hubspot_access_token=None,
        alert_channels_file=path,
        smtp_host="127.0.0.1",
        smtp_from_address="health@example.com",
    )
    w = OwnerWorld(service)
    await w.configure("owners")
    await w.at_risk("7", "Alex Kim")
    [delivery] = await w.deliveries()
    assert delivery.status == "failed"
    assert delivery.last_error == (
        "owner channel 'owners': account Account 7 has owner 'Alex Kim', which is not an "
        "e-mail address, and connection 'default' has no CRM credentials to look it up; "
        "no fallback channel is set"
    )


async def test_the_sandbox_owner_of_a_company_gets_its_alert_by_email(
    service_factory, tmp_path: Path, mailbox
) -> None:
    """Nothing mocked: the owner id is the sandbox CRM's, its e-mail read through the HubSpot
    connector, the message delivered to a local SMTP server."""
    box, port = mailbox
    state = SandboxState()
    owner_id, owner_email, *_ = SEEDED_OWNERS[0]
    company = state.add_company({"name": "Acme Labs", "hubspot_owner_id": owner_id})
    path = write(tmp_path, "channels:\n  - {name: owners, type: owner, via: email}\n")
    service = await service_factory(
        crm_transport=httpx.ASGITransport(
            app=create_sandbox_app(state, access_token=HUBSPOT_TOKEN)
        ),
        alert_channels_file=path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from_address="health@example.com",
    )
    w = OwnerWorld(service)
    await w.configure("owners")
    await w.at_risk(company, owner_id)
    await w.at_risk(company, owner_id)  # still at risk: no second alert, no second lookup
    [(recipients, raw)] = box.messages
    assert recipients == [owner_email]
    assert "Account " in email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
    lookups = [r for r in state.requests if r.path == f"/crm/v3/owners/{owner_id}"]
    assert [r.status for r in lookups] == [200]
    [delivery] = await w.deliveries()
    assert delivery.status == "sent"


def test_an_owner_channel_refuses_a_url(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "channels:\n  - {name: owners, type: owner, via: email, url: 'https://x.test/hook'}\n",
    )
    with pytest.raises(ChannelsFileError, match=r"channels\.0\.url: not used by an owner channel"):
        read_channels_file(path)
