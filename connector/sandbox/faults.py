"""Recorded /crm calls and injected faults (latency, forced answers) of the sandbox."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from connector.sandbox.errors import JSONObject


@dataclass
class RecordedRequest:
    """One call to a /crm route as the sandbox saw and answered it."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int = 0
    at: str = ""
    latency_seconds: float = 0.0
    forced: bool = False  # answered by an injected fault rather than by the CRM logic

    def to_json(self) -> JSONObject:
        return asdict(self)


@dataclass
class ForcedAnswer:
    """An injected answer: `remaining` matching calls (None: every one until cleared) get it."""

    status: int
    retry_after: str | None = None
    remaining: int | None = 1
    path_contains: str | None = None
    method: str | None = None
    body: JSONObject | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path

    def to_json(self) -> JSONObject:
        return asdict(self)


def retry_after_value(value: float | str | None) -> str | None:
    """A Retry-After header value: numbers become delta-seconds, strings (HTTP-dates) pass."""
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}"


@dataclass
class FaultPlan:
    """Injected behaviour for /crm routes: latency on every call, then queued forced answers."""

    latency_seconds: float = 0.0
    forced: list[ForcedAnswer] = field(default_factory=list)

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        path_contains: str | None = None,
        method: str | None = None,
        body: JSONObject | None = None,
    ) -> None:
        """Answer the next `count` matching calls with `status` (and Retry-After when given)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.forced.append(
            ForcedAnswer(
                status,
                retry_after_value(retry_after),
                count,
                path_contains,
                method,
                body,
            )
        )

    def fail_always(
        self,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        path_contains: str | None = None,
        method: str | None = None,
        body: JSONObject | None = None,
    ) -> None:
        """Answer every matching call with `status` until `clear()`: an outage."""
        self.forced.append(
            ForcedAnswer(status, retry_after_value(retry_after), None, path_contains, method, body)
        )

    def take(self, method: str, path: str) -> ForcedAnswer | None:
        """The forced answer for this call, if any, consuming one use of it."""
        for index, answer in enumerate(self.forced):
            if not answer.matches(method, path):
                continue
            if answer.remaining is not None:
                answer.remaining -= 1
                if answer.remaining <= 0:
                    del self.forced[index]
            return answer
        return None

    def clear(self) -> None:
        self.latency_seconds = 0.0
        self.forced.clear()

    def to_json(self) -> JSONObject:
        return {
            "latency_seconds": self.latency_seconds,
            "forced": [answer.to_json() for answer in self.forced],
        }
