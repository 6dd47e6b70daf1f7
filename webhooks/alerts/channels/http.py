"""How the HTTP channels (Slack, Teams, signed webhook) post: one shared RetryingClient, its
errors turned into ChannelError, and webhook URLs (secrets themselves) never shown.

Retrying within one send is RetryingClient's job (429, 5xx, transport errors); what is left
when it gives up is a `ChannelError` the delivery outbox acts on:

    CRMRetriesExhausted / CRMRateLimitPaused   retryable=True   (429, 5xx, unreachable)
    CRMRequestRejected (incl. CRMAuthError)    retryable=False  (any other 4xx)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx
import structlog

from connector.errors import (
    CRMHTTPError,
    CRMRateLimitPaused,
    CRMRequestRejected,
    CRMRetriesExhausted,
)
from connector.http import RetryingClient, RetryPolicy
from webhooks.alerts.notice import Channel, ChannelError, Digest

if TYPE_CHECKING:
    from webhooks.alerts.channels.kinds import BuildContext, ChannelSpec, Transport

__all__ = [
    "EXCERPT_LIMIT",
    "HTTPChannel",
    "HTTPSender",
    "channel_error",
    "host_of",
    "posts_to_url",
    "scrub",
    "sends_http",
]

log = structlog.get_logger(__name__)

# Enough of an answer to see what the receiver complained about, short enough for a log line.
EXCERPT_LIMIT: Final = 200

# What a secret is replaced with in error text.
_HIDDEN: Final = "[hidden]"


def host_of(url: str) -> str:
    """The host of a URL: all that is ever logged or shown of a webhook URL."""
    try:
        return httpx.URL(url).host or "(no host)"
    except httpx.InvalidURL:
        return "(invalid URL)"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (and a URL's path, which is the secret of chat webhooks)
    replaced, should a receiver echo it back."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, _HIDDEN)
    return text


def _url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that must not be shown: the whole URL, its path, its query."""
    secrets = [url]
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return secrets
    path = parsed.raw_path.decode("ascii", "replace").partition("?")[0]
    if path not in ("", "/"):
        secrets.append(path)
    if parsed.query:
        secrets.append(parsed.query.decode("ascii", "replace"))
    return secrets


def _excerpt(body: str, secrets: Iterable[str]) -> str:
    text = " ".join(scrub(body, secrets).split())
    if len(text) > EXCERPT_LIMIT:
        text = text[: EXCERPT_LIMIT - 1] + "\u2026"
    return text or "(empty body)"


def channel_error(error: CRMHTTPError, *, where: str, secrets: Iterable[str] = ()) -> ChannelError:
    """The ChannelError for what RetryingClient raised; `where` names channel and host."""
    secrets = list(secrets)
    if isinstance(error, CRMRequestRejected):
        return ChannelError(
            f"{where} was rejected with status {error.status}: {_excerpt(error.body, secrets)}",
            retryable=False,
        )
    if isinstance(error, CRMRateLimitPaused):
        return ChannelError(
            f"{where} is rate limited for another {error.retry_after:.0f}s (status {error.status})",
            retryable=True,
        )
    if isinstance(error, CRMRetriesExhausted):
        if error.status is None:
            cause = error.__cause__
            reason = "unreachable" if cause is None else f"unreachable ({type(cause).__name__})"
            return ChannelError(
                f"{where} {reason} after {error.attempts} attempt(s)", retryable=True
            )
        return ChannelError(
            f"{where} failed after {error.attempts} attempt(s) with status {error.status}: "
            f"{_excerpt(error.body, secrets)}",
            retryable=True,
        )
    return ChannelError(f"{where} failed with status {error.status}", retryable=True)


class HTTPSender:
    """Posts JSON for the HTTP channels through one RetryingClient.

    Every channel built on it calls `attach` once and `detach` when closed: the client is
    closed with the last one, so channels can share it without knowing about each other.
    """

    def __init__(self, client: RetryingClient) -> None:
        self.client = client
        self._users = 0

    @classmethod
    def create(
        cls,
        *,
        policy: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_seconds: float = 30.0,
    ) -> HTTPSender:
        """A sender with its own client: no base URL (each channel posts to its full URL)."""
        return cls(
            RetryingClient(
                base_url="",
                name="alerts",
                headers={"User-Agent": "crm-health-alerts"},
                policy=policy,
                transport=transport,
                timeout_seconds=timeout_seconds,
            )
        )

    def attach(self) -> None:
        self._users += 1

    async def detach(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.client.aclose()

    async def post_json(
        self,
        *,
        channel: str,
        kind: str,
        url: str,
        payload: Any,
        sign: Callable[[bytes], Mapping[str, str]] | None = None,
        secrets: Iterable[str] = (),
    ) -> httpx.Response:
        """POST `payload` as JSON to `url`; raises ChannelError when it was not accepted.

        `sign`, when given, gets the exact body bytes that will be sent and returns headers to
        add (a signature over those bytes). Logs and errors name only the URL's host.
        """
        host = host_of(url)
        where = f"{kind} channel {channel!r}: POST {host}"
        hidden = [*_url_secrets(url), *secrets]
        headers: dict[str, str] = {}
        if sign is not None:
            # Built the way the client will build it, so the signed bytes are the sent bytes.
            body = httpx.Request("POST", url, json=payload).content
            headers.update(sign(body))
        try:
            response = await self.client.request(
                "POST", url, json=payload, headers=headers, path_for_logs=host
            )
        except CRMHTTPError as exc:
            # Not chained: the underlying transport error may quote the URL.
            raise channel_error(exc, where=where, secrets=hidden) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Outside the retry policy (an invalid URL, say): nothing to retry.
            raise ChannelError(f"{where} failed ({type(exc).__name__})", retryable=False) from None
        log.debug("alert_channel_posted", channel=channel, type=kind, host=host)
        return response


class HTTPChannel:
    """What Slack, Teams and the signed webhook have in common: a name, a URL that is a secret,
    and a share of the sender."""

    kind: str = "http"
    # Set from the channels file by build_channels; None: no limit.
    daily_limit: int | None = None

    def __init__(self, *, name: str, url: str, sender: HTTPSender, digest: Digest = "none") -> None:
        self.name = name
        self.digest: Digest = digest
        self._url = url
        self._sender = sender
        self._closed = False
        sender.attach()

    def __repr__(self) -> str:
        # Never the URL: for chat webhooks it is the credential.
        return f"{type(self).__name__}(name={self.name!r}, host={host_of(self._url)!r})"

    async def _post(
        self,
        payload: Any,
        *,
        sign: Callable[[bytes], Mapping[str, str]] | None = None,
        secrets: Iterable[str] = (),
    ) -> httpx.Response:
        return await self._sender.post_json(
            channel=self.name,
            kind=self.kind,
            url=self._url,
            payload=payload,
            sign=sign,
            secrets=secrets,
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._sender.detach()


def sends_http(spec: ChannelSpec) -> Transport:
    """For ChannelKind.sends: every entry of the kind posts through the shared sender."""
    return "http"


def posts_to_url(
    channel: Callable[..., Channel],
) -> Callable[[ChannelSpec, BuildContext], Channel]:
    """For ChannelKind.build: a channel that posts each message to the entry's `url`."""

    def build(spec: ChannelSpec, context: BuildContext) -> Channel:
        # read_channels_file made sure of the URL, build_channels of the sender.
        assert context.sender is not None
        assert spec.url is not None
        return channel(name=spec.name, url=spec.url, sender=context.sender, digest=spec.digest)

    return build
