"""Entra ID client credentials for Dynamics 365: the documented token request, tokens cached until
a margin before expiry, one shared refresh, one resend after a 401, and no secret anywhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from connector.dynamics.auth import (
    DynamicsAuth,
    EntraClientCredentials,
    parse_token,
)
from connector.errors import CRMAuthError, CRMRetriesExhausted, PayloadError
from connector.http import RetryingClient, RetryPolicy

AUTHORITY = "https://login.microsoftonline.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
SECRET = "Qx~8Q~super.secret-value_123"
ORG = "https://contoso.crm.dynamics.com"
TOKEN_URL = f"{AUTHORITY}/{TENANT}/oauth2/v2.0/token"
ACCOUNT_PATH = "/api/data/v9.2/accounts(a1b2c3d4-0000-4000-8000-00000000a001)"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# The identity platform's refusal of a wrong secret: the documented error-response shape
# (error, error_description with trace lines, error_codes, timestamp, trace and correlation ids).
INVALID_CLIENT_DESCRIPTION = (
    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the"
    " request is the client secret value, not the client secret ID, for a secret added to"
    f" app '{CLIENT_ID}'.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864\r\n"
    "Correlation ID: fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7\r\nTimestamp: 2026-11-23 12:00:00Z"
)
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": INVALID_CLIENT_DESCRIPTION,
    "error_codes": [7000215],
    "timestamp": "2026-11-23 12:00:00Z",
    "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
    "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7",
    "error_uri": "https://login.microsoftonline.com/error?code=7000215",
}
UNAUTHORIZED = {"error": {"code": "0x80072560", "message": "The user is not a member of the org"}}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def credentials() -> EntraClientCredentials:
    return EntraClientCredentials(
        tenant_id=TENANT, client_id=CLIENT_ID, client_secret=SECRET, org_url=f"{ORG}/"
    )


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def token_answer(access: str, *, expires_in: Any = 3599) -> dict[str, Any]:
    return {
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": access,
    }


def form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def make_auth(credentials: EntraClientCredentials, clock: Clock, **options: Any) -> DynamicsAuth:
    token_client = RetryingClient(
        base_url=credentials.authority,
        name="dynamics-token:test",
        policy=RetryPolicy(max_attempts=1),
    )
    return DynamicsAuth(credentials=credentials, client=token_client, clock=clock, **options)


def api_client(auth: DynamicsAuth) -> RetryingClient:
    return RetryingClient(
        base_url=ORG, name="dynamics:test", auth=auth, policy=RetryPolicy(max_attempts=1)
    )


# --- credentials -------------------------------------------------------------------------------


def test_credentials_repr_never_shows_the_secret(credentials: EntraClientCredentials) -> None:
    assert SECRET not in repr(credentials)
    assert SECRET not in str(credentials)
    assert CLIENT_ID in repr(credentials)


def test_credentials_name_the_documented_endpoint_and_scope(
    credentials: EntraClientCredentials,
) -> None:
    assert credentials.token_url == TOKEN_URL
    assert credentials.scope == "https://contoso.crm.dynamics.com/.default"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"client_secret": " "}, "client_secret must not be empty"),
        ({"tenant_id": ""}, "tenant_id must not be empty"),
        ({"tenant_id": "contoso/evil"}, "tenant_id must be"),
        ({"org_url": "contoso.crm.dynamics.com"}, "org_url must be an https URL"),
        ({"org_url": f"{ORG}/api/data/v9.2"}, "org_url must be a bare URL"),
        ({"authority": "login.microsoftonline.com"}, "authority must be an https URL"),
    ],
)
def test_invalid_credentials_are_refused(options: dict[str, str], problem: str) -> None:
    settings = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "org_url": ORG,
        **options,
    }

    with pytest.raises(ValueError, match=problem) as refused:
        EntraClientCredentials(**settings)

    assert SECRET not in str(refused.value)


# --- the token request -------------------------------------------------------------------------


async def test_token_request_posts_the_documented_form(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    route = mock.post(TOKEN_URL).respond(200, json=token_answer("t-1"))
    auth = make_auth(credentials, clock)

    token = await auth.token()

    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(sent) == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": "https://contoso.crm.dynamics.com/.default",
    }
    assert token.access_token == "t-1"
    assert token.expires_at == NOW + timedelta(seconds=3599)
    await auth.aclose()


async def test_invalid_client_is_an_auth_error_naming_the_reason_but_no_secret(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(401, json=INVALID_CLIENT)
    auth = make_auth(credentials, clock)

    with pytest.raises(CRMAuthError) as refused:
        await auth.token()

    error = refused.value
    first_line = INVALID_CLIENT_DESCRIPTION.split("\r\n", maxsplit=1)[0]
    assert str(error) == f"Entra ID token request refused: invalid_client ({first_line})"
    assert "Trace ID" not in str(error)
    assert error.status == 401
    assert json.loads(error.body)["error_codes"] == [7000215]
    for text in (str(error), error.body, repr(error)):
        assert SECRET not in text
    assert error.__cause__ is None
    await auth.aclose()


async def test_refusal_with_status_400_is_an_auth_error_too(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(
        400,
        json={
            "error": "invalid_scope",
            "error_description": "AADSTS70011: The provided value for the input parameter 'scope'"
            " is not valid.\r\nTrace ID: 255d1aef-8c98-452f-ac51-23d051240864",
            "error_codes": [70011],
        },
    )
    auth = make_auth(credentials, clock)

    with pytest.raises(CRMAuthError, match=r"invalid_scope \(AADSTS70011: .* is not valid\.\)$"):
        await auth.token()
    await auth.aclose()


async def test_secret_quoted_back_by_the_endpoint_is_masked(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(
        400,
        json={"error": "invalid_request", "error_description": f"bad client_secret={SECRET}"},
    )
    auth = make_auth(credentials, clock)

    with pytest.raises(CRMAuthError, match="invalid_request") as refused:
        await auth.token()

    assert SECRET not in str(refused.value)
    assert SECRET not in refused.value.body
    await auth.aclose()


async def test_refusal_without_an_oauth_error_body_names_the_status(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(400, text="<html>Bad Request</html>")
    auth = make_auth(credentials, clock)

    with pytest.raises(CRMAuthError, match="refused with status 400"):
        await auth.token()
    await auth.aclose()


async def test_token_endpoint_outage_is_retries_exhausted_without_the_secret(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(503, text="Service Unavailable")
    auth = make_auth(credentials, clock)

    with pytest.raises(CRMRetriesExhausted) as failed:
        await auth.token()

    assert SECRET not in str(failed.value)
    await auth.aclose()


@pytest.mark.parametrize("missing", ["access_token", "expires_in"])
async def test_token_answer_without_a_required_field_names_it(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock, missing: str
) -> None:
    answer = token_answer("t-1")
    del answer[missing]
    mock.post(TOKEN_URL).respond(200, json=answer)
    auth = make_auth(credentials, clock)

    with pytest.raises(PayloadError, match=f"{missing} is missing"):
        await auth.token()
    await auth.aclose()


@pytest.mark.parametrize("expires_in", [0, -5, "soon", True, 12.5])
def test_token_answer_with_a_malformed_lifetime_is_refused(expires_in: Any) -> None:
    with pytest.raises(PayloadError, match="expires_in is not a positive number"):
        parse_token(token_answer("t-1", expires_in=expires_in), now=NOW)


def test_token_lifetime_as_a_string_is_read() -> None:
    token = parse_token(token_answer("t-1", expires_in="3599"), now=NOW)

    assert token.expires_in == 3599


def test_token_answer_that_is_no_object_is_refused() -> None:
    with pytest.raises(PayloadError, match="not a JSON object"):
        parse_token(["t-1"], now=NOW)


def test_token_repr_never_shows_the_access_token() -> None:
    token = parse_token(token_answer("eyJ0eXAi.secret-token"), now=NOW)

    assert "secret-token" not in repr(token)
    assert "3599" in repr(token)


async def test_token_issued_log_names_the_org_host_and_lifetime_only(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(200, json=token_answer("eyJ0eXAi.secret-token"))
    auth = make_auth(credentials, clock)

    with capture_logs() as logs:
        await auth.token()

    issued = [entry for entry in logs if entry["event"] == "dynamics_token_issued"]
    assert issued == [
        {
            "event": "dynamics_token_issued",
            "log_level": "info",
            "org": "contoso.crm.dynamics.com",
            "expires_in": 3599,
        }
    ]
    assert "secret-token" not in repr(logs)
    assert SECRET not in repr(logs)
    await auth.aclose()


def test_auth_repr_never_shows_the_secret(
    credentials: EntraClientCredentials, clock: Clock
) -> None:
    assert SECRET not in repr(make_auth(credentials, clock))


# --- API requests ------------------------------------------------------------------------------


async def test_api_request_carries_the_bearer_token_to_the_org(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(200, json=token_answer("t-1"))
    api = mock.get(f"{ORG}{ACCOUNT_PATH}").respond(200, json={"name": "Contoso"})
    client = api_client(make_auth(credentials, clock))

    response = await client.request("GET", ACCOUNT_PATH, params={"$select": "name"})

    sent = api.calls.last.request
    assert response.json() == {"name": "Contoso"}
    assert sent.url.host == "contoso.crm.dynamics.com"
    assert sent.headers["authorization"] == "Bearer t-1"
    await client.aclose()


async def test_token_is_cached_until_expiry_minus_the_margin(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("t-1", expires_in=3600)),
            httpx.Response(200, json=token_answer("t-2", expires_in=3600)),
        ]
    )
    api = mock.get(f"{ORG}{ACCOUNT_PATH}").respond(200, json={})
    client = api_client(make_auth(credentials, clock, refresh_margin_seconds=600))

    await client.request("GET", ACCOUNT_PATH)
    clock.now = NOW + timedelta(seconds=2999)
    await client.request("GET", ACCOUNT_PATH)
    clock.now = NOW + timedelta(seconds=3000)
    await client.request("GET", ACCOUNT_PATH)

    assert token.call_count == 2
    assert [call.request.headers["authorization"] for call in api.calls] == [
        "Bearer t-1",
        "Bearer t-1",
        "Bearer t-2",
    ]
    await client.aclose()


async def test_default_margin_is_five_minutes(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    route = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("t-1", expires_in=3599)),
            httpx.Response(200, json=token_answer("t-2", expires_in=3599)),
        ]
    )
    auth = make_auth(credentials, clock)

    first = await auth.token()
    clock.now = NOW + timedelta(seconds=3599 - 301)
    assert await auth.token() is first
    clock.now = NOW + timedelta(seconds=3599 - 300)
    assert (await auth.token()).access_token == "t-2"
    assert route.call_count == 2
    await auth.aclose()


async def test_short_lived_token_is_renewed_at_half_its_lifetime(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    route = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("t-1", expires_in=120)),
            httpx.Response(200, json=token_answer("t-2", expires_in=120)),
        ]
    )
    auth = make_auth(credentials, clock)

    await auth.token()
    clock.now = NOW + timedelta(seconds=59)
    assert (await auth.token()).access_token == "t-1"
    clock.now = NOW + timedelta(seconds=60)
    assert (await auth.token()).access_token == "t-2"
    assert route.call_count == 2
    await auth.aclose()


async def test_unauthorised_request_gets_one_new_token_and_one_resend(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("t-1")),
            httpx.Response(200, json=token_answer("t-2")),
        ]
    )
    api = mock.patch(f"{ORG}{ACCOUNT_PATH}").mock(
        side_effect=[httpx.Response(401, json=UNAUTHORIZED), httpx.Response(204)]
    )
    auth = make_auth(credentials, clock)
    client = api_client(auth)

    response = await client.request("PATCH", ACCOUNT_PATH, json={"new_healthscore": 42})

    assert response.status_code == 204
    assert token.call_count == 2
    assert [call.request.headers["authorization"] for call in api.calls] == [
        "Bearer t-1",
        "Bearer t-2",
    ]
    assert [json.loads(call.request.content) for call in api.calls] == [{"new_healthscore": 42}] * 2
    assert (await auth.token()).access_token == "t-2"
    await client.aclose()
    await auth.aclose()


async def test_request_refused_again_after_the_new_token_is_an_auth_error(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("t-1")),
            httpx.Response(200, json=token_answer("t-2")),
        ]
    )
    api = mock.get(f"{ORG}{ACCOUNT_PATH}").respond(401, json=UNAUTHORIZED)
    client = api_client(make_auth(credentials, clock))

    with pytest.raises(CRMAuthError) as refused:
        await client.request("GET", ACCOUNT_PATH)

    assert refused.value.status == 401
    assert "t-2" not in str(refused.value)
    assert token.call_count == 2, "one new token, no more"
    assert api.call_count == 2, "one resend, no more"
    await client.aclose()


async def test_concurrent_callers_share_one_refresh(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    issued: list[str] = []

    async def issue(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let the other callers reach the lock meanwhile
        issued.append(f"t-{len(issued) + 1}")
        return httpx.Response(200, json=token_answer(issued[-1]))

    async def account(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # every caller sends with the first token before any 401
        if request.headers["authorization"] == "Bearer t-1":
            return httpx.Response(401, json=UNAUTHORIZED)
        return httpx.Response(200, json={})

    mock.post(TOKEN_URL).mock(side_effect=issue)
    api = mock.get(f"{ORG}{ACCOUNT_PATH}").mock(side_effect=account)
    auth = make_auth(credentials, clock)
    client = api_client(auth)

    responses = await asyncio.gather(*(client.request("GET", ACCOUNT_PATH) for _ in range(5)))

    assert [response.status_code for response in responses] == [200] * 5
    assert issued == ["t-1", "t-2"], "one first token, one refresh, for five callers"
    assert sorted(call.request.headers["authorization"] for call in api.calls) == (
        ["Bearer t-1"] * 5 + ["Bearer t-2"] * 5
    )
    await client.aclose()
    await auth.aclose()


async def test_concurrent_first_callers_share_one_token_request(
    mock: respx.MockRouter, credentials: EntraClientCredentials, clock: Clock
) -> None:
    async def issue(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200, json=token_answer("t-1"))

    route = mock.post(TOKEN_URL).mock(side_effect=issue)
    auth = make_auth(credentials, clock)

    tokens = await asyncio.gather(*(auth.token() for _ in range(5)))

    assert route.call_count == 1
    assert all(token is tokens[0] for token in tokens)
    await auth.aclose()


def test_negative_margin_is_refused(credentials: EntraClientCredentials, clock: Clock) -> None:
    with pytest.raises(ValueError, match="refresh_margin_seconds"):
        make_auth(credentials, clock, refresh_margin_seconds=-1)


def test_sync_clients_are_refused_rather_than_sent_unauthenticated(
    credentials: EntraClientCredentials, clock: Clock
) -> None:
    auth = make_auth(credentials, clock)

    with httpx.Client(auth=auth) as client, pytest.raises(RuntimeError, match="AsyncClient"):
        client.get(f"{ORG}{ACCOUNT_PATH}")
