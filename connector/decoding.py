"""What a CRM's decoder gets (its connection's claimed inbox rows) and gives back (normalised
events, or why each row waits, is ignored or is dead-lettered), shared by every CRM package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from connector.base import CRMConnector
from connector.crm import CRMInbound
from connector.model import NormalisedEvent


class StoredRow(Protocol):
    """A claimed inbox row, as the CRM's intake stored it."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def body(self) -> str | None: ...
    @property
    def received_at(self) -> datetime: ...


class DecodeTarget(Protocol):
    """The connection the rows belong to."""

    @property
    def name(self) -> str: ...
    @property
    def connector(self) -> CRMConnector | None: ...
    @property
    def crm_settings(self) -> CRMInbound | None: ...


@dataclass(kw_only=True)
class CRMDecoded:
    """What a CRM's decoder made of a connection's rows, by inbox id. Every row lands in exactly
    one of: understood (`events`, possibly empty), `ignored` (not a kind we handle), `dead`
    (can never be decoded), `failed` (try again, an attempt counted), `paused` (try again after
    so many seconds, no attempt counted: the CRM took no calls) or `unavailable`."""

    events: dict[int, list[NormalisedEvent]] = field(default_factory=dict)
    # Contacts deleted from the CRM, by the event that said so: they left every account.
    contacts_gone: dict[int, list[tuple[str, datetime]]] = field(default_factory=dict)
    ignored: list[int] = field(default_factory=list)
    dead: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    paused: dict[int, tuple[float, str]] = field(default_factory=dict)
    # The CRM could not be reached or would not let us in (transport errors, timeouts, 5xx and
    # 429 beyond the client's retries, refused credentials): (its Retry-After or 0, why). The
    # events wait for the connection's outage backoff, no attempt counted: an outage of any
    # length must never dead-letter them.
    unavailable: dict[int, tuple[float, str]] = field(default_factory=dict)
    # Connections whose CRM answered a read of this batch: their outage is over.
    reached: set[str] = field(default_factory=set)


# Decodes one connection's claimed rows, all at once so that CRM reads can be shared. It may
# call the CRM, so the worker runs it outside any transaction; it reports failures in the result.
Decoder = Callable[[Sequence[StoredRow], DecodeTarget], Awaitable[CRMDecoded]]
