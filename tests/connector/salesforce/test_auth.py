"""Salesforce OAuth: signed JWT assertions, client credentials, sessions sent to the token's
instance, renewed before the timeout and after a 401, and no secret in any error or repr."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from structlog.testing import capture_logs

from connector.errors import CRMAuthError, PayloadError
from connector.http import RetryingClient, RetryPolicy
from connector.salesforce.auth import (
    JWT_BEARER_GRANT_TYPE,
    ClientCredentialsGrant,
    JwtBearerGrant,
    SalesforceAuth,
    SalesforceGrant,
    parse_token,
)

LOGIN = "https://login.salesforce.com"
MY_DOMAIN = "https://acme.my.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
TOKEN_URL = f"{LOGIN}/services/oauth2/token"
ORG_ID = "00D5g000004XyZaEAK"
USER_ID = "0055g00000AbCdEAAV"
ACCOUNT_PATH = "/services/data/v61.0/sobjects/Account/0015g00000XyZ12AAB"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def grant(private_pem: str) -> JwtBearerGrant:
    return JwtBearerGrant(
        client_id="3MVG9consumer-key",
        username="integration@acme.example",
        private_key_pem=private_pem,
    )


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def token_answer(access: str, *, instance: str = INSTANCE, **extra: Any) -> dict[str, Any]:
    return {
        "access_token": access,
        "instance_url": instance,
        "id": f"{LOGIN}/id/{ORG_ID}/{USER_ID}",
        "token_type": "Bearer",
        "scope": "api",
        **extra,
    }


def form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def make_auth(grant: SalesforceGrant, clock: Clock, **options: Any) -> SalesforceAuth:
    token_client = RetryingClient(
        base_url=grant.login_url, name="salesforce-token:test", policy=RetryPolicy(max_attempts=1)
    )
    return SalesforceAuth(grant=grant, client=token_client, clock=clock, **options)


def api_client(auth: SalesforceAuth) -> RetryingClient:
    # Created with the login URL: every request goes where the token says.
    return RetryingClient(
        base_url=LOGIN, name="salesforce:test", auth=auth, policy=RetryPolicy(max_attempts=1)
    )


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


# --- the grants --------------------------------------------------------------------------------


def test_jwt_assertion_is_signed_rs256_with_the_documented_claims(
    grant: JwtBearerGrant, rsa_key: rsa.RSAPrivateKey
) -> None:
    assertion = grant.assertion(now=NOW)

    header, claims, signature = assertion.split(".")
    assert "=" not in assertion, "base64url without padding"
    assert json.loads(b64url_decode(header)) == {"alg": "RS256"}
    assert json.loads(b64url_decode(claims)) == {
        "iss": "3MVG9consumer-key",
        "sub": "integration@acme.example",
        "aud": LOGIN,
        "exp": int(NOW.timestamp()) + 180,
    }
    # Raises InvalidSignature if the signature is not RS256 over header.claims with this key.
    rsa_key.public_key().verify(
        b64url_decode(signature),
        f"{header}.{claims}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_sandbox_assertion_is_addressed_to_the_sandbox_login_host(private_pem: str) -> None:
    sandbox = JwtBearerGrant(
        client_id="c",
        username="u@acme.example.sandbox",
        private_key_pem=private_pem,
        login_url="https://test.salesforce.com/",
    )

    claims = json.loads(b64url_decode(sandbox.assertion(now=NOW).split(".")[1]))

    assert sandbox.login_url == "https://test.salesforce.com"
    assert claims["aud"] == "https://test.salesforce.com"


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
    ],
)
def test_my_domain_login_keeps_the_generic_audience(
    private_pem: str, login_url: str, audience: str
) -> None:
    grant = JwtBearerGrant(
        client_id="c", username="u@acme.example", private_key_pem=private_pem, login_url=login_url
    )

    claims = json.loads(b64url_decode(grant.assertion(now=NOW).split(".")[1]))

    assert claims["aud"] == audience
    assert grant.login_url == login_url


def test_key_that_is_not_pem_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not a PEM private key") as refused:
        JwtBearerGrant(client_id="c", username="u", private_key_pem="not-a-key-SECRETBYTES")

    assert "SECRETBYTES" not in str(refused.value)


def test_damaged_pem_is_refused_without_echoing_it(private_pem: str) -> None:
    lines = private_pem.splitlines()
    damaged = "\n".join([lines[0], "QUJD" + lines[1][4:], *lines[2:5], lines[-1]])

    with pytest.raises(ValueError, match="could not be read") as refused:
        JwtBearerGrant(client_id="c", username="u", private_key_pem=damaged)

    assert lines[2] not in str(refused.value)
    assert refused.value.__cause__ is None


def test_encrypted_key_is_refused_with_a_clear_reason(rsa_key: rsa.RSAPrivateKey) -> None:
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()

    with pytest.raises(ValueError, match="encrypted"):
        JwtBearerGrant(client_id="c", username="u", private_key_pem=encrypted)


def test_non_rsa_key_is_refused() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )

    with pytest.raises(ValueError, match="must be an RSA key"):
        JwtBearerGrant(client_id="c", username="u", private_key_pem=ec_pem)


def test_grant_reprs_never_show_the_key_or_the_secret(grant: JwtBearerGrant) -> None:
    secret = ClientCredentialsGrant(
        client_id="c-1", client_secret="cc-SECRET-value", login_url=MY_DOMAIN
    )

    assert "PRIVATE" not in repr(grant)
    assert grant.private_key_pem.splitlines()[1] not in repr(grant)
    assert "consumer-key" in repr(grant)
    assert "cc-SECRET-value" not in repr(secret)
    assert "c-1" in repr(secret)


def test_client_credentials_grant_needs_the_my_domain_url() -> None:
    with pytest.raises(ValueError, match="My Domain"):
        ClientCredentialsGrant(client_id="c", client_secret="s", login_url=LOGIN)


# --- getting a token ---------------------------------------------------------------------------


async def test_jwt_token_request_posts_the_grant_type_and_a_verifiable_assertion(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock, rsa_key: rsa.RSAPrivateKey
) -> None:
    route = mock.post(TOKEN_URL).respond(200, json=token_answer("a-1", issued_at="1795435200000"))
    auth = make_auth(grant, clock)

    token = await auth.token()

    sent = form(route.calls.last.request)
    assert route.calls.last.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert set(sent) == {"grant_type", "assertion"}
    assert sent["grant_type"] == JWT_BEARER_GRANT_TYPE
    header, claims, signature = sent["assertion"].split(".")
    rsa_key.public_key().verify(
        b64url_decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    assert json.loads(b64url_decode(claims))["exp"] == int(NOW.timestamp()) + 180
    assert token.access_token == "a-1"
    assert token.instance_url == INSTANCE
    assert (token.organization_id, token.user_id) == (ORG_ID, USER_ID)
    assert token.issued_at == datetime.fromtimestamp(1795435200, tz=UTC)
    assert await auth.user_id() == USER_ID
    assert await auth.organization_id() == ORG_ID
    assert route.call_count == 1
    await auth.aclose()


async def test_client_credentials_token_request_posts_the_documented_form(
    mock: respx.MockRouter, clock: Clock
) -> None:
    route = mock.post(f"{MY_DOMAIN}/services/oauth2/token").respond(200, json=token_answer("a-1"))
    grant = ClientCredentialsGrant(
        client_id="c-1", client_secret="cc-secret", login_url=f"{MY_DOMAIN}/"
    )
    auth = make_auth(grant, clock)

    token = await auth.token()

    assert form(route.calls.last.request) == {
        "grant_type": "client_credentials",
        "client_id": "c-1",
        "client_secret": "cc-secret",
    }
    assert token.issued_at == NOW, "no issued_at in the answer: now"
    await auth.aclose()


async def test_refused_grant_is_an_auth_error_naming_the_reason_but_no_secret(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    route = mock.post(TOKEN_URL).respond(
        400,
        json={"error": "invalid_grant", "error_description": "user hasn't approved this consumer"},
    )
    auth = make_auth(grant, clock)

    with pytest.raises(CRMAuthError) as refused:
        await auth.token()

    assertion = form(route.calls.last.request)["assertion"]
    error = refused.value
    assert str(error) == (
        "Salesforce token request refused: invalid_grant (user hasn't approved this consumer)"
    )
    assert error.status == 400
    for secret in (assertion, *assertion.split("."), grant.private_key_pem.splitlines()[1]):
        assert secret not in str(error)
        assert secret not in error.body
        assert secret not in repr(error)
    assert error.__cause__ is None
    await auth.aclose()


async def test_refused_client_secret_never_reaches_the_error(
    mock: respx.MockRouter, clock: Clock
) -> None:
    # A body that quotes the request back must not carry it into the error either.
    mock.post(f"{MY_DOMAIN}/services/oauth2/token").respond(
        400,
        json={
            "error": "invalid_client",
            "error_description": "invalid client credentials",
            "request": "client_secret=cc-SECRET",
        },
    )
    grant = ClientCredentialsGrant(client_id="c-1", client_secret="cc-SECRET", login_url=MY_DOMAIN)
    auth = make_auth(grant, clock)

    with pytest.raises(CRMAuthError, match="invalid_client") as refused:
        await auth.token()

    assert "cc-SECRET" not in str(refused.value)
    assert "cc-SECRET" not in refused.value.body
    await auth.aclose()


async def test_refusal_without_an_oauth_error_body_names_the_status(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(400, text="<html>Bad Request</html>")
    auth = make_auth(grant, clock)

    with pytest.raises(CRMAuthError, match="refused with status 400"):
        await auth.token()
    await auth.aclose()


@pytest.mark.parametrize("missing", ["access_token", "instance_url", "id"])
async def test_token_answer_without_a_required_field_names_it(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock, missing: str
) -> None:
    answer = token_answer("a-1")
    del answer[missing]
    mock.post(TOKEN_URL).respond(200, json=answer)
    auth = make_auth(grant, clock)

    with pytest.raises(PayloadError, match=f"{missing} is missing"):
        await auth.token()
    await auth.aclose()


@pytest.mark.parametrize(
    "identity", [f"{LOGIN}/services/{ORG_ID}", f"{LOGIN}/id/{ORG_ID}", f"{LOGIN}/id/{ORG_ID}/a b"]
)
def test_identity_url_without_org_and_user_is_a_payload_error(identity: str) -> None:
    with pytest.raises(PayloadError, match="identity URL"):
        parse_token(token_answer("a-1", id=identity), now=NOW)


def test_token_issued_by_a_clock_ahead_of_ours_counts_from_now() -> None:
    ahead = str(int((NOW + timedelta(hours=1)).timestamp() * 1000))

    token = parse_token(token_answer("a-1", issued_at=ahead), now=NOW)

    assert token.issued_at == NOW


def test_token_repr_never_shows_the_access_token() -> None:
    token = parse_token(token_answer("00D!AQ-secret-session"), now=NOW)

    assert "secret-session" not in repr(token)
    assert USER_ID in repr(token)


async def test_token_issued_log_names_instance_user_and_org_only(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(200, json=token_answer("00D!AQ-secret-session"))
    auth = make_auth(grant, clock)

    with capture_logs() as logs:
        await auth.token()

    issued = [entry for entry in logs if entry["event"] == "salesforce_token_issued"]
    assert issued == [
        {
            "event": "salesforce_token_issued",
            "log_level": "info",
            "instance": "acme.my.salesforce.com",
            "user_id": USER_ID,
            "organization_id": ORG_ID,
        }
    ]
    assert "secret-session" not in repr(logs)
    await auth.aclose()


# --- API requests ------------------------------------------------------------------------------


async def test_api_request_goes_to_the_instance_url_with_the_bearer_token(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    mock.post(TOKEN_URL).respond(
        200, json=token_answer("a-1", instance="https://eu42.salesforce.com:8443")
    )
    api = mock.get(f"https://eu42.salesforce.com:8443{ACCOUNT_PATH}").respond(
        200, json={"Id": "0015g00000XyZ12AAB"}
    )
    client = api_client(make_auth(grant, clock))

    response = await client.request("GET", ACCOUNT_PATH, params={"fields": "Name,Industry"})

    sent = api.calls.last.request
    assert response.json() == {"Id": "0015g00000XyZ12AAB"}
    assert sent.url == httpx.URL(
        f"https://eu42.salesforce.com:8443{ACCOUNT_PATH}?fields=Name%2CIndustry"
    )
    assert sent.headers["authorization"] == "Bearer a-1"
    assert sent.headers["host"] == "eu42.salesforce.com:8443"
    await client.aclose()


async def test_expired_session_is_refreshed_once(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("a-1")),
            httpx.Response(200, json=token_answer("a-2")),
        ]
    )
    api = mock.patch(f"{INSTANCE}{ACCOUNT_PATH}").mock(
        side_effect=[httpx.Response(401, json=INVALID_SESSION), httpx.Response(204)]
    )
    auth = make_auth(grant, clock)
    client = api_client(auth)

    response = await client.request("PATCH", ACCOUNT_PATH, json={"Health_Score__c": 42})

    assert response.status_code == 204
    assert token.call_count == 2
    assert [call.request.headers["authorization"] for call in api.calls] == [
        "Bearer a-1",
        "Bearer a-2",
    ]
    assert [json.loads(call.request.content) for call in api.calls] == [{"Health_Score__c": 42}] * 2
    assert (await auth.token()).access_token == "a-2"
    await client.aclose()
    await auth.aclose()


async def test_session_refused_again_after_the_refresh_is_an_auth_error(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("a-1")),
            httpx.Response(200, json=token_answer("a-2")),
        ]
    )
    api = mock.get(f"{INSTANCE}{ACCOUNT_PATH}").respond(401, json=INVALID_SESSION)
    client = api_client(make_auth(grant, clock))

    with pytest.raises(CRMAuthError) as refused:
        await client.request("GET", ACCOUNT_PATH)

    assert refused.value.status == 401
    assert "a-2" not in str(refused.value)
    assert token.call_count == 2, "one new session, no more"
    assert api.call_count == 2, "one resend, no more"
    await client.aclose()


async def test_session_is_renewed_before_the_session_timeout(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("a-1")),
            httpx.Response(200, json=token_answer("a-2")),
        ]
    )
    api = mock.get(f"{INSTANCE}{ACCOUNT_PATH}").respond(200, json={})
    client = api_client(make_auth(grant, clock, session_seconds=3600, refresh_margin_seconds=600))

    await client.request("GET", ACCOUNT_PATH)
    clock.now = NOW + timedelta(seconds=2999)
    await client.request("GET", ACCOUNT_PATH)
    clock.now = NOW + timedelta(seconds=3000)
    await client.request("GET", ACCOUNT_PATH)

    assert token.call_count == 2
    assert [call.request.headers["authorization"] for call in api.calls] == [
        "Bearer a-1",
        "Bearer a-1",
        "Bearer a-2",
    ]
    await client.aclose()


async def test_request_follows_the_instance_of_the_new_session(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json=token_answer("a-1", instance="https://na1.salesforce.com")),
            httpx.Response(200, json=token_answer("a-2", instance="https://na2.salesforce.com")),
        ]
    )
    old = mock.get(f"https://na1.salesforce.com{ACCOUNT_PATH}").respond(401, json=INVALID_SESSION)
    new = mock.get(f"https://na2.salesforce.com{ACCOUNT_PATH}").respond(200, json={})
    client = api_client(make_auth(grant, clock))

    await client.request("GET", ACCOUNT_PATH)

    assert old.call_count == 1
    assert new.calls.last.request.headers["host"] == "na2.salesforce.com"
    await client.aclose()


async def test_concurrent_callers_share_one_refresh(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    issued: list[str] = []

    async def issue(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # let the other callers reach the lock meanwhile
        issued.append(f"a-{len(issued) + 1}")
        return httpx.Response(200, json=token_answer(issued[-1]))

    async def account(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # every caller sends with the first token before any 401
        if request.headers["authorization"] == "Bearer a-1":
            return httpx.Response(401, json=INVALID_SESSION)
        return httpx.Response(200, json={})

    mock.post(TOKEN_URL).mock(side_effect=issue)
    api = mock.get(f"{INSTANCE}{ACCOUNT_PATH}").mock(side_effect=account)
    auth = make_auth(grant, clock)
    client = api_client(auth)

    responses = await asyncio.gather(*(client.request("GET", ACCOUNT_PATH) for _ in range(5)))

    assert [response.status_code for response in responses] == [200] * 5
    assert issued == ["a-1", "a-2"], "one first session, one refresh, for five callers"
    assert sorted(call.request.headers["authorization"] for call in api.calls) == (
        ["Bearer a-1"] * 5 + ["Bearer a-2"] * 5
    )
    await client.aclose()
    await auth.aclose()


async def test_concurrent_first_callers_share_one_token_request(
    mock: respx.MockRouter, grant: JwtBearerGrant, clock: Clock
) -> None:
    async def issue(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return httpx.Response(200, json=token_answer("a-1"))

    route = mock.post(TOKEN_URL).mock(side_effect=issue)
    auth = make_auth(grant, clock)

    tokens = await asyncio.gather(*(auth.token() for _ in range(5)))

    assert route.call_count == 1
    assert all(token is tokens[0] for token in tokens)
    await auth.aclose()


def test_margin_must_leave_part_of_the_session(grant: JwtBearerGrant, clock: Clock) -> None:
    with pytest.raises(ValueError, match="refresh_margin_seconds"):
        make_auth(grant, clock, session_seconds=300, refresh_margin_seconds=300)


def test_sync_clients_are_refused_rather_than_sent_unauthenticated(
    grant: JwtBearerGrant, clock: Clock
) -> None:
    auth = make_auth(grant, clock)

    with httpx.Client(auth=auth) as client, pytest.raises(RuntimeError, match="AsyncClient"):
        client.get(f"{INSTANCE}{ACCOUNT_PATH}")
