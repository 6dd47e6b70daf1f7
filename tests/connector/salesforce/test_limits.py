"""Salesforce's API limits: `Sforce-Limit-Info` slows the shared client down, a
`REQUEST_LIMIT_EXCEEDED` refusal pauses it, and nothing malformed ever breaks a request."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connector.errors import CRMAuthError, CRMRateLimitPaused
from connector.http import LimitFeedback, LimitWindow, RetryingClient, RetryPolicy
from connector.salesforce.limits import SalesforceLimits
from testkit import FakeTime

INSTANCE = "https://acme.my.salesforce.com"
PATH = "/services/data/v61.0/query"
TOTAL = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
CONCURRENT = [
    {"message": "ConcurrentPerOrgLongTxn Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
]


def answer(
    status: int = 200, *, usage: str | bytes | None = None, body: Any = None
) -> httpx.Response:
    if isinstance(usage, str):
        usage = usage.encode()
    headers = {b"Sforce-Limit-Info": usage} if usage is not None else {}
    if body is None:
        return httpx.Response(status, headers=headers)
    if isinstance(body, bytes):
        return httpx.Response(status, headers=headers, content=body)
    return httpx.Response(status, headers=headers, json=body)


# --- the inspector -----------------------------------------------------------------------------


def test_api_usage_becomes_a_rolling_daily_window() -> None:
    feedback = SalesforceLimits()(answer(usage="api-usage=18/5000"))

    assert feedback == LimitFeedback(
        windows=(LimitWindow(remaining=4982, resets_in_seconds=86_400, limit=5000),),
        policy="TotalRequests",
    )


def test_other_parts_of_the_limit_info_are_ignored() -> None:
    usage = "per-app-api-usage=17/250(appName=sample-connected-app); api-usage=25/5000"

    feedback = SalesforceLimits()(answer(usage=usage))

    assert feedback is not None
    assert feedback.windows == (LimitWindow(4975, 86_400, limit=5000),)


@pytest.mark.parametrize(
    "usage",
    [
        "",
        "api-usage",
        "api-usage=",
        "api-usage=abc/5000",
        "api-usage=18",
        "api-usage=18/",
        "api-usage=18/0",
        "api-usage=-1/5000",
        "api-usage=18/5000/3",
        "api-usage=1e3/5000",
        "api-usage=\uff11\uff18/5000",  # full-width digits
        "per-app-api-usage=17/250(appName=x)",
        "api-usage=99999999999999999999/5000",
        ";;==//",
    ],
)
def test_malformed_limit_info_is_ignored(usage: str) -> None:
    assert SalesforceLimits()(answer(usage=usage)) is None


def test_answer_without_limit_info_says_nothing() -> None:
    assert SalesforceLimits()(answer()) is None


@pytest.mark.parametrize("usage", ["api-usage=5000/5000", "api-usage=110018/100000"])
def test_used_up_allowance_on_a_success_pauses_without_a_day_long_hold(usage: str) -> None:
    feedback = SalesforceLimits(daily_pause_seconds=900)(answer(usage=usage))

    assert feedback == LimitFeedback(pause_seconds=900, policy="TotalRequests")


def test_total_requests_refusal_pauses_for_the_daily_pause() -> None:
    limits = SalesforceLimits()

    feedback = limits(answer(403, usage="api-usage=5012/5000", body=TOTAL))

    assert feedback is not None
    assert feedback.pause_seconds == 1800
    assert feedback.policy == "TotalRequests"


def test_daily_pause_is_configurable() -> None:
    feedback = SalesforceLimits(daily_pause_seconds=600)(answer(403, body=TOTAL))

    assert feedback == LimitFeedback(pause_seconds=600, policy="TotalRequests")


def test_concurrent_long_running_refusal_pauses_briefly() -> None:
    feedback = SalesforceLimits(concurrent_pause_seconds=45)(
        answer(403, usage="api-usage=20/5000", body=CONCURRENT)
    )

    assert feedback == LimitFeedback(
        windows=(LimitWindow(4980, 86_400, limit=5000),),
        pause_seconds=45,
        policy="ConcurrentPerOrgLongTxn",
    )


def test_older_concurrent_requests_refusal_also_pauses_briefly() -> None:
    body = [
        {
            "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]

    feedback = SalesforceLimits()(answer(403, body=body))

    assert feedback == LimitFeedback(pause_seconds=30, policy="ConcurrentRequests")


@pytest.mark.parametrize(
    "body",
    [
        [{"errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": None}],
        [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "Please try again later"}],
    ],
)
def test_limit_refusal_naming_no_limit_is_taken_as_the_daily_one(body: Any) -> None:
    feedback = SalesforceLimits()(answer(403, body=body))

    assert feedback == LimitFeedback(pause_seconds=1800, policy="TotalRequests")


@pytest.mark.parametrize(
    "body",
    [
        b"<html>403 Forbidden</html>",
        b"\xff\xfe not even text",
        b"[" * 100_000,
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"},
        ["REQUEST_LIMIT_EXCEEDED"],
        [None, 42, []],
        [{"errorCode": ["REQUEST_LIMIT_EXCEEDED"]}],
        [{"message": "insufficient access rights", "errorCode": "INSUFFICIENT_ACCESS"}],
        [],
        "REQUEST_LIMIT_EXCEEDED",
    ],
)
def test_body_that_is_no_limit_refusal_does_not_pause(body: Any) -> None:
    assert SalesforceLimits()(answer(403, body=body)) is None


def test_success_quoting_a_limit_refusal_does_not_pause() -> None:
    # A composite answer reports its sub-requests' errors under 200.
    assert SalesforceLimits()(answer(200, body=TOTAL)) is None


def test_pauses_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SalesforceLimits(daily_pause_seconds=0)


# --- the shared client acting on it --------------------------------------------------------------


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=INSTANCE, assert_all_called=False)


@pytest.fixture
def make_client(router: respx.Router, fake_time: FakeTime) -> Callable[..., RetryingClient]:
    def make(**overrides: Any) -> RetryingClient:
        options: dict[str, Any] = {
            "base_url": INSTANCE,
            "name": "salesforce:test",
            "transport": httpx.MockTransport(router.handler),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
            "limits": SalesforceLimits(),
            "policy": RetryPolicy(max_attempts=3),
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


def sent_at_times(
    fake_time: FakeTime, answers: list[httpx.Response]
) -> tuple[list[float], Callable[[httpx.Request], httpx.Response]]:
    sent_at: list[float] = []
    pending = list(answers)

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return sent_at, side_effect


async def test_allowance_near_its_end_slows_the_client_down(router, fake_time, make_client):
    # 400 left of 5,000 is under the 10% reserve: the rest is spread over the rolling day.
    sent_at, side_effect = sent_at_times(
        fake_time, [answer(usage="api-usage=4600/5000"), answer(usage="api-usage=4601/5000")]
    )
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        await client.request("GET", PATH)
        await client.request("GET", PATH)

    assert sent_at[1] - sent_at[0] == pytest.approx(86_400 / 401)


async def test_allowance_with_room_does_not_slow_down(router, fake_time, make_client):
    router.get(PATH).mock(return_value=answer(usage="api-usage=18/5000"))

    async with make_client() as client:
        for _ in range(3):
            await client.request("GET", PATH)

    assert fake_time.sleeps == []


async def test_malformed_limit_info_never_breaks_a_request(router, fake_time, make_client):
    router.get(PATH).mock(return_value=answer(usage="api-usage=lots/of", body=b"not json"))

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert fake_time.sleeps == []


async def test_request_limit_exceeded_pauses_and_later_calls_are_refused_unsent(
    router, fake_time, make_client
):
    route = router.get(PATH).mock(
        side_effect=[answer(403, usage="api-usage=5001/5000", body=TOTAL), answer(200)]
    )

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused) as paused:
            await client.request("GET", PATH)
        fake_time.now += 1000
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("GET", PATH)
        assert route.call_count == 1, "nothing is sent during the pause"
        fake_time.now += 800
        response = await client.request("GET", PATH)

    assert not isinstance(paused.value, CRMAuthError)
    assert paused.value.status == 403
    assert paused.value.retry_after == 1800
    assert "TotalRequests" in str(paused.value)
    assert json.loads(paused.value.body) == TOTAL
    assert refused.value.retry_after == 800
    assert response.status_code == 200
    assert route.call_count == 2


async def test_concurrent_limit_refusal_pauses_only_briefly(router, fake_time, make_client):
    route = router.get(PATH).mock(side_effect=[answer(403, body=CONCURRENT), answer(200)])

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused) as paused:
            await client.request("GET", PATH)
        fake_time.now += 30
        response = await client.request("GET", PATH)

    assert paused.value.retry_after == 30
    assert "ConcurrentPerOrgLongTxn" in str(paused.value)
    assert response.status_code == 200
    assert route.call_count == 2


async def test_success_that_uses_up_the_allowance_pauses_later_calls(
    router, fake_time, make_client
):
    route = router.get(PATH).mock(return_value=answer(usage="api-usage=5000/5000"))

    async with make_client() as client:
        response = await client.request("GET", PATH)
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("GET", PATH)

    assert response.status_code == 200
    assert route.call_count == 1
    assert refused.value.retry_after == 1800
    assert fake_time.sleeps == [], "a pause refuses, it never holds a request for a day"


async def test_permission_403_stays_an_auth_error(router, make_client):
    body = [{"message": "insufficient access rights", "errorCode": "INSUFFICIENT_ACCESS"}]
    route = router.get(PATH).mock(return_value=answer(403, usage="api-usage=18/5000", body=body))

    async with make_client() as client:
        with pytest.raises(CRMAuthError) as refused:
            await client.request("GET", PATH)

    assert not isinstance(refused.value, CRMRateLimitPaused)
    assert route.call_count == 1
