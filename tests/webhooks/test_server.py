"""The HTTP server's own limits, on a real socket: head and body deadlines (408, closed), the
cap on requests in progress and on open connections (503), keep-alive left working."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhooks.errors import ServiceError
from webhooks.routes.inbound import read_body
from webhooks.server import ServerLimits, build_server, default_max_connections
from webhooks.settings import Settings

release = asyncio.Event()


async def ok(_request: Request) -> Response:
    return JSONResponse({"ok": True})


async def echo(request: Request) -> Response:
    body = await read_body(request, limit=1 << 20)
    return JSONResponse({"bytes": len(body)})


async def hold(_request: Request) -> Response:
    await release.wait()
    return JSONResponse({"held": True})


async def service_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code)


APP = Starlette(
    routes=[Route("/ok", ok), Route("/echo", echo, methods=["POST"]), Route("/hold", hold)],
    exception_handlers={ServiceError: service_error},
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(**limits: object) -> AsyncIterator[int]:
    port = _free_port()
    server = build_server(
        APP,
        ServerLimits(**limits),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_config=None,
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers only the flag
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        release.set()
        server.should_exit = True
        await task
        release.clear()


async def exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send the parts (a pause between them), then read until the server closes or 5 s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_head_not_complete_in_time_is_408_and_closed() -> None:
    async with serving(header_timeout=0.3) as port:
        began = asyncio.get_running_loop().time()
        answer = await exchange(port, b"GET /ok HTTP/1.1\r\n", b"Host: x\r\n", pause=0.2)
        took = asyncio.get_running_loop().time() - began
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"request head not received within 0.3 s" in answer
    assert took < 1.5


async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline() -> None:
    async with serving(header_timeout=0.3) as port:
        answer = await exchange(port)
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_body_not_complete_in_time_is_408_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with caplog.at_level(logging.INFO):
        async with serving(body_timeout=0.3) as port:
            answer = await exchange(port, head, b"{", pause=0.1)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request body not received within 0.3 s" in answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_slow_but_timely_requests_are_served_and_kept_alive() -> None:
    request = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
    async with serving(header_timeout=0.5, keepalive_timeout=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for _ in range(3):
            # Each request on the kept-alive connection gets its own head deadline.
            writer.write(request[:10])
            await asyncio.sleep(0.3)
            writer.write(request[10:])
            answers.append(await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), 5))
        writer.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)


async def test_requests_beyond_the_concurrency_cap_are_503_at_once() -> None:
    async with serving(max_concurrency=1) as port:
        held = asyncio.create_task(
            exchange(port, b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        )
        await asyncio.sleep(0.2)
        refused = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        release.set()
        served = await held
    assert refused.startswith(b"HTTP/1.1 503")
    assert b"retry-after: 1" in refused
    assert b"limit of 1 requests at once" in refused
    assert served.startswith(b"HTTP/1.1 200")


async def test_connections_beyond_the_cap_are_503_and_closed() -> None:
    async with serving(max_connections=2) as port:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.1)
        served = await exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 503")
    assert b"too many connections" in refused
    assert served.startswith(b"HTTP/1.1 200")


def test_limits_come_from_the_settings() -> None:
    settings = Settings(
        http_header_timeout_seconds=7,
        http_body_timeout_seconds=20,
        http_keepalive_timeout_seconds=3,
        http_max_concurrency=50,
        http_max_connections=300,
    )
    assert ServerLimits.from_settings(settings) == ServerLimits(
        header_timeout=7,
        body_timeout=20,
        keepalive_timeout=3,
        max_concurrency=50,
        max_connections=300,
    )


def test_the_default_connection_cap_leaves_descriptors_for_the_rest() -> None:
    import resource  # noqa: PLC0415

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ServerLimits.from_settings(Settings()).max_connections == default_max_connections()
    assert 16 <= default_max_connections() < soft
