"""The HTTP server: uvicorn with the limits hostile clients need, from the settings.

uvicorn closes idle keep-alive connections, but it has no deadline for a request's head or
body (a client sending one header line every few seconds keeps its socket for ever), and its
`limit_concurrency` counts open connections, so idle sockets alone would turn good requests
into 503s. Its h11 protocol is extended here with a head and a body deadline (408, then the
connection is closed), a cap on requests in progress (503 beyond it) and a cap on open
connections (503 and closed as soon as accepted, before the process runs out of file
descriptors). Each refusal is logged at most once a minute, with a count."""

from __future__ import annotations

import asyncio
import random
import resource
from dataclasses import dataclass, field
from typing import Any, Literal

import h11
import structlog
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from webhooks.logging import Throttle
from webhooks.settings import Settings

log = structlog.get_logger(__name__)

# Descriptors kept free for what the process opens besides client connections: the database,
# CRM calls, log files. At most a quarter of a small limit.
DESCRIPTOR_RESERVE = 256
_SPREAD = 0.2


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - min(DESCRIPTOR_RESERVE, soft // 4))


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: int = 5
    max_concurrency: int = 1000
    max_connections: int = field(default_factory=default_max_connections)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            keepalive_timeout=settings.http_keepalive_timeout_seconds,
            max_concurrency=settings.http_max_concurrency,
            max_connections=settings.http_max_connections or default_max_connections(),
        )


class Refusals:
    """One server's refused clients, each kind logged at most once per interval with the
    number not logged since: an attack costs a line a minute, not one per socket."""

    def __init__(self) -> None:
        self._throttles: dict[str, Throttle] = {}

    def note(self, event: str, **fields: object) -> None:
        throttle = self._throttles.setdefault(event, Throttle())
        held = throttle.allow()
        if held is not None:
            log.warning(event, not_logged=held, interval_seconds=throttle.interval, **fields)


def _raw_response(status: int, reason: str, detail: str, *extra: str) -> bytes:
    body = ('{"detail": "' + detail + '"}').encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class LimitedConfig(uvicorn.Config):
    """uvicorn's Config carrying the limits to every connection's protocol."""

    def __init__(self, app: ASGIApp, *, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(
            app, http=LimitedH11Protocol, timeout_keep_alive=limits.keepalive_timeout, **kwargs
        )
        self.limits = limits
        self.refusals = Refusals()


class _ConcurrencyLimit:
    """503 for a request beyond the cap on requests in progress, before the app sees it."""

    def __init__(
        self, app: ASGIApp, *, tasks: set[Any], limits: ServerLimits, refusals: Refusals
    ) -> None:
        self.app = app
        self.tasks = tasks
        self.limits = limits
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The request's own task is in the set already.
        if len(self.tasks) <= self.limits.max_concurrency:
            await self.app(scope, receive, send)
            return
        self.refusals.note("http_busy", max_concurrency=self.limits.max_concurrency)
        body = (
            f'{{"detail": "the server is handling its limit of {self.limits.max_concurrency} '
            'requests at once; retry shortly"}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head and body deadlines and both caps."""

    def __init__(self, config: LimitedConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.limits = config.limits
        self.refusals = config.refusals
        self.app = _ConcurrencyLimit(
            self.app, tasks=self.tasks, limits=self.limits, refusals=self.refusals
        )
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting_for: Literal["head", "body"] | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.connections) >= self.limits.max_connections:
            # Closed at once: the descriptor is back before the process runs out of them.
            self.refused = True
            self.transport = transport
            self.refusals.note("http_connection_refused", max_connections=len(self.connections))
            transport.write(
                _raw_response(503, "Service Unavailable", "too many connections", "retry-after: 1")
            )
            transport.close()
            return
        super().connection_made(transport)
        self._expect("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.deadline is None and self.conn.their_state is h11.IDLE:
            # The first bytes of a request on a kept-alive connection.
            self._expect("head")
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self) -> None:
        """Move the deadline along with the request: the head until its headers are in, the
        body until it is complete, none after that."""
        state = self.conn.their_state
        if state is h11.IDLE:
            return
        if state is h11.SEND_BODY:
            if self.waiting_for != "body":
                self._expect("body")
            return
        self._cancel()

    def _expect(self, part: Literal["head", "body"]) -> None:
        self._cancel()
        seconds = self.limits.header_timeout if part == "head" else self.limits.body_timeout
        self.waiting_for = part
        # Spread over the last fifth of the allowance: sockets an attacker opened together do
        # not all expire (and come back) in the same instant, stalling everyone else.
        seconds *= 1 - _SPREAD * random.random()  # noqa: S311 - not a secret
        self.deadline = self.loop.call_later(seconds, self._timed_out)

    def _cancel(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None
        self.waiting_for = None

    def _timed_out(self) -> None:
        part = self.waiting_for
        self.deadline = None
        self.waiting_for = None
        if self.transport.is_closing():
            return
        seconds = self.limits.header_timeout if part == "head" else self.limits.body_timeout
        self.refusals.note("http_request_timed_out", waiting_for=part, timeout_seconds=seconds)
        cycle = self.cycle
        answer = cycle is None or cycle.response_complete or not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The app reading the body sees a disconnect; what it answers goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            self.transport.write(
                _raw_response(
                    408, "Request Timeout", f"request {part} not received within {seconds:g} s"
                )
            )
        self.transport.close()


def build_server(app: ASGIApp, limits: ServerLimits, **config: Any) -> uvicorn.Server:
    """A uvicorn server with the limits; `config` is uvicorn.Config's (host, port, ...)."""
    return uvicorn.Server(LimitedConfig(app, limits=limits, **config))


def run(app: ASGIApp, settings: Settings, *, host: str, port: int) -> None:
    """Serve until stopped (what `crm-health serve` does)."""
    server = build_server(
        app, ServerLimits.from_settings(settings), host=host, port=port, log_config=None
    )
    server.run()
    if not server.started:
        # As uvicorn.run: the app's start-up failed (a message is logged).
        raise SystemExit(3)
