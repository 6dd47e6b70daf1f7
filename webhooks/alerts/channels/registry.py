"""Every alert channel type, listed once: the channels file accepts these types, in this order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from webhooks.alerts.channels import crm_task, email, owner, slack, teams, webhook
from webhooks.alerts.channels.kinds import ChannelKind

__all__ = ["KINDS"]

KINDS: Final[Mapping[str, ChannelKind]] = {
    kind.type: kind
    for kind in (
        slack.KIND,
        teams.KIND,
        email.KIND,
        webhook.KIND,
        crm_task.KIND,
        owner.KIND,
    )
}
