"""The service's exception tree, each mapped to one HTTP status by the app.

ServiceError                 base; carries the HTTP status and a message for the client
├── Unauthenticated (401)    signature missing, wrong or stale; API key missing or unknown
├── Forbidden (403)          api: the key's role or connection does not allow this
├── BadPayload (400)         intake: a body that is not what the source documents
├── PayloadTooLarge (413)    intake: body over the configured or the source's limit
├── BodyNotReceived (408)    intake: the client went away (or timed out) before its body ended
├── InvalidFields (422)      ingest: events that break the schema (each field named)
│   └── InvalidConfig (422)  config: a HealthConfig document that does not validate
├── PreconditionRequired (428) config: a change without If-Match
├── PreconditionFailed (412) config: If-Match names a version that is no longer current
├── NotFound (404)           a path naming something that does not exist
├── TooManyRequests (429)    intake: too many wrong secrets from one address; Retry-After
├── NotConfigured (503)      intake: the connection lacks the secret to verify a request
├── StorageUnavailable (503) intake: the database did not take the events; nothing was acked
├── Busy (503)               admin: the previews and backtests allowed at once are all running
├── Conflict (409)           oauth: the portal is already connected another way
└── UpstreamFailed (502)     oauth: HubSpot's token endpoint could not be reached or failed
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class Unauthenticated(ServiceError):
    status_code = 401


class Forbidden(ServiceError):
    status_code = 403


class BadPayload(ServiceError):
    status_code = 400


class PayloadTooLarge(ServiceError):
    status_code = 413


class BodyNotReceived(ServiceError):
    status_code = 408


class NotConfigured(ServiceError):
    status_code = 503


class Conflict(ServiceError):
    status_code = 409


class UpstreamFailed(ServiceError):
    status_code = 502


class InvalidFields(ServiceError):
    status_code = 422


class InvalidConfig(InvalidFields):
    """Every problem of the document as (field path, message), e.g. ("bands.hysteresis", ...)."""

    def __init__(self, errors: list[tuple[str, str]], *, prefix: str = "") -> None:
        super().__init__(prefix + "; ".join(f"{path}: {message}" for path, message in errors))
        self.errors = errors


class PreconditionRequired(ServiceError):
    status_code = 428


class PreconditionFailed(ServiceError):
    status_code = 412


class NotFound(ServiceError):
    status_code = 404


class TooManyRequests(ServiceError):
    status_code = 429


class StorageUnavailable(ServiceError):
    status_code = 503


class Busy(ServiceError):
    status_code = 503
