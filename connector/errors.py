"""The connector package's exception tree.

ConnectorError                      base of everything a connector raises
├── SignatureError                  events.verify_*: missing, malformed, wrong or stale signature
├── PayloadError                    events.parse_*: a webhook body that is not what the CRM sends
│   └── PayloadTooLargeError        segment.parse_request: body or call over the size limit
└── CRMHTTPError                    http.RetryingClient: a CRM call that did not succeed
    ├── CRMRequestRejected          a non-retryable 4xx answer (bad request, unknown property ...)
    │   └── CRMAuthError            401/403: the token is wrong, expired or lacks a scope
    ├── CRMRetriesExhausted         transport errors, 429 or 5xx until attempts or time ran out
    └── CRMRateLimitPaused          the CRM's allowance for a period (HubSpot: the day) is used up;
                                    no call until `retry_after` (also raised locally, unsent)
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class for every error raised by the connector package."""


class SignatureError(ConnectorError):
    """Raised by webhook verification when a request's signature is missing, wrong or stale."""


class PayloadError(ConnectorError):
    """Raised by webhook parsing when a body is not what the CRM documents; says which field."""


class PayloadTooLargeError(PayloadError):
    """Raised by request parsing when a body or one call in it is over the documented limit."""


class CRMHTTPError(ConnectorError):
    """Raised by the shared HTTP client when a CRM call did not succeed.

    `status` is the last HTTP status seen (None when the last attempt failed in transport).
    """

    def __init__(self, message: str, *, status: int | None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class CRMRequestRejected(CRMHTTPError):
    """Raised for a 4xx answer that retrying cannot fix (validation error, unknown property)."""


class CRMAuthError(CRMRequestRejected):
    """Raised for 401/403: the credentials are wrong, expired or miss a scope."""


class CRMRetriesExhausted(CRMHTTPError):
    """Raised when retryable failures (transport, 429, 5xx) outlast the attempts or time budget.

    `retry_after` carries the CRM's last `Retry-After` in seconds, when it sent one, so a
    durable outbox can schedule its next try no earlier than the CRM allowed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        body: str = "",
        attempts: int,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.attempts = attempts
        self.retry_after = retry_after


class CRMRateLimitPaused(CRMHTTPError):
    """Raised when the CRM says the connection's allowance for a whole period is used up
    (HubSpot's daily limit), and again, without sending, for every call until that period ends.

    Retrying would only burn attempts and the CRM's error budget, so none are made.
    `retry_after` is the number of seconds until the connection may call again; it is never
    less than the CRM asked for. Callers reschedule their work instead of counting a failure.
    """

    def __init__(
        self, message: str, *, status: int | None, body: str = "", retry_after: float
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


def retry_after(exc: CRMHTTPError) -> float:
    """How long the CRM asked us to wait: its Retry-After once retries ran out, else 0."""
    return (exc.retry_after or 0.0) if isinstance(exc, CRMRetriesExhausted) else 0.0
