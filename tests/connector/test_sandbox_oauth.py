"""The sandbox's OAuth server: authorize, token exchange and refresh, metadata, expiry at /crm."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connector.sandbox import SandboxState, create_sandbox_app

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
REDIRECT = "http://plugin.test/oauth/callback"
FIXED_TOKEN = "pat-fixed"
COMPANIES = "/crm/v3/objects/companies"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SandboxState:
    return SandboxState(
        clock=clock, oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET, app_id=42
    )


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(state, access_token=FIXED_TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


async def _code(client: httpx.AsyncClient, **extra: str) -> str:
    response = await client.get(
        "/oauth/authorize",
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT,
            "scope": "oauth crm.objects.companies.read",
            "state": "xyz",
            **extra,
        },
    )
    assert response.status_code == 302
    return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]


def _exchange_form(code: str, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        "code": code,
        **overrides,
    }


async def _tokens(client: httpx.AsyncClient) -> dict[str, object]:
    response = await client.post("/oauth/v1/token", data=_exchange_form(await _code(client)))
    assert response.status_code == 200, response.text
    tokens: dict[str, object] = response.json()
    return tokens


def _assert_oauth_error(response: httpx.Response, status: str) -> None:
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["message"], str)
    assert isinstance(body["correlationId"], str)


async def test_authorize_approves_at_once_and_redirects_with_code_and_state(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/oauth/authorize",
        params={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "scope": "oauth", "state": "s1"},
    )

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["s1"]
    assert query["code"][0]


async def test_authorize_for_an_unknown_client_answers_400_bad_client_id(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/oauth/authorize", params={"client_id": "other", "redirect_uri": REDIRECT}
    )

    _assert_oauth_error(response, "BAD_CLIENT_ID")


async def test_code_exchange_answers_hubspot_token_shape(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    tokens = await _tokens(client)

    assert set(tokens) == {
        "token_type",
        "refresh_token",
        "access_token",
        "expires_in",
        "token_use",
        "hub_id",
        "scopes",
    }
    assert tokens["token_type"] == "bearer"
    assert tokens["token_use"] == "access_token"
    assert tokens["expires_in"] == 1800
    assert tokens["hub_id"] == state.portal_id
    assert tokens["scopes"] == ["oauth", "crm.objects.companies.read"]


async def test_a_code_is_single_use(client: httpx.AsyncClient) -> None:
    code = await _code(client)
    await client.post("/oauth/v1/token", data=_exchange_form(code))

    again = await client.post("/oauth/v1/token", data=_exchange_form(code))

    _assert_oauth_error(again, "BAD_AUTH_CODE")
    assert again.json()["message"] == "missing or unknown auth code"


async def test_an_old_code_answers_400_expired_auth_code(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    code = await _code(client)
    clock.advance(601)

    response = await client.post("/oauth/v1/token", data=_exchange_form(code))

    _assert_oauth_error(response, "EXPIRED_AUTH_CODE")


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"client_id": "other"}, "BAD_CLIENT_ID"),
        ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
        ({"redirect_uri": "http://elsewhere.test/cb"}, "BAD_REDIRECT_URI"),
        ({"grant_type": "password"}, "BAD_GRANT_TYPE"),
        ({"code": "made-up"}, "BAD_AUTH_CODE"),
    ],
)
async def test_a_bad_code_exchange_answers_400_with_hubspot_status(
    client: httpx.AsyncClient, overrides: dict[str, str], status: str
) -> None:
    code = await _code(client)

    response = await client.post("/oauth/v1/token", data={**_exchange_form(code), **overrides})

    _assert_oauth_error(response, status)


async def test_refresh_issues_a_new_access_token_and_keeps_the_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    tokens = await _tokens(client)

    response = await client.post(
        "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": str(tokens["refresh_token"]),
        },
    )

    assert response.status_code == 200
    refreshed = response.json()
    assert refreshed["refresh_token"] == tokens["refresh_token"]
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["expires_in"] == 1800


async def test_a_bad_refresh_token_answers_400_bad_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": "na1-unknown",
        },
    )

    _assert_oauth_error(response, "BAD_REFRESH_TOKEN")
    assert response.json()["message"] == "missing or invalid refresh token"


async def test_access_token_metadata_describes_the_token(
    state: SandboxState, client: httpx.AsyncClient, clock: Clock
) -> None:
    tokens = await _tokens(client)
    clock.advance(100)

    response = await client.get(f"/oauth/v1/access-tokens/{tokens['access_token']}")

    assert response.status_code == 200
    body = response.json()
    assert body["token"] == tokens["access_token"]
    assert body["hub_id"] == state.portal_id
    assert body["app_id"] == 42
    assert body["scopes"] == ["oauth", "crm.objects.companies.read"]
    assert body["expires_in"] == 1700
    assert body["token_type"] == "access"
    assert isinstance(body["user"], str)
    assert isinstance(body["hub_domain"], str)
    assert isinstance(body["user_id"], int)


async def test_metadata_of_an_unknown_token_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/oauth/v1/access-tokens/nope")

    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


async def test_crm_accepts_an_oauth_token_besides_the_fixed_one(
    client: httpx.AsyncClient,
) -> None:
    tokens = await _tokens(client)

    with_oauth = await client.get(
        COMPANIES, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    with_fixed = await client.get(COMPANIES, headers={"Authorization": f"Bearer {FIXED_TOKEN}"})

    assert (with_oauth.status_code, with_fixed.status_code) == (200, 200)


async def test_an_expired_oauth_token_answers_401_expired_authentication(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    tokens = await _tokens(client)
    clock.advance(1800 + 90)

    response = await client.get(
        COMPANIES, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )

    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["message"] == "The OAuth token used to make this call expired 1 minute(s) ago."
    assert body["context"] == {"expire time": ["2026-03-02T09:30:00.000Z"]}


async def test_oauth_control_api_shortens_token_life_and_expires_issued_tokens(
    client: httpx.AsyncClient,
) -> None:
    old = await _tokens(client)

    knobs = await client.post(
        "/_sandbox/oauth", json={"access_token_ttl_seconds": 5, "expire_all": True}
    )
    new = await _tokens(client)
    old_answer = await client.get(
        COMPANIES, headers={"Authorization": f"Bearer {old['access_token']}"}
    )

    assert knobs.status_code == 200
    assert knobs.json()["access_ttl_seconds"] == 5
    assert "client_secret" not in knobs.json()
    assert new["expires_in"] == 5
    assert old_answer.json()["category"] == "EXPIRED_AUTHENTICATION"


async def test_oauth_control_api_refuses_a_bad_ttl_with_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/_sandbox/oauth", json={"access_token_ttl_seconds": 0})

    assert response.status_code == 400
    assert "access_token_ttl_seconds" in response.json()["message"]


async def test_a_sandbox_without_oauth_app_refuses_the_token_endpoint(clock: Clock) -> None:
    app = create_sandbox_app(SandboxState(clock=clock))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s"
    ) as client:
        response = await client.post(
            "/oauth/v1/token",
            data={"grant_type": "refresh_token", "client_id": "x", "refresh_token": "y"},
        )

    _assert_oauth_error(response, "BAD_CLIENT_ID")
