"""HubSpot's rate-limit headers and 429 bodies, read by connector.hubspot.ratelimit and acted on
by the shared client (mocked at the transport with respx, on a fake clock)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from connector.errors import CRMRateLimitPaused, CRMRetriesExhausted
from connector.http import LimitFeedback, LimitWindow, RetryingClient, RetryPolicy
from connector.hubspot.ratelimit import HubSpotLimits, seconds_to_next_midnight
from testkit import FakeTime

API = "https://hubspot.api.test"
PATH = "/crm/v3/objects/companies/batch/update"
# 18:00 UTC: six hours to midnight UTC.
SERVER_NOW = datetime(2025, 3, 4, 18, 0, 0, tzinfo=UTC)
DATE = format_datetime(SERVER_NOW, usegmt=True)


def rate_limited(policy: str, **headers: str) -> httpx.Response:
    body = {
        "status": "error",
        "message": f"You have reached your {policy.lower()} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
        "policyName": policy,
    }
    return httpx.Response(429, json=body, headers={"Date": DATE, **headers})


def window_headers(
    remaining: int, *, limit: int = 100, interval_ms: int = 10_000
) -> dict[str, str]:
    return {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(interval_ms),
        "X-HubSpot-RateLimit-Max": str(limit),
        "X-HubSpot-RateLimit-Remaining": str(remaining),
    }


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=API, assert_all_called=False)


@pytest.fixture
def make_client(router: respx.Router, fake_time: FakeTime) -> Callable[..., RetryingClient]:
    def make(**overrides: Any) -> RetryingClient:
        options: dict[str, Any] = {
            "base_url": API,
            "name": "hubspot:test",
            "transport": httpx.MockTransport(router.handler),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
            "limits": HubSpotLimits(now=lambda: SERVER_NOW),
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


def answering(
    fake_time: FakeTime, answers: list[httpx.Response]
) -> tuple[list[float], Callable[[httpx.Request], httpx.Response]]:
    sent_at: list[float] = []
    pending = list(answers)

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return sent_at, side_effect


def test_all_rate_limit_headers_are_read_into_windows() -> None:
    headers = {
        **window_headers(57, limit=110),
        "X-HubSpot-RateLimit-Secondly": "11",
        "X-HubSpot-RateLimit-Secondly-Remaining": "6",
        "X-HubSpot-RateLimit-Daily": "250000",
        "X-HubSpot-RateLimit-Daily-Remaining": "249900",
    }
    feedback = HubSpotLimits()(httpx.Response(200, headers=headers))
    assert feedback == LimitFeedback(
        windows=(LimitWindow(57, 10.0, limit=110), LimitWindow(6, 1.0, limit=11))
    )


def test_malformed_or_missing_headers_say_nothing() -> None:
    limits = HubSpotLimits()
    assert limits(httpx.Response(200)) is None
    garbage = {"X-HubSpot-RateLimit-Remaining": "-3", "X-HubSpot-RateLimit-Daily-Remaining": "x"}
    assert limits(httpx.Response(200, headers=garbage)) is None


async def test_nearly_used_ten_second_window_slows_the_client_down(router, fake_time, make_client):
    sent_at, side_effect = answering(
        fake_time, [httpx.Response(200, headers=window_headers(0)), httpx.Response(200)]
    )
    router.post(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        await client.request("POST", PATH)
        await client.request("POST", PATH)

    assert sent_at[1] - sent_at[0] == 10.0


async def test_rolling_429_is_retried_no_earlier_than_its_retry_after(
    router, fake_time, make_client, monkeypatch
):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    sent_at, side_effect = answering(
        fake_time,
        [
            rate_limited("TEN_SECONDLY_ROLLING", **{"Retry-After": "12"}),
            httpx.Response(200, json={"status": "COMPLETE"}),
        ],
    )
    router.post(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        response = await client.request("POST", PATH)

    assert response.status_code == 200
    assert sent_at[1] - sent_at[0] == 12.0


async def test_rolling_429_without_headers_waits_out_the_ten_second_window(
    router, fake_time, make_client, monkeypatch
):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    sent_at, side_effect = answering(
        fake_time, [rate_limited("TEN_SECONDLY_ROLLING"), httpx.Response(200)]
    )
    router.post(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        await client.request("POST", PATH)

    assert sent_at[1] - sent_at[0] == 10.0


async def test_daily_429_pauses_until_midnight_utc_and_sends_nothing_until_then(
    router, fake_time, make_client
):
    route = router.post(PATH).mock(
        side_effect=[rate_limited("DAILY"), httpx.Response(200, json={"status": "COMPLETE"})]
    )

    async with make_client(policy=RetryPolicy(max_attempts=5)) as client:
        with pytest.raises(CRMRateLimitPaused) as raised:
            await client.request("POST", PATH)
        assert route.call_count == 1, "a daily 429 is not retried"
        assert raised.value.retry_after == 6 * 3600
        assert not isinstance(raised.value, CRMRetriesExhausted)

        fake_time.now += 6 * 3600 - 1
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("POST", PATH)
        assert route.call_count == 1, "refused locally while paused"
        assert refused.value.retry_after == 1.0

        fake_time.now += 1
        response = await client.request("POST", PATH)

    assert response.status_code == 200
    assert route.call_count == 2


async def test_daily_429_with_retry_after_pauses_that_long(router, make_client):
    router.post(PATH).mock(return_value=rate_limited("DAILY", **{"Retry-After": "90"}))

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused) as raised:
            await client.request("POST", PATH)

    assert raised.value.retry_after == 90.0


async def test_success_that_uses_up_the_daily_allowance_pauses_the_next_call(router, make_client):
    headers = {
        "Date": DATE,
        "X-HubSpot-RateLimit-Daily": "250000",
        "X-HubSpot-RateLimit-Daily-Remaining": "0",
    }
    route = router.post(PATH).mock(return_value=httpx.Response(200, headers=headers))

    async with make_client() as client:
        await client.request("POST", PATH)
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("POST", PATH)

    assert route.call_count == 1
    assert refused.value.retry_after == 6 * 3600


async def test_answers_without_rate_limit_headers_keep_the_usual_retry_policy(
    router, fake_time, make_client
):
    router.post(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
    )

    async with make_client() as client:
        response = await client.request("POST", PATH)

    assert response.status_code == 200
    assert fake_time.sleeps == [7.0]


def test_daily_reset_follows_the_portal_time_zone_when_given() -> None:
    eastern = timezone(timedelta(hours=-5))
    # 18:00 UTC is 13:00 at UTC-5: eleven hours to that portal's midnight.
    assert seconds_to_next_midnight(SERVER_NOW, eastern) == 11 * 3600
    limits = HubSpotLimits(reset_zone=eastern)
    feedback = limits(rate_limited("DAILY"))
    assert feedback is not None
    assert (feedback.policy, feedback.pause_seconds) == ("DAILY", 11 * 3600)
