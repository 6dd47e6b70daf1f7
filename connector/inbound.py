"""A CRM webhook delivery as the service hands it to the CRM's spec, and what the spec makes of
it: rows for the inbox by connection, or a refusal carrying the HTTP status the sender gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.crm import CRMInbound


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One request to a CRM's webhook endpoint."""

    method: str
    # The URL as the sender saw (and signed) it.
    uri: str
    body: bytes
    headers: Mapping[str, str]
    query: Mapping[str, str]
    # The path's parameters ({"connection": ..., "secret": ...}), by the endpoint's names.
    path: Mapping[str, str]
    # The peer address (behind trusted proxies, their client's); None when unknown.
    client: str | None
    now: datetime
    # How old a signature's timestamp may be.
    tolerance_seconds: int


@dataclass(frozen=True, kw_only=True)
class InboxRow:
    """One event to store, deduplicated on `dedup_key` within its connection."""

    dedup_key: str
    kind: str
    payload: dict[str, Any]
    # The request body itself, for CRMs whose events are decoded from it later.
    body: str | None = None


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """A verified delivery: its rows by connection, how many events it carried, and what the
    service's `webhook_accepted` log line adds about it."""

    rows: Mapping[str, Sequence[InboxRow]]
    received: int
    log: Mapping[str, Any] = field(default_factory=dict)


class Refused(Exception):
    """The delivery is not taken; `status` is the HTTP status the sender gets (400 bad body, 401
    not authenticated, 403 not this connection's, 404 no such connection, 429 slow down, 503
    not configured), `headers` any it needs (Retry-After)."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class KnownConnection(Protocol):
    """A configured connection as intake sees it."""

    @property
    def name(self) -> str: ...
    @property
    def crm(self) -> str: ...
    @property
    def webhook_secret(self) -> str | None: ...
    @property
    def crm_settings(self) -> CRMInbound | None: ...


class Connections(Protocol):
    """What a CRM's intake may ask of the service's connections."""

    def named(self, name: str) -> KnownConnection | None: ...

    def of_crm(self, crm: str) -> Sequence[KnownConnection]: ...

    def app(self, crm: str) -> KnownConnection | None:
        """The CRM's OAuth app, whose secret signs the webhooks of every install; None
        without one."""
        ...

    async def refresh(self) -> bool:
        """Look for connections made since (an install in another process); True if any."""
        ...


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One path the service serves for the CRM's webhooks."""

    path: str
    # The route's name (and so its OpenAPI operation id) and summary.
    name: str
    summary: str
    # A header that carries the path's `secret` when the path has none.
    secret_header: str | None = None


@dataclass(frozen=True, kw_only=True)
class Answer:
    """How a CRM wants its deliveries answered when not with 202 and a JSON count: the body
    once stored, and the body of a refusal."""

    media_type: str
    ok: Callable[[], bytes]
    ok_description: str
    refused: Callable[[str, int], bytes]
    # Added to each documented refusal: how the sender reads it.
    refused_note: str


@dataclass(frozen=True, kw_only=True)
class InboundSpec:
    """A CRM's webhook endpoints, their documented refusals, and the check that turns a
    delivery into inbox rows."""

    endpoints: tuple[Endpoint, ...]
    refusals: Mapping[int, str]
    accept: Callable[[Delivery, Connections], Awaitable[Parsed]]
    # None: answered 202 with the received/stored/duplicates counts.
    answer: Answer | None = None
