"""GET and PUT /api/v1/me/preferences: each signed-in user's own preferences, kept by the key's
connection and name; a viewer keeps its own; a session needs its CSRF token to change them;
invalid documents are refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from webhooks.store import keys

PATH = "/api/v1/me/preferences"


async def new_key(service: Any, *, name: str, role: str = "viewer", connection: str = "default"):
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=name, role=role, connection=connection, now=datetime.now(UTC)
        )
    return key


async def bearer(service: Any, **key: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {await new_key(service, **key)}"}


async def test_preferences_start_unset_and_round_trip(service) -> None:
    viewer = await bearer(service, name="ann")
    assert (await service.client.get(PATH, headers=viewer)).json() == {"owner": None}
    stored = await service.client.put(PATH, json={"owner": "12345"}, headers=viewer)
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"owner": "12345"}
    assert (await service.client.get(PATH, headers=viewer)).json() == {"owner": "12345"}
    cleared = await service.client.put(PATH, json={"owner": None}, headers=viewer)
    assert cleared.json() == {"owner": None}
    assert (await service.client.get(PATH, headers=viewer)).json() == {"owner": None}


async def test_a_put_replaces_them_all(service) -> None:
    admin = await bearer(service, name="bob", role="admin")
    await service.client.put(PATH, json={"owner": "o1"}, headers=admin)
    assert (await service.client.put(PATH, json={}, headers=admin)).json() == {"owner": None}


async def test_each_user_has_their_own(service) -> None:
    ann = await bearer(service, name="ann")
    bob = await bearer(service, name="bob")
    ann_elsewhere = await bearer(service, name="ann", connection="emea")
    await service.client.put(PATH, json={"owner": "o-ann"}, headers=ann)
    await service.client.put(PATH, json={"owner": "o-bob"}, headers=bob)
    assert (await service.client.get(PATH, headers=ann)).json() == {"owner": "o-ann"}
    assert (await service.client.get(PATH, headers=bob)).json() == {"owner": "o-bob"}
    assert (await service.client.get(PATH, headers=ann_elsewhere)).json() == {"owner": None}
    # Another key of the same name and connection is the same user.
    again = await bearer(service, name="ann")
    assert (await service.client.get(PATH, headers=again)).json() == {"owner": "o-ann"}


async def test_a_session_changes_them_with_its_csrf_token(service) -> None:
    key = await new_key(service, name="ann")
    signed_in = await service.client.post("/api/v1/session", json={"key": key})
    token = signed_in.json()["csrf_token"]
    assert (await service.client.get(PATH)).json() == {"owner": None}
    refused = await service.client.put(PATH, json={"owner": "o1"})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    stored = await service.client.put(PATH, json={"owner": "o1"}, headers={"X-CSRF-Token": token})
    assert stored.status_code == 200, stored.text
    assert (await service.client.get(PATH)).json() == {"owner": "o1"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"owner": "o1", "theme": "dark"}, "theme"),
        ({"owner": "x" * 256}, "owner"),
        ({"owner": 123}, "owner"),
        ({"owner": ["o1"]}, "owner"),
        ({"owner": "a\x00b"}, "owner"),
        (["o1"], "body"),
    ],
)
async def test_an_invalid_document_is_422_naming_the_field(service, body, field) -> None:
    viewer = await bearer(service, name="ann")
    response = await service.client.put(PATH, json=body, headers=viewer)
    assert response.status_code == 422, response.text
    assert field in str(response.json()["detail"])
    assert (await service.client.get(PATH, headers=viewer)).json() == {"owner": None}


async def test_the_longest_owner_is_kept_whole(service) -> None:
    viewer = await bearer(service, name="ann")
    response = await service.client.put(PATH, json={"owner": "x" * 255}, headers=viewer)
    assert response.json() == {"owner": "x" * 255}


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_ingest_key_has_none_and_no_key_is_401(service, method) -> None:
    ingest = await bearer(service, name="pipe", role="ingest")
    body = {"json": {"owner": "o1"}} if method == "PUT" else {}
    assert (await service.client.request(method, PATH, headers=ingest, **body)).status_code == 403
    assert (await service.client.request(method, PATH, **body)).status_code == 401
