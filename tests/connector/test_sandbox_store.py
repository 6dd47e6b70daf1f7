"""The sandbox on SQLite: a file survives a restart, reset empties it, memory stays the default."""

from __future__ import annotations

from pathlib import Path

import httpx

from connector.sandbox import SandboxState, create_sandbox_app

NOON = "2026-01-05T12:00:00Z"


async def test_a_file_database_survives_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "sandbox.db")
    first = SandboxState(database=database, oauth_client_id="c", oauth_client_secret="s")
    company = first.add_company({"name": "Acme"})
    contact = first.add_object("contacts", {"email": "ada@acme.test"}, {"companies": [company]})
    first.update_object("contacts", contact, {"jobtitle": "CTO"})
    first.create_group({"name": "customer_health", "label": "Customer health"})
    first.create_property(
        {
            "name": "health_score",
            "label": "Health score",
            "type": "number",
            "fieldType": "number",
            "groupName": "customer_health",
        }
    )
    refresh = first.oauth.token(
        {
            "grant_type": "authorization_code",
            "client_id": "c",
            "client_secret": "s",
            "redirect_uri": "http://x.test/cb",
            "code": first.oauth.authorize(
                {"client_id": "c", "redirect_uri": "http://x.test/cb"}
            ).split("code=")[1],
        }
    )["refresh_token"]
    first.close()

    second = SandboxState(database=database, oauth_client_id="c", oauth_client_secret="s")

    assert second.companies[company]["name"] == "Acme"
    assert second.objects["contacts"][contact]["jobtitle"] == "CTO"
    assert second.links["companies"][company]["contacts"] == [contact]
    assert second.properties["health_score"]["groupName"] == "customer_health"
    assert "customer_health" in second.groups
    assert refresh in second.oauth.refresh_tokens
    # Ids carry on where the first run stopped.
    assert second.add_company({"name": "Globex"}) == str(int(contact) + 1)
    second.close()


async def test_a_restarted_file_sandbox_answers_the_api_from_the_file(tmp_path: Path) -> None:
    database = str(tmp_path / "sandbox.db")
    first = SandboxState(database=database)
    app = create_sandbox_app(first)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://s"
    ) as client:
        created = await client.post(
            "/crm/v3/objects/tasks", json={"properties": {"hs_timestamp": NOON}}
        )
    first.close()

    second = create_sandbox_app(SandboxState(database=database))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=second), base_url="http://s"
    ) as client:
        read = await client.get(
            f"/crm/v3/objects/tasks/{created.json()['id']}", params={"properties": "hs_timestamp"}
        )

    assert read.status_code == 200
    assert read.json()["properties"]["hs_timestamp"] == NOON
    second.state.sandbox.close()


async def test_reset_empties_the_database_too(tmp_path: Path) -> None:
    database = str(tmp_path / "sandbox.db")
    state = SandboxState(database=database)
    state.add_company({"name": "Acme"})
    state.reset()
    state.close()

    reopened = SandboxState(database=database)

    assert reopened.companies == {}
    assert "name" in reopened.properties
    assert reopened.add_company({"name": "Fresh"}) == "1"
    reopened.close()


def test_without_a_database_the_state_lives_in_memory_only() -> None:
    state = SandboxState()

    state.add_company({"name": "Acme"})

    assert state.store is None
    assert SandboxState().companies == {}


def test_memory_database_keeps_the_same_behaviour() -> None:
    state = SandboxState(database=":memory:")

    company = state.add_company({"name": "Acme"})

    assert state.store is not None
    assert state.companies[company]["name"] == "Acme"
    state.close()
