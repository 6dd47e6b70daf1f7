"""The service's exception tree, each mapped to one HTTP status by the app.

ServiceError                 base; carries the HTTP status and a message for the client
├── Unauthenticated (401)    signature missing, wrong or stale; API key missing or unknown
├── Forbidden (403)          api: the key's role or connection does not allow this
├── BadPayload (400)         intake: a body that is not what the source documents
├── PayloadTooLarge (413)    intake: body over the configured or the source's limit
├── InvalidFields (422)      ingest: events that break the schema (each field named)
├── NotFound (404)           a path naming something that does not exist
├── NotConfigured (503)      intake: the connection lacks the secret to verify a request
├── StorageUnavailable (503) intake: the database did not take the events; nothing was acked
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


class NotConfigured(ServiceError):
    status_code = 503


class Conflict(ServiceError):
    status_code = 409


class UpstreamFailed(ServiceError):
    status_code = 502


class InvalidFields(ServiceError):
    status_code = 422


class NotFound(ServiceError):
    status_code = 404


class StorageUnavailable(ServiceError):
    status_code = 503
