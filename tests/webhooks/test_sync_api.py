"""GET /api/v1/sync: a viewer reads its own connection's write-back and dead-letter state."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_rows import NOW, seed

from webhooks.store import keys


async def bearer(service, *, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=NOW
        )
    return {"Authorization": f"Bearer {key}"}


async def test_a_viewer_reads_its_connections_sync_state(service) -> None:
    await seed(service.runtime.sessions)
    response = await service.client.get(
        "/api/v1/sync", headers=await bearer(service, role="viewer")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [item] = body["connections"]
    assert item["connection"] == "default"
    assert item["status"] == "needs_attention"
    assert item["dead_letters"] == 2
    sync = item["writebacks"]
    assert {name: sync[name] for name in ("pending", "sending", "failing", "failed")} == {
        "pending": 3,
        "sending": 1,
        "failing": 2,
        "failed": 1,
    }
    assert sync["failed_error"] == "record 6 was deleted in the CRM"
    assert sync["failing_error"] == "HTTP 503 Service Unavailable"
    since = datetime.fromisoformat(sync["oldest_pending_since"])
    assert since == datetime(2026, 12, 4, 11, 20, tzinfo=UTC)
    assert sync["oldest_pending_age_seconds"] >= (datetime.now(UTC) - since).total_seconds() - 60
    assert "crm-health writeback retry --connection default --failed" in item["commands"]
    assert body["inbox"]["counts"]["dead"] == 3


async def test_another_connections_key_sees_only_its_own(service) -> None:
    await seed(service.runtime.sessions)
    response = await service.client.get(
        "/api/v1/sync", headers=await bearer(service, role="viewer", connection="emea")
    )
    [item] = response.json()["connections"]
    assert (item["connection"], item["dead_letters"]) == ("emea", 0)
    assert item["writebacks"]["failed"] == 1
    assert len(item["writebacks"]["failed_error"]) == 300


async def test_without_a_key_the_answer_is_401(service) -> None:
    response = await service.client.get("/api/v1/sync")
    assert response.status_code == 401
    assert "missing API key" in response.json()["detail"]


async def test_an_ingest_key_may_not_read_it(service) -> None:
    response = await service.client.get(
        "/api/v1/sync", headers=await bearer(service, role="ingest")
    )
    assert response.status_code == 403


async def test_the_endpoint_is_in_the_openapi_document_with_its_schema(service) -> None:
    document = (await service.client.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/sync"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SyncReport"}
    assert {"401", "403"} <= set(operation["responses"])
