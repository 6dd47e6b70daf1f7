"""Alembic, driven from code: `crm-health migrate`, `serve` at start, and readiness checks."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# What Alembic says at INFO on every look at a database, migrating or not ("Context impl
# SQLiteImpl.", "Will assume non-transactional DDL."): every CLI command would open with it.
_PREAMBLE = ("Context impl ", "Will assume ")


class _QuietPreamble(logging.Filter):
    """Drops Alembic's per-connection preamble; "Running upgrade A -> B" lines still pass, so
    the log says when (and only when) the schema actually changes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_PREAMBLE))


def _quiet_alembic() -> None:
    logger = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _QuietPreamble) for f in logger.filters):
        logger.addFilter(_QuietPreamble())


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on %-escapes in passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply pending migrations. Blocking: call from sync code or through a thread."""
    _quiet_alembic()
    command.upgrade(alembic_config(database_url), "head")


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    _quiet_alembic()
    async with engine.connect() as connection:
        return await connection.run_sync(read)
