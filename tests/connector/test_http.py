"""Tests for connector.http: the shared retrying, rate-limited CRM client."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from connector.errors import (
    CRMAuthError,
    CRMHTTPError,
    CRMRequestRejected,
    CRMRetriesExhausted,
)
from connector.http import (
    BODY_LIMIT,
    Outcome,
    RateLimit,
    RetryingClient,
    RetryPolicy,
    outcome_for,
    parse_retry_after,
)
from testkit import FakeTime

BASE = "https://crm.example.test"
PATH = "/crm/v3/objects/companies"
TOKEN = "pat-na1-very-secret-token"


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
            "name": "hubspot:test",
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "transport": httpx.MockTransport(router.handler),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
        }
        options.update(overrides)
        return RetryingClient(**options)

    return make


def recording(
    fake_time: FakeTime, answers: list[httpx.Response]
) -> tuple[list[float], Callable[[httpx.Request], httpx.Response]]:
    """A respx side effect that notes the fake time of each request, then gives the next answer.

    The last answer repeats once the others are used up.
    """
    sent_at: list[float] = []
    pending = list(answers)

    def side_effect(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.now)
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return sent_at, side_effect


async def test_429_with_retry_after_seconds_waits_at_least_that_long_then_succeeds(
    router, fake_time, make_client
):
    sent_at, side_effect = recording(
        fake_time,
        [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json={"ok": 1})],
    )
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.json() == {"ok": 1}
    assert fake_time.sleeps == [7.0]
    assert sent_at[1] - sent_at[0] >= 7.0


async def test_retry_after_http_date_is_honoured(router, fake_time, make_client):
    server_now = datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC)
    headers = {
        "Date": format_datetime(server_now, usegmt=True),
        "Retry-After": format_datetime(server_now + timedelta(seconds=42), usegmt=True),
    }
    router.get(PATH).mock(side_effect=[httpx.Response(503, headers=headers), httpx.Response(200)])

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert fake_time.sleeps == [42.0]


async def test_retry_after_http_date_without_date_header_is_measured_from_now(
    router, fake_time, make_client
):
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    router.get(PATH).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": format_datetime(retry_at, usegmt=True)}),
            httpx.Response(200),
        ]
    )

    async with make_client() as client:
        await client.request("GET", PATH)

    # The HTTP-date has whole seconds, so the wait is within a second of 30.
    assert len(fake_time.sleeps) == 1
    assert 28.0 <= fake_time.sleeps[0] <= 30.0


async def test_retry_after_is_capped(router, fake_time, make_client):
    router.get(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200)]
    )
    policy = RetryPolicy(max_elapsed_seconds=1_000.0, retry_after_cap_seconds=120.0)

    async with make_client(policy=policy) as client:
        await client.request("GET", PATH)

    assert fake_time.sleeps == [120.0]


async def test_retry_after_beyond_the_time_budget_stops_and_reports_it(
    router, fake_time, make_client
):
    route = router.post(PATH).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "90"}, text="slow down")
    )
    policy = RetryPolicy(max_elapsed_seconds=60.0)

    async with make_client(policy=policy) as client:
        with pytest.raises(CRMRetriesExhausted) as caught:
            await client.request("POST", PATH, json={"inputs": []})

    assert route.call_count == 1
    assert fake_time.sleeps == []
    assert caught.value.status == 429
    assert caught.value.retry_after == 90.0
    assert caught.value.attempts == 1


async def test_invalid_retry_after_falls_back_to_backoff(router, fake_time, make_client):
    router.get(PATH).mock(
        side_effect=[httpx.Response(503, headers={"Retry-After": "soon"}), httpx.Response(200)]
    )

    async with make_client(policy=RetryPolicy(base_delay_seconds=0.5)) as client:
        await client.request("GET", PATH)

    assert len(fake_time.sleeps) == 1
    assert 0.0 <= fake_time.sleeps[0] <= 0.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value, expected):
    assert parse_retry_after(value, date="Wed, 21 Oct 2015 07:28:00 GMT") == expected


async def test_503_then_success_returns_the_success(router, fake_time, make_client):
    route = router.get(PATH).mock(
        side_effect=[httpx.Response(503, text="busy"), httpx.Response(200, json={"results": []})]
    )

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert response.json() == {"results": []}
    assert route.call_count == 2
    assert len(fake_time.sleeps) == 1


async def test_transport_error_is_retried(router, fake_time, make_client):
    route = router.get(PATH).mock(
        side_effect=[
            httpx.ConnectError("connection refused"),
            httpx.ReadTimeout("read timed out"),
            httpx.Response(200),
        ]
    )

    async with make_client() as client:
        response = await client.request("GET", PATH)

    assert response.status_code == 200
    assert route.call_count == 3
    assert len(fake_time.sleeps) == 2


async def test_retries_exhausted_raises_one_typed_error_with_last_status(
    router, fake_time, make_client
):
    route = router.get(PATH).mock(return_value=httpx.Response(502, text="bad gateway"))
    policy = RetryPolicy(max_attempts=4)

    async with make_client(policy=policy) as client:
        with pytest.raises(CRMRetriesExhausted) as caught:
            await client.request("GET", PATH)

    error = caught.value
    assert error.status == 502
    assert error.body == "bad gateway"
    assert error.attempts == 4
    assert error.retry_after is None
    assert route.call_count == policy.max_attempts
    assert len(fake_time.sleeps) == policy.max_attempts - 1
    assert "hubspot:test" in str(error)
    assert f"GET {PATH}" in str(error)
    assert "502" in str(error)


async def test_transport_errors_exhausted_report_no_status(router, fake_time, make_client):
    router.get(PATH).mock(side_effect=httpx.ConnectError("connection refused"))

    async with make_client(policy=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(CRMRetriesExhausted) as caught:
            await client.request("GET", PATH)

    assert caught.value.status is None
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "ConnectError" in str(caught.value)


async def test_time_budget_stops_retrying_before_max_attempts(router, fake_time, make_client):
    route = router.get(PATH).mock(return_value=httpx.Response(503, headers={"Retry-After": "3"}))
    policy = RetryPolicy(max_attempts=10, max_elapsed_seconds=5.0, max_delay_seconds=1.0)

    async with make_client(policy=policy) as client:
        with pytest.raises(CRMRetriesExhausted) as caught:
            await client.request("GET", PATH)

    # One 3 s wait fits in 5 s; a second would end at 6 s.
    assert fake_time.sleeps == [3.0]
    assert route.call_count == 2
    assert caught.value.attempts == 2
    assert caught.value.retry_after == 3.0


async def test_400_is_rejected_without_retry(router, fake_time, make_client):
    route = router.post(PATH).mock(
        return_value=httpx.Response(400, json={"message": "Property values were not valid"})
    )

    async with make_client() as client:
        with pytest.raises(CRMRequestRejected) as caught:
            await client.request("POST", PATH, json={"inputs": []})

    assert not isinstance(caught.value, CRMAuthError)
    assert caught.value.status == 400
    assert "Property values were not valid" in caught.value.body
    assert route.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("status", [401, 403])
async def test_401_raises_auth_error_without_retry(router, fake_time, make_client, status):
    route = router.get(PATH).mock(return_value=httpx.Response(status, text="expired token"))

    async with make_client() as client:
        with pytest.raises(CRMAuthError) as caught:
            await client.request("GET", PATH)

    assert caught.value.status == status
    assert caught.value.body == "expired token"
    assert route.call_count == 1
    assert fake_time.sleeps == []


async def test_rejected_body_is_truncated(router, make_client):
    router.get(PATH).mock(return_value=httpx.Response(422, text="x" * 10_000))

    async with make_client() as client:
        with pytest.raises(CRMRequestRejected) as caught:
            await client.request("GET", PATH)

    assert len(caught.value.body) == BODY_LIMIT


async def test_backoff_grows_exponentially_and_stays_under_the_cap(
    router, fake_time, make_client, monkeypatch
):
    # Pin full jitter to the top of its window so the exponential ceiling is visible.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    router.get(PATH).mock(return_value=httpx.Response(500))
    policy = RetryPolicy(
        max_attempts=7, max_elapsed_seconds=1_000.0, base_delay_seconds=0.5, max_delay_seconds=3.0
    )

    async with make_client(policy=policy) as client:
        with pytest.raises(CRMRetriesExhausted):
            await client.request("GET", PATH)

    assert fake_time.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


async def test_backoff_jitter_stays_inside_the_exponential_window(router, fake_time, make_client):
    router.get(PATH).mock(return_value=httpx.Response(504))
    policy = RetryPolicy(
        max_attempts=8, max_elapsed_seconds=1_000.0, base_delay_seconds=0.5, max_delay_seconds=4.0
    )

    async with make_client(policy=policy) as client:
        with pytest.raises(CRMRetriesExhausted):
            await client.request("GET", PATH)

    assert len(fake_time.sleeps) == 7
    for attempt, wait in enumerate(fake_time.sleeps, start=1):
        assert 0.0 <= wait <= min(4.0, 0.5 * 2 ** (attempt - 1))


async def test_rate_limit_spaces_requests(router, fake_time, make_client):
    sent_at, side_effect = recording(fake_time, [httpx.Response(200)])
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client(rate_limit=RateLimit(requests_per_second=2.0)) as client:
        for _ in range(4):
            await client.request("GET", PATH)

    assert [at - sent_at[0] for at in sent_at] == [0.0, 0.5, 1.0, 1.5]


async def test_rate_limit_allows_a_burst_then_the_steady_rate(router, fake_time, make_client):
    sent_at, side_effect = recording(fake_time, [httpx.Response(200)])
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client(rate_limit=RateLimit(requests_per_second=1.0, burst=3)) as client:
        for _ in range(5):
            await client.request("GET", PATH)

    assert [at - sent_at[0] for at in sent_at] == [0.0, 0.0, 0.0, 1.0, 2.0]


async def test_rate_limit_applies_to_retries(router, fake_time, make_client, monkeypatch):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    sent_at, side_effect = recording(fake_time, [httpx.Response(503), httpx.Response(200)])
    router.get(PATH).mock(side_effect=side_effect)

    async with make_client(rate_limit=RateLimit(requests_per_second=0.5)) as client:
        await client.request("GET", PATH)

    assert sent_at[1] - sent_at[0] == 2.0


async def test_error_message_never_contains_the_authorization_header(router, make_client):
    router.get("/exhausted").mock(return_value=httpx.Response(503))
    router.get("/broken").mock(side_effect=httpx.ConnectError("refused"))
    router.get("/rejected").mock(return_value=httpx.Response(404))
    router.get("/refused").mock(return_value=httpx.Response(401))
    errors: list[CRMHTTPError] = []

    with capture_logs() as logs:
        async with make_client(policy=RetryPolicy(max_attempts=2)) as client:
            for path in ("/exhausted", "/broken", "/rejected", "/refused"):
                with pytest.raises(CRMHTTPError) as caught:
                    await client.request("GET", path, headers={"X-Api-Key": "other-secret"})
                errors.append(caught.value)

    assert len(errors) == 4
    for error in errors:
        for text in (str(error), repr(error), error.body):
            assert TOKEN not in text
            assert "Bearer" not in text
            assert "other-secret" not in text
    assert logs
    assert TOKEN not in repr(logs)
    assert "other-secret" not in repr(logs)


async def test_each_retry_is_logged_with_path_status_attempt_and_wait(
    router, fake_time, make_client
):
    router.get(PATH).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)]
    )

    with capture_logs() as logs:
        async with make_client() as client:
            await client.request("get", PATH, params={"archived": "false", "limit": 100})

    assert logs == [
        {
            "event": "crm_http_retry",
            "log_level": "warning",
            "client": "hubspot:test",
            "method": "GET",
            "path": PATH,
            "status": 429,
            "error": None,
            "attempt": 1,
            "wait_seconds": 2.0,
        }
    ]


async def test_request_sends_json_params_and_headers(router, make_client):
    route = router.post(PATH, params={"limit": "10"}).mock(return_value=httpx.Response(201))

    async with make_client() as client:
        response = await client.request(
            "POST", PATH, json={"name": "Acme"}, params={"limit": 10}, headers={"X-Trace": "t1"}
        )

    assert response.status_code == 201
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["X-Trace"] == "t1"
    assert sent.content == b'{"name":"Acme"}'


async def test_set_header_swaps_the_token_for_later_requests(router, make_client):
    route = router.get(PATH).mock(return_value=httpx.Response(200))

    async with make_client() as client:
        client.set_header("Authorization", "Bearer refreshed")
        await client.request("GET", PATH)

    assert route.calls.last.request.headers["Authorization"] == "Bearer refreshed"


async def test_207_multi_status_is_a_success(router, make_client):
    router.post(PATH).mock(return_value=httpx.Response(207, json={"errors": []}))

    async with make_client() as client:
        response = await client.request("POST", PATH, json={})

    assert response.status_code == 207


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (207, Outcome.SUCCESS),
        (299, Outcome.SUCCESS),
        (304, Outcome.REJECT),
        (400, Outcome.REJECT),
        (401, Outcome.AUTH),
        (403, Outcome.AUTH),
        (404, Outcome.REJECT),
        (408, Outcome.RETRY),
        (409, Outcome.REJECT),
        (422, Outcome.REJECT),
        (425, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
        (507, Outcome.RETRY),
    ],
)
def test_status_table_maps_statuses_to_outcomes(status, outcome):
    assert outcome_for(status) is outcome


@pytest.mark.parametrize(
    "policy_or_limit",
    [
        lambda: RetryPolicy(max_attempts=0),
        lambda: RetryPolicy(max_elapsed_seconds=-1.0),
        lambda: RateLimit(requests_per_second=0.0),
        lambda: RateLimit(requests_per_second=1.0, burst=0),
    ],
)
def test_nonsensical_policy_or_rate_limit_is_refused(policy_or_limit):
    with pytest.raises(ValueError, match=r"must|cannot"):
        policy_or_limit()
