"""What a channel is given to say, and what every channel can do.

ChannelError                  a channel could not deliver; `retryable` says whether trying
                              again later can help (a 5xx, a timeout) or not (a 4xx, a bad
                              address)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

# fired: an alert was raised; escalated: a more severe reason joined an open one (its title is
# now that reason's); recovered: its last reason ended.
NoticeKind = Literal["fired", "escalated", "recovered"]
Digest = Literal["none", "hourly", "daily"]


@dataclass(frozen=True, kw_only=True)
class AlertNotice:
    """One alert as people read it: which account, how healthy, what changed and why."""

    alert_id: int
    kind: NoticeKind
    rule: str  # the rule's name, e.g. "entered-at-risk"
    title: str  # e.g. "Acme Corp entered at risk"
    reason: str  # e.g. "score fell from 64 to 38 (band at_risk)"
    connection: str
    crm: str
    record_id: str  # the account's CRM record id
    account_name: str | None
    owner_id: str | None  # the CRM owner of the account, when known
    score: int | None
    band: str
    previous_score: int | None
    previous_band: str | None
    trend_30d: int | None
    drivers: tuple[str, ...]
    record_url: str | None  # link to the account in the CRM, when the CRM has one
    at: datetime
    severity: str = "medium"  # low, medium, high: of the reason the alert is titled by
    # The alert's other open reasons, each "title (reason)": one alert per account lists all.
    also: tuple[str, ...] = ()
    # Set on a notice of a channel's overflow digest: the daily limit it was held back over.
    over_daily_limit: int | None = None


class ChannelError(Exception):
    """Raised by Channel.send when the message was not delivered."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    """A destination for alerts. `send` delivers one message: the one notice, or (for a digest
    channel) all notices of the period together."""

    name: str
    kind: str  # slack, teams, email, webhook, crm_task, owner
    digest: Digest
    # Messages it may send per UTC day (a digest is one); None: no limit. What exceeds it
    # waits for the channel's overflow digest at the next UTC midnight.
    daily_limit: int | None

    async def send(self, notices: Sequence[AlertNotice]) -> None: ...

    async def aclose(self) -> None: ...
