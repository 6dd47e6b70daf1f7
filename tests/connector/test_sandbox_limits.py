"""Sandbox rate limits like HubSpot's: headers on every /crm answer, 429 when enforced, knobs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connector.sandbox import SandboxState, create_sandbox_app

COMPANIES = "/crm/v3/objects/companies"
HEADERS = (
    "X-HubSpot-RateLimit-Daily",
    "X-HubSpot-RateLimit-Daily-Remaining",
    "X-HubSpot-RateLimit-Interval-Milliseconds",
    "X-HubSpot-RateLimit-Max",
    "X-HubSpot-RateLimit-Remaining",
    "X-HubSpot-RateLimit-Secondly",
    "X-HubSpot-RateLimit-Secondly-Remaining",
)


class Clock:
    """A clock the test moves by hand."""

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
    return SandboxState(clock=clock)


@pytest.fixture
async def client(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(state))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox", headers={"Authorization": "Bearer a"}
    ) as client:
        yield client


async def _limit(client: httpx.AsyncClient, **knobs: object) -> httpx.Response:
    response = await client.post("/_sandbox/limits", json=knobs)
    assert response.status_code == 200, response.text
    return response


async def test_every_crm_answer_carries_the_hubspot_rate_limit_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(COMPANIES)

    assert all(name in response.headers for name in HEADERS)
    assert response.headers["X-HubSpot-RateLimit-Max"] == "100"
    assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert response.headers["X-HubSpot-RateLimit-Remaining"] == "99"
    assert response.headers["X-HubSpot-RateLimit-Secondly"] == "10"
    assert response.headers["X-HubSpot-RateLimit-Secondly-Remaining"] == "9"
    assert response.headers["X-HubSpot-RateLimit-Daily"] == "250000"
    assert response.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "249999"


async def test_control_routes_carry_no_rate_limit_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/_sandbox/limits")

    assert "X-HubSpot-RateLimit-Remaining" not in response.headers


async def test_remaining_counts_down_per_token_and_refills_as_the_window_rolls(
    state: SandboxState, clock: Clock
) -> None:
    app = create_sandbox_app(state)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://s") as anonymous,
        httpx.AsyncClient(
            transport=transport, base_url="http://s", headers={"Authorization": "Bearer b"}
        ) as other,
    ):
        for _ in range(3):
            await anonymous.get(COMPANIES)
            clock.advance(2)
        first_of_other = await other.get(COMPANIES)
        clock.advance(5)  # the first call is now 11 s old
        later = await anonymous.get(COMPANIES)

    assert first_of_other.headers["X-HubSpot-RateLimit-Remaining"] == "99"
    assert later.headers["X-HubSpot-RateLimit-Remaining"] == "97"
    assert later.headers["X-HubSpot-RateLimit-Daily-Remaining"] == str(250000 - 4)


async def test_enforced_window_answers_429_ten_secondly_rolling_until_it_rolls(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    await _limit(client, window_max=2, enforce=True)

    answers = [await client.get(COMPANIES) for _ in range(3)]
    clock.advance(10.001)
    after = await client.get(COMPANIES)

    assert [a.status_code for a in answers] == [200, 200, 429]
    body = answers[2].json()
    assert body["status"] == "error"
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert isinstance(body["correlationId"], str)
    assert answers[2].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answers[2].headers["X-HubSpot-RateLimit-Max"] == "2"
    assert after.status_code == 200


async def test_enforced_daily_allowance_answers_429_daily_until_the_next_day(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    await _limit(client, daily=1, enforce=True)

    first = await client.get(COMPANIES)
    clock.advance(60)
    second = await client.get(COMPANIES)
    clock.advance(86400)
    next_day = await client.get(COMPANIES)

    assert (first.status_code, second.status_code, next_day.status_code) == (200, 429, 200)
    assert second.json()["policyName"] == "DAILY"
    assert second.json()["message"] == "You have reached your daily limit."
    assert second.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"


async def test_limits_are_reported_but_not_enforced_by_default(
    client: httpx.AsyncClient,
) -> None:
    await _limit(client, window_max=1)

    answers = [await client.get(COMPANIES) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[2].headers["X-HubSpot-RateLimit-Remaining"] == "0"


async def test_forced_faults_and_refusals_carry_headers_without_using_the_window(
    state: SandboxState,
) -> None:
    app = create_sandbox_app(state, access_token="right")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://s",
        headers={"Authorization": "Bearer right"},
    ) as client:
        state.faults.fail_next(1, 503)
        forced = await client.get(COMPANIES)
        refused = await client.get(COMPANIES, headers={"Authorization": "Bearer wrong"})
        counted = await client.get(COMPANIES)

    assert forced.status_code == 503
    assert forced.headers["X-HubSpot-RateLimit-Remaining"] == "100"
    assert refused.status_code == 401
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "100"
    assert counted.headers["X-HubSpot-RateLimit-Remaining"] == "99"


async def test_injected_429_still_works_next_to_the_limiter(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    state.faults.fail_next(1, 429, retry_after=1)

    response = await client.get(COMPANIES)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["errorType"] == "RATE_LIMIT"


async def test_limits_control_api_reads_sets_and_restores_the_knobs(
    client: httpx.AsyncClient,
) -> None:
    await client.get(COMPANIES)

    set_body = (
        await _limit(client, window_max=5, interval_ms=1000, daily=50, enforce=True, latency_ms=0)
    ).json()
    restored = (await client.delete("/_sandbox/limits")).json()

    assert set_body["window_max"] == 5
    assert set_body["interval_ms"] == 1000
    assert set_body["daily"] == 50
    assert set_body["enforce"] is True
    assert list(set_body["usage"].values()) == [{"window": 1, "daily": 1}]
    # Keys are digests: the control API never shows a token.
    assert "a" not in set_body["usage"]
    assert restored["window_max"] == 100
    assert restored["enforce"] is False
    assert restored["usage"] == {}


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"window_max": 0}, "window_max"),
        ({"daily": -1}, "daily"),
        ({"enforce": "yes"}, "enforce"),
        ({"latency_ms": 1.5}, "latency_ms"),
    ],
)
async def test_limits_control_api_refuses_bad_knobs_with_400_naming_them(
    client: httpx.AsyncClient, knobs: dict[str, object], named: str
) -> None:
    response = await client.post("/_sandbox/limits", json=knobs)

    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert named in response.json()["message"]


async def test_latency_knob_delays_every_crm_answer(
    state: SandboxState, client: httpx.AsyncClient
) -> None:
    await _limit(client, latency_ms=50)

    started = time.perf_counter()
    await client.get(COMPANIES)
    elapsed = time.perf_counter() - started

    assert elapsed >= 0.05
    assert state.requests[-1].latency_seconds == 0.05
    assert (await client.get("/_sandbox/limits")).json()["latency_ms"] == 50
