"""A follow-up task in the CRM itself, on the account record and assigned to its owner.

One task per notice, through the connector of the notice's connection; recoveries create no
task. Connectors retry on their own (connector.http); what they raise maps to ChannelError:
CRMRetriesExhausted and CRMRateLimitPaused are retryable, rejections and odd answers are not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Final

import structlog

from connector.base import CRMConnector, TaskPriority, TaskRequest
from connector.errors import ConnectorError, CRMHTTPError
from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.http import channel_error
from webhooks.alerts.channels.kinds import (
    BuildContext,
    ChannelEntry,
    ChannelKind,
    ChannelSpec,
    Problem,
)
from webhooks.alerts.notice import AlertNotice, ChannelError, Digest

__all__ = ["DUE_HOUR_UTC", "KIND", "CRMTaskChannel", "ConnectorLookup", "due_at", "task_request"]

log = structlog.get_logger(__name__)

# A connection's name -> its connector, None when it is unknown or has no CRM credentials.
ConnectorLookup = Callable[[str], CRMConnector | None]

# Tasks fall due at the start of the next business day (UTC: the CRM shows it in local time).
DUE_HOUR_UTC: Final = 9
SUBJECT_LIMIT: Final = 255
SATURDAY: Final = 5


def due_at(now: datetime) -> datetime:
    """09:00 UTC on the next business day (Monday to Friday) after `now`."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    day = now.astimezone(UTC).date() + timedelta(days=1)
    while day.weekday() >= SATURDAY:
        day += timedelta(days=1)
    return datetime.combine(day, time(DUE_HOUR_UTC), tzinfo=UTC)


def _priority(notice: AlertNotice) -> TaskPriority:
    return "high" if notice.band == "at_risk" else "medium"


def _body(notice: AlertNotice) -> str:
    lines = [
        words.explanation(notice),
        "",
        f"Score: {words.score_text(notice)}",
        f"Trend 30d: {words.trend_text(notice.trend_30d)}",
    ]
    if notice.drivers:
        lines += ["", "Why:"]
        lines += [f"- {words.one_line(driver)}" for driver in notice.drivers]
    lines += ["", f"Raised by crm-health: {words.context_line(notice)}"]
    return "\n".join(lines)


def task_request(notice: AlertNotice, *, now: datetime) -> TaskRequest:
    """The task for one alert: what happened and why, for the account's owner."""
    notice = words.readable(notice)
    return TaskRequest(
        record_id=notice.record_id,
        subject=words.clip(words.one_line(f"Customer health: {notice.title}"), SUBJECT_LIMIT),
        body=_body(notice),
        due_at=due_at(now),
        owner_id=notice.owner_id,
        priority=_priority(notice),
    )


class CRMTaskChannel:
    """Creates a task per alert in the CRM of the alert's connection."""

    kind = "crm_task"
    # A task is about one account: tasks are never grouped.
    digest: Digest = "none"
    # Set from the channels file by build_channels; None: no limit. Tasks cannot be merged:
    # the ones held back over it are all created at the next UTC midnight.
    daily_limit: int | None = None

    def __init__(
        self,
        *,
        name: str,
        connector_for: ConnectorLookup,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self._connector_for = connector_for
        self._clock = clock

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        for notice in notices:
            if words.is_recovered(notice):
                # The task raised by the alert is the owner's to close; no new one.
                continue
            await self._create(notice)

    async def _create(self, notice: AlertNotice) -> None:
        where = f"crm_task channel {self.name!r}: connection {notice.connection!r}"
        connector = self._connector_for(notice.connection)
        if connector is None:
            raise ChannelError(
                f"{where} is unknown or has no CRM credentials, so no task can be created "
                f"for alert {notice.alert_id}",
                retryable=False,
            )
        request = task_request(notice, now=self._clock())
        try:
            task_id = await connector.create_task(request)
        except CRMHTTPError as exc:
            raise channel_error(exc, where=f"{where} ({notice.crm}) task create") from None
        except ConnectorError as exc:
            # e.g. an answer without the task's id: it may exist, so do not create another.
            raise ChannelError(
                f"{where} ({notice.crm}) task create failed ({type(exc).__name__})",
                retryable=False,
            ) from None
        log.info(
            "alert_task_created",
            channel=self.name,
            connection=notice.connection,
            account=notice.record_id,
            alert=notice.alert_id,
            task_id=task_id,
        )

    async def aclose(self) -> None:
        # The connectors belong to the connections registry, which closes them.
        return None


def _check(entry: ChannelEntry) -> list[Problem]:
    if entry.digest == "none":
        return []
    return [
        (
            "digest",
            "a crm_task channel creates one task per alert, so it cannot be a digest (use none)",
        )
    ]


def _build(spec: ChannelSpec, context: BuildContext) -> CRMTaskChannel:
    return CRMTaskChannel(name=spec.name, connector_for=context.connector_for)


# A CRM task lands in the account's own CRM: no connection can reach another's.
KIND: Final = ChannelKind(type="crm_task", check=_check, open_to_all=True, build=_build)
