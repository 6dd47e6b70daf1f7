"""Every request has an id: taken from X-Request-ID when it is safe, else made up; echoed in
the response and carried by every log line written while the request runs."""

from __future__ import annotations

import re

import pytest
import structlog
from structlog.testing import capture_logs

from testkit import Service, hubspot_event, post_hubspot
from webhooks.app import request_id_from

HEX32 = re.compile(r"[0-9a-f]{32}")


async def test_a_valid_request_id_is_echoed(service: Service) -> None:
    response = await service.client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.9_Z-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "lb-7f3a.9_Z-1"


async def test_a_request_without_an_id_gets_a_new_one_each_time(service: Service) -> None:
    first = (await service.client.get("/healthz")).headers["X-Request-ID"]
    second = (await service.client.get("/healthz")).headers["X-Request-ID"]
    assert HEX32.fullmatch(first)
    assert HEX32.fullmatch(second)
    assert first != second


@pytest.mark.parametrize(
    "given",
    [
        "",
        "a" * 129,
        "has space",
        'quote"d',
        "semi;colon",
        "new\nline",
        "trailing-newline\n",
        "é-accent",
    ],
)
def test_an_unsafe_request_id_is_replaced(given: str) -> None:
    assert HEX32.fullmatch(request_id_from(given))


def test_the_longest_safe_request_id_is_kept() -> None:
    longest = "A-z.0_" * 21 + "xy"
    assert len(longest) == 128
    assert request_id_from(longest) == longest


async def test_an_unsafe_header_is_not_echoed(service: Service) -> None:
    response = await service.client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert HEX32.fullmatch(response.headers["X-Request-ID"])


async def test_error_answers_carry_the_request_id_too(service: Service) -> None:
    response = await service.client.get("/api/v1/accounts", headers={"X-Request-ID": "req-401"})
    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "req-401"
    assert response.headers.get_list("X-Request-ID") == ["req-401"]


async def test_log_lines_of_a_request_carry_its_id(service: Service) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        rejected = await service.client.post(
            "/webhooks/hubspot", content=b"[]", headers={"X-Request-ID": "bad-signature-1"}
        )
        accepted = await post_hubspot(service.client, [hubspot_event(1)])
    assert rejected.status_code == 401
    assert accepted.status_code == 202
    by_event = {entry["event"]: entry for entry in logs}
    assert by_event["webhook_rejected"]["request_id"] == "bad-signature-1"
    assert by_event["webhook_accepted"]["request_id"] == accepted.headers["X-Request-ID"]


async def test_the_request_id_is_unbound_once_the_request_is_answered(service: Service) -> None:
    # The test client runs the app in this very task: a leaked binding would show up here.
    structlog.contextvars.bind_contextvars(job="outer")
    try:
        await service.client.get("/healthz", headers={"X-Request-ID": "short-lived"})
        assert structlog.contextvars.get_contextvars() == {"job": "outer"}
    finally:
        structlog.contextvars.unbind_contextvars("job")


async def test_an_unhandled_error_is_logged_with_the_request_id(service: Service) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    service.app.add_api_route("/test-broken", broken)
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        pytest.raises(RuntimeError),
    ):
        await service.client.get("/test-broken", headers={"X-Request-ID": "req-500"})
    failed = [entry for entry in logs if entry["event"] == "request_failed"]
    assert failed == [
        {
            "event": "request_failed",
            "log_level": "error",
            "method": "GET",
            "error": "RuntimeError",
            "request_id": "req-500",
        }
    ]
