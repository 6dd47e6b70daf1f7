"""HealthConfig as immutable versions: read the one in force with its ETag, change it under
optimistic locking (If-Match), roll back to any version, list versions and the audit log; and
`diff_paths`, the changed field paths that the CLI, the audit log and previews show.

Every function takes the caller's `scope`: None for a global admin, who sees and changes
everything; otherwise the one connection whose settings (`connections.<scope>`) the caller
sees and may change. Other connections' settings, authors and comments stay out of sight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ValidationError

from signals.config import ConnectionSettings, HealthConfig, error_parts
from webhooks.alerts.channels.config import ChannelGrants, channel_open_to
from webhooks.errors import (
    Forbidden,
    InvalidConfig,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
)
from webhooks.store import configs
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import ConfigAudit, ConfigVersion

log = structlog.get_logger(__name__)

Action = Literal["put", "rollback", "apply"]
Change = tuple[str, Any, Any]

_REREAD = "read it again (GET /api/v1/config), redo the change and send the new ETag"


class ConfigDocument(BaseModel):
    """A configuration version as the API shows it; `version_id` None means the defaults."""

    config: HealthConfig
    version_id: int | None
    version: str  # hash of the content shown: equal configurations have equal hashes
    created_at: datetime | None
    author: str | None  # None also when the change was limited to another connection
    comment: str | None
    # The connection the change was limited to (its admin key's); None: a global change.
    scope: str | None = None
    current: bool
    # On a change: True when it stored a new version (accounts are rescored), False when it
    # asked for the configuration in force (nothing stored, nothing rescored). None on reads.
    stored: bool | None = None


class VersionItem(BaseModel):
    id: int
    created_at: datetime
    author: str | None  # None: a change to another connection's settings
    comment: str | None
    version: str
    previous_id: int | None  # None: it replaced the defaults
    scope: str | None = None
    current: bool


class VersionPage(BaseModel):
    items: list[VersionItem]
    total: int
    limit: int
    offset: int


class AuditItem(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str  # put, rollback, apply
    from_version_id: int | None  # None: the defaults were in force
    to_version_id: int
    comment: str
    changed: list[str]  # field paths, e.g. "signals.active_use.weight"


class AuditPage(BaseModel):
    items: list[AuditItem]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    before: ConfigDocument
    changes: list[Change]
    # None: a dry run, or nothing changed.
    stored: ConfigDocument | None


# -- pure helpers ---------------------------------------------------------------------------


def etag(document: ConfigDocument) -> str:
    """Strong ETag of a version: its id (or "defaults") and the hash of the content shown,
    quoted."""
    name = "defaults" if document.version_id is None else str(document.version_id)
    return f'"{name}-{document.version}"'


def visible(config: HealthConfig, scope: str | None) -> HealthConfig:
    """What a caller sees: everything for a global admin (scope None); otherwise the global
    part and the caller's own connection's settings, never another connection's."""
    if scope is None or set(config.connections) <= {scope}:
        return config
    document = config.model_dump(mode="json")
    document["connections"] = {
        name: value for name, value in document["connections"].items() if name == scope
    }
    return HealthConfig.model_validate(document)


def _global_part(config: HealthConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude={"connections"})


def scoped_change(
    before: HealthConfig, submitted: HealthConfig, *, scope: str | None, grants: ChannelGrants
) -> HealthConfig:
    """The configuration to store when a caller of `scope` submits `submitted` (the document
    it saw, edited): a global admin's as it is; otherwise `before` with only the caller's
    connection settings taken from `submitted`. Forbidden, naming the fields, when the
    caller changed anything else or routes alerts to a channel not open to its connection."""
    if scope is None:
        return submitted
    others = sorted(set(submitted.connections) - {scope})
    if others:
        raise Forbidden(
            f"connections.{others[0]}: this key may change only connection {scope!r}'s settings"
        )
    outside = [path for path, _, _ in diff_paths(_global_part(before), _global_part(submitted))]
    if outside:
        more = len(outside) - 5
        listed = ", ".join(outside[:5]) + (f" and {more} more" if more > 0 else "")
        raise Forbidden(
            f"{listed}: applies to every connection and needs a global_admin key; this key "
            f"may change only connections.{scope} (that connection's segment overrides and "
            "alert routing)"
        )
    mine = submitted.connections.get(scope)
    for rule, route in ({} if mine is None else mine.alerts).items():
        for index, channel in enumerate(route.channels or ()):
            if not channel_open_to(grants, channel, scope):
                raise Forbidden(
                    f"connections.{scope}.alerts.{rule}.channels.{index}: channel {channel!r} "
                    f"is not open to connection {scope!r} (the alert channels file lists the "
                    "connections that may route to each channel)"
                )
    return parse_config(_with_connection_settings(before, scope, mine))


def require_if_match(if_match: str | None) -> list[str]:
    """The ETags of an If-Match header; PreconditionRequired when there are none (or `*`,
    which would overwrite whatever is in force: exactly what If-Match is here to prevent)."""
    tags = [tag.strip() for tag in (if_match or "").split(",") if tag.strip()]
    if not tags:
        raise PreconditionRequired(
            "If-Match is required: send the ETag of the configuration you edited "
            "(GET /api/v1/config returns it)"
        )
    if "*" in tags:
        raise PreconditionRequired(
            "If-Match: * does not name a version; send the ETag of the configuration you edited"
        )
    return tags


def check_if_match(if_match: str | None, current: str, scope: str | None = None) -> None:
    """Optimistic locking: the change must name the version in force (strong comparison, so
    a weak W/ tag never matches). A caller bound to a connection must name what it sees of
    it (the content hash): another connection's change in between does not make its edit
    stale, a global change or one to its own connection does."""
    tags = require_if_match(if_match)
    if scope is not None:
        seen = current.rpartition("-")[2]
        if any(not tag.startswith("W/") and tag.rpartition("-")[2] == seen for tag in tags):
            return
    if current not in tags:
        raise PreconditionFailed(
            f"the configuration changed since you read it (now {current}): {_REREAD}",
            headers={"ETag": current},
        )


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for every error, e.g. ("bands.hysteresis", "...")."""
    return [(path or "(document)", message) for path, message in map(error_parts, exc.errors())]


def parse_config(document: object) -> HealthConfig:
    """Validate a document; InvalidConfig lists every invalid field path."""
    try:
        return HealthConfig.model_validate(document)
    except ValidationError as exc:
        raise InvalidConfig(field_errors(exc)) from None


def diff_paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every leaf that differs as (dotted path, old value, new value), in document order.

    Lists are compared by position (paths like `alerts.1.points`, as in validation errors);
    a key or item on one side only reads as None on the other.
    """
    changes: list[Change] = []
    _diff(old, new, "", changes)
    return changes


def _diff(old: Any, new: Any, path: str, changes: list[Change]) -> None:
    def child(key: object) -> str:
        return f"{path}.{key}" if path else str(key)

    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(key for key in new if key not in old)]:
            _diff(old.get(key), new.get(key), child(key), changes)
    elif _is_list(old) and _is_list(new):
        for index in range(max(len(old), len(new))):
            _diff(
                old[index] if index < len(old) else None,
                new[index] if index < len(new) else None,
                child(index),
                changes,
            )
    elif old != new:
        changes.append((path or "(document)", old, new))


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _hidden(changed: str | None, scope: str | None) -> bool:
    """Whether a version's author and comment belong to another connection than the caller's
    (`changed`: the connection its change was limited to)."""
    return scope is not None and changed is not None and changed != scope


def _document(
    row: ConfigVersion | None, *, current: bool, scope: str | None = None
) -> ConfigDocument:
    if row is None:
        defaults = HealthConfig()
        return ConfigDocument(
            config=defaults,
            version_id=None,
            version=defaults.version,
            created_at=None,
            author=None,
            comment=None,
            current=current,
        )
    document = ConfigDocument(
        config=HealthConfig.model_validate(row.document),
        version_id=row.id,
        version=row.version,
        created_at=row.created_at,
        author=row.author,
        comment=row.comment,
        scope=row.scope,
        current=current,
    )
    return as_seen(document, scope)


def as_seen(document: ConfigDocument, scope: str | None) -> ConfigDocument:
    """A version as a caller of `scope` sees it: without other connections' settings (its
    hash is then that of what it sees), and without the author and comment of a change
    limited to another connection."""
    if scope is None:
        return document
    config = visible(document.config, scope)
    hidden = _hidden(document.scope, scope)
    return document.model_copy(
        update={
            "config": config,
            "version": config.version,
            "author": None if hidden else document.author,
            "comment": None if hidden else document.comment,
        }
    )


def _with_connection_settings(
    config: HealthConfig, scope: str, settings: ConnectionSettings | None
) -> dict[str, Any]:
    """`config`'s document with connection `scope`'s own settings replaced by `settings`
    (None: it has none of its own)."""
    document = config.model_dump(mode="json")
    document["connections"].pop(scope, None)
    if settings is not None:
        document["connections"][scope] = settings.model_dump(mode="json")
    return document


def _audit_item(row: ConfigAudit, scope: str | None) -> AuditItem:
    """An audit entry as the caller may see it: a global change seen from one connection
    lists only the paths outside other connections' settings."""
    changed = list(row.changed)
    if scope is not None:
        changed = [
            path
            for path in changed
            if not path.startswith("connections.")
            or path == f"connections.{scope}"
            or path.startswith(f"connections.{scope}.")
        ]
    return AuditItem(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        from_version_id=row.from_version_id,
        to_version_id=row.to_version_id,
        comment=row.comment,
        changed=changed,
    )


# -- reading ----------------------------------------------------------------------------------


async def current_document(session: AsyncSession, scope: str | None = None) -> ConfigDocument:
    """The configuration in force (the defaults until a version is stored), as `scope` sees
    it."""
    return _document(await configs.current_version(session), current=True, scope=scope)


async def read_current(sessions: SessionFactory, *, scope: str | None) -> ConfigDocument:
    async with sessions() as session:
        return await current_document(session, scope)


async def read_version(
    sessions: SessionFactory, *, version_id: int, scope: str | None
) -> ConfigDocument:
    async with sessions() as session:
        row = await configs.get_version(session, version_id=version_id)
        if row is None:
            raise NotFound(f"no configuration version {version_id}")
        return _document(row, current=row.id == await configs.current_id(session), scope=scope)


async def list_versions(
    sessions: SessionFactory, *, limit: int, offset: int, scope: str | None
) -> VersionPage:
    """Versions newest first; the newest is the one in force. Seen from one connection, the
    versions that changed only another connection's settings keep their place in the list
    (the one in force may be one of them) without their author and comment."""
    async with sessions() as session:
        rows, total = await configs.list_versions(session, limit=limit, offset=offset)
        newest = await configs.current_id(session)
    return VersionPage(
        items=[
            VersionItem(
                id=row.id,
                created_at=row.created_at,
                author=None if _hidden(row.scope, scope) else row.author,
                comment=None if _hidden(row.scope, scope) else row.comment,
                version=row.version,
                previous_id=row.previous_id or None,
                scope=row.scope,
                current=row.id == newest,
            )
            for row in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


async def audit_log(
    sessions: SessionFactory, *, limit: int, offset: int, scope: str | None
) -> AuditPage:
    """Every configuration change, newest first; seen from one connection, the global ones
    and that connection's own."""
    async with sessions() as session:
        rows, total = await configs.list_audit(session, limit=limit, offset=offset, scope=scope)
    return AuditPage(
        items=[_audit_item(row, scope) for row in rows], total=total, limit=limit, offset=offset
    )


# -- changing ---------------------------------------------------------------------------------


async def _store(
    session: AsyncSession,
    *,
    before: ConfigDocument,
    config: HealthConfig,
    action: Action,
    author: str,
    comment: str,
    changes: list[Change],
    now: datetime,
    scope: str | None = None,
) -> ConfigDocument:
    """A new version after `before`, its audit row and the recompute that rescores accounts
    (only the scope's, when the change was limited to one connection)."""
    try:
        row = await configs.insert_version(
            session,
            config=config,
            previous_id=before.version_id,
            author=author,
            comment=comment,
            now=now,
            scope=scope,
        )
    except configs.VersionConflict:
        raise PreconditionFailed(
            f"another change to the configuration was stored at the same time: {_REREAD}"
        ) from None
    await configs.add_audit(
        session,
        actor=author,
        action=action,
        from_version_id=before.version_id,
        to_version_id=row.id,
        comment=comment,
        changed=[path for path, _, _ in changes],
        now=now,
    )
    await configs.request_recompute(
        session,
        config_id=row.id,
        reason=f"config version {row.id} ({action})",
        now=now,
        connection=scope,
    )
    log.info(
        "config_changed",
        action=action,
        author=author,
        scope=scope,
        from_version=before.version_id,
        to_version=row.id,
        changed=len(changes),
    )
    return _document(row, current=True, scope=scope).model_copy(update={"stored": True})


async def _store_if_changed(
    session: AsyncSession,
    *,
    before: ConfigDocument,
    seen: ConfigDocument,
    config: HealthConfig,
    action: Action,
    author: str,
    comment: str,
    now: datetime,
    scope: str | None,
) -> ConfigDocument:
    """Store `config` after `before` unless it is what is in force already; then the answer is
    the version in force as `seen` by the caller, and that nothing was stored (no new version,
    no audit row, no rescoring)."""
    changes = diff_paths(before.config.model_dump(mode="json"), config.model_dump(mode="json"))
    if not changes:
        log.info("config_unchanged", version=seen.version_id)
        return seen.model_copy(update={"stored": False})
    return await _store(
        session,
        before=before,
        config=config,
        action=action,
        author=author,
        comment=comment,
        changes=changes,
        now=now,
        scope=scope,
    )


async def put_config(
    sessions: SessionFactory,
    *,
    config: HealthConfig,
    comment: str,
    author: str,
    if_match: str | None,
    now: datetime,
    scope: str | None,
    grants: ChannelGrants,
) -> ConfigDocument:
    """Store `config` as the new version if `if_match` names the one in force (as `scope`
    sees it); a caller bound to a connection changes only that connection's settings.

    Nothing is stored when the content is what is in force already (the answer says so):
    like `config apply`, an unchanged configuration is no change.
    """
    async with sessions() as session, session.begin():
        before = await current_document(session)
        seen = as_seen(before, scope)
        check_if_match(if_match, etag(seen), scope)
        stored = scoped_change(before.config, config, scope=scope, grants=grants)
        return await _store_if_changed(
            session,
            before=before,
            seen=seen,
            config=stored,
            action="put",
            author=author,
            comment=comment,
            now=now,
            scope=scope,
        )


async def rollback(
    sessions: SessionFactory,
    *,
    version_id: int | None,
    comment: str,
    author: str,
    if_match: str | None,
    now: datetime,
    scope: str | None,
) -> ConfigDocument:
    """Store a new version equal to version `version_id` (None: the defaults); history is
    never rewritten, and nothing is stored when that is what is in force already. A caller
    bound to a connection restores that connection's settings as they were in that version
    (the defaults: none of its own) and leaves everything else as it is."""
    require_if_match(if_match)
    async with sessions() as session, session.begin():
        if version_id is None:
            document: object = HealthConfig().model_dump(mode="json")
            name = "the defaults"
        else:
            target = await configs.get_version(session, version_id=version_id)
            if target is None:
                raise NotFound(f"no configuration version {version_id}")
            document = target.document
            name = f"version {version_id}"
        before = await current_document(session)
        seen = as_seen(before, scope)
        check_if_match(if_match, etag(seen), scope)
        try:
            config = HealthConfig.model_validate(document)
            if scope is not None:
                config = HealthConfig.model_validate(
                    _with_connection_settings(before.config, scope, config.connections.get(scope))
                )
        except ValidationError as exc:
            # The schema changed since that version was stored, or (for one connection's
            # settings) the global part changed since in a way they no longer fit.
            raise InvalidConfig(field_errors(exc), prefix=f"{name} is no longer valid: ") from None
        what = "rollback" if scope is None else f"rollback of connection {scope}'s settings"
        return await _store_if_changed(
            session,
            before=before,
            seen=seen,
            config=config,
            action="rollback",
            author=author,
            comment=f"{what} to {name}" + (f": {comment}" if comment else ""),
            now=now,
            scope=scope,
        )


async def apply_config(
    session: AsyncSession,
    *,
    config: HealthConfig,
    author: str,
    comment: str,
    dry_run: bool,
    now: datetime,
) -> ApplyResult:
    """Config as code: store `config` unless it is what is in force already (or a dry run).

    Idempotent: applying the same file twice stores one version. PreconditionFailed when a
    concurrent change got in first.
    """
    before = await current_document(session)
    changes = diff_paths(before.config.model_dump(mode="json"), config.model_dump(mode="json"))
    if dry_run or not changes:
        return ApplyResult(before=before, changes=changes, stored=None)
    stored = await _store(
        session,
        before=before,
        config=config,
        action="apply",
        author=author,
        comment=comment,
        changes=changes,
        now=now,
    )
    return ApplyResult(before=before, changes=changes, stored=stored)
