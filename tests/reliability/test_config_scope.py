"""One tenant's admin against the configuration, on SQLite and PostgreSQL: an admin key bound
to a connection changes only that connection's settings (its segment overrides and alert
routing), never what applies to everyone, and never sees another connection's settings; a
global admin changes everything. Each refusal is checked to leave nothing stored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tenants import ALPHA, BETA, bearer, new_key, touch_every_account, two_tenants

from signals.config import HealthConfig
from signals.model import AccountFacts
from signals.scoring import score
from testkit import Service
from webhooks.store.models import Account, Alert, AlertDelivery, ConfigVersion, RecomputeJob

# Delivery, not evidence: these accounts are scored on the few events they get.
pytestmark = pytest.mark.usefixtures("verdict_on_any_evidence")

CHANNELS = """\
channels:
  - name: alpha-slack
    type: slack
    url: https://hooks.example.com/alpha
    connections: [alpha]
  - name: beta-slack
    type: slack
    url: https://hooks.example.com/beta
    connections: [beta]
  - name: ops-slack
    type: slack
    url: https://hooks.example.com/ops
  - name: in-crm
    type: crm_task
"""

# Every account of the connection it applies to lands in at_risk: no score reaches 100.
ALL_AT_RISK = {
    "name": "everyone-at-risk",
    "match": {"name": "Alpha Only"},
    "changes": {"bands": {"healthy_min": 100, "at_risk_below": 100}},
}


@pytest.fixture
async def tenants(service_factory, tmp_path: Path) -> Service:
    channels = tmp_path / "channels.yaml"
    channels.write_text(CHANNELS)
    return await two_tenants(service_factory, tmp_path, alert_channels_file=channels)


async def _headers(service: Service, role: str, connection: str) -> dict[str, str]:
    return bearer(await new_key(service, role=role, connection=connection))


async def _read(service: Service, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
    response = await service.client.get("/api/v1/config", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["config"], response.headers["ETag"]


async def _put(
    service: Service, headers: dict[str, str], document: dict[str, Any], etag: str, comment=""
):
    return await service.client.put(
        "/api/v1/config",
        json={"config": document, "comment": comment},
        headers={**headers, "If-Match": etag},
    )


async def _stored(service: Service) -> tuple[list[ConfigVersion], list[RecomputeJob]]:
    async with service.runtime.sessions() as session:
        versions = list((await session.execute(select(ConfigVersion))).scalars())
        jobs = list((await session.execute(select(RecomputeJob))).scalars())
    return versions, jobs


async def _rescore(service: Service) -> int:
    rescored = 0
    while step := await service.runtime.pipeline.recompute_step():
        rescored += step
    return rescored


async def _bands(service: Service) -> dict[tuple[str, str], str]:
    async with service.runtime.sessions() as session:
        rows = (await session.execute(select(Account))).scalars()
        return {(a.connection, a.crm_id): a.band for a in rows}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("bands", "healthy_min"), 75),
        (("signals", "collaboration", "weight"), 0.9),
        (("alerts", 0, "channels"), ["ops-slack"]),
        (("alerts", 0, "enabled"), False),
    ],
)
async def test_a_connection_admin_cannot_change_what_applies_to_every_connection(
    tenants: Service, path: tuple[Any, ...], value: Any
) -> None:
    """The finding: an admin key of one connection changed the configuration and alert rules
    of every connection. Now it is a 403 naming the field, and nothing is stored."""
    headers = await _headers(tenants, "admin", ALPHA)
    document, etag = await _read(tenants, headers)
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    response = await _put(tenants, headers, document, etag)
    assert response.status_code == 403, response.text
    detail = response.json()["detail"]
    assert ".".join(str(part) for part in path) in detail
    assert "global_admin" in detail
    assert await _stored(tenants) == ([], [])


async def test_a_connection_admin_cannot_write_another_connections_settings(
    tenants: Service,
) -> None:
    headers = await _headers(tenants, "admin", ALPHA)
    document, etag = await _read(tenants, headers)
    document["connections"] = {BETA: {"segments": [ALL_AT_RISK]}}
    response = await _put(tenants, headers, document, etag)
    assert response.status_code == 403, response.text
    assert f"connections.{BETA}" in response.json()["detail"]
    assert await _stored(tenants) == ([], [])


async def test_a_connection_admins_override_rescores_only_its_own_accounts(
    tenants: Service,
) -> None:
    before = await _bands(tenants)
    assert before[(ALPHA, "601")] != "at_risk"
    headers = await _headers(tenants, "admin", ALPHA)
    document, etag = await _read(tenants, headers)
    document["connections"] = {ALPHA: {"segments": [ALL_AT_RISK]}}
    response = await _put(tenants, headers, document, etag, comment="alpha tightens")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == ALPHA
    versions, jobs = await _stored(tenants)
    assert [(v.scope, v.author) for v in versions] == [(ALPHA, f"admin-{ALPHA}")]
    assert [job.connection for job in jobs] == [ALPHA]
    assert await _rescore(tenants) == 2  # alpha's two accounts, not beta's
    after = await _bands(tenants)
    assert after[(ALPHA, "601")] == "at_risk"
    assert after[(ALPHA, "501")] == before[(ALPHA, "501")]
    assert {key: band for key, band in after.items() if key[0] == BETA} == {
        key: band for key, band in before.items() if key[0] == BETA
    }


async def test_a_global_admin_changes_what_applies_to_everyone(tenants: Service) -> None:
    headers = await _headers(tenants, "global_admin", ALPHA)
    document, etag = await _read(tenants, headers)
    document["bands"].update(healthy_min=100, at_risk_below=100)
    document["connections"] = {BETA: {"alerts": {"score-drop": {"enabled": False}}}}
    response = await _put(tenants, headers, document, etag)
    assert response.status_code == 200, response.text
    versions, jobs = await _stored(tenants)
    assert [v.scope for v in versions] == [None]
    assert [job.connection for job in jobs] == [None]
    assert await _rescore(tenants) == 4
    assert set((await _bands(tenants)).values()) == {"at_risk"}


async def test_a_connection_key_never_sees_another_connections_settings(
    tenants: Service,
) -> None:
    beta = await _headers(tenants, "admin", BETA)
    document, etag = await _read(tenants, beta)
    secret_override = {**ALL_AT_RISK, "name": "beta-internal-plan", "match": {"name": "x"}}
    document["connections"] = {BETA: {"segments": [secret_override]}}
    stored = await _put(tenants, beta, document, etag, comment="beta's private reasons")
    assert stored.status_code == 200, stored.text
    version_id = stored.json()["version_id"]
    for role in ("viewer", "admin"):
        alpha = await _headers(tenants, role, ALPHA)
        seen, _ = await _read(tenants, alpha)
        assert seen["connections"] == {}
        one = await tenants.client.get(f"/api/v1/config/versions/{version_id}", headers=alpha)
        assert one.status_code == 200
        assert one.json()["config"]["connections"] == {}
        listed = await tenants.client.get("/api/v1/config/versions", headers=alpha)
        assert listed.status_code == 200
        # The version keeps its place (it is the one in force) without what it says.
        [item] = listed.json()["items"]
        assert (item["id"], item["current"], item["author"], item["comment"]) == (
            version_id,
            True,
            None,
            None,
        )
        for text in (seen, one.text, listed.text):
            assert "beta-internal-plan" not in str(text)
            assert "private reasons" not in str(text)
    audit = await tenants.client.get(
        "/api/v1/config/audit", headers=await _headers(tenants, "admin", ALPHA)
    )
    assert audit.status_code == 200
    assert audit.json()["items"] == []
    assert audit.json()["total"] == 0
    own = await tenants.client.get("/api/v1/config/audit", headers=beta)
    assert [item["changed"] for item in own.json()["items"]] == [[f"connections.{BETA}"]]
    everything = await tenants.client.get(
        "/api/v1/config", headers=await _headers(tenants, "global_admin", ALPHA)
    )
    assert everything.json()["config"]["connections"][BETA]["segments"][0]["name"] == (
        "beta-internal-plan"
    )


async def test_another_connections_change_does_not_make_an_edit_stale_a_global_one_does(
    tenants: Service,
) -> None:
    alpha, beta = await _headers(tenants, "admin", ALPHA), await _headers(tenants, "admin", BETA)
    alpha_document, alpha_etag = await _read(tenants, alpha)
    beta_document, beta_etag = await _read(tenants, beta)
    beta_document["connections"] = {BETA: {"alerts": {"score-drop": {"enabled": False}}}}
    assert (await _put(tenants, beta, beta_document, beta_etag)).status_code == 200
    alpha_document["connections"] = {ALPHA: {"alerts": {"score-drop": {"enabled": False}}}}
    response = await _put(tenants, alpha, alpha_document, alpha_etag)
    assert response.status_code == 200, response.text
    # Both connections' settings are kept: neither edit erased the other's.
    everything = await tenants.client.get(
        "/api/v1/config", headers=await _headers(tenants, "global_admin", ALPHA)
    )
    assert set(everything.json()["config"]["connections"]) == {ALPHA, BETA}
    # A global change in between does make alpha's next edit stale.
    global_admin = await _headers(tenants, "global_admin", BETA)
    document, etag = await _read(tenants, global_admin)
    _, alpha_etag = await _read(tenants, alpha)
    document["bands"]["hysteresis"] = 5
    assert (await _put(tenants, global_admin, document, etag)).status_code == 200
    response = await _put(tenants, alpha, alpha_document, alpha_etag)
    assert response.status_code == 412, response.text


async def test_alert_routing_is_per_connection_and_only_to_channels_open_to_it(
    tenants: Service,
) -> None:
    global_admin = await _headers(tenants, "global_admin", ALPHA)
    document, etag = await _read(tenants, global_admin)
    for rule in document["alerts"]:
        rule["channels"] = ["ops-slack"] if rule["name"] == "entered-at-risk" else []
    document["bands"].update(healthy_min=100, at_risk_below=100)
    assert (await _put(tenants, global_admin, document, etag)).status_code == 200
    alpha = await _headers(tenants, "admin", ALPHA)
    for refused in ("beta-slack", "ops-slack", "no-such-channel"):
        mine, etag = await _read(tenants, alpha)
        mine["connections"] = {ALPHA: {"alerts": {"entered-at-risk": {"channels": [refused]}}}}
        response = await _put(tenants, alpha, mine, etag)
        assert response.status_code == 403, response.text
        assert f"connections.{ALPHA}.alerts.entered-at-risk.channels.0" in response.json()["detail"]
    mine, etag = await _read(tenants, alpha)
    mine["connections"] = {
        ALPHA: {"alerts": {"entered-at-risk": {"channels": ["alpha-slack", "in-crm"]}}}
    }
    response = await _put(tenants, alpha, mine, etag)
    assert response.status_code == 200, response.text
    await _rescore(tenants)  # a configuration change tells nobody
    # The fixture's open alerts would hold the new ones back.
    async with tenants.runtime.sessions() as session, session.begin():
        for alert in (await session.execute(select(Alert))).scalars():
            await session.delete(alert)
    await touch_every_account(tenants)
    async with tenants.runtime.sessions() as session:
        rows = await session.execute(
            select(Alert.connection, AlertDelivery.channel).join(
                AlertDelivery, AlertDelivery.alert_id == Alert.id
            )
        )
        routed: dict[str, set[str]] = {}
        for connection, channel in rows:
            routed.setdefault(connection, set()).add(channel)
    assert routed == {ALPHA: {"alpha-slack", "in-crm"}, BETA: {"ops-slack"}}


async def test_a_connection_rollback_restores_only_its_own_settings(tenants: Service) -> None:
    alpha = await _headers(tenants, "admin", ALPHA)
    document, etag = await _read(tenants, alpha)
    document["connections"] = {ALPHA: {"alerts": {"score-drop": {"enabled": False}}}}
    first = await _put(tenants, alpha, document, etag)
    assert first.status_code == 200
    first_id = first.json()["version_id"]
    document["connections"] = {ALPHA: {"segments": [ALL_AT_RISK]}}
    assert (await _put(tenants, alpha, document, first.headers["ETag"])).status_code == 200
    global_admin = await _headers(tenants, "global_admin", BETA)
    everything, etag = await _read(tenants, global_admin)
    everything["bands"]["hysteresis"] = 7
    assert (await _put(tenants, global_admin, everything, etag)).status_code == 200
    _, etag = await _read(tenants, alpha)
    response = await tenants.client.post(
        f"/api/v1/config/versions/{first_id}/rollback",
        headers={**alpha, "If-Match": etag},
        json={"comment": "undo the experiment"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["config"]["connections"] == {
        ALPHA: {"segments": [], "alerts": {"score-drop": {"channels": None, "enabled": False}}}
    }
    # The global change made after that version stays: the rollback was alpha's only.
    assert body["config"]["bands"]["hysteresis"] == 7
    assert body["comment"].startswith(f"rollback of connection {ALPHA}'s settings to version")


async def test_install_links_and_session_info_follow_the_scope(tenants: Service) -> None:
    alpha = await _headers(tenants, "admin", ALPHA)
    response = await tenants.client.post("/api/v1/install-links", headers=alpha)
    assert response.status_code == 403
    assert "global_admin" in response.json()["detail"]
    for role, scope in (("admin", ALPHA), ("global_admin", None)):
        key = await new_key(tenants, role=role, connection=ALPHA)
        signed_in = await tenants.client.post("/api/v1/session", json={"key": key})
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["settings_scope"] == scope
        await tenants.client.delete(
            "/api/v1/session", headers={"X-CSRF-Token": signed_in.json()["csrf_token"]}
        )


def test_scoring_refuses_a_configuration_that_still_holds_every_connection() -> None:
    """Forgetting for_connection() would score every connection on the global settings."""
    config = HealthConfig.model_validate({"connections": {ALPHA: {"segments": [ALL_AT_RISK]}}})
    facts = AccountFacts(account_id="1", as_of=datetime.now(UTC))
    with pytest.raises(ValueError, match="for_connection"):
        score(facts, config)
    assert config.for_connection(BETA) is config.for_connection("anything-else")
    assert score(facts, config.for_connection(BETA)).band.value == "unknown"
