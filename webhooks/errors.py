"""The service's exception tree, each mapped to one HTTP status by the app.

ServiceError                 base; carries the HTTP status and a message for the client
├── Unauthenticated (401)    intake: missing, wrong or stale webhook signature
├── BadPayload (400)         intake: a body that is not what the source documents
├── PayloadTooLarge (413)    intake: body over CRM_HEALTH_WEBHOOK_MAX_BODY_BYTES
└── NotConfigured (503)      intake: the connection lacks the secret to verify a request
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
