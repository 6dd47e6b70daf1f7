"""The admin page's HTML shells carry what the script must not hard-code: the signals, in the
registry's order, with their labels."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime

import pytest

from signals.registry import SIGNALS
from webhooks.store import keys

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("path", ["/admin", "/admin/config", "/admin/accounts/0012"])
async def test_every_page_carries_the_signal_labels_in_registry_order(service, path) -> None:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="viewer", role="viewer", connection="default", now=NOW
        )
    assert (await service.client.post("/api/v1/session", json={"key": key})).status_code == 200
    page = await service.client.get(path)
    assert page.status_code == 200
    found = re.search(r"data-signal-labels='([^']*)'", page.text)
    assert found is not None
    labels = json.loads(html.unescape(found.group(1)))
    assert labels == [[signal.name, signal.label] for signal in SIGNALS]
