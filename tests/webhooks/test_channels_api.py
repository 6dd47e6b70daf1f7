"""GET /api/v1/channels: the channels an admin key may route alerts to, for the admin page's
rule editor. A global admin sees every channel; an admin bound to a connection only those the
channels file opens to it; nothing ever shows a URL, an address or a secret."""

from __future__ import annotations

from pathlib import Path

from tenants import bearer, new_key

CHANNELS = """\
channels:
  - name: alpha-slack
    type: slack
    url: https://hooks.example.com/alpha-secret-path
    connections: [alpha]
  - name: ops-mail
    type: email
    to: [ops@example.com]
    digest: daily
  - name: everyone-teams
    type: teams
    url: https://hooks.example.com/teams
    connections: ["*"]
  - name: in-crm
    type: crm_task
"""
SMTP = {"smtp_host": "mail.example.com", "smtp_from_address": "crm-health@example.com"}


async def _service(service_factory, tmp_path: Path):
    path = tmp_path / "channels.yaml"
    path.write_text(CHANNELS)
    return await service_factory(hubspot_access_token=None, alert_channels_file=path, **SMTP)


async def test_a_global_admin_sees_every_channel_by_name_kind_and_digest(
    service_factory, tmp_path: Path
) -> None:
    service = await _service(service_factory, tmp_path)
    headers = bearer(await new_key(service, role="global_admin", connection="default"))

    response = await service.client.get("/api/v1/channels", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "items": [
            {"name": "alpha-slack", "kind": "slack", "digest": "none"},
            {"name": "everyone-teams", "kind": "teams", "digest": "none"},
            {"name": "in-crm", "kind": "crm_task", "digest": "none"},
            {"name": "ops-mail", "kind": "email", "digest": "daily"},
        ]
    }
    assert "secret-path" not in response.text
    assert "ops@example.com" not in response.text


async def test_a_connection_admin_sees_only_the_channels_open_to_its_connection(
    service_factory, tmp_path: Path
) -> None:
    service = await _service(service_factory, tmp_path)
    alpha = bearer(await new_key(service, role="admin", connection="alpha"))
    beta = bearer(await new_key(service, role="admin", connection="beta"))

    seen = {
        name: [item["name"] for item in (await service.client.get("/api/v1/channels",
                                                                  headers=headers)).json()["items"]]
        for name, headers in {"alpha": alpha, "beta": beta}.items()
    }  # fmt: skip

    assert seen == {
        "alpha": ["alpha-slack", "everyone-teams", "in-crm"],
        "beta": ["everyone-teams", "in-crm"],
    }


async def test_a_viewer_may_not_list_channels(service_factory, tmp_path: Path) -> None:
    service = await _service(service_factory, tmp_path)
    viewer = bearer(await new_key(service, role="viewer", connection="default"))

    response = await service.client.get("/api/v1/channels", headers=viewer)

    assert response.status_code == 403


async def test_without_a_channels_file_the_list_is_empty(service_factory) -> None:
    service = await service_factory(hubspot_access_token=None)
    headers = bearer(await new_key(service, role="global_admin", connection="default"))

    response = await service.client.get("/api/v1/channels", headers=headers)

    assert response.json() == {"items": []}
