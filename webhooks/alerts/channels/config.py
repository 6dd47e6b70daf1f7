"""The alert channels file (CRM_HEALTH_ALERT_CHANNELS_FILE) and the channels built from it.

```yaml
channels:
  - name: cs-slack            # ^[a-z0-9_.-]{1,64}$, unique; alert rules name channels by it
    type: slack               # slack | teams | email | webhook | crm_task | owner
    url: ${SLACK_WEBHOOK_URL} # slack, teams, webhook
    digest: none              # none | hourly | daily (crm_task: none only)
    daily_limit: 100          # messages per UTC day (a digest is one); unset or 0:
                              # CRM_HEALTH_ALERT_DAILY_LIMIT; none: no limit
  - name: signed
    type: webhook
    url: https://example.com/hooks/crm-health
    secret: ${CRM_HEALTH_WEBHOOK_SECRET}   # whsec_<base64>
  - name: cs-mail
    type: email
    to: [cs-leads@example.com]
    connections: [acme]       # admin keys of these connections may route alerts here ("*": all)
  - name: owners              # each alert to the account's owner in the CRM
    type: owner
    via: email                # email | slack (a direct message, user found by e-mail)
    token: ${SLACK_BOT_TOKEN} # via slack only: a bot token (xoxb-...)
    fallback: cs-mail         # optional: where alerts go whose owner cannot be reached
    digest: daily             # a digest is one message per owner and period
```
A global admin may route any rule to any channel. An admin key bound to a connection may route
that connection's alerts only to channels open to it: those listing it (or "*") under
`connections`, and crm_task channels (a task lands in the account's own CRM).
Notices over a channel's daily limit are held, not dropped: they go out together at the next
UTC midnight as the channel's overflow digest (see webhooks.alerts.delivery).
`${VAR}` in any value is replaced with the environment's value after the YAML is read, so
secrets stay out of the file (and a secret's characters cannot change the YAML's shape).
Errors name the field (`channels.2.url: ...`) and never quote a URL or a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, SecretStr, ValidationError

from webhooks import envref
from webhooks.alerts.channels.crm_task import ConnectorLookup, CRMTaskChannel
from webhooks.alerts.channels.email import EmailChannel, SMTPOptions
from webhooks.alerts.channels.http import HTTPSender
from webhooks.alerts.channels.owner import (
    OwnerChannel,
    OwnerLookup,
    OwnerVia,
    SlackDirectMessages,
)
from webhooks.alerts.channels.slack import SlackChannel
from webhooks.alerts.channels.teams import TeamsChannel
from webhooks.alerts.channels.webhook import WebhookChannel, decode_secret
from webhooks.alerts.notice import Channel, Digest
from webhooks.settings import Settings

__all__ = [
    "CHANNEL_TYPES",
    "ChannelGrants",
    "ChannelSpec",
    "ChannelsFileError",
    "build_channels",
    "channel_open_to",
    "check_channels",
    "daily_limit_of",
    "load_channels",
    "read_channels_file",
    "smtp_options",
    "valid_address",
]

ChannelType = Literal["slack", "teams", "email", "webhook", "crm_task", "owner"]
CHANNEL_TYPES: Final[tuple[ChannelType, ...]] = (
    "slack",
    "teams",
    "email",
    "webhook",
    "crm_task",
    "owner",
)
_NEEDS_URL: Final = frozenset({"slack", "teams", "webhook"})
DailyLimit = int | Literal["none"]

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


class ChannelsFileError(ValueError):
    """The alert channels file is missing, unreadable or invalid, or the settings an e-mail
    channel needs are missing; the message names the field and never quotes a secret."""


@dataclass(frozen=True, kw_only=True)
class ChannelSpec:
    """One validated entry of the file; `index` is its position (for messages)."""

    index: int
    name: str
    type: ChannelType
    url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    to: tuple[str, ...] = ()
    digest: Digest = "none"
    connections: tuple[str, ...] = ()
    # As written: 0 (or unset) for CRM_HEALTH_ALERT_DAILY_LIMIT, "none" for no limit.
    daily_limit: DailyLimit = 0
    # owner channels only
    via: OwnerVia | None = None
    token: str | None = field(default=None, repr=False)
    fallback: str | None = None


def _daily_limit(value: Any) -> DailyLimit:
    """A whole number of messages (a string of digits too: `${VAR}` gives strings), `none`
    or nothing."""
    if value is None:
        return 0
    if isinstance(value, str):
        value = value.strip()
        if value.lower() == "none":
            return "none"
        if value.isdigit():
            return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError(
        "must be a whole number of messages per UTC day (0 or unset: "
        "CRM_HEALTH_ALERT_DAILY_LIMIT), or none for no limit"
    )


class _FileChannel(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    type: ChannelType
    url: SecretStr | None = None
    secret: SecretStr | None = None
    to: list[str] | None = None
    digest: Digest = "none"
    connections: list[Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.-]{1,64})$")]] = []
    daily_limit: Annotated[DailyLimit, PlainValidator(_daily_limit)] = 0
    via: OwnerVia | None = None
    token: SecretStr | None = None
    fallback: str | None = None


# Channel name -> the connections whose admin keys may route alerts to it ("*": every one).
ChannelGrants = Mapping[str, frozenset[str]]


def channel_open_to(grants: ChannelGrants, channel: str, connection: str) -> bool:
    """Whether an admin key bound to `connection` may route its alerts to `channel`."""
    granted = grants.get(channel, frozenset())
    return "*" in granted or connection in granted


class _ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    channels: list[_FileChannel]


# --- reading -----------------------------------------------------------------------------------


def _expand(value: Any, location: str, path: Path) -> Any:
    """Replace ${VAR} in every string value with the environment's value."""
    if isinstance(value, dict):
        return {
            key: _expand(item, f"{location}.{key}" if location else str(key), path)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item, f"{location}.{index}", path) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    return envref.expand(
        value,
        missing=lambda name: ChannelsFileError(
            f"{path}: {location}: ${{{name}}} is not set in the environment"
        ),
    )


def _url_problem(url: str) -> str | None:
    """Why a URL cannot be posted to, without quoting it (it may be the secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "is not a valid URL"
    if parsed.scheme not in ("https", "http"):
        return "must be an https:// (or http://) URL"
    if not parsed.host:
        return "has no host"
    return None


def valid_address(value: str) -> bool:
    """A single e-mail address, bare or with a display name; no header line breaks."""
    if "\r" in value or "\n" in value:
        return False
    _, address = parseaddr(value)
    return bool(_ADDRESS.match(address))


def _a(channel_type: str) -> str:
    """The type with its article: "an email", "an owner", "a slack"."""
    return f"an {channel_type}" if channel_type[0] in "aeiou" else f"a {channel_type}"


def _check_url(entry: _FileChannel, where: str) -> list[str]:
    url = entry.url.get_secret_value() if entry.url is not None else None
    if entry.type not in _NEEDS_URL:
        return [] if url is None else [f"{where}.url: not used by {_a(entry.type)} channel"]
    if not url:
        return [f"{where}.url: required for a {entry.type} channel"]
    reason = _url_problem(url)
    return [f"{where}.url: {reason}"] if reason else []


def _check_secret(entry: _FileChannel, where: str) -> list[str]:
    secret = entry.secret.get_secret_value() if entry.secret is not None else None
    if entry.type != "webhook":
        return [] if secret is None else [f"{where}.secret: not used by {_a(entry.type)} channel"]
    if not secret:
        return [f"{where}.secret: required for a webhook channel (whsec_ followed by base64)"]
    try:
        decode_secret(secret)
    except ValueError as exc:
        return [f"{where}.secret: {exc}"]
    return []


def _check_to(entry: _FileChannel, where: str) -> list[str]:
    if entry.type != "email":
        return [] if entry.to is None else [f"{where}.to: only for email channels"]
    if not entry.to:
        return [f"{where}.to: an email channel needs at least one address"]
    return [
        f"{where}.to.{position}: not an e-mail address"
        for position, address in enumerate(entry.to)
        if not valid_address(address)
    ]


def _check_owner(entry: _FileChannel, where: str) -> list[str]:
    """via, token and fallback: what only an owner channel has, and what it needs."""
    token = entry.token.get_secret_value() if entry.token is not None else None
    if entry.type != "owner":
        return [
            f"{where}.{name}: only for owner channels"
            for name, value in (("via", entry.via), ("token", token), ("fallback", entry.fallback))
            if value is not None
        ]
    if entry.via is None:
        return [f"{where}.via: required for an owner channel (email or slack)"]
    if entry.via == "email":
        return [] if token is None else [f"{where}.token: only for an owner channel via slack"]
    if not token:
        return [f"{where}.token: required for an owner channel via slack (a bot token, xoxb-...)"]
    if not token.startswith("xoxb-"):
        # Never quoted: it is the credential.
        return [f"{where}.token: must be a Slack bot token (xoxb-...)"]
    return []


def _check_fallbacks(entries: Sequence[_FileChannel]) -> list[str]:
    """A fallback names a team channel of the file: not itself, not another owner channel."""
    types = {entry.name: entry.type for entry in entries}
    problems = []
    for index, entry in enumerate(entries):
        if entry.type != "owner" or entry.fallback is None:
            continue
        where = f"channels.{index}.fallback"
        target = types.get(entry.fallback)
        if target is None:
            problems.append(f"{where}: no channel is named {entry.fallback!r}")
        elif target == "owner":
            problems.append(f"{where}: {entry.fallback!r} is an owner channel; name a team channel")
    return problems


def _check(entry: _FileChannel, index: int) -> list[str]:
    """What the schema cannot say: which fields each type needs or refuses."""
    where = f"channels.{index}"
    problems = [
        *_check_url(entry, where),
        *_check_secret(entry, where),
        *_check_to(entry, where),
        *_check_owner(entry, where),
    ]
    if entry.type == "crm_task" and entry.digest != "none":
        problems.append(
            f"{where}.digest: a crm_task channel creates one task per alert, so it cannot be a "
            "digest (use none)"
        )
    return problems


def read_channels_file(path: Path) -> list[ChannelSpec]:
    """The file's channels, validated; ChannelsFileError lists every problem found."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelsFileError(
            f"cannot read alert channels file {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        # Only the position and the problem: the offending line itself may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ChannelsFileError(f"{path} is not valid YAML{at}: {problem}") from None
    document = _expand(document, "", path)
    try:
        entries = _ChannelsFile.model_validate(document).channels
    except ValidationError as exc:
        found = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(file)'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ChannelsFileError(f"{path}: {found}") from None
    problems: list[str] = _check_fallbacks(entries)
    first_use: dict[str, int] = {}
    for index, entry in enumerate(entries):
        problems += _check(entry, index)
        if entry.name in first_use:
            problems.append(
                f"channels.{index}.name: {entry.name!r} is already the name of "
                f"channels.{first_use[entry.name]}"
            )
        else:
            first_use[entry.name] = index
    if problems:
        raise ChannelsFileError(f"{path}: {'; '.join(problems)}")
    return [
        ChannelSpec(
            index=index,
            name=entry.name,
            type=entry.type,
            url=None if entry.url is None else entry.url.get_secret_value(),
            secret=None if entry.secret is None else entry.secret.get_secret_value(),
            to=tuple(entry.to or ()),
            digest=entry.digest,
            # A CRM task lands in the account's own CRM: no connection can reach another's.
            connections=("*",) if entry.type == "crm_task" else tuple(entry.connections),
            daily_limit=entry.daily_limit,
            via=entry.via,
            token=None if entry.token is None else entry.token.get_secret_value(),
            fallback=entry.fallback,
        )
        for index, entry in enumerate(entries)
    ]


# --- building ----------------------------------------------------------------------------------


def smtp_options(settings: Settings) -> SMTPOptions | None:
    """The SMTP server of the settings; None when host or from address is missing."""
    if settings.smtp_host is None or settings.smtp_from_address is None:
        return None
    return SMTPOptions(
        host=settings.smtp_host,
        from_address=settings.smtp_from_address,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=None
        if settings.smtp_password is None
        else settings.smtp_password.get_secret_value(),
        timeout_seconds=settings.smtp_timeout_seconds,
    )


def _sends_email(spec: ChannelSpec) -> bool:
    return spec.type == "email" or (spec.type == "owner" and spec.via == "email")


def _sends_http(spec: ChannelSpec) -> bool:
    return spec.type in _NEEDS_URL or (spec.type == "owner" and spec.via == "slack")


def _smtp_for(specs: Sequence[ChannelSpec], settings: Settings, path: Path) -> SMTPOptions | None:
    emails = [spec for spec in specs if _sends_email(spec)]
    if not emails:
        return None
    first = emails[0]
    options = smtp_options(settings)
    if options is None:
        what = "an email channel" if first.type == "email" else "an owner channel via email"
        raise ChannelsFileError(
            f"{path}: channels.{first.index} ({first.name}) is {what}: set "
            "CRM_HEALTH_SMTP_HOST and CRM_HEALTH_SMTP_FROM_ADDRESS"
        )
    if not valid_address(options.from_address):
        raise ChannelsFileError("CRM_HEALTH_SMTP_FROM_ADDRESS: not an e-mail address")
    return options


def build_channels(
    specs: Sequence[ChannelSpec],
    *,
    settings: Settings,
    connector_for: ConnectorLookup,
    owners: OwnerLookup | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    path: Path = Path("alert channels"),
) -> dict[str, Channel]:
    """Channel objects for validated entries. The HTTP channels share one RetryingClient with
    the settings' retry policy; `transport` replaces its network (tests). Owner channels find
    owners through `owners` (webhooks.alerts.owners.OwnerDirectory)."""
    smtp = _smtp_for(specs, settings, path)
    sender: HTTPSender | None = None
    if any(_sends_http(spec) for spec in specs):
        sender = HTTPSender.create(policy=settings.retry_policy(), transport=transport)
    channels: dict[str, Channel] = {}
    owner_channels: list[tuple[OwnerChannel, str | None]] = []
    for spec in specs:
        channel: Channel
        if spec.type == "owner":
            if owners is None:
                raise ValueError("owner channels need an owner lookup (OwnerDirectory)")
            assert spec.via is not None  # read_channels_file made sure
            slack = None
            if spec.via == "slack":
                assert sender is not None
                assert spec.token is not None
                slack = SlackDirectMessages(channel=spec.name, token=spec.token, sender=sender)
            owner = OwnerChannel(
                name=spec.name,
                via=spec.via,
                owners=owners,
                digest=spec.digest,
                smtp=smtp if spec.via == "email" else None,
                slack=slack,
            )
            owner_channels.append((owner, spec.fallback))
            channel = owner
        elif spec.type == "crm_task":
            channel = CRMTaskChannel(name=spec.name, connector_for=connector_for)
        elif spec.type == "email":
            assert smtp is not None  # _smtp_for raised otherwise
            channel = EmailChannel(name=spec.name, to=spec.to, smtp=smtp, digest=spec.digest)
        else:
            # read_channels_file made sure of both
            assert sender is not None
            assert spec.url is not None
            if spec.type == "slack":
                channel = SlackChannel(
                    name=spec.name, url=spec.url, sender=sender, digest=spec.digest
                )
            elif spec.type == "teams":
                channel = TeamsChannel(
                    name=spec.name, url=spec.url, sender=sender, digest=spec.digest
                )
            else:
                assert spec.secret is not None
                channel = WebhookChannel(
                    name=spec.name,
                    url=spec.url,
                    secret=spec.secret,
                    sender=sender,
                    digest=spec.digest,
                )
        channel.daily_limit = daily_limit_of(spec, settings)
        channels[spec.name] = channel
    for owner, fallback in owner_channels:
        owner.fallback = None if fallback is None else channels[fallback]
    return channels


def daily_limit_of(spec: ChannelSpec, settings: Settings) -> int | None:
    """The messages a channel may send per UTC day; None: no limit."""
    if spec.daily_limit == "none":
        return None
    return spec.daily_limit or settings.alert_daily_limit


def load_channels(
    settings: Settings,
    *,
    connector_for: ConnectorLookup,
    owners: OwnerLookup | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[dict[str, Channel], dict[str, frozenset[str]]]:
    """The channels of CRM_HEALTH_ALERT_CHANNELS_FILE by name, and who may route to each
    (ChannelGrants); none when it is not set. Close each channel with `aclose` (the shared
    HTTP client closes with the last one)."""
    path = settings.alert_channels_file
    if path is None:
        return {}, {}
    specs = read_channels_file(path)
    channels = build_channels(
        specs,
        settings=settings,
        connector_for=connector_for,
        owners=owners,
        transport=transport,
        path=path,
    )
    return channels, {spec.name: frozenset(spec.connections) for spec in specs}


def check_channels(settings: Settings) -> None:
    """Fail early, naming the setting and the field, on a channels file or SMTP settings that
    cannot work."""
    path = settings.alert_channels_file
    if path is not None:
        try:
            _smtp_for(read_channels_file(path), settings, path)
        except ChannelsFileError as exc:
            raise channels_setting_named(exc) from None


def channels_setting_named(exc: ChannelsFileError) -> ChannelsFileError:
    """The error with the setting it is about in front, unless it names one already (the
    SMTP settings an e-mail channel needs)."""
    message = str(exc)
    if message.startswith("CRM_HEALTH_"):
        return exc
    return ChannelsFileError(f"CRM_HEALTH_ALERT_CHANNELS_FILE: {message}")
