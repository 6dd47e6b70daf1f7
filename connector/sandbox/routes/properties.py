"""Sandbox routes for company property definitions and property groups."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.sandbox.errors import ApiError
from connector.sandbox.state import SandboxState
from connector.sandbox.wire import json_object, json_response

PROPERTIES = "/crm/v3/properties/companies"


class PropertyRoutes:
    """Route handlers for property definitions and groups over one state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route(PROPERTIES, self.list_properties, methods=["GET"]),
            Route(PROPERTIES, self.create_property, methods=["POST"]),
            # Groups before {name}: "groups" is not a property name.
            Route(f"{PROPERTIES}/groups", self.list_groups, methods=["GET"]),
            Route(f"{PROPERTIES}/groups", self.create_group, methods=["POST"]),
            Route(f"{PROPERTIES}/groups/{{name}}", self.get_group, methods=["GET"]),
            Route(f"{PROPERTIES}/{{name}}", self.get_property, methods=["GET"]),
            Route(f"{PROPERTIES}/{{name}}", self.update_property, methods=["PATCH"]),
        ]

    async def list_properties(self, _request: Request) -> Response:
        return json_response({"results": list(self.state.properties.values())})

    async def get_property(self, request: Request) -> Response:
        return json_response(self.state.property_definition(request.path_params["name"]))

    async def create_property(self, request: Request) -> Response:
        return json_response(self.state.create_property(await json_object(request)), 201)

    async def update_property(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.state.property_definition(name)
        return json_response(self.state.update_property(name, await json_object(request)))

    async def list_groups(self, _request: Request) -> Response:
        return json_response({"results": list(self.state.groups.values())})

    async def get_group(self, request: Request) -> Response:
        name = request.path_params["name"]
        group = self.state.groups.get(name)
        if group is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Property group {name} does not exist.")
        return json_response(group)

    async def create_group(self, request: Request) -> Response:
        return json_response(self.state.create_group(await json_object(request)), 201)
