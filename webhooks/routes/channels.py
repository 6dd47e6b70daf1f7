"""The alert channels an admin key may route alerts to (admin): their names, kinds and
digests, never a URL, an address or a secret. The admin page offers them in its rule editor."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from webhooks.alerts.channels.config import channel_open_to
from webhooks.deps import AdminPrincipal, RuntimeDep
from webhooks.routes.responses import ErrorBody

router = APIRouter(tags=["alerts"])


class ChannelItem(BaseModel):
    name: str
    kind: str  # slack, teams, email, webhook, crm_task
    digest: str  # none, hourly, daily


class ChannelList(BaseModel):
    items: list[ChannelItem]


@router.get(
    "/api/v1/channels",
    response_model=ChannelList,
    responses={
        401: {"model": ErrorBody, "description": "API key missing or unknown."},
        403: {"model": ErrorBody, "description": "The key's role is not admin."},
    },
    summary="Alert channels this key may route alerts to, by name (all for a global admin; "
    "for an admin bound to a connection, those the channels file opens to it)",
)
async def list_channels(runtime: RuntimeDep, principal: AdminPrincipal) -> ChannelList:
    scope = principal.settings_scope
    return ChannelList(
        items=[
            ChannelItem(name=channel.name, kind=channel.kind, digest=channel.digest)
            for name, channel in sorted(runtime.channels.items())
            if scope is None or channel_open_to(runtime.channel_grants, name, scope)
        ]
    )
