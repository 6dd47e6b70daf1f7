"""The whole configuration checked at start-up (connections, alert channels, the encryption
key), so a setting that cannot work fails early, named, rather than at the first event."""

from __future__ import annotations

from webhooks.alerts.channels.config import check_channels
from webhooks.connections import check_connections, check_encryption_key
from webhooks.settings import Settings


def check_configuration(settings: Settings) -> None:
    """Raise the first problem found (ConnectionsFileError, ChannelsFileError, SecretKeyError),
    naming the setting or the file's field."""
    check_connections(settings)
    check_channels(settings)
    check_encryption_key(settings)
