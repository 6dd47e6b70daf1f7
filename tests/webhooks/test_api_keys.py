"""API keys: stored hashed, shown once, scoped to a role and a connection; the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import structlog
from sqlalchemy import select
from typer.testing import CliRunner

from webhooks.auth import Principal, allow, authenticate, require_connection, require_global
from webhooks.cli import cli
from webhooks.errors import Forbidden, Unauthenticated
from webhooks.store import keys
from webhooks.store.models import ApiKey

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def new_key(service, *, role="ingest", connection="default", name="sync"):
    async with service.runtime.sessions() as session, session.begin():
        row, key = await keys.create(session, name=name, role=role, connection=connection, now=NOW)
    return row, key


async def who(service, authorization, *, now=NOW):
    return await authenticate(
        sessions=service.runtime.sessions,
        settings=service.runtime.settings,
        authorization=authorization,
        now=now,
    )


async def test_only_the_hash_of_a_key_is_stored(service):
    _, key = await new_key(service)
    assert key.startswith("chk_")
    assert len(key) > 40
    async with service.runtime.sessions() as session:
        stored = (await session.execute(select(ApiKey))).scalar_one()
    assert key not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.key_hash == keys.secret_token_hash(key)
    assert key.startswith(stored.prefix)


async def test_a_key_authenticates_with_its_role_and_connection(service):
    row, key = await new_key(service, role="viewer", connection="emea")
    principal = await who(service, f"Bearer {key}")
    assert principal == Principal(role="viewer", connection="emea", key_id=row.id, name="sync")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer chk_unknown"])
async def test_missing_malformed_or_unknown_keys_are_401(service, header):
    with pytest.raises(Unauthenticated) as caught:
        await who(service, header)
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


async def test_a_revoked_key_is_refused(service):
    row, key = await new_key(service)
    async with service.runtime.sessions() as session, session.begin():
        assert await keys.revoke(session, key=row.prefix, now=NOW) is True
    with pytest.raises(Unauthenticated, match="revoked"):
        await who(service, f"Bearer {key}")


async def test_revoke_by_id_and_unknown_or_already_revoked_is_false(service):
    row, _ = await new_key(service)
    async with service.runtime.sessions() as session, session.begin():
        assert await keys.revoke(session, key="chk_nothing", now=NOW) is False
        assert await keys.revoke(session, key=str(row.id), now=NOW) is True
        assert await keys.revoke(session, key=str(row.id), now=NOW) is False
        assert await keys.list_keys(session) == []
        assert len(await keys.list_keys(session, include_revoked=True)) == 1


async def test_last_used_is_written_at_most_once_a_minute(service):
    _, key = await new_key(service)

    async def last_used():
        async with service.runtime.sessions() as session:
            return (await session.execute(select(ApiKey.last_used_at))).scalar_one()

    await who(service, f"Bearer {key}", now=NOW)
    assert await last_used() == NOW
    await who(service, f"Bearer {key}", now=NOW + timedelta(seconds=30))
    assert await last_used() == NOW
    await who(service, f"Bearer {key}", now=NOW + timedelta(seconds=61))
    assert await last_used() == NOW + timedelta(seconds=61)


async def test_bootstrap_token_is_a_global_admin_bound_to_the_settings_connection(
    service_factory,
):
    service = await service_factory(admin_token="bootstrap-token-123456")
    principal = await who(service, "Bearer bootstrap-token-123456")
    assert (principal.role, principal.connection, principal.key_id) == (
        "global_admin",
        "default",
        None,
    )
    assert principal.settings_scope is None


def test_only_a_global_admin_changes_what_applies_to_every_connection():
    connection_admin = Principal(role="admin", connection="emea", key_id=1, name="a")
    assert connection_admin.settings_scope == "emea"
    with pytest.raises(Forbidden, match=r"needs a global_admin key.*'emea'"):
        require_global(connection_admin, "this change")
    global_admin = Principal(role="global_admin", connection="emea", key_id=2, name="g")
    assert global_admin.settings_scope is None
    require_global(global_admin, "this change")


@pytest.mark.parametrize(
    ("field", "values"),
    [("role", {"role": "owner"}), ("connection", {"connection": "bad name!"})],
)
async def test_invalid_role_or_connection_is_refused_naming_it(service, field, values):
    arguments = {"name": "x", "role": "viewer", "connection": "default", **values}
    async with service.runtime.sessions() as session, session.begin():
        with pytest.raises(ValueError, match=f"^{field}"):
            await keys.create(session, now=NOW, **arguments)


def test_wrong_role_is_forbidden():
    viewer = Principal(role="viewer", connection="default", key_id=1, name="v")
    with pytest.raises(Forbidden, match="admin or ingest"):
        allow(viewer, "admin", "ingest")
    assert allow(viewer, "admin", "viewer") is viewer


def test_another_connections_data_is_forbidden_even_to_admins():
    admin = Principal(role="admin", connection="emea", key_id=1, name="a")
    with pytest.raises(Forbidden, match="default"):
        require_connection(admin, "default")
    require_connection(admin, "emea")


async def test_http_request_without_a_key_is_401_with_a_bearer_challenge(service):
    response = await service.client.post("/ingest/events", json={"events": []})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_http_malformed_authorization_header_is_401(service):
    response = await service.client.get(
        "/api/v1/ingest/unmatched", headers={"Authorization": "Token abc"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_http_viewer_key_may_not_push_events(service):
    _, key = await new_key(service, role="viewer")
    response = await service.client.post(
        "/ingest/events", json={"events": []}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403
    assert "admin or ingest" in response.json()["detail"]


async def test_http_ingest_key_may_not_read(service):
    _, key = await new_key(service, role="ingest")
    response = await service.client.get(
        "/api/v1/ingest/unmatched", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403
    assert "admin or viewer" in response.json()["detail"]


async def test_http_viewer_key_may_not_read_another_connection(service):
    _, key = await new_key(service, role="viewer", connection="emea")
    headers = {"Authorization": f"Bearer {key}"}
    own = await service.client.get("/api/v1/ingest/unmatched", headers=headers)
    assert own.status_code == 200
    other = await service.client.get(
        "/api/v1/ingest/unmatched", params={"connection": "default"}, headers=headers
    )
    assert other.status_code == 403


async def test_http_bootstrap_token_reads_its_connection(service_factory):
    service = await service_factory(admin_token="bootstrap-token-123456")
    response = await service.client.get(
        "/api/v1/ingest/unmatched", headers={"Authorization": "Bearer bootstrap-token-123456"}
    )
    assert response.status_code == 200
    wrong = await service.client.get(
        "/api/v1/ingest/unmatched", headers={"Authorization": "Bearer bootstrap-token-wrong"}
    )
    assert wrong.status_code == 401


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """A database for the command, and logging put back afterwards: the command configures it
    onto the runner's captured stderr, which is closed once the command returns."""
    monkeypatch.setenv("CRM_HEALTH_DATABASE_URL", f"sqlite:///{tmp_path / 'keys.db'}")
    config = structlog.get_config()
    yield
    structlog.configure(**config)


@pytest.mark.usefixtures("cli_env")
def test_cli_creates_lists_and_revokes_keys():
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--name", "warehouse", "--role", "ingest"])
    assert created.exit_code == 0, created.output
    key = created.stdout.splitlines()[0]
    assert key.startswith("chk_")
    assert "not shown again" in created.stderr
    listed = runner.invoke(cli, ["keys", "list"])
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "id", "prefix", "name", "role", "connection", "created", "last", "used",
    ]  # fmt: skip
    assert row.split()[2:5] == ["warehouse", "ingest", "default"]
    assert key not in listed.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", key[:12]])
    assert revoked.exit_code == 0
    assert runner.invoke(cli, ["keys", "list"]).stdout.strip() == "no API keys"
    again = runner.invoke(cli, ["keys", "revoke", key[:12]])
    assert again.exit_code == 1
    assert "no active API key" in again.stderr
    assert "revoked" in runner.invoke(cli, ["keys", "list", "--revoked"]).stdout


@pytest.mark.usefixtures("cli_env")
def test_cli_refuses_an_unknown_role():
    result = CliRunner().invoke(cli, ["keys", "create", "--name", "x", "--role", "owner"])
    assert result.exit_code == 2
    assert "role" in result.stderr
