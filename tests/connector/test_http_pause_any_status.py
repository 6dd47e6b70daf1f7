"""connector.http: an answer whose limit feedback asks for a pause raises `CRMRateLimitPaused`
whatever its status (Salesforce refuses a used-up day with a 403), and only then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from connector.errors import (
    CRMAuthError,
    CRMRateLimitPaused,
    CRMRequestRejected,
    CRMRetriesExhausted,
)
from connector.http import LimitFeedback, RetryingClient, RetryPolicy
from testkit import FakeTime

BASE = "https://crm.example.test"
PATH = "/records"


def pause_header_limits(response: httpx.Response) -> LimitFeedback | None:
    """`Pause: <seconds>` asks for a pause; nothing else is said about limits."""
    if "Pause" not in response.headers:
        return None
    return LimitFeedback(pause_seconds=float(response.headers["Pause"]), policy="TOY_DAILY")


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
            "limits": pause_header_limits,
            "policy": RetryPolicy(max_attempts=5),
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429, 503])
async def test_pausing_answer_of_any_failed_status_raises_paused_at_once(
    router, fake_time, make_client, status
):
    route = router.get(PATH).mock(
        return_value=httpx.Response(status, headers={"Pause": "600"}, json={"error": "limit"})
    )

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused) as paused:
            await client.request("GET", PATH)

    assert route.call_count == 1, "no retry spent on a pause"
    assert paused.value.status == status
    assert paused.value.retry_after == 600
    assert "limit" in paused.value.body
    assert f"paused by the CRM's TOY_DAILY limit for 600s (status {status})" in str(paused.value)
    assert not isinstance(paused.value, CRMRequestRejected | CRMRetriesExhausted)
    assert fake_time.sleeps == []


async def test_pausing_403_refuses_later_calls_unsent_until_the_pause_ends(
    router, fake_time, make_client
):
    route = router.get(PATH).mock(
        side_effect=[httpx.Response(403, headers={"Pause": "600"}), httpx.Response(200)]
    )

    async with make_client() as client:
        with pytest.raises(CRMRateLimitPaused):
            await client.request("GET", PATH)
        fake_time.now += 599
        with pytest.raises(CRMRateLimitPaused) as refused:
            await client.request("GET", PATH)
        assert route.call_count == 1
        fake_time.now += 1
        response = await client.request("GET", PATH)

    assert refused.value.retry_after == pytest.approx(1)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("status", "error"), [(403, CRMAuthError), (401, CRMAuthError), (400, CRMRequestRejected)]
)
async def test_refusal_without_a_pause_keeps_its_own_error(router, make_client, status, error):
    router.get(PATH).mock(return_value=httpx.Response(status))

    async with make_client() as client:
        with pytest.raises(error) as refused:
            await client.request("GET", PATH)

    assert not isinstance(refused.value, CRMRateLimitPaused)


async def test_zero_pause_does_not_turn_a_refusal_into_a_pause(router, make_client):
    router.get(PATH).mock(return_value=httpx.Response(403, headers={"Pause": "0"}))

    async with make_client() as client:
        with pytest.raises(CRMAuthError) as refused:
            await client.request("GET", PATH)

    assert not isinstance(refused.value, CRMRateLimitPaused)


async def test_success_asking_for_a_pause_is_still_returned(router, make_client):
    router.get(PATH).mock(return_value=httpx.Response(200, headers={"Pause": "60"}))

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
