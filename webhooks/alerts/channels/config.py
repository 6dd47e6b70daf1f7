"""The alert channels file (CRM_HEALTH_ALERT_CHANNELS_FILE) and the channels built from it.

```yaml
channels:
  - name: cs-slack            # ^[a-z0-9_.-]{1,64}$, unique; alert rules name channels by it
    type: slack               # slack | teams | email | webhook | crm_task | owner (KINDS)
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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from webhooks import envref
from webhooks.alerts.channels.crm_task import ConnectorLookup
from webhooks.alerts.channels.email import SMTPOptions, valid_address
from webhooks.alerts.channels.http import HTTPSender
from webhooks.alerts.channels.kinds import (
    OPTIONAL_FIELDS,
    BuildContext,
    ChannelEntry,
    ChannelKind,
    ChannelSpec,
    DailyLimit,
    Problem,
)
from webhooks.alerts.channels.owner import OwnerLookup, OwnerVia
from webhooks.alerts.channels.registry import KINDS
from webhooks.alerts.notice import Channel, Digest
from webhooks.settings import Settings

__all__ = [
    "CHANNEL_TYPES",
    "ChannelGrants",
    "ChannelsFileError",
    "build_channels",
    "channel_open_to",
    "check_channels",
    "daily_limit_of",
    "load_channels",
    "read_channels_file",
    "smtp_options",
]

CHANNEL_TYPES: Final[tuple[str, ...]] = tuple(KINDS)
# The words pydantic uses for a Literal of the types (what `type` was before the registry).
_TYPES_EXPECTED: Final = " or ".join(
    filter(None, (", ".join(map(repr, CHANNEL_TYPES[:-1])), repr(CHANNEL_TYPES[-1])))
)
# Refused as "not used by a <type> channel"; the other optional fields as "only for <the types
# that take it> channels".
_NOT_USED_BY: Final = frozenset({"url", "secret"})
# An entry's problems are reported in the order of its fields, whichever check found them.
_FIELD_ORDER: Final = {name: position for position, name in enumerate((*OPTIONAL_FIELDS, "digest"))}


class ChannelsFileError(ValueError):
    """The alert channels file is missing, unreadable or invalid, or the settings an e-mail
    channel needs are missing; the message names the field and never quotes a secret."""


def _channel_type(value: Any) -> str:
    """One of the registered types (KINDS)."""
    if isinstance(value, str) and value in KINDS:
        return value
    raise PydanticCustomError(
        "literal_error", "Input should be {expected}", {"expected": _TYPES_EXPECTED}
    )


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
    type: Annotated[str, PlainValidator(_channel_type)]
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


def _a(channel_type: str) -> str:
    """The type with its article: "an email", "an owner", "a slack"."""
    return f"an {channel_type}" if channel_type[0] in "aeiou" else f"a {channel_type}"


def _refused(field: str, channel_type: str) -> str:
    """Why an entry of `channel_type` may not have `field`."""
    if field in _NOT_USED_BY:
        return f"not used by {_a(channel_type)} channel"
    takers = " or ".join(kind.type for kind in KINDS.values() if field in kind.fields)
    return f"only for {takers} channels"


def _entry(entry: _FileChannel, index: int) -> ChannelEntry:
    return ChannelEntry(
        index=index,
        name=entry.name,
        type=entry.type,
        url=None if entry.url is None else entry.url.get_secret_value(),
        secret=None if entry.secret is None else entry.secret.get_secret_value(),
        to=None if entry.to is None else tuple(entry.to),
        digest=entry.digest,
        via=entry.via,
        token=None if entry.token is None else entry.token.get_secret_value(),
        fallback=entry.fallback,
    )


def _check(entry: ChannelEntry) -> list[str]:
    """What the schema cannot say: which fields each type needs or refuses, and its own rules
    (ChannelKind.check), reported field by field in the order of the file's fields."""
    kind = KINDS[entry.type]
    problems: list[Problem] = [
        (name, _refused(name, entry.type))
        for name in OPTIONAL_FIELDS
        if name not in kind.fields and getattr(entry, name) is not None
    ]
    if "url" in kind.fields:
        reason = _url_problem(entry.url) if entry.url else f"required for a {entry.type} channel"
        if reason:
            problems.append(("url", reason))
    problems += kind.check(entry)
    problems.sort(key=lambda problem: _FIELD_ORDER[problem[0].split(".")[0]])
    return [f"channels.{entry.index}.{name}: {reason}" for name, reason in problems]


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
    checked = [_entry(entry, index) for index, entry in enumerate(entries)]
    problems: list[str] = [
        problem for kind in KINDS.values() for problem in kind.check_file(checked)
    ]
    first_use: dict[str, int] = {}
    for entry in checked:
        problems += _check(entry)
        if entry.name in first_use:
            problems.append(
                f"channels.{entry.index}.name: {entry.name!r} is already the name of "
                f"channels.{first_use[entry.name]}"
            )
        else:
            first_use[entry.name] = entry.index
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
            connections=("*",) if KINDS[entry.type].open_to_all else tuple(entry.connections),
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


def _kind(spec: ChannelSpec) -> ChannelKind:
    return KINDS[spec.type]


def _smtp_for(specs: Sequence[ChannelSpec], settings: Settings, path: Path) -> SMTPOptions | None:
    emails = [spec for spec in specs if _kind(spec).sends(spec) == "smtp"]
    if not emails:
        return None
    first = emails[0]
    options = smtp_options(settings)
    if options is None:
        what = f"{_a(first.type)} channel" + ("" if first.via is None else f" via {first.via}")
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
    if any(_kind(spec).sends(spec) == "http" for spec in specs):
        sender = HTTPSender.create(policy=settings.retry_policy(), transport=transport)
    context = BuildContext(
        settings=settings,
        connector_for=connector_for,
        owners=owners,
        smtp=smtp,
        sender=sender,
    )
    channels: dict[str, Channel] = {}
    for spec in specs:
        channel = _kind(spec).build(spec, context)
        channel.daily_limit = daily_limit_of(spec, settings)
        channels[spec.name] = channel
    # Once all are built: a channel may name another of the file (an owner's fallback).
    for spec in specs:
        _kind(spec).link(channels[spec.name], spec, channels)
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
