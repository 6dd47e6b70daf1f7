"""Tests for connector.http's concurrency cap (`max_concurrency`) and raw request bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

import httpx
import pytest

from connector.errors import CRMRetriesExhausted
from connector.http import RetryingClient, RetryPolicy

BASE = "https://org.crm.dynamics.test"


class InFlight:
    """A transport that answers after a few loop turns and records how many requests it was
    handling at once."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self.sent = 0

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.current += 1
        self.sent += 1
        self.peak = max(self.peak, self.current)
        try:
            for _ in range(5):
                await asyncio.sleep(0)
        finally:
            self.current -= 1
        return httpx.Response(200, json={"ok": True})


def make_client(
    handler: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    **overrides: object,
) -> RetryingClient:
    options: dict[str, object] = {
        "base_url": BASE,
        "name": "dynamics:test",
        "transport": httpx.MockTransport(handler),
        **overrides,
    }
    return RetryingClient(**options)  # type: ignore[arg-type]


async def test_max_concurrency_caps_the_requests_in_flight() -> None:
    transport = InFlight()
    client = make_client(transport.handler, max_concurrency=3)
    try:
        responses = await asyncio.gather(
            *(client.request("GET", f"/api/data/v9.2/accounts({i})") for i in range(10))
        )
    finally:
        await client.aclose()
    assert [response.status_code for response in responses] == [200] * 10
    assert transport.sent == 10
    assert transport.peak == 3


async def test_without_max_concurrency_requests_are_not_capped() -> None:
    transport = InFlight()
    client = make_client(transport.handler)
    try:
        await asyncio.gather(
            *(client.request("GET", f"/api/data/v9.2/accounts({i})") for i in range(10))
        )
    finally:
        await client.aclose()
    assert transport.peak == 10


async def test_a_request_waiting_out_its_backoff_does_not_hold_a_slot() -> None:
    other_sent = asyncio.Event()
    attempts: dict[str, int] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        attempts[path] = attempts.get(path, 0) + 1
        if path == "/first" and attempts[path] == 1:
            return httpx.Response(503)
        if path == "/second":
            other_sent.set()
        return httpx.Response(200)

    async def sleep(seconds: float) -> None:
        # Were the slot still held, the second request could never be sent and this times out.
        await asyncio.wait_for(other_sent.wait(), timeout=2.0)

    client = make_client(
        handler,
        max_concurrency=1,
        sleep=sleep,
        policy=RetryPolicy(max_attempts=2, base_delay_seconds=0.0),
    )
    try:
        first, second = await asyncio.gather(
            client.request("GET", "/first"), client.request("GET", "/second")
        )
    finally:
        await client.aclose()
    assert (first.status_code, second.status_code) == (200, 200)
    assert attempts == {"/first": 2, "/second": 1}


async def test_a_send_that_fails_in_transport_releases_its_slot() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204)

    client = make_client(handler, max_concurrency=1, policy=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(CRMRetriesExhausted):
            await client.request("GET", "/api/data/v9.2/WhoAmI")
        response = await asyncio.wait_for(client.request("GET", "/api/data/v9.2/WhoAmI"), 2.0)
    finally:
        await client.aclose()
    assert response.status_code == 204


def test_max_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RetryingClient(base_url=BASE, name="dynamics:test", max_concurrency=0)


async def test_content_is_sent_as_raw_bytes_with_the_given_content_type() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = make_client(handler)
    body = b"--batch_1\r\nContent-Type: application/http\r\n\r\n--batch_1--\r\n"
    try:
        await client.request(
            "POST",
            "/api/data/v9.2/$batch",
            content=body,
            headers={"Content-Type": 'multipart/mixed; boundary="batch_1"'},
        )
    finally:
        await client.aclose()
    assert seen[0].content == body
    assert seen[0].headers["content-type"] == 'multipart/mixed; boundary="batch_1"'
