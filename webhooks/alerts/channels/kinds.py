"""What an alert channel type declares (`ChannelKind`): the fields of the channels file it
takes, its own rules for them, and how it is built; webhooks.alerts.channels.registry lists them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from webhooks.alerts.notice import Channel, Digest
from webhooks.settings import Settings

if TYPE_CHECKING:
    # Only for annotations: these modules declare kinds themselves, so importing them here at
    # run time would be a cycle.
    from webhooks.alerts.channels.crm_task import ConnectorLookup
    from webhooks.alerts.channels.email import SMTPOptions
    from webhooks.alerts.channels.http import HTTPSender
    from webhooks.alerts.channels.owner import OwnerLookup, OwnerVia

__all__ = [
    "OPTIONAL_FIELDS",
    "BuildContext",
    "ChannelEntry",
    "ChannelKind",
    "ChannelSpec",
    "DailyLimit",
    "Problem",
    "Transport",
]

DailyLimit = int | Literal["none"]
# What a channel sends through: the shared HTTP client, or the SMTP server of the settings.
Transport = Literal["http", "smtp"]
# The fields of an entry that only some types take, in the order problems are reported.
OPTIONAL_FIELDS: Final = ("url", "secret", "to", "via", "token", "fallback")
# A problem with one field of an entry: the field's path below the entry ("to.1"), and why.
Problem = tuple[str, str]


@dataclass(frozen=True, kw_only=True)
class ChannelEntry:
    """One entry of the file as written (secrets unwrapped), for a kind's checks: `None` is a
    field left out, which is not the same as an empty one."""

    index: int
    name: str
    type: str
    url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    to: tuple[str, ...] | None = None
    digest: Digest = "none"
    via: OwnerVia | None = None
    token: str | None = field(default=None, repr=False)
    fallback: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChannelSpec:
    """One validated entry of the file; `index` is its position (for messages)."""

    index: int
    name: str
    type: str
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


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What the channels of one file share: `smtp` is set when a kind `sends` "smtp" for some
    entry, `sender` (one HTTP client, closed with the last channel) when one sends "http"."""

    settings: Settings
    connector_for: ConnectorLookup
    owners: OwnerLookup | None = None
    smtp: SMTPOptions | None = None
    sender: HTTPSender | None = None


def _no_problems(entry: ChannelEntry) -> list[Problem]:
    return []


def _no_file_problems(entries: Sequence[ChannelEntry]) -> list[str]:
    return []


def _sends_nothing(spec: ChannelSpec) -> Transport | None:
    return None


def _no_link(channel: Channel, spec: ChannelSpec, channels: Mapping[str, Channel]) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class ChannelKind:
    """One alert channel type. The channels file refuses the OPTIONAL_FIELDS not in `fields`;
    a `url` in `fields` is required and must be an http(s) URL; `check` says what else is
    wrong with an entry of this type, `check_file` what is wrong across the whole file."""

    type: str
    build: Callable[[ChannelSpec, BuildContext], Channel]
    fields: frozenset[str] = frozenset()
    check: Callable[[ChannelEntry], list[Problem]] = _no_problems
    check_file: Callable[[Sequence[ChannelEntry]], list[str]] = _no_file_problems
    # What an entry of this type sends through (None: neither).
    sends: Callable[[ChannelSpec], Transport | None] = _sends_nothing
    # Every connection's admin key may route alerts to it (its `connections` are ignored).
    open_to_all: bool = False
    # After every channel of the file is built: join this one to the others it names.
    link: Callable[[Channel, ChannelSpec, Mapping[str, Channel]], None] = _no_link
