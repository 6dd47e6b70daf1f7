"""The account owner as a channel: each alert goes to the person who owns the account in the
CRM, by e-mail or as a Slack direct message, instead of (or next to) a team channel.

The owner's e-mail comes from an `OwnerLookup` (webhooks.alerts.owners: the CRM's owner
record, cached, or the `owner` attribute itself when it is an e-mail address). Slack users are
found by that e-mail (`users.lookupByEmail`) and written to by user id (`chat.postMessage`).
When the owner cannot be reached, the notices go to the `fallback` channel; without one the
delivery fails, non-retryable, saying why: never a silent drop.

The delivery outbox hands a digest owner channel one owner's notices at a time (`owner_key`),
so a digest is one message per owner and period.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol

import httpx
import structlog

from connector.errors import CRMHTTPError
from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.email import EmailChannel, SMTPOptions
from webhooks.alerts.channels.http import HTTPSender, channel_error
from webhooks.alerts.channels.kinds import (
    BuildContext,
    ChannelEntry,
    ChannelKind,
    ChannelSpec,
    Problem,
    Transport,
)
from webhooks.alerts.channels.slack import slack_message
from webhooks.alerts.notice import AlertNotice, Channel, ChannelError, Digest

__all__ = [
    "KIND",
    "OWNER_KIND",
    "SLACK_API",
    "OwnerAddress",
    "OwnerChannel",
    "OwnerLookup",
    "OwnerVia",
    "SlackDirectMessages",
    "owner_key",
]

log = structlog.get_logger(__name__)

OWNER_KIND: Final = "owner"
OwnerVia = Literal["email", "slack"]
SLACK_API: Final = "https://slack.com/api"
# Slack's `error` values that a later try may get past; every other one (invalid_auth,
# missing_scope, not_in_channel, ...) needs someone to change the token or the app.
_SLACK_TRANSIENT: Final = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# How long a Slack user found by e-mail (or not found) is taken as known.
SLACK_USER_TTL: Final = timedelta(days=1)


def owner_key(notice: AlertNotice) -> tuple[str, str | None]:
    """Which owner a notice is for: its connection and the account's owner id."""
    return (notice.connection, notice.owner_id)


@dataclass(frozen=True, kw_only=True)
class OwnerAddress:
    """Where an account's owner is reached: `email`, or (None) `missing` says why not, in
    words an admin can act on ("account Acme has no owner e-mail in HubSpot: ...")."""

    email: str | None
    name: str | None = None
    missing: str | None = None


class OwnerLookup(Protocol):
    """Finds the owner of a notice's account. Raises ChannelError when the CRM could not be
    asked (retryable when a later try may succeed)."""

    async def address_for(self, notice: AlertNotice) -> OwnerAddress: ...


class SlackDirectMessages:
    """Slack's Web API with a bot token (scopes `users:read.email` and `chat:write`): find a
    user by e-mail, post to them by user id, which Slack delivers as a direct message from
    the app. The token is sent as a header and never logged or shown."""

    def __init__(
        self,
        *,
        channel: str,
        token: str,
        sender: HTTPSender,
        api_base: str = SLACK_API,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._channel = channel
        self._token = token
        self._sender = sender
        self._api_base = api_base.rstrip("/")
        self._clock = clock
        # e-mail -> (user id or None: no such user, when it was asked)
        self._users: dict[str, tuple[str | None, datetime]] = {}
        sender.attach()

    def __repr__(self) -> str:
        return f"SlackDirectMessages(channel={self._channel!r})"

    async def user_for(self, email: str) -> str | None:
        """The Slack user id with this e-mail; None when the workspace has no such user."""
        key = email.lower()
        known = self._users.get(key)
        now = self._clock()
        if known is not None and now - known[1] < SLACK_USER_TTL:
            return known[0]
        document = await self._call("GET", "users.lookupByEmail", params={"email": email})
        user_id: str | None = None
        if document.get("ok") is True:
            user = document.get("user")
            found = user.get("id") if isinstance(user, dict) else None
            if not isinstance(found, str) or not found:
                raise self._failure("users.lookupByEmail", "the answer has no user id")
            user_id = found
        elif document.get("error") != "users_not_found":
            raise self._refused("users.lookupByEmail", document)
        self._users[key] = (user_id, now)
        return user_id

    async def post(self, user_id: str, message: dict[str, Any]) -> None:
        """Post `message` (slack.slack_message's body) to the user as a direct message."""
        document = await self._call(
            "POST", "chat.postMessage", json={"channel": user_id, **message}
        )
        if document.get("ok") is not True:
            raise self._refused("chat.postMessage", document)

    async def _call(
        self,
        method: str,
        api_method: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        where = self._where(api_method)
        try:
            response = await self._sender.client.request(
                method,
                f"{self._api_base}/{api_method}",
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {self._token}"},
                path_for_logs=f"/api/{api_method}",
            )
        except CRMHTTPError as exc:
            raise channel_error(exc, where=where, secrets=[self._token]) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ChannelError(f"{where} failed ({type(exc).__name__})", retryable=False) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise self._failure(api_method, "the answer is not a JSON object")
        return document

    def _where(self, api_method: str) -> str:
        return f"owner channel {self._channel!r}: Slack {api_method}"

    def _failure(self, api_method: str, why: str) -> ChannelError:
        return ChannelError(f"{self._where(api_method)}: {why}", retryable=False)

    def _refused(self, api_method: str, document: dict[str, Any]) -> ChannelError:
        error = document.get("error")
        code = error if isinstance(error, str) else "unknown_error"
        return ChannelError(
            f"{self._where(api_method)} answered {words.clip(words.one_line(code), 80)!r}",
            retryable=code in _SLACK_TRANSIENT,
        )

    async def aclose(self) -> None:
        await self._sender.detach()


class OwnerChannel:
    """Sends each owner's notices to that owner, by e-mail or Slack direct message."""

    kind = OWNER_KIND

    def __init__(
        self,
        *,
        name: str,
        via: OwnerVia,
        owners: OwnerLookup,
        digest: Digest = "none",
        smtp: SMTPOptions | None = None,
        slack: SlackDirectMessages | None = None,
        fallback: Channel | None = None,
    ) -> None:
        if via == "email" and smtp is None:
            raise ValueError("an owner channel via email needs the SMTP options")
        if via == "slack" and slack is None:
            raise ValueError("an owner channel via slack needs the Slack API")
        self.name = name
        self.via: OwnerVia = via
        self.digest: Digest = digest
        # Filled in by build_channels from the channels file and the settings.
        self.daily_limit: int | None = None
        self._owners = owners
        self._smtp = smtp
        self._slack = slack
        # Set once every channel of the file is built (it is another channel of the file).
        self.fallback = fallback

    def __repr__(self) -> str:
        fallback = None if self.fallback is None else self.fallback.name
        return f"OwnerChannel(name={self.name!r}, via={self.via!r}, fallback={fallback!r})"

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        # The outbox groups by owner already; grouping again keeps one owner's alerts from
        # ever reaching another, whoever calls this.
        by_owner: dict[tuple[str, str | None], list[AlertNotice]] = {}
        for notice in notices:
            by_owner.setdefault(owner_key(notice), []).append(notice)
        for group in by_owner.values():
            await self._send_to_owner(group)

    async def _send_to_owner(self, notices: Sequence[AlertNotice]) -> None:
        address = await self._owners.address_for(notices[0])
        if address.email is None:
            await self._fall_back(notices, address.missing or "the owner has no e-mail")
            return
        if self.via == "email":
            assert self._smtp is not None  # __init__ made sure
            mail = EmailChannel(
                name=self.name, to=(address.email,), smtp=self._smtp, digest=self.digest
            )
            await mail.send(notices)
        else:
            assert self._slack is not None  # __init__ made sure
            user_id = await self._slack.user_for(address.email)
            if user_id is None:
                account = words.account_label(words.readable(notices[0]))
                await self._fall_back(
                    notices,
                    f"account {account}: Slack has no user with the owner's e-mail {address.email}",
                )
                return
            await self._slack.post(user_id, slack_message(notices))
        log.info(
            "alert_sent_to_owner",
            channel=self.name,
            via=self.via,
            connection=notices[0].connection,
            owner=notices[0].owner_id,
            alerts=[notice.alert_id for notice in notices],
        )

    async def _fall_back(self, notices: Sequence[AlertNotice], why: str) -> None:
        why = words.clip(words.one_line(why), 400)
        if self.fallback is None:
            raise ChannelError(
                f"owner channel {self.name!r}: {why}; no fallback channel is set",
                retryable=False,
            )
        log.info(
            "alert_owner_fallback",
            channel=self.name,
            fallback=self.fallback.name,
            reason=why,
            alerts=[notice.alert_id for notice in notices],
        )
        await self.fallback.send(notices)

    async def aclose(self) -> None:
        # The fallback is a channel of the file in its own right and is closed as such.
        if self._slack is not None:
            await self._slack.aclose()


def _check(entry: ChannelEntry) -> list[Problem]:
    """via and token: what an owner channel needs to reach owners."""
    if entry.via is None:
        return [("via", "required for an owner channel (email or slack)")]
    if entry.via == "email":
        return [] if entry.token is None else [("token", "only for an owner channel via slack")]
    if not entry.token:
        return [("token", "required for an owner channel via slack (a bot token, xoxb-...)")]
    if not entry.token.startswith("xoxb-"):
        # Never quoted: it is the credential.
        return [("token", "must be a Slack bot token (xoxb-...)")]
    return []


def _check_fallbacks(entries: Sequence[ChannelEntry]) -> list[str]:
    """A fallback names a team channel of the file: not itself, not another owner channel."""
    types = {entry.name: entry.type for entry in entries}
    problems = []
    for entry in entries:
        if entry.type != OWNER_KIND or entry.fallback is None:
            continue
        where = f"channels.{entry.index}.fallback"
        target = types.get(entry.fallback)
        if target is None:
            problems.append(f"{where}: no channel is named {entry.fallback!r}")
        elif target == OWNER_KIND:
            problems.append(f"{where}: {entry.fallback!r} is an owner channel; name a team channel")
    return problems


def _sends(spec: ChannelSpec) -> Transport:
    return "smtp" if spec.via == "email" else "http"


def _build(spec: ChannelSpec, context: BuildContext) -> OwnerChannel:
    if context.owners is None:
        raise ValueError("owner channels need an owner lookup (OwnerDirectory)")
    assert spec.via is not None  # read_channels_file made sure
    slack = None
    if spec.via == "slack":
        assert context.sender is not None
        assert spec.token is not None
        slack = SlackDirectMessages(channel=spec.name, token=spec.token, sender=context.sender)
    return OwnerChannel(
        name=spec.name,
        via=spec.via,
        owners=context.owners,
        digest=spec.digest,
        smtp=context.smtp if spec.via == "email" else None,
        slack=slack,
    )


def _link(channel: Channel, spec: ChannelSpec, channels: Mapping[str, Channel]) -> None:
    assert isinstance(channel, OwnerChannel)
    channel.fallback = None if spec.fallback is None else channels[spec.fallback]


KIND: Final = ChannelKind(
    type=OWNER_KIND,
    fields=frozenset({"via", "token", "fallback"}),
    check=_check,
    check_file=_check_fallbacks,
    sends=_sends,
    link=_link,
    build=_build,
)
