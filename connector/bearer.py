"""A bearer token on every request of an httpx.AsyncClient, renewed before it ages out and once
more (with one resend) when the CRM answers 401; concurrent callers share one renewal.

Salesforce and Dynamics 365 connections authenticate this way; each subclass says how a token
is asked for, when it is due for renewal and how it goes on a request."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import httpx

from connector.http import RetryingClient

__all__ = ["RefreshingBearerAuth"]


class _Token(Protocol):
    @property
    def access_token(self) -> str: ...


TokenT = TypeVar("TokenT", bound=_Token)


class RefreshingBearerAuth(httpx.Auth, ABC, Generic[TokenT]):
    """`client` is the `RetryingClient` for the token endpoint; `aclose` closes it."""

    def __init__(self, *, client: RetryingClient, clock: Callable[[], datetime]) -> None:
        self._client = client
        self._clock = clock
        self._token: TokenT | None = None
        self._lock = asyncio.Lock()

    @abstractmethod
    async def _issue(self, now: datetime) -> TokenT:
        """Ask the token endpoint for a new token (raising CRMAuthError when refused)."""

    @abstractmethod
    def _fresh(self, token: TokenT, now: datetime) -> bool:
        """Whether `token` may still be sent at `now`, or is due for renewal."""

    def _authorise(self, request: httpx.Request, token: TokenT) -> None:
        request.headers["Authorization"] = f"Bearer {token.access_token}"

    async def token(self) -> TokenT:
        """The current token, asked for first when there is none or it is due for renewal."""
        current = self._token
        if current is not None and self._fresh(current, self._clock()):
            return current
        return await self.refresh(stale=current)

    async def refresh(self, *, stale: TokenT | None) -> TokenT:
        """A new token. `stale` is the token the caller saw fail or age out: when another caller
        has replaced it meanwhile, that newer token is returned without asking again (every
        request of a batch may see the same 401)."""
        async with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token
            token = await self._issue(self._clock())
            self._token = token
            return token

    async def aclose(self) -> None:
        await self._client.aclose()

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        # Getting a token is async; a sync client would send requests unauthenticated.
        raise RuntimeError(f"{type(self).__name__} works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        self._authorise(request, token)
        response = yield request
        if response.status_code == 401:
            fresh = await self.refresh(stale=token)
            self._authorise(request, fresh)
            yield request
