"""Alert channels: what turns AlertNotices into messages and sends them (Slack, Teams, e-mail,
a signed webhook, a CRM task, the account owner), one module per type listed in registry.py, and
the channels file they are configured in."""

from webhooks.alerts.channels.config import (
    ChannelsFileError,
    build_channels,
    check_channels,
    load_channels,
    read_channels_file,
)
from webhooks.alerts.channels.crm_task import CRMTaskChannel
from webhooks.alerts.channels.email import EmailChannel, SMTPOptions
from webhooks.alerts.channels.http import HTTPSender
from webhooks.alerts.channels.kinds import ChannelSpec
from webhooks.alerts.channels.slack import SlackChannel
from webhooks.alerts.channels.teams import TeamsChannel
from webhooks.alerts.channels.webhook import WebhookChannel

__all__ = [
    "CRMTaskChannel",
    "ChannelSpec",
    "ChannelsFileError",
    "EmailChannel",
    "HTTPSender",
    "SMTPOptions",
    "SlackChannel",
    "TeamsChannel",
    "WebhookChannel",
    "build_channels",
    "check_channels",
    "load_channels",
    "read_channels_file",
]
