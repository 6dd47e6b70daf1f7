"""The admin page's session: an API key becomes a signed HttpOnly SameSite cookie; the API
accepts it; requests that change something need the session's CSRF token."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from webhooks.sessions import COOKIE_NAME, SessionSigner
from webhooks.store import keys
from webhooks.store.models import AdminSession

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def new_key(service, *, role="admin", connection="default"):
    async with service.runtime.sessions() as session, session.begin():
        row, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=NOW
        )
    return row, key


async def sign_in(service, key, **headers):
    return await service.client.post("/api/v1/session", json={"key": key}, headers=headers)


async def test_signing_in_sets_an_http_only_same_site_cookie(service):
    _, key = await new_key(service, role="viewer")
    response = await sign_in(service, key)
    assert response.status_code == 200
    body = response.json()
    assert (body["role"], body["connection"], body["name"]) == ("viewer", "default", "viewer-key")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" in cookie  # the test service's public URL is https
    assert key not in cookie


async def test_the_session_reads_the_api_like_a_key(service):
    _, key = await new_key(service, role="viewer")
    await sign_in(service, key)
    response = await service.client.get("/api/v1/alerts")
    assert response.status_code == 200
    me = await service.client.get("/api/v1/session")
    assert me.json()["role"] == "viewer"


async def test_a_change_without_the_csrf_token_is_refused(service):
    _, key = await new_key(service)
    token = (await sign_in(service, key)).json()["csrf_token"]
    refused = await service.client.delete("/api/v1/session")
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    wrong = await service.client.delete("/api/v1/session", headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    signed_out = await service.client.delete("/api/v1/session", headers={"X-CSRF-Token": token})
    assert signed_out.status_code == 204
    assert (await service.client.get("/api/v1/alerts")).status_code == 401


async def test_a_signed_out_cookie_is_refused_at_once(service):
    _, key = await new_key(service)
    token = (await sign_in(service, key)).json()["csrf_token"]
    cookie = service.client.cookies[COOKIE_NAME]
    signed_out = await service.client.delete("/api/v1/session", headers={"X-CSRF-Token": token})
    assert signed_out.status_code == 204

    # A copy of the cookie kept from before (another tab, a thief) no longer works.
    replayed = await service.client.get(
        "/api/v1/alerts", headers={"Cookie": f"{COOKIE_NAME}={cookie}"}
    )
    assert replayed.status_code == 401
    assert "session ended" in replayed.json()["detail"]


async def test_the_old_csrf_token_fails_after_sign_out(service):
    _, key = await new_key(service)
    token = (await sign_in(service, key)).json()["csrf_token"]
    cookie = service.client.cookies[COOKIE_NAME]
    await service.client.delete("/api/v1/session", headers={"X-CSRF-Token": token})

    response = await service.client.post(
        "/api/v1/alerts/1/snooze",
        json={"hours": 1},
        headers={"Cookie": f"{COOKIE_NAME}={cookie}", "X-CSRF-Token": token},
    )

    assert response.status_code in {401, 403}


async def test_signing_out_ends_only_that_session(service):
    _, key = await new_key(service)
    other = (await sign_in(service, key)).json()["csrf_token"]
    other_cookie = service.client.cookies[COOKIE_NAME]
    service.client.cookies.clear()
    token = (await sign_in(service, key)).json()["csrf_token"]
    assert token != other
    await service.client.delete("/api/v1/session", headers={"X-CSRF-Token": token})

    response = await service.client.get(
        "/api/v1/session", headers={"Cookie": f"{COOKIE_NAME}={other_cookie}"}
    )

    assert response.status_code == 200
    assert response.json()["csrf_token"] == other


async def test_sessions_are_stored_server_side_by_hash(service):
    row, key = await new_key(service)
    await sign_in(service, key)
    cookie = service.client.cookies[COOKIE_NAME]
    session_id = json.loads(base64.urlsafe_b64decode(cookie.split(".")[0] + "=="))["s"]
    async with service.runtime.sessions() as session:
        [stored] = (await session.execute(select(AdminSession))).scalars().all()
    assert (stored.key_id, stored.revoked_at) == (row.id, None)
    assert stored.id_hash != session_id
    assert key not in cookie


async def test_a_sign_in_clears_expired_sessions(service):
    _, key = await new_key(service)
    await sign_in(service, key)
    async with service.runtime.sessions() as session, session.begin():
        await session.execute(update(AdminSession).values(expires_at=NOW))
    await sign_in(service, key)

    async with service.runtime.sessions() as session:
        stored = (await session.execute(select(AdminSession))).scalars().all()

    assert [row.expires_at > datetime.now(UTC) for row in stored] == [True]


async def test_a_revoked_key_ends_its_sessions(service):
    row, key = await new_key(service)
    await sign_in(service, key)
    assert (await service.client.get("/api/v1/alerts")).status_code == 200
    async with service.runtime.sessions() as session, session.begin():
        await keys.revoke(session, key=str(row.id), now=NOW)
    assert (await service.client.get("/api/v1/alerts")).status_code == 401


@pytest.mark.parametrize("key", ["chk_unknown", "   "])
async def test_an_unknown_key_cannot_sign_in(service, key):
    response = await sign_in(service, key)
    assert response.status_code in {401, 422}
    assert COOKIE_NAME not in response.headers.get("set-cookie", "")


async def test_an_ingest_key_cannot_sign_in(service):
    _, key = await new_key(service, role="ingest")
    response = await sign_in(service, key)
    assert response.status_code == 403
    assert "admin or viewer" in response.json()["detail"]


async def test_a_sign_in_from_another_site_is_refused(service):
    _, key = await new_key(service)
    response = await sign_in(service, key, Origin="https://evil.example")
    assert response.status_code == 403


async def test_the_bootstrap_token_can_sign_in(service_factory):
    service = await service_factory(admin_token="bootstrap-token-123456")
    response = await sign_in(service, "bootstrap-token-123456")
    assert response.status_code == 200
    assert response.json()["name"] == "bootstrap"


def test_a_tampered_or_expired_cookie_is_not_a_session():
    signer = SessionSigner("secret", lifetime=timedelta(hours=1))
    cookie, data = signer.issue(now=NOW)
    assert signer.read(cookie, now=NOW) == data
    body, signature = cookie.split(".")
    assert signer.read(body + "x." + signature, now=NOW) is None
    assert signer.read(cookie, now=NOW + timedelta(hours=2)) is None
    assert SessionSigner("other", lifetime=timedelta(hours=1)).read(cookie, now=NOW) is None
    assert signer.read("garbage", now=NOW) is None
