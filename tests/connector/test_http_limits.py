"""Tests for connector.http acting on a connector's rate-limit inspector: slow down, retry, pause.

The inspector here is a toy that reads made-up headers, so these tests pin the CRM-neutral
policy; HubSpot's own headers are tested in tests/connector/hubspot/test_ratelimit_hubspot.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connector.errors import CRMRateLimitPaused, CRMRetriesExhausted
from connector.http import LimitFeedback, LimitWindow, RetryingClient, RetryPolicy
from testkit import FakeTime

BASE = "https://crm.example.test"
PATH = "/records"


def toy_limits(response: httpx.Response) -> LimitFeedback | None:
    """`Left: <remaining>/<limit>/<reset seconds>` describes a window; `Pause: <s>` a pause."""
    windows: tuple[LimitWindow, ...] = ()
    if "Left" in response.headers:
        remaining, limit, reset = response.headers["Left"].split("/")
        windows = (LimitWindow(int(remaining), float(reset), limit=int(limit)),)
    pause = float(response.headers["Pause"]) if "Pause" in response.headers else None
    if not windows and pause is None:
        return None
    return LimitFeedback(windows=windows, pause_seconds=pause, policy="TOY_DAILY")


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest.fixture
def make_client(router: respx.Router, fake_time: FakeTime) -> Callable[..., RetryingClient]:
    def make(**overrides: Any) -> RetryingClient:
        options: dict[str, Any] = {
            "base_url": BASE,
            "name": "toy:test",
            "transport": httpx.MockTransport(router.handler),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
            "limits": toy_limits,
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


def answering(
    fake_time: FakeTime, answers: list[httpx.Response]
) -> tuple[list[float], Callable[[httpx.Request], httpx.Response]]:
    """A side effect noting the fake time of each request; the last answer repeats."""
    sent_at: list[float] = []
    pending = list(answers)

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return sent_at, side_effect


async def test_used_up_window_holds_the_next_request_until_it_resets(
    router, fake_time, make_client
):
    sent_at, side_effect = answering(
        fake_time, [httpx.Response(200, headers={"Left": "0/100/10"}), httpx.Response(200)]
    )
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        await client.request("GET", PATH)
        await client.request("GET", PATH)

    assert sent_at[1] - sent_at[0] == 10.0


async def test_nearly_used_window_spreads_the_remaining_requests_over_the_reset(
    router, fake_time, make_client
):
    # 4 left of 100 is under the 10% reserve: the next request waits 10 s / (4 + 1).
    sent_at, side_effect = answering(
        fake_time, [httpx.Response(200, headers={"Left": "4/100/10"}), httpx.Response(200)]
    )
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        await client.request("GET", PATH)
        await client.request("GET", PATH)

    assert sent_at[1] - sent_at[0] == 2.0


async def test_window_with_room_left_does_not_slow_down(router, fake_time, make_client):
    router.get(PATH).mock(return_value=httpx.Response(200, headers={"Left": "11/100/10"}))

    async with make_client() as client:
        for _ in range(3):
            await client.request("GET", PATH)

    assert fake_time.sleeps == []


async def test_throttled_retry_waits_for_the_window_even_without_retry_after(
    router, fake_time, make_client, monkeypatch
):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    sent_at, side_effect = answering(
        fake_time, [httpx.Response(429, headers={"Left": "0/100/10"}), httpx.Response(200)]
    )
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert sent_at[1] - sent_at[0] == 10.0


async def test_pausing_answer_raises_paused_at_once_without_retrying(router, make_client):
    route = router.get(PATH).mock(
        return_value=httpx.Response(429, headers={"Pause": "3600"}, json={"error": "daily"})
    )

    async with make_client(policy=RetryPolicy(max_attempts=5)) as client:
        with pytest.raises(CRMRateLimitPaused) as raised:
            await client.request("GET", PATH)

    assert route.call_count == 1
    assert raised.value.retry_after == 3600.0
    assert raised.value.status == 429
    assert "daily" in raised.value.body
    assert "TOY_DAILY" in str(raised.value)
    assert not isinstance(raised.value, CRMRetriesExhausted)


async def test_pause_is_never_shorter_than_the_crms_retry_after(router, make_client):
    router.get(PATH).mock(
        return_value=httpx.Response(429, headers={"Pause": "60", "Retry-After": "900"})
    )

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused) as raised:
            await client.request("GET", PATH)

    assert raised.value.retry_after == 900.0


async def test_paused_client_refuses_requests_without_sending_until_the_pause_ends(
    router, fake_time, make_client
):
    route = router.get(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Pause": "3600"}), httpx.Response(200)]
    )

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused):
            await client.request("GET", PATH)
        fake_time.now += 3000
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("GET", PATH)
        assert route.call_count == 1, "nothing is sent during the pause"
        assert refused.value.retry_after == 600.0
        fake_time.now += 600
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert route.call_count == 2


async def test_success_that_uses_up_the_allowance_is_returned_and_pauses_later_calls(
    router, make_client
):
    route = router.get(PATH).mock(return_value=httpx.Response(200, headers={"Pause": "120"}))

    async with make_client() as client:
        response = await client.request("GET", PATH)
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("GET", PATH)

    assert response.status_code == 200
    assert route.call_count == 1
    assert refused.value.retry_after == 120.0


async def test_answers_the_inspector_has_nothing_to_say_about_keep_the_old_retry_policy(
    router, fake_time, make_client
):
    router.get(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)]
    )

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert fake_time.sleeps == [7.0]
