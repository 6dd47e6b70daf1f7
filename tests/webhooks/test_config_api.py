"""The configuration API: read with an ETag, change under If-Match (428 without, 412 when
stale, one winner of two concurrent edits), validation naming every field, versions, rollback,
the audit log; and the pieces underneath (diff_paths, the unique predecessor)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from signals.config import HealthConfig
from webhooks import config_service
from webhooks.config_service import diff_paths
from webhooks.errors import PreconditionFailed
from webhooks.store import configs, keys
from webhooks.store.models import RecomputeJob

NOW = datetime.now(UTC).replace(microsecond=0)


async def bearer(service, *, role: str, name: str | None = None) -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=name or f"{role}-key", role=role, connection="default", now=NOW
        )
    return {"Authorization": f"Bearer {key}"}


def edited(**bands: float) -> dict[str, Any]:
    document = HealthConfig().model_dump(mode="json")
    document["bands"].update(bands)
    return document


async def put(service, headers, document, *, if_match: str | None, comment: str = ""):
    extra = {} if if_match is None else {"If-Match": if_match}
    return await service.client.put(
        "/api/v1/config",
        json={"config": document, "comment": comment},
        headers={**headers, **extra},
    )


@pytest.fixture
async def admin(service) -> dict[str, str]:
    return await bearer(service, role="global_admin", name="alice")


@pytest.fixture
async def viewer(service) -> dict[str, str]:
    return await bearer(service, role="viewer")


async def test_without_a_stored_version_the_defaults_are_returned_with_an_etag(service, viewer):
    response = await service.client.get("/api/v1/config", headers=viewer)
    assert response.status_code == 200
    body = response.json()
    assert body["version_id"] is None
    assert body["author"] is None
    assert body["current"] is True
    assert body["config"] == HealthConfig().model_dump(mode="json")
    assert response.headers["ETag"] == f'"defaults-{HealthConfig().version}"'


async def test_reading_the_config_needs_a_key(service):
    response = await service.client.get("/api/v1/config")
    assert response.status_code == 401


async def test_an_ingest_key_may_not_read_the_config(service):
    response = await service.client.get(
        "/api/v1/config", headers=await bearer(service, role="ingest")
    )
    assert response.status_code == 403


async def test_a_viewer_may_not_change_the_config(service, viewer):
    response = await put(service, viewer, edited(healthy_min=75), if_match='"defaults-x"')
    assert response.status_code == 403


async def test_a_change_without_if_match_is_428(service, admin):
    response = await put(service, admin, edited(healthy_min=75), if_match=None)
    assert response.status_code == 428
    assert "If-Match" in response.json()["detail"]


async def test_if_match_star_is_428(service, admin):
    response = await put(service, admin, edited(healthy_min=75), if_match="*")
    assert response.status_code == 428


async def test_put_stores_a_version_with_author_comment_and_a_recompute(service, admin, viewer):
    before = await service.client.get("/api/v1/config", headers=viewer)
    response = await put(
        service, admin, edited(healthy_min=75), if_match=before.headers["ETag"], comment="stricter"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version_id"] is not None
    assert body["author"] == "alice"
    assert body["comment"] == "stricter"
    assert body["config"]["bands"]["healthy_min"] == 75
    assert body["version"] == HealthConfig.model_validate(edited(healthy_min=75)).version
    etag = response.headers["ETag"]
    assert etag == f'"{body["version_id"]}-{body["version"]}"'
    assert etag != before.headers["ETag"]
    now = await service.client.get("/api/v1/config", headers=viewer)
    assert now.headers["ETag"] == etag
    assert now.json()["config"]["bands"]["healthy_min"] == 75
    async with service.runtime.sessions() as session:
        jobs = (await session.execute(select(RecomputeJob))).scalars().all()
    assert [(job.config_id, job.status) for job in jobs] == [(body["version_id"], "pending")]


async def test_a_stale_if_match_is_412_with_the_current_etag(service, admin):
    defaults = f'"defaults-{HealthConfig().version}"'
    stored = await put(service, admin, edited(healthy_min=75), if_match=defaults)
    assert stored.status_code == 200
    stale = await put(service, admin, edited(healthy_min=80), if_match=defaults)
    assert stale.status_code == 412
    assert stale.headers["ETag"] == stored.headers["ETag"]
    weak = await put(service, admin, edited(healthy_min=80), if_match="W/" + stored.headers["ETag"])
    assert weak.status_code == 412


async def test_two_admins_editing_the_same_version_one_gets_412(service, admin):
    other = await bearer(service, role="global_admin", name="bob")
    defaults = f'"defaults-{HealthConfig().version}"'
    results = await asyncio.gather(
        put(service, admin, edited(healthy_min=75), if_match=defaults),
        put(service, other, edited(healthy_min=80), if_match=defaults),
    )
    assert sorted(response.status_code for response in results) == [200, 412]
    versions = await service.client.get("/api/v1/config/versions", headers=admin)
    assert versions.json()["total"] == 1


async def test_a_change_racing_past_the_check_is_412_not_a_fork(service, monkeypatch):
    """The If-Match check and the insert are one atomic step: a change that read the version
    in force just before another was stored cannot be stored after it."""
    async with service.runtime.sessions() as session, session.begin():
        await configs.save(session, config=HealthConfig(), author="bob", comment="", now=NOW)
    stale = await config_service.read_current(service.runtime.sessions, scope=None)
    assert stale.version_id is not None

    async def as_read_before(_session, _scope=None):
        return config_service.ConfigDocument(
            config=HealthConfig(),
            version_id=None,
            version=HealthConfig().version,
            created_at=None,
            author=None,
            comment=None,
            current=True,
        )

    monkeypatch.setattr(config_service, "current_document", as_read_before)
    with pytest.raises(PreconditionFailed, match="at the same time"):
        await config_service.put_config(
            service.runtime.sessions,
            config=HealthConfig.model_validate(edited(healthy_min=75)),
            comment="",
            author="alice",
            if_match=f'"defaults-{HealthConfig().version}"',
            now=NOW,
            scope=None,
            grants={},
        )
    monkeypatch.undo()
    assert (await config_service.read_current(service.runtime.sessions, scope=None)) == stale
    async with service.runtime.sessions() as session:
        assert (await configs.list_audit(session, limit=10, offset=0))[1] == 0


async def test_put_refuses_an_invalid_config_naming_every_field(service, admin):
    document = edited(hysteresis=60)
    document["signals"]["active_use"]["weight"] = -1
    document["signals"]["momentum"]["indicators"]["arr_change"]["healthy"] = "lots"
    document["bands"]["colour"] = "red"
    response = await put(service, admin, document, if_match='"defaults-x"')
    assert response.status_code == 422
    locations = {".".join(map(str, error["loc"])) for error in response.json()["detail"]}
    assert locations == {
        "body.config.signals.active_use.weight",
        "body.config.signals.momentum.indicators.arr_change.healthy",
        "body.config.bands.hysteresis",
        "body.config.bands.colour",
    }


async def test_a_cross_field_rule_is_reported_at_its_section(service, admin):
    response = await put(
        service, admin, edited(at_risk_below=80, healthy_min=60), if_match='"defaults-x"'
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "config", "bands"]
    assert "at_risk_below" in error["msg"]


async def test_a_refusal_says_what_the_check_says_without_pydantics_value_error(service, admin):
    """A validator's own words, as the admin page shows them on the input: pydantic's "Value
    error, " before them is not part of the message (the preview's refusal has none either)."""
    document = edited(at_risk_below=80, healthy_min=60)
    document["signals"]["active_use"]["indicators"]["stickiness"]["healthy"] = 0.05
    response = await put(service, admin, document, if_match='"defaults-x"')
    assert response.status_code == 422
    messages = {
        ".".join(map(str, error["loc"])): error["msg"] for error in response.json()["detail"]
    }
    assert messages == {
        "body.config.bands": "at_risk_below (80) must not exceed healthy_min (60)",
        "body.config.signals.active_use.indicators.stickiness": (
            "healthy: must differ from at_risk"
        ),
    }
    preview = await service.client.post(
        "/api/v1/config/preview", json={"config": document}, headers=admin
    )
    assert preview.status_code == 422
    assert "Value error" not in preview.text
    assert (
        "config.signals.active_use.indicators.stickiness: healthy: must differ from at_risk"
        in (preview.json()["detail"])
    )


async def test_versions_are_listed_newest_first_with_paging(service, admin, viewer):
    etag = f'"defaults-{HealthConfig().version}"'
    ids = []
    for healthy_min in (71, 72, 73):
        response = await put(
            service, admin, edited(healthy_min=healthy_min), if_match=etag, comment=f"{healthy_min}"
        )
        etag = response.headers["ETag"]
        ids.append(response.json()["version_id"])
    page = (await service.client.get("/api/v1/config/versions?limit=2", headers=viewer)).json()
    assert page["total"] == 3
    assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
    assert [item["current"] for item in page["items"]] == [True, False]
    assert page["items"][0]["author"] == "alice"
    assert page["items"][0]["comment"] == "73"
    assert page["items"][1]["previous_id"] == ids[0]
    rest = (
        await service.client.get("/api/v1/config/versions?limit=2&offset=2", headers=viewer)
    ).json()
    assert [(item["id"], item["previous_id"]) for item in rest["items"]] == [(ids[0], None)]
    assert (
        rest["items"][0]["version"] == HealthConfig.model_validate(edited(healthy_min=71)).version
    )


async def test_versions_need_a_viewer_or_admin_key(service):
    assert (await service.client.get("/api/v1/config/versions")).status_code == 401
    ingest = await bearer(service, role="ingest")
    assert (await service.client.get("/api/v1/config/versions", headers=ingest)).status_code == 403


async def test_one_version_is_shown_and_an_unknown_one_is_404(service, admin, viewer):
    stored = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    version_id = stored.json()["version_id"]
    response = await service.client.get(f"/api/v1/config/versions/{version_id}", headers=viewer)
    assert response.status_code == 200
    assert response.json()["config"]["bands"]["healthy_min"] == 75
    assert response.json()["current"] is True
    assert response.headers["ETag"] == stored.headers["ETag"]
    missing = await service.client.get("/api/v1/config/versions/999", headers=viewer)
    assert missing.status_code == 404


async def test_rollback_stores_a_new_version_equal_to_the_old_one(service, admin, viewer):
    first = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    second = await put(
        service, admin, edited(healthy_min=80), if_match=first.headers["ETag"], comment="too lax"
    )
    old_id = first.json()["version_id"]
    response = await service.client.post(
        f"/api/v1/config/versions/{old_id}/rollback",
        json={"comment": "80 was too strict"},
        headers={**admin, "If-Match": second.headers["ETag"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version_id"] not in {old_id, second.json()["version_id"]}
    assert body["config"] == first.json()["config"]
    assert body["version"] == first.json()["version"]
    assert body["comment"] == f"rollback to version {old_id}: 80 was too strict"
    assert response.headers["ETag"] == f'"{body["version_id"]}-{body["version"]}"'
    versions = (await service.client.get("/api/v1/config/versions", headers=viewer)).json()
    assert versions["total"] == 3
    # History is kept: the version rolled back from is still there, unchanged.
    kept = await service.client.get(
        f"/api/v1/config/versions/{second.json()['version_id']}", headers=viewer
    )
    assert kept.json()["config"]["bands"]["healthy_min"] == 80
    assert kept.json()["current"] is False


async def test_rollback_without_a_comment_says_which_version(service, admin):
    first = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    second = await put(service, admin, edited(healthy_min=80), if_match=first.headers["ETag"])
    old_id = first.json()["version_id"]
    response = await service.client.post(
        f"/api/v1/config/versions/{old_id}/rollback",
        headers={**admin, "If-Match": second.headers["ETag"]},
    )
    assert response.status_code == 200
    assert response.json()["comment"] == f"rollback to version {old_id}"
    assert response.json()["stored"] is True


async def stored_rows(service) -> dict[str, int]:
    async with service.runtime.sessions() as session:
        return {
            "versions": len((await configs.list_versions(session, limit=100, offset=0))[0]),
            "audit": len((await configs.list_audit(session, limit=100, offset=0, scope=None))[0]),
            "recomputes": len((await session.execute(select(RecomputeJob))).scalars().all()),
        }


async def test_an_unchanged_put_stores_nothing_and_says_so(service, admin):
    defaults = f'"defaults-{HealthConfig().version}"'
    same_as_defaults = await put(service, admin, edited(), if_match=defaults)
    assert same_as_defaults.status_code == 200, same_as_defaults.text
    assert same_as_defaults.json()["stored"] is False
    assert same_as_defaults.json()["version_id"] is None
    assert same_as_defaults.headers["ETag"] == defaults
    assert await stored_rows(service) == {"versions": 0, "audit": 0, "recomputes": 0}
    first = await put(service, admin, edited(healthy_min=75), if_match=defaults)
    assert first.json()["stored"] is True
    again = await put(service, admin, edited(healthy_min=75), if_match=first.headers["ETag"])
    assert again.status_code == 200
    assert (again.json()["stored"], again.json()["version_id"]) == (
        False,
        first.json()["version_id"],
    )
    assert again.headers["ETag"] == first.headers["ETag"]
    assert await stored_rows(service) == {"versions": 1, "audit": 1, "recomputes": 1}


async def test_a_rollback_to_the_version_in_force_stores_nothing(service, admin):
    first = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    response = await service.client.post(
        f"/api/v1/config/versions/{first.json()['version_id']}/rollback",
        headers={**admin, "If-Match": first.headers["ETag"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stored"] is False
    assert response.json()["version_id"] == first.json()["version_id"]
    assert await stored_rows(service) == {"versions": 1, "audit": 1, "recomputes": 1}


async def test_a_rollback_to_the_defaults_restores_them(service, admin, viewer):
    first = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    response = await service.client.post(
        "/api/v1/config/versions/defaults/rollback",
        json={"comment": "start over"},
        headers={**admin, "If-Match": first.headers["ETag"]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stored"] is True
    assert body["config"] == HealthConfig().model_dump(mode="json")
    assert body["version"] == HealthConfig().version
    assert body["comment"] == "rollback to the defaults: start over"
    now = await service.client.get("/api/v1/config", headers=viewer)
    assert now.json()["config"] == HealthConfig().model_dump(mode="json")
    again = await service.client.post(
        "/api/v1/config/versions/defaults/rollback",
        headers={**admin, "If-Match": response.headers["ETag"]},
    )
    assert again.status_code == 200
    assert again.json()["stored"] is False
    assert await stored_rows(service) == {"versions": 2, "audit": 2, "recomputes": 2}


async def test_rollback_needs_if_match_a_current_one_an_admin_and_a_known_version(
    service, admin, viewer
):
    first = await put(
        service, admin, edited(healthy_min=75), if_match=f'"defaults-{HealthConfig().version}"'
    )
    second = await put(service, admin, edited(healthy_min=80), if_match=first.headers["ETag"])
    url = f"/api/v1/config/versions/{first.json()['version_id']}/rollback"
    assert (await service.client.post(url)).status_code == 401
    forbidden = await service.client.post(
        url, headers={**viewer, "If-Match": second.headers["ETag"]}
    )
    assert forbidden.status_code == 403
    assert (await service.client.post(url, headers=admin)).status_code == 428
    stale = await service.client.post(url, headers={**admin, "If-Match": first.headers["ETag"]})
    assert stale.status_code == 412
    missing = await service.client.post(
        "/api/v1/config/versions/999/rollback",
        headers={**admin, "If-Match": second.headers["ETag"]},
    )
    assert missing.status_code == 404


async def test_the_audit_log_records_every_change_with_the_changed_paths(service, admin, viewer):
    first = await put(
        service,
        admin,
        edited(healthy_min=75, hysteresis=5),
        if_match=f'"defaults-{HealthConfig().version}"',
        comment="tune bands",
    )
    await service.client.post(
        "/api/v1/config/versions/defaults/rollback",
        headers={**admin, "If-Match": first.headers["ETag"]},
    )
    response = await service.client.get("/api/v1/config/audit", headers=admin)
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 2
    rollback, change = page["items"]
    assert change["action"] == "put"
    assert change["actor"] == "alice"
    assert change["from_version_id"] is None
    assert change["to_version_id"] == first.json()["version_id"]
    assert change["comment"] == "tune bands"
    assert change["changed"] == ["bands.healthy_min", "bands.hysteresis"]
    assert rollback["action"] == "rollback"
    assert rollback["from_version_id"] == first.json()["version_id"]
    assert rollback["comment"] == "rollback to the defaults"
    assert rollback["changed"] == ["bands.healthy_min", "bands.hysteresis"]
    assert (await service.client.get("/api/v1/config/audit", headers=viewer)).status_code == 403
    assert (await service.client.get("/api/v1/config/audit")).status_code == 401


async def test_two_versions_cannot_follow_the_same_one(service):
    sessions = service.runtime.sessions
    async with sessions() as session, session.begin():
        first = await configs.insert_version(
            session, config=HealthConfig(), previous_id=None, author="a", comment="", now=NOW
        )
    with pytest.raises(configs.VersionConflict):
        async with sessions() as session, session.begin():
            await configs.insert_version(
                session, config=HealthConfig(), previous_id=None, author="b", comment="", now=NOW
            )
    async with sessions() as session, session.begin():
        second = await configs.insert_version(
            session, config=HealthConfig(), previous_id=first.id, author="c", comment="", now=NOW
        )
    with pytest.raises(configs.VersionConflict):
        async with sessions() as session, session.begin():
            await configs.insert_version(
                session,
                config=HealthConfig(),
                previous_id=first.id,
                author="d",
                comment="",
                now=NOW,
            )
    async with sessions() as session:
        assert await configs.current_id(session) == second.id


async def test_save_follows_the_current_version(service):
    async with service.runtime.sessions() as session, session.begin():
        first = await configs.save(session, config=HealthConfig(), author="a", comment="", now=NOW)
        second = await configs.save(session, config=HealthConfig(), author="a", comment="", now=NOW)
    assert (first.previous_id, second.previous_id) == (configs.DEFAULTS_ID, first.id)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}, [("a.c", 2, 3)]),
        ({"a": [1, 2]}, {"a": [1, 5, 6]}, [("a.1", 2, 5), ("a.2", None, 6)]),
        ({"a": [{"n": 1}]}, {"a": []}, [("a.0", {"n": 1}, None)]),
        ({"a": {"x": 1}}, {"a": {"y": 1}}, [("a.x", 1, None), ("a.y", None, 1)]),
        ({"a": "s"}, {"a": {"k": 1}}, [("a", "s", {"k": 1})]),
    ],
)
def test_diff_paths_names_each_changed_leaf(old, new, expected):
    assert diff_paths(old, new) == expected


def test_diff_paths_of_configs_uses_validation_paths():
    old = HealthConfig().model_dump(mode="json")
    new = HealthConfig.model_validate(edited(healthy_min=75)).model_dump(mode="json")
    new["alerts"][1]["points"] = 20
    assert diff_paths(old, new) == [("bands.healthy_min", 70, 75), ("alerts.1.points", 15, 20)]
