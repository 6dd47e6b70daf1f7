"""The admin page's HTML shells carry what the script must not hard-code: the signals, in the
registry's order, with their labels; each needs a session and links the others."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from signals.registry import SIGNALS
from webhooks.store import keys

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


PAGES = ["/admin", "/admin/config", "/admin/calibration", "/admin/accounts/0012"]


async def _signed_in(service) -> None:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name="viewer", role="viewer", connection="default", now=NOW
        )
    assert (await service.client.post("/api/v1/session", json={"key": key})).status_code == 200


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_carries_the_signal_labels_in_registry_order(service, path) -> None:
    await _signed_in(service)
    page = await service.client.get(path)
    assert page.status_code == 200
    found = re.search(r"data-signal-labels='([^']*)'", page.text)
    assert found is not None
    labels = json.loads(html.unescape(found.group(1)))
    assert labels == [[signal.name, signal.label] for signal in SIGNALS]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_needs_a_session(service, path) -> None:
    page = await service.client.get(path, follow_redirects=False)

    assert page.status_code == 303
    assert page.headers["location"] == f"/admin/login?next={quote(path, safe='')}"


async def test_the_calibration_page_is_served_and_linked_beside_the_configuration(
    service,
) -> None:
    await _signed_in(service)

    page = await service.client.get("/admin/calibration")

    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "<title>Calibration · crm-health admin</title>" in page.text
    assert 'data-page="calibration"' in page.text
    assert re.search(r'href="/admin/calibration" aria-current="page">Calibration</a>', page.text)
    links = re.findall(r'<a href="(/admin[^"]*)"', page.text)
    assert links.index("/admin/calibration") == links.index("/admin/config") + 1
