"""HubSpot OAuth: install link, code exchange, refresh before expiry, 401 recovery (respx)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from connector.base import RecordUpdate
from connector.errors import CRMRequestRejected
from connector.http import RetryingClient, RetryPolicy
from connector.hubspot.api import HubSpotConnector
from connector.hubspot.oauth import (
    OAuthApp,
    OAuthBearer,
    OAuthTokenSource,
    TokenSet,
    exchange_code,
)

API = "https://hubspot.api.test"
APP = OAuthApp(
    client_id="client-1",
    client_secret="app-secret",
    redirect_uri="https://health.example.test/oauth/hubspot/callback",
    scopes=("oauth", "crm.objects.companies.write"),
)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _client() -> RetryingClient:
    return RetryingClient(base_url=API, name="test", policy=RetryPolicy(max_attempts=1))


def _form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def test_install_url_carries_client_redirect_scopes_and_state() -> None:
    url = urlsplit(APP.install_url(state="s-1"))

    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://app.hubspot.com/oauth/authorize"
    assert parse_qs(url.query) == {
        "client_id": ["client-1"],
        "redirect_uri": ["https://health.example.test/oauth/hubspot/callback"],
        "scope": ["oauth crm.objects.companies.write"],
        "state": ["s-1"],
    }


@respx.mock
async def test_code_exchange_posts_the_documented_form_and_finds_the_portal() -> None:
    token = respx.post(f"{API}/oauth/v1/token").respond(
        200,
        json={
            "token_type": "bearer",
            "refresh_token": "r-1",
            "access_token": "a-1",
            "expires_in": 1800,
        },
    )
    info = respx.get(f"{API}/oauth/v1/access-tokens/a-1").respond(
        200, json={"token": "a-1", "hub_id": 62515, "app_id": 4242, "expires_in": 1799}
    )
    async with _client() as client:
        tokens = await exchange_code(client, app=APP, code="code-1", now=NOW)

    request = token.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert _form(request) == {
        "grant_type": "authorization_code",
        "client_id": "client-1",
        "client_secret": "app-secret",
        "redirect_uri": "https://health.example.test/oauth/hubspot/callback",
        "code": "code-1",
    }
    assert info.called
    assert tokens.access_token == "a-1"
    assert tokens.refresh_token == "r-1"
    assert tokens.expires_at == NOW + timedelta(seconds=1800)
    assert tokens.portal_id == 62515


@respx.mock
async def test_hub_id_in_the_token_answer_saves_the_metadata_call() -> None:
    respx.post(f"{API}/oauth/v1/token").respond(
        200,
        json={"refresh_token": "r", "access_token": "a", "expires_in": 1800, "hub_id": 7},
    )
    async with _client() as client:
        tokens = await exchange_code(client, app=APP, code="c", now=NOW)

    assert tokens.portal_id == 7
    assert len(respx.calls) == 1


@respx.mock
async def test_a_refused_code_is_a_rejection_not_a_retry() -> None:
    respx.post(f"{API}/oauth/v1/token").respond(
        400, json={"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"}
    )
    async with _client() as client:
        with pytest.raises(CRMRequestRejected) as error:
            await exchange_code(client, app=APP, code="bad", now=NOW)

    assert "BAD_AUTH_CODE" in error.value.body


def test_token_set_repr_never_shows_a_token() -> None:
    tokens = TokenSet(access_token="a-secret", refresh_token="r-secret", expires_at=NOW)

    assert "secret" not in repr(tokens)
    assert TokenSet.from_json(tokens.to_json()) == tokens


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _source(clock: _Clock, saved: list[TokenSet], expires_in: float = 1800) -> OAuthTokenSource:
    async def save(tokens: TokenSet) -> None:
        saved.append(tokens)

    return OAuthTokenSource(
        client=_client(),
        app=APP,
        tokens=TokenSet(
            access_token="old",
            refresh_token="r-1",
            expires_at=NOW + timedelta(seconds=expires_in),
            portal_id=62515,
        ),
        on_refresh=save,
        refresh_margin_seconds=300,
        clock=clock,
    )


def _refresh_answer(access: str) -> dict[str, object]:
    return {
        "token_type": "bearer",
        "refresh_token": "r-1",
        "access_token": access,
        "expires_in": 1800,
    }


@respx.mock
async def test_a_token_far_from_expiry_is_used_as_is() -> None:
    refresh = respx.post(f"{API}/oauth/v1/token").respond(200, json=_refresh_answer("new"))
    clock, saved = _Clock(), list[TokenSet]()
    source = _source(clock, saved)

    assert await source.access_token() == "old"
    assert not refresh.called
    await source.aclose()


@respx.mock
async def test_a_token_inside_the_margin_is_refreshed_first_and_saved() -> None:
    refresh = respx.post(f"{API}/oauth/v1/token").respond(200, json=_refresh_answer("new"))
    clock, saved = _Clock(), list[TokenSet]()
    source = _source(clock, saved)
    clock.now = NOW + timedelta(seconds=1800 - 299)

    assert await source.access_token() == "new"
    assert _form(refresh.calls.last.request) == {
        "grant_type": "refresh_token",
        "client_id": "client-1",
        "client_secret": "app-secret",
        "refresh_token": "r-1",
    }
    assert [t.access_token for t in saved] == ["new"]
    assert saved[0].expires_at == clock.now + timedelta(seconds=1800)
    assert saved[0].portal_id == 62515
    await source.aclose()


@respx.mock
async def test_concurrent_callers_share_one_refresh() -> None:
    refresh = respx.post(f"{API}/oauth/v1/token").respond(200, json=_refresh_answer("new"))
    clock, saved = _Clock(), list[TokenSet]()
    source = _source(clock, saved, expires_in=10)

    tokens = await asyncio.gather(*(source.access_token() for _ in range(5)))

    assert tokens == ["new"] * 5
    assert refresh.call_count == 1
    await source.aclose()


@respx.mock
async def test_a_401_forces_one_refresh_and_one_resend() -> None:
    respx.post(f"{API}/oauth/v1/token").respond(200, json=_refresh_answer("new"))
    write = respx.post(f"{API}/crm/v3/objects/companies/batch/update").mock(
        side_effect=[
            httpx.Response(401, json={"status": "error", "category": "EXPIRED_AUTHENTICATION"}),
            httpx.Response(200, json={"status": "COMPLETE", "results": [{"id": "1"}]}),
        ]
    )
    clock, saved = _Clock(), list[TokenSet]()
    source = _source(clock, saved)
    connector = HubSpotConnector.create(
        connection="t",
        auth=OAuthBearer(source),
        closing=source.aclose,
        api_base=API,
        policy=RetryPolicy(max_attempts=1),
    )
    result = await connector.write_health([RecordUpdate(record_id="1", fields={})])

    assert result.written == {"1"}
    assert [call.request.headers["authorization"] for call in write.calls] == [
        "Bearer old",
        "Bearer new",
    ]
    assert len(saved) == 1
    await connector.aclose()


def test_a_connector_needs_exactly_one_way_to_authenticate() -> None:
    with pytest.raises(ValueError, match="either access_token or auth"):
        HubSpotConnector.create(connection="t", api_base=API)
