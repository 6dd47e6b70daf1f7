"""Dataverse service protection limits read into the shared client's terms, and what the shared
client then does with them.

Headers and bodies are as "Service protection API limits" (Power Apps docs) and real answers
show them: `x-ms-ratelimit-burst-remaining-xrm-requests: 5993`,
`x-ms-ratelimit-time-remaining-xrm-requests: 1,199.46`, a 429 with `Retry-After` in seconds and
`{"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000 over
time window of 300 seconds."}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connector.dynamics.limits import (
    BURST_REMAINING,
    CONCURRENT_REQUESTS,
    EXECUTION_TIME,
    NUMBER_OF_REQUESTS,
    TIME_REMAINING,
    DynamicsLimits,
    service_protection_policy,
)
from connector.errors import CRMRateLimitPaused, CRMRetriesExhausted
from connector.http import LimitWindow, RetryingClient, RetryPolicy
from testkit import FakeTime

ORG = "https://contoso.crm.dynamics.com"
PATH = "/api/data/v9.2/accounts"

REQUESTS_BODY = {
    "error": {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
    }
}
EXECUTION_BODY = {
    "error": {
        "code": "0x80072321",
        "message": "Combined execution time of incoming requests exceeded limit of 1,200,000 "
        "milliseconds over time window of 300 seconds. Decrease number of concurrent requests "
        "or reduce the duration of requests and try again later.",
    }
}
CONCURRENT_BODY = {
    "error": {
        "code": "-2147015898",
        "message": "Number of concurrent requests exceeded the limit of 52.",
    }
}


def answer(status: int = 200, *, json: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json=json,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
        request=httpx.Request("GET", f"{ORG}{PATH}"),
    )


def with_limits(status: int = 200, *, requests: str, seconds: str, **extra: Any) -> httpx.Response:
    response = answer(status, **extra)
    response.headers[BURST_REMAINING] = requests
    response.headers[TIME_REMAINING] = seconds
    return response


# --- reading answers ---------------------------------------------------------------------------


def test_the_rate_limit_headers_become_the_two_300_second_windows() -> None:
    feedback = DynamicsLimits()(with_limits(requests="5993", seconds="1,199.46"))
    assert feedback is not None
    assert feedback.windows == (
        LimitWindow(5993, 300.0, limit=6000),
        LimitWindow(1199, 300.0, limit=1200),
    )
    assert feedback.pause_seconds is None
    assert feedback.policy is None


def test_an_environment_with_higher_limits_raises_the_assumed_limit() -> None:
    feedback = DynamicsLimits()(with_limits(requests="7999", seconds="1,200.00"))
    assert feedback is not None
    assert feedback.windows[0] == LimitWindow(7999, 300.0, limit=7999)


def test_an_answer_without_the_headers_says_nothing() -> None:
    assert DynamicsLimits()(answer(200, json={"value": []})) is None


@pytest.mark.parametrize("value", ["", "lots", "-5", "1e3", "1 000"])
def test_malformed_header_values_are_ignored(value: str) -> None:
    assert DynamicsLimits()(with_limits(requests=value, seconds=value)) is None


def test_a_service_protection_429_holds_the_whole_connection_for_retry_after() -> None:
    feedback = DynamicsLimits()(answer(429, json=REQUESTS_BODY, Retry_After="12"))
    assert feedback is not None
    assert feedback.policy == NUMBER_OF_REQUESTS
    assert feedback.pause_seconds is None
    assert feedback.windows == (LimitWindow(0, 12.0),)


def test_a_retry_after_too_long_to_wait_within_a_request_pauses_the_connection() -> None:
    feedback = DynamicsLimits()(answer(429, json=EXECUTION_BODY, Retry_After="300"))
    assert feedback is not None
    assert feedback.policy == EXECUTION_TIME
    assert feedback.pause_seconds == 300.0


def test_the_decimal_error_code_is_understood_too() -> None:
    feedback = DynamicsLimits()(answer(429, json=CONCURRENT_BODY, Retry_After="1"))
    assert feedback is not None
    assert feedback.policy == CONCURRENT_REQUESTS
    assert feedback.windows == (LimitWindow(0, 1.0),)


def test_a_429_without_retry_after_or_body_still_holds() -> None:
    feedback = DynamicsLimits(default_retry_after_seconds=7)(answer(429))
    assert feedback is not None
    assert feedback.policy == NUMBER_OF_REQUESTS
    assert feedback.windows == (LimitWindow(0, 7.0),)


@pytest.mark.parametrize(
    ("response", "policy"),
    [
        (answer(200, json=REQUESTS_BODY), None),  # a success quoting nothing of ours
        (answer(400, json={"error": {"code": "0x80044331", "message": "validation"}}), None),
        (answer(503, json=EXECUTION_BODY), EXECUTION_TIME),
        (answer(429, json=["not", "an", "object"]), NUMBER_OF_REQUESTS),
        (httpx.Response(500, content=b"<html>busy</html>"), None),
    ],
)
def test_service_protection_policy(response: httpx.Response, policy: str | None) -> None:
    assert service_protection_policy(response) == policy


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        DynamicsLimits(request_limit=0)
    with pytest.raises(ValueError, match="positive"):
        DynamicsLimits(pause_after_seconds=0)


# --- what the shared client does with them -----------------------------------------------------


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=ORG, assert_all_called=False)


@pytest.fixture
def make_client(router: respx.Router, fake_time: FakeTime) -> Callable[..., RetryingClient]:
    def make(**overrides: Any) -> RetryingClient:
        options: dict[str, Any] = {
            "base_url": ORG,
            "name": "dynamics:test",
            "transport": httpx.MockTransport(router.handler),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
            "limits": DynamicsLimits(),
            "policy": RetryPolicy(max_attempts=3, base_delay_seconds=0.0),
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


async def test_a_429_is_retried_after_retry_after_and_holds_the_next_request_too(
    router, fake_time, make_client
) -> None:
    sent_at: list[float] = []
    answers = [
        httpx.Response(429, json=REQUESTS_BODY, headers={"Retry-After": "20"}),
        httpx.Response(200, json={"value": []}),
    ]

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    router.get(PATH).mock(side_effect=side_effect)
    client = make_client()
    try:
        response = await client.request("GET", PATH)
        assert response.status_code == 200
        assert sent_at[1] - sent_at[0] >= 20.0
    finally:
        await client.aclose()


async def test_a_429_holds_the_other_requests_of_the_connection(
    router, fake_time, make_client
) -> None:
    sent_at: list[tuple[str, float]] = []

    def refused(request: httpx.Request) -> httpx.Response:
        sent_at.append(("first", fake_time.now))
        return httpx.Response(429, json=REQUESTS_BODY, headers={"Retry-After": "30"})

    def other(request: httpx.Request) -> httpx.Response:
        sent_at.append(("other", fake_time.now))
        return httpx.Response(200, json={})

    router.get(PATH).mock(side_effect=refused)
    router.get("/api/data/v9.2/contacts").mock(side_effect=other)
    client = make_client(policy=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(CRMRetriesExhausted):
            await client.request("GET", PATH)
        await client.request("GET", "/api/data/v9.2/contacts")
    finally:
        await client.aclose()
    assert sent_at[1][0] == "other"
    assert sent_at[1][1] - sent_at[0][1] >= 30.0


async def test_a_nearly_used_up_window_slows_the_client_down(
    router, fake_time, make_client
) -> None:
    sent_at: list[float] = []

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        # 59 requests left of 6,000: under the 10% reserve.
        return httpx.Response(
            200,
            json={},
            headers={BURST_REMAINING: "59", TIME_REMAINING: "1,100.00"},
        )

    router.get(PATH).mock(side_effect=side_effect)
    client = make_client()
    try:
        await client.request("GET", PATH)
        await client.request("GET", PATH)
    finally:
        await client.aclose()
    assert sent_at[1] - sent_at[0] == pytest.approx(300.0 / 60)


async def test_a_long_retry_after_pauses_the_connection_without_sending(
    router, fake_time, make_client
) -> None:
    route = router.get(PATH).mock(
        return_value=httpx.Response(429, json=EXECUTION_BODY, headers={"Retry-After": "240"})
    )
    client = make_client()
    try:
        with pytest.raises(CRMRateLimitPaused) as paused:
            await client.request("GET", PATH)
        assert paused.value.retry_after == pytest.approx(240.0)
        with pytest.raises(CRMRateLimitPaused):
            await client.request("GET", PATH)
    finally:
        await client.aclose()
    assert route.call_count == 1
