"""Shared fixtures: every store test runs on SQLite and on PostgreSQL, each test isolated."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from signals.config import Bands, HealthConfig
from testkit import PUBLIC_URL, Service, in_thread, make_settings
from webhooks.app import create_app
from webhooks.store.db import SessionFactory, create_engine, create_session_factory
from webhooks.store.migrate import upgrade_to_head
from webhooks.store.models import Base

PG_SERVER_URL = os.environ.get(
    "CRM_HEALTH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The browser tests' site, Chromium and tabs (tests/support/browser_fixtures.py).
pytest_plugins = ("browser_fixtures",)


async def _execute_autocommit(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test gets a copy, which is far faster than migrating per test."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    in_thread(upgrade_to_head, f"sqlite+aiosqlite:///{path}")
    return path


def _postgres_unreachable(exc: Exception) -> NoReturn:
    """On CI a missing PostgreSQL fails the test; on a laptop without one, it is skipped."""
    message = f"PostgreSQL unreachable at {PG_SERVER_URL}: {exc!r}"
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _database_named(name: str) -> str:
    return PG_SERVER_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the local server, migrated once for the session."""
    name = f"crm_health_test_{uuid.uuid4().hex[:12]}"
    try:
        in_thread(asyncio.run, _execute_autocommit(PG_SERVER_URL, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _postgres_unreachable(exc)
    url = _database_named(name)
    in_thread(upgrade_to_head, url)
    yield url
    in_thread(
        asyncio.run, _execute_autocommit(PG_SERVER_URL, f'DROP DATABASE "{name}" WITH (FORCE)')
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url: str = request.getfixturevalue("postgres_url")
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    await _execute_autocommit(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    yield url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """Sessions on `database_url` (SQLite and PostgreSQL) for store tests."""
    engine = create_engine(database_url)
    yield create_session_factory(engine)
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no schema yet (for migrating step by step, or a server that migrates
    it itself): a SQLite file, or a throwaway PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"crm_health_empty_{uuid.uuid4().hex[:12]}"
    try:
        await _execute_autocommit(PG_SERVER_URL, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        _postgres_unreachable(exc)
    try:
        yield _database_named(name)
    finally:
        await _execute_autocommit(PG_SERVER_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def service_factory(database_url: str) -> AsyncIterator[object]:
    """Start the app (lifespan included) with settings overrides; stopped after the test."""
    stack: list[tuple[object, httpx.AsyncClient]] = []

    async def start(
        *, crm_transport: httpx.AsyncBaseTransport | None = None, **overrides: object
    ) -> Service:
        app = create_app(make_settings(database_url, **overrides), crm_transport=crm_transport)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)
        stack.append((lifespan, client))
        return Service(app=app, client=client, runtime=app.state.runtime)

    yield start
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
async def service(service_factory: object) -> Service:
    return await service_factory()  # type: ignore[operator]


@pytest.fixture
def verdict_on_any_evidence() -> Iterator[None]:
    """For tests about delivery, retries and routing rather than evidence: the default
    configuration gives a band on whatever data the test sends (`bands.min_coverage` 0, as
    before issue 20), so a few usage events still make a scored, written account."""
    field = Bands.model_fields["min_coverage"]
    default = field.default
    field.default = 0.0
    Bands.model_rebuild(force=True)
    HealthConfig.model_rebuild(force=True)
    try:
        yield
    finally:
        field.default = default
        Bands.model_rebuild(force=True)
        HealthConfig.model_rebuild(force=True)
