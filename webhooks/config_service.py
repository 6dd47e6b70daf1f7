"""HealthConfig as immutable versions: read the one in force with its ETag, change it under
optimistic locking (If-Match), roll back to any version, list versions and the audit log; and
`diff_paths`, the changed field paths that the CLI, the audit log and previews show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ValidationError

from signals.config import HealthConfig
from webhooks.errors import (
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
    version: str  # hash of the content: equal configurations have equal hashes
    created_at: datetime | None
    author: str | None
    comment: str | None
    current: bool


class VersionItem(BaseModel):
    id: int
    created_at: datetime
    author: str
    comment: str
    version: str
    previous_id: int | None  # None: it replaced the defaults
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
    """Strong ETag of a version: its id (or "defaults") and its content hash, quoted."""
    name = "defaults" if document.version_id is None else str(document.version_id)
    return f'"{name}-{document.version}"'


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


def check_if_match(if_match: str | None, current: str) -> None:
    """Optimistic locking: the change must name the version in force (strong comparison, so
    a weak W/ tag never matches)."""
    if current not in require_if_match(if_match):
        raise PreconditionFailed(
            f"the configuration changed since you read it (now {current}): {_REREAD}",
            headers={"ETag": current},
        )


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for every error, e.g. ("bands.hysteresis", "...")."""
    return [
        (
            ".".join(str(part) for part in error["loc"]) or "(document)",
            error["msg"].removeprefix("Value error, "),
        )
        for error in exc.errors()
    ]


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


def _document(row: ConfigVersion | None, *, current: bool) -> ConfigDocument:
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
    return ConfigDocument(
        config=HealthConfig.model_validate(row.document),
        version_id=row.id,
        version=row.version,
        created_at=row.created_at,
        author=row.author,
        comment=row.comment,
        current=current,
    )


def _audit_item(row: ConfigAudit) -> AuditItem:
    return AuditItem(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        from_version_id=row.from_version_id,
        to_version_id=row.to_version_id,
        comment=row.comment,
        changed=list(row.changed),
    )


# -- reading ----------------------------------------------------------------------------------


async def current_document(session: AsyncSession) -> ConfigDocument:
    """The configuration in force (the defaults until a version is stored)."""
    return _document(await configs.current_version(session), current=True)


async def read_current(sessions: SessionFactory) -> ConfigDocument:
    async with sessions() as session:
        return await current_document(session)


async def read_version(sessions: SessionFactory, *, version_id: int) -> ConfigDocument:
    async with sessions() as session:
        row = await configs.get_version(session, version_id=version_id)
        if row is None:
            raise NotFound(f"no configuration version {version_id}")
        return _document(row, current=row.id == await configs.current_id(session))


async def list_versions(sessions: SessionFactory, *, limit: int, offset: int) -> VersionPage:
    """Versions newest first; the newest is the one in force."""
    async with sessions() as session:
        rows, total = await configs.list_versions(session, limit=limit, offset=offset)
        newest = await configs.current_id(session)
    return VersionPage(
        items=[
            VersionItem(
                id=row.id,
                created_at=row.created_at,
                author=row.author,
                comment=row.comment,
                version=row.version,
                previous_id=row.previous_id or None,
                current=row.id == newest,
            )
            for row in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


async def audit_log(sessions: SessionFactory, *, limit: int, offset: int) -> AuditPage:
    """Every configuration change, newest first."""
    async with sessions() as session:
        rows, total = await configs.list_audit(session, limit=limit, offset=offset)
    return AuditPage(
        items=[_audit_item(row) for row in rows], total=total, limit=limit, offset=offset
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
) -> ConfigDocument:
    """A new version after `before`, its audit row and the recompute that rescores accounts."""
    try:
        row = await configs.insert_version(
            session,
            config=config,
            previous_id=before.version_id,
            author=author,
            comment=comment,
            now=now,
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
        session, config_id=row.id, reason=f"config version {row.id} ({action})", now=now
    )
    log.info(
        "config_changed",
        action=action,
        author=author,
        from_version=before.version_id,
        to_version=row.id,
        changed=len(changes),
    )
    return _document(row, current=True)


async def put_config(
    sessions: SessionFactory,
    *,
    config: HealthConfig,
    comment: str,
    author: str,
    if_match: str | None,
    now: datetime,
) -> ConfigDocument:
    """Store `config` as the new version if `if_match` names the one in force.

    A new version is stored even when the content is unchanged (the client asked for it).
    """
    async with sessions() as session, session.begin():
        before = await current_document(session)
        check_if_match(if_match, etag(before))
        changes = diff_paths(before.config.model_dump(mode="json"), config.model_dump(mode="json"))
        return await _store(
            session,
            before=before,
            config=config,
            action="put",
            author=author,
            comment=comment,
            changes=changes,
            now=now,
        )


async def rollback(
    sessions: SessionFactory,
    *,
    version_id: int,
    comment: str,
    author: str,
    if_match: str | None,
    now: datetime,
) -> ConfigDocument:
    """Store a new version equal to version `version_id`; history is never rewritten."""
    require_if_match(if_match)
    async with sessions() as session, session.begin():
        target = await configs.get_version(session, version_id=version_id)
        if target is None:
            raise NotFound(f"no configuration version {version_id}")
        before = await current_document(session)
        check_if_match(if_match, etag(before))
        try:
            config = HealthConfig.model_validate(target.document)
        except ValidationError as exc:
            # Only when the schema changed since that version was stored.
            raise InvalidConfig(
                field_errors(exc), prefix=f"version {version_id} is no longer valid: "
            ) from None
        text = f"rollback to version {version_id}" + (f": {comment}" if comment else "")
        changes = diff_paths(before.config.model_dump(mode="json"), config.model_dump(mode="json"))
        return await _store(
            session,
            before=before,
            config=config,
            action="rollback",
            author=author,
            comment=text,
            changes=changes,
            now=now,
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
