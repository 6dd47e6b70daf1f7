"""The service's exception tree, each mapped to one HTTP status by the app.

ServiceError                 base; carries the HTTP status and a message for the client
├── Unauthenticated (401)    intake: missing, wrong or stale webhook signature
├── BadPayload (400)         intake: a body that is not what the source documents
├── PayloadTooLarge (413)    intake: body over CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES
├── NotConfigured (503)      intake: the connection lacks the secret to verify a request
├── Conflict (409)           oauth: the portal is already connected another way
└── UpstreamFailed (502)     oauth: HubSpot's token endpoint could not be reached or failed
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(ServiceError):
    status_code = 401


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
