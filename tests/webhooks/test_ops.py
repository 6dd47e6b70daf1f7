"""Liveness, readiness, and the service's root sending a browser to the admin page."""

from __future__ import annotations

from pathlib import Path

import httpx

from testkit import make_settings
from webhooks.app import create_app


async def test_healthz_answers_while_the_process_lives(service) -> None:
    response = await service.client.get("/healthz")
    assert response.json() == {"status": "ok"}


async def test_the_root_redirects_to_the_admin_page(service) -> None:
    response = await service.client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/admin"


async def test_readyz_is_ready_on_a_migrated_database(service) -> None:
    response = await service.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


async def test_readyz_is_503_when_migrations_are_pending(tmp_path: Path) -> None:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert "code expects" in response.json()["checks"]["migrations"]


async def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    app = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")
