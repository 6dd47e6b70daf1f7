"""SQLite persistence for the sandbox CRM (stdlib `sqlite3`; the connector never uses SQLAlchemy).

The state keeps its working copy in dicts (routes read them on every call) and writes every change
through to this store, so a sandbox started on the same file finds its records, definitions,
groups, associations and OAuth tokens again. Values are stored as JSON text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    object_type TEXT NOT NULL, object_id TEXT NOT NULL, "values" TEXT NOT NULL,
    PRIMARY KEY (object_type, object_id)
);
CREATE TABLE IF NOT EXISTS definitions (
    object_type TEXT NOT NULL, name TEXT NOT NULL, definition TEXT NOT NULL,
    PRIMARY KEY (object_type, name)
);
CREATE TABLE IF NOT EXISTS property_groups (name TEXT PRIMARY KEY, "group" TEXT NOT NULL);
-- seq keeps the order records were associated in: a contact's first company is its primary.
CREATE TABLE IF NOT EXISTS links (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    from_type TEXT NOT NULL, from_id TEXT NOT NULL, to_type TEXT NOT NULL, to_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    kind TEXT NOT NULL, token TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, token)
);
"""


@dataclass
class Snapshot:
    """Everything a store holds, as loaded at start."""

    next_id: int = 1
    records: dict[str, dict[str, dict[str, str | None]]] = field(default_factory=dict)
    definitions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: list[tuple[str, str, str, str]] = field(default_factory=list)
    tokens: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


class SandboxStore:
    """One SQLite database (a file, or ":memory:") under the sandbox state."""

    def __init__(self, path: str) -> None:
        # Autocommit: each write is its own transaction, so a killed sandbox loses nothing it
        # answered; WAL with synchronous=NORMAL keeps that cheap enough for benchmarks.
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.executescript(_SCHEMA)

    def close(self) -> None:
        self.connection.close()

    @property
    def initialised(self) -> bool:
        row = self.connection.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        return row is not None

    def load(self) -> Snapshot:
        snapshot = Snapshot()
        db = self.connection
        row = db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        snapshot.next_id = int(row[0]) if row else 1
        for object_type, object_id, values in db.execute(
            'SELECT object_type, object_id, "values" FROM records'
        ):
            snapshot.records.setdefault(object_type, {})[object_id] = json.loads(values)
        for object_type, name, definition in db.execute(
            "SELECT object_type, name, definition FROM definitions ORDER BY rowid"
        ):
            snapshot.definitions.setdefault(object_type, {})[name] = json.loads(definition)
        for name, group in db.execute('SELECT name, "group" FROM property_groups ORDER BY rowid'):
            snapshot.groups[name] = json.loads(group)
        snapshot.links = [
            (str(a), str(b), str(c), str(d))
            for a, b, c, d in db.execute(
                "SELECT from_type, from_id, to_type, to_id FROM links ORDER BY seq"
            )
        ]
        snapshot.tokens = [
            (kind, token, json.loads(data))
            for kind, token, data in db.execute("SELECT kind, token, data FROM tokens")
        ]
        return snapshot

    def replace_portal(
        self,
        *,
        definitions: dict[str, dict[str, dict[str, Any]]],
        groups: dict[str, dict[str, Any]],
    ) -> None:
        """A fresh portal: no records or associations, the given definitions and groups.

        Tokens survive: they are credentials of the app, not data of the portal.
        """
        db = self.connection
        db.execute("BEGIN")
        try:
            for table in ("records", "definitions", "property_groups", "links"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            db.executemany(
                "INSERT INTO definitions (object_type, name, definition) VALUES (?, ?, ?)",
                [
                    (object_type, name, json.dumps(definition))
                    for object_type, named in definitions.items()
                    for name, definition in named.items()
                ],
            )
            db.executemany(
                'INSERT INTO property_groups (name, "group") VALUES (?, ?)',
                [(name, json.dumps(group)) for name, group in groups.items()],
            )
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', '1')")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def set_next_id(self, next_id: int) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)", (str(next_id),)
        )

    def put_record(self, object_type: str, object_id: str, values: dict[str, str | None]) -> None:
        self.connection.execute(
            'INSERT OR REPLACE INTO records (object_type, object_id, "values") VALUES (?, ?, ?)',
            (object_type, object_id, json.dumps(values)),
        )

    def put_definition(self, object_type: str, name: str, definition: dict[str, Any]) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO definitions (object_type, name, definition) VALUES (?, ?, ?)",
            (object_type, name, json.dumps(definition)),
        )

    def put_group(self, name: str, group: dict[str, Any]) -> None:
        self.connection.execute(
            'INSERT OR REPLACE INTO property_groups (name, "group") VALUES (?, ?)',
            (name, json.dumps(group)),
        )

    def add_links(self, links: Iterable[tuple[str, str, str, str]]) -> None:
        self.connection.executemany(
            "INSERT INTO links (from_type, from_id, to_type, to_id) VALUES (?, ?, ?, ?)",
            list(links),
        )

    def put_token(self, kind: str, token: str, data: dict[str, Any]) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO tokens (kind, token, data) VALUES (?, ?, ?)",
            (kind, token, json.dumps(data)),
        )

    def delete_token(self, kind: str, token: str) -> None:
        self.connection.execute("DELETE FROM tokens WHERE kind = ? AND token = ?", (kind, token))
