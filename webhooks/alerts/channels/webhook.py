"""A generic JSON webhook, signed per the Standard Webhooks specification.

Headers: `webhook-id` (stable across retries, so receivers can drop duplicates),
`webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the decoded `whsec_`
secret). Body: `{"type", "timestamp", "data"}`; types `account.health_alert`,
`account.health_recovered` and, for several notices at once, `account.health_alert_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.http import HTTPChannel, HTTPSender, sends_http
from webhooks.alerts.channels.kinds import (
    BuildContext,
    ChannelEntry,
    ChannelKind,
    ChannelSpec,
    Problem,
)
from webhooks.alerts.notice import AlertNotice, Digest

__all__ = [
    "DIGEST_TYPE",
    "KIND",
    "NOTICE_TYPES",
    "SECRET_PREFIX",
    "WebhookChannel",
    "decode_secret",
    "notice_data",
    "sign",
    "webhook_id",
    "webhook_payload",
]

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (the marker of a secret, not one)
# The specification's bounds for a symmetric secret: 24 to 64 random bytes.
SECRET_MIN_BYTES: Final = 24
SECRET_MAX_BYTES: Final = 64

NOTICE_TYPES: Final = {"fired": "account.health_alert", "recovered": "account.health_recovered"}
DIGEST_TYPE: Final = "account.health_alert_digest"


def decode_secret(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret; ValueError (never quoting it) when malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX} followed by base64")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(
            f"must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes, not {len(key)}"
        )
    return key


def sign(key: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one body."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def notice_data(notice: AlertNotice) -> dict[str, Any]:
    """Every field of a notice, as JSON: plain data (the receiver escapes it for wherever it
    shows it), less invisible characters such as bidi controls."""
    notice = words.plain(notice)
    return {
        "alert_id": notice.alert_id,
        "kind": notice.kind,
        "rule": notice.rule,
        "title": notice.title,
        "reason": notice.reason,
        "severity": notice.severity,
        "also": list(notice.also),
        "connection": notice.connection,
        "crm": notice.crm,
        "record_id": notice.record_id,
        "account_name": notice.account_name,
        "owner_id": notice.owner_id,
        "score": notice.score,
        "band": notice.band,
        "previous_score": notice.previous_score,
        "previous_band": notice.previous_band,
        "trend_30d": notice.trend_30d,
        "drivers": list(notice.drivers),
        "record_url": notice.record_url,
        "at": _iso(notice.at),
    }


def webhook_id(notices: Sequence[AlertNotice]) -> str:
    """The same for every attempt at the same message: `alert-42-fired` for one notice, a
    digest of the notices' ids for several. No dots: they delimit the signed content."""
    if len(notices) == 1:
        return f"alert-{notices[0].alert_id}-{notices[0].kind}"
    keys = sorted(f"{notice.alert_id}:{notice.kind}" for notice in notices)
    return "digest-" + hashlib.sha256(",".join(keys).encode()).hexdigest()[:32]


def webhook_payload(notices: Sequence[AlertNotice]) -> dict[str, Any]:
    """The body: `timestamp` is when the (latest) event happened, not when it was sent."""
    if not notices:
        raise ValueError("a webhook message needs at least one notice")
    if len(notices) == 1:
        notice = notices[0]
        return {
            "type": NOTICE_TYPES[notice.kind],
            "timestamp": _iso(notice.at),
            "data": notice_data(notice),
        }
    latest = max(notices, key=lambda notice: notice.at)
    return {
        "type": DIGEST_TYPE,
        "timestamp": _iso(latest.at),
        "data": {"count": len(notices), "alerts": [notice_data(n) for n in notices]},
    }


class WebhookChannel(HTTPChannel):
    """POSTs signed JSON to any URL; the receiver verifies it with its copy of the secret."""

    kind = "webhook"

    def __init__(
        self,
        *,
        name: str,
        url: str,
        secret: str,
        sender: HTTPSender,
        digest: Digest = "none",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = decode_secret(secret)
        self._secret = secret
        self._clock = clock
        super().__init__(name=name, url=url, sender=sender, digest=digest)

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        if not notices:
            return
        msg_id = webhook_id(notices)

        def headers(body: bytes) -> Mapping[str, str]:
            # Signed at send time: a retry later gets a fresh timestamp under the same id.
            timestamp = int(self._clock())
            return {
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, msg_id=msg_id, timestamp=timestamp, body=body),
            }

        await self._post(webhook_payload(notices), sign=headers, secrets=[self._secret])


def _check(entry: ChannelEntry) -> list[Problem]:
    if not entry.secret:
        return [("secret", "required for a webhook channel (whsec_ followed by base64)")]
    try:
        decode_secret(entry.secret)
    except ValueError as exc:
        return [("secret", str(exc))]
    return []


def _build(spec: ChannelSpec, context: BuildContext) -> WebhookChannel:
    # read_channels_file made sure of the URL and the secret, build_channels of the sender.
    assert context.sender is not None
    assert spec.url is not None
    assert spec.secret is not None
    return WebhookChannel(
        name=spec.name, url=spec.url, secret=spec.secret, sender=context.sender, digest=spec.digest
    )


KIND: Final = ChannelKind(
    type="webhook",
    fields=frozenset({"url", "secret"}),
    check=_check,
    sends=sends_http,
    build=_build,
)
