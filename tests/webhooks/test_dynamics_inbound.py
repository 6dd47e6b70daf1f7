"""Dynamics 365 end to end inside the service: Dataverse webhooks in (the registration's key
checked, stored once per correlation/record/stage), the worker's mapping, read-back of
contexts whose images were dropped, echo suppression, and $batch write-back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import respx
from dynamics_samples import (
    ACCOUNT,
    APP_USER,
    CONTACT,
    DOCS_EXAMPLE,
    body,
    context,
    option,
    ref,
)
from sqlalchemy import select

from webhooks.backfill import run_backfill
from webhooks.store.models import Account, InboxEvent, WritebackItem

CONNECTION = "contoso"
ORG_URL = "https://contoso.crm.dynamics.com"
TENANT = "7f3c1b2a-52f0-4a8e-9d59-1f2e3d4c5b6a"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"
API = f"{ORG_URL}/api/data/v9.2"
KEY = "registration-webhook-key"
ENDPOINT = f"/webhooks/dynamics/{CONNECTION}?code={KEY}"


def dynamics_settings(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "dynamics_connection_name": CONNECTION,
        "dynamics_org_url": ORG_URL,
        "dynamics_tenant_id": TENANT,
        "dynamics_client_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        "dynamics_client_secret": "app-secret-value",
        "dynamics_publisher_prefix": "crmh",
        "dynamics_webhook_auth_value": KEY,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def dynamics(service_factory):
    return await service_factory(**dynamics_settings())


@pytest.fixture
def org():
    """Entra's token endpoint, WhoAmI and account reads of the environment."""
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).respond(
            200,
            json={"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAi.token"},
        )
        router.get(f"{API}/WhoAmI").respond(
            200,
            json={
                "@odata.context": f"{API}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
                "UserId": APP_USER,
                "OrganizationId": "4ef5b371-e89e-e711-8122-000d3aa2331c",
            },
        )
        router.post(f"{API}/$batch").mock(side_effect=_batch_answer)
        yield router


# Accounts whose update the $batch answer refuses: id -> (status line, error code, message).
REFUSED: dict[str, tuple[str, str, str]] = {}


def _batch_answer(request):
    """A $batch answer as Dataverse gives it with continue-on-error: each change set's
    operation answered in its own change set, a refused one by a bare error part."""
    text = request.content.decode()
    operations = re.findall(r"Content-ID: (\d+)\r\n\r\nPATCH \S+/accounts\(([0-9a-f-]+)\)", text)
    parts = []
    for content_id, account in operations:
        refused = REFUSED.get(account)
        if refused is None:
            parts.append(
                f"--batchresponse_1\r\nContent-Type: multipart/mixed; "
                f"boundary=changesetresponse_{content_id}\r\n\r\n"
                f"--changesetresponse_{content_id}\r\nContent-Type: application/http\r\n"
                f"Content-Transfer-Encoding: binary\r\nContent-ID: {content_id}\r\n\r\n"
                "HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n"
                f"--changesetresponse_{content_id}--\r\n"
            )
            continue
        status, code, message = refused
        error = json.dumps({"error": {"code": code, "message": message}})
        parts.append(
            "--batchresponse_1\r\nContent-Type: application/http\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: {content_id}\r\n\r\n"
            f"HTTP/1.1 {status}\r\nContent-Type: application/json; odata.metadata=minimal\r\n"
            f"OData-Version: 4.0\r\n\r\n{error}\r\n"
        )
    return respx.MockResponse(
        200,
        content=("".join(parts) + "--batchresponse_1--\r\n").encode(),
        headers={"Content-Type": "multipart/mixed; boundary=batchresponse_1"},
    )


def _patched(router) -> list[str]:
    return [
        account
        for call in router.routes[2].calls
        for account in re.findall(
            r"PATCH \S+/accounts\(([0-9a-f-]+)\)", call.request.content.decode()
        )
    ]


async def _inbox(service) -> list[InboxEvent]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(select(InboxEvent).where(InboxEvent.source == "dynamics"))
        return list(rows.scalars())


async def _accounts(service) -> dict[str, Account]:
    async with service.runtime.sessions() as session:
        rows = await session.execute(select(Account).where(Account.connection == CONNECTION))
        return {row.crm_id: row for row in rows.scalars()}


def _account_update(**overrides: Any) -> bytes:
    return body(
        context(
            target={"name": "Contoso Pharmaceuticals", "websiteurl": "https://contoso.example"},
            post={
                "name": "Contoso Pharmaceuticals",
                "websiteurl": "https://contoso.example",
                "ownerid": ref("systemuser", "8b8b8b8b-0000-4000-8000-000000008b01"),
                "modifiedon": "/Date(1763633700000)/",
            },
            **overrides,
        )
    )


# --- intake -------------------------------------------------------------------------------------


async def test_documented_webhook_is_stored_and_acknowledged(dynamics) -> None:
    response = await dynamics.client.post(ENDPOINT, content=DOCS_EXAMPLE)
    assert response.status_code == 202
    assert response.json() == {"received": 1, "stored": 1, "duplicates": 0}
    [row] = await _inbox(dynamics)
    assert row.kind == "contact:Update"
    assert row.connection == CONNECTION


async def test_redelivery_of_the_same_step_is_stored_once(dynamics) -> None:
    for _ in range(3):
        assert (await dynamics.client.post(ENDPOINT, content=DOCS_EXAMPLE)).status_code == 202
    assert len(await _inbox(dynamics)) == 1


@pytest.mark.parametrize(
    "path", [f"/webhooks/dynamics/{CONNECTION}", f"/webhooks/dynamics/{CONNECTION}?code=nope"]
)
async def test_missing_or_wrong_webhook_key_is_401_and_nothing_is_stored(dynamics, path) -> None:
    response = await dynamics.client.post(path, content=DOCS_EXAMPLE)
    assert response.status_code == 401
    assert KEY not in response.text
    assert await _inbox(dynamics) == []


async def test_http_header_authentication_is_checked(service_factory) -> None:
    service = await service_factory(
        **dynamics_settings(dynamics_webhook_auth="header", dynamics_webhook_auth_name="x-api-key")
    )
    path = f"/webhooks/dynamics/{CONNECTION}"
    refused = await service.client.post(path, content=DOCS_EXAMPLE, headers={"x-api-key": "no"})
    accepted = await service.client.post(path, content=DOCS_EXAMPLE, headers={"X-Api-Key": KEY})
    assert (refused.status_code, accepted.status_code) == (401, 202)


async def test_query_string_authentication_is_checked(service_factory) -> None:
    service = await service_factory(
        **dynamics_settings(dynamics_webhook_auth="query_string", dynamics_webhook_auth_name="t")
    )
    path = f"/webhooks/dynamics/{CONNECTION}"
    assert (await service.client.post(f"{path}?t={KEY}", content=DOCS_EXAMPLE)).status_code == 202
    assert (
        await service.client.post(f"{path}?code={KEY}", content=DOCS_EXAMPLE)
    ).status_code == 401


async def test_unknown_connection_is_404(dynamics) -> None:
    response = await dynamics.client.post(f"/webhooks/dynamics/other?code={KEY}", content=b"{}")
    assert response.status_code == 404


async def test_connection_without_a_webhook_credential_is_503(service_factory) -> None:
    service = await service_factory(**dynamics_settings(dynamics_webhook_auth_value=None))
    response = await service.client.post(ENDPOINT, content=DOCS_EXAMPLE)
    assert response.status_code == 503
    assert "CRM_HEALTH_DYNAMICS_WEBHOOK_AUTH_VALUE" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"not json", "JSON"),
        (json.dumps({"MessageName": "Update"}).encode(), ""),
        (body(context(drop=("PrimaryEntityId",))), "PrimaryEntityId"),
    ],
)
async def test_a_body_that_is_no_execution_context_is_400_naming_the_field(
    dynamics, content: bytes, named: str
) -> None:
    response = await dynamics.client.post(ENDPOINT, content=content)
    assert response.status_code == 400
    assert named in response.json()["detail"]
    assert await _inbox(dynamics) == []


async def test_body_over_the_limit_is_413(service_factory) -> None:
    service = await service_factory(**dynamics_settings(webhook_max_body_bytes=256))
    response = await service.client.post(ENDPOINT, content=DOCS_EXAMPLE)
    assert response.status_code == 413


# --- the worker ----------------------------------------------------------------------------------


async def test_account_update_becomes_an_account_with_owner_and_domain(dynamics, org) -> None:
    assert (await dynamics.client.post(ENDPOINT, content=_account_update())).status_code == 202
    await dynamics.runtime.pipeline.run_once()
    stored = (await _accounts(dynamics))[ACCOUNT]
    assert stored.crm == "dynamics"
    assert stored.name == "Contoso Pharmaceuticals"
    assert stored.domain == "contoso.example"
    assert stored.owner == "8b8b8b8b-0000-4000-8000-000000008b01"


async def test_our_own_change_to_an_account_is_ignored(dynamics, org) -> None:
    await dynamics.client.post(ENDPOINT, content=_account_update(user=APP_USER))
    await dynamics.runtime.pipeline.run_once()
    assert await _accounts(dynamics) == {}
    [row] = await _inbox(dynamics)
    assert row.status == "done"


async def test_context_whose_images_were_dropped_is_read_back(dynamics, org) -> None:
    read = org.get(url__startswith=f"{API}/accounts({ACCOUNT})").respond(
        200,
        json={
            "@odata.etag": 'W/"1234567"',
            "accountid": ACCOUNT,
            "name": "Contoso (read back)",
            "websiteurl": None,
            "_ownerid_value": "8b8b8b8b-0000-4000-8000-000000008b01",
            "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
            "modifiedon": "2026-11-20T10:15:00Z",
            "createdon": "2026-11-01T08:00:00Z",
        },
    )
    trimmed = body(context(target={"name": "Contoso"}))
    response = await dynamics.client.post(
        ENDPOINT, content=trimmed, headers={"x-ms-dynamics-msg-size-exceeded": ""}
    )
    assert response.status_code == 202
    await dynamics.runtime.pipeline.run_once()
    assert read.called
    assert (await _accounts(dynamics))[ACCOUNT].name == "Contoso (read back)"


async def test_incident_becomes_a_ticket_on_its_account(dynamics, org) -> None:
    incident = body(
        context(
            message="Create",
            table="incident",
            record_id="f0f0f0f0-0000-4000-8000-00000000f001",
            target={
                "customerid": ref("account", ACCOUNT),
                "prioritycode": option(1),
                "createdon": "/Date(1763633700000)/",
                "title": "Sync fails",
            },
        )
    )
    await dynamics.client.post(ENDPOINT, content=_account_update())
    await dynamics.client.post(ENDPOINT, content=incident)
    await dynamics.runtime.pipeline.run_once()
    rows = await _inbox(dynamics)
    assert {row.status for row in rows} == {"done"}
    assert ACCOUNT in await _accounts(dynamics)


async def test_contact_of_another_kind_of_parent_is_not_counted(dynamics, org) -> None:
    contact = body(
        context(
            message="Create",
            table="contact",
            record_id=CONTACT,
            target={"parentcustomerid": ref("contact", CONTACT), "jobtitle": "CEO"},
        )
    )
    await dynamics.client.post(ENDPOINT, content=contact)
    await dynamics.runtime.pipeline.run_once()
    assert await _accounts(dynamics) == {}


async def test_health_is_written_back_in_a_batch_with_continue_on_error(dynamics, org) -> None:
    await dynamics.client.post(ENDPOINT, content=_account_update())
    await dynamics.runtime.pipeline.run_once()
    assert _patched(org) == [ACCOUNT]
    request = org.routes[2].calls[0].request
    assert "odata.continue-on-error" in request.headers["Prefer"]
    assert request.headers["Authorization"] == "Bearer eyJ0eXAi.token"
    assert '"crmh_healthband":' in request.content.decode()


async def test_echo_of_a_write_back_starts_no_loop(dynamics, org) -> None:
    await dynamics.client.post(ENDPOINT, content=_account_update())
    await dynamics.runtime.pipeline.run_once()
    # Our PATCH fired the step again: the same account, changed by the application user.
    echo = _account_update(user=APP_USER, CorrelationId="22222222-2222-4333-8444-555555555555")
    await dynamics.client.post(ENDPOINT, content=echo)
    await dynamics.runtime.pipeline.run_once()
    await dynamics.runtime.pipeline.run_once()
    assert org.routes[2].call_count == 1


async def test_deleted_account_is_failed_at_once_not_retried(dynamics, org, monkeypatch) -> None:
    monkeypatch.setitem(
        REFUSED,
        ACCOUNT,
        (
            "404 Not Found",
            "0x80040217",
            f"account With Id = {ACCOUNT} Does Not Exist",
        ),
    )
    await dynamics.client.post(ENDPOINT, content=_account_update())
    await dynamics.runtime.pipeline.run_once()
    async with dynamics.runtime.sessions() as session:
        item = (await session.execute(select(WritebackItem))).scalar_one()
    assert item.status == "failed"
    assert item.attempts == 1
    assert "Does Not Exist" in (item.last_error or "")


async def test_backfill_pages_through_the_web_api_and_the_worker_scores_the_accounts(
    dynamics, org
) -> None:
    def row(account_id: str, name: str) -> dict[str, Any]:
        return {
            "@odata.etag": 'W/"5550001"',
            "accountid": account_id,
            "name": name,
            "websiteurl": None,
            "_ownerid_value": "8b8b8b8b-0000-4000-8000-000000008b01",
            "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
            "modifiedon": "2026-11-01T08:00:00Z",
        }

    next_link = f"{API}/accounts?$select=name&$skiptoken=%3Ccookie%20pagenumber=%222%22/%3E"
    # The next page's route first: the first page's URL matches any query.
    second = org.get(url__startswith=f"{API}/accounts?$select=name&$skiptoken").respond(
        200,
        json={
            "@odata.context": f"{API}/$metadata#accounts(name)",
            "value": [row("a1b2c3d4-0000-4000-8000-0000000000b3", "Northwind")],
        },
    )
    first = org.get(f"{API}/accounts").respond(
        200,
        json={
            "@odata.context": f"{API}/$metadata#accounts(name)",
            "value": [
                row("a1b2c3d4-0000-4000-8000-0000000000b1", "Fabrikam"),
                row("a1b2c3d4-0000-4000-8000-0000000000b2", "Litware"),
            ],
            "@odata.nextLink": next_link,
        },
    )
    connection = dynamics.runtime.connections.get(CONNECTION)
    report = await run_backfill(
        sessions=dynamics.runtime.sessions, connection=connection, object_types=["accounts"]
    )
    assert report.events == 3
    assert second.call_count == 1
    assert "odata.maxpagesize" in first.calls[0].request.headers["Prefer"]
    await dynamics.runtime.pipeline.run_once()
    accounts = await _accounts(dynamics)
    assert {a.name for a in accounts.values()} == {"Fabrikam", "Litware", "Northwind"}
    assert sorted(_patched(org)) == sorted(accounts)
