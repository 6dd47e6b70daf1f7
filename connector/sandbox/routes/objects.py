"""Sandbox routes for records of any object type (list, read, create, update, batch read and
update), v4 association batch reads and the portal's owners."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.sandbox.catalog import SINGULAR_NAMES, object_type_name
from connector.sandbox.errors import (
    ApiError,
    JSONObject,
    missing_attributes,
    unknown_object_type,
    validation_error,
)
from connector.sandbox.properties import PropertyValues
from connector.sandbox.seed import ALL_OBJECT_TYPES, OBJECT_TYPE_SPECS, SEEDED_OWNERS, owner_json
from connector.sandbox.state import SandboxState, company_sort_key
from connector.sandbox.wire import archived, json_object, json_response

ANY_OBJECTS = "/crm/v3/objects"
BATCH_LIMIT = 100
LIST_LIMIT_DEFAULT = 10
LIST_LIMIT_MAX = 100


def _properties_field(body: JSONObject, type_name: str) -> dict[str, Any]:
    if "properties" not in body:
        raise missing_attributes(type_name, ["properties"])
    properties = body["properties"]
    if not isinstance(properties, dict):
        raise validation_error("Invalid input JSON: 'properties' must be an object.")
    return properties


def _inputs(body: JSONObject, type_name: str) -> list[JSONObject]:
    if "inputs" not in body:
        raise missing_attributes(type_name, ["inputs"])
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        raise validation_error("Invalid input JSON: 'inputs' must be a list of objects.")
    if len(inputs) > BATCH_LIMIT:
        raise validation_error(
            f"Too many inputs: {len(inputs)}. A batch takes at most {BATCH_LIMIT} inputs."
        )
    return inputs


def _input_id(item: JSONObject) -> str:
    value = item.get("id")
    # HubSpot ids are strings on the wire but it accepts JSON numbers too.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise missing_attributes("SimplePublicObjectId", ["id"])
    return value


def _cleared(values: PropertyValues) -> set[str]:
    """The names a write cleared (validated "" or null), which its answer echoes as ""."""
    return {name for name, value in values.items() if value is None}


def _unique_ids(ids: list[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=company_sort_key)
    if duplicates:
        raise validation_error(
            f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. IDs must be unique"
        )


def _query_list(request: Request, key: str) -> list[str] | None:
    """A list parameter: repeated, comma-separated, or both, as HubSpot accepts it."""
    values = request.query_params.getlist(key)
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _query_properties(request: Request) -> list[str] | None:
    return _query_list(request, "properties")


def _query_associations(request: Request) -> list[str]:
    return _query_list(request, "associations") or []


def _object_type(request: Request) -> str:
    object_type: str = request.path_params["object_type"]
    if object_type not in ALL_OBJECT_TYPES:
        raise unknown_object_type(object_type)
    return object_type


def _body_properties(body: JSONObject) -> list[str] | None:
    names = body.get("properties")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise validation_error("Invalid input JSON: 'properties' must be a list of names.")
    return names


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return LIST_LIMIT_DEFAULT
    if not raw.isdigit() or int(raw) < 1:
        raise validation_error(f"Invalid value '{raw}' for 'limit': expected a positive integer.")
    # HubSpot caps the page size rather than refusing a larger one.
    return min(int(raw), LIST_LIMIT_MAX)


def _type_label(object_type: str) -> str:
    """HubSpot's upper-case object name in messages: COMPANY, CONTACT, MEETING_EVENT."""
    spec = OBJECT_TYPE_SPECS.get(object_type)
    return ("company" if spec is None else spec.association_name).upper()


def _not_found_error(ids: list[str], object_type: str) -> JSONObject:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": f"Could not get some {_type_label(object_type)} objects, they may be "
        "deleted or not exist. Check that ids are valid.",
        "context": {"ids": ids},
    }


def _batch_answer(
    results: list[JSONObject],
    missing: list[str],
    started_at: str,
    completed_at: str,
    object_type: str = "companies",
) -> Response:
    body: JSONObject = {"status": "COMPLETE", "results": results}
    if missing:
        body["numErrors"] = 1
        body["errors"] = [_not_found_error(missing, object_type)]
    body["startedAt"] = started_at
    body["completedAt"] = completed_at
    return json_response(body, 207 if missing else 200)


def _v4_object_type(raw: str) -> str:
    # v4 paths take plural or singular names or object type ids ("0-2").
    name = object_type_name(raw)
    if name is None:
        raise unknown_object_type(raw)
    return name


def _no_associations_error(from_type: str, from_id: str, to_type: str) -> JSONObject:
    from_name, to_name = SINGULAR_NAMES[from_type], SINGULAR_NAMES[to_type]
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {to_name} is associated with {from_name} {from_id}.",
        "context": {
            "fromObjectId": [from_id],
            "fromObjectType": [from_name],
            "toObjectType": [to_name],
        },
    }


class ObjectRoutes:
    """Route handlers for records, associations and owners over one state."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route(f"{ANY_OBJECTS}/{{object_type}}", self.list_objects, methods=["GET"]),
            Route(f"{ANY_OBJECTS}/{{object_type}}", self.create_object, methods=["POST"]),
            Route(f"{ANY_OBJECTS}/{{object_type}}/batch/read", self.batch_read, methods=["POST"]),
            Route(
                f"{ANY_OBJECTS}/{{object_type}}/batch/update", self.batch_update, methods=["POST"]
            ),
            Route(f"{ANY_OBJECTS}/{{object_type}}/{{object_id}}", self.get_object, methods=["GET"]),
            Route(
                f"{ANY_OBJECTS}/{{object_type}}/{{object_id}}",
                self.update_object,
                methods=["PATCH"],
            ),
            Route(
                "/crm/v4/associations/{from_type}/{to_type}/batch/read",
                self.batch_read_associations,
                methods=["POST"],
            ),
            Route("/crm/v3/owners", self.list_owners, methods=["GET"]),
            Route("/crm/v3/owners/{owner_id}", self.get_owner, methods=["GET"]),
        ]

    # any object type (companies, contacts, emails, calls, meetings, notes, tickets)

    async def list_objects(self, request: Request) -> Response:
        object_type = _object_type(request)
        limit = _limit(request)
        properties = _query_properties(request)
        associations = _query_associations(request)
        for to_type in associations:
            # Checked up front: HubSpot refuses the call even when the page would be empty.
            if to_type not in ALL_OBJECT_TYPES:
                raise unknown_object_type(to_type)
        if archived(request):
            # The sandbox never archives anything.
            return json_response({"results": []})
        ids = self.state.ordered_ids(object_type)
        after = request.query_params.get("after")
        if after is not None:
            if not after.isdigit():
                raise validation_error(f"Invalid paging cursor '{after}' for 'after'.")
            ids = [i for i in ids if company_sort_key(i) >= company_sort_key(after)]
        page, rest = ids[:limit], ids[limit:]
        body: JSONObject = {
            "results": [self.state.render(object_type, i, properties, associations) for i in page],
        }
        if rest:
            query = dict(request.query_params)
            query["after"] = rest[0]
            link = f"{request.url.replace(query=urlencode(query))}"
            body["paging"] = {"next": {"after": rest[0], "link": link}}
        return json_response(body)

    async def get_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        archived(request)
        object_id = request.path_params["object_id"]
        rendered = self.state.render(
            object_type, object_id, _query_properties(request), _query_associations(request)
        )
        return json_response(rendered)

    # writes and batch reads, any object type

    async def create_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        body = await json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInputForCreate")
        associations = body.get("associations")
        if associations is not None and (
            not isinstance(associations, list)
            or not all(isinstance(item, dict) for item in associations)
        ):
            raise validation_error("Invalid input JSON: 'associations' must be a list of objects.")
        object_id = self.state.create_object(object_type, properties, associations)
        cleared = {name for name, value in properties.items() if value is None or value == ""}
        rendered = self.state.render(object_type, object_id, list(properties), cleared=cleared)
        return json_response(rendered, 201)

    async def update_object(self, request: Request) -> Response:
        object_type = _object_type(request)
        object_id = request.path_params["object_id"]
        self.state.record(object_type, object_id)
        body = await json_object(request)
        properties = _properties_field(body, "SimplePublicObjectInput")
        values = self.state.validate_values(properties, object_type=object_type)
        self.state.apply(object_type, object_id, values)
        return json_response(
            self.state.render(object_type, object_id, list(properties), cleared=_cleared(values))
        )

    async def batch_read(self, request: Request) -> Response:
        object_type = _object_type(request)
        started_at = self.state.timestamp()
        body = await json_object(request)
        inputs = _inputs(body, "BatchReadInputSimplePublicObjectId")
        properties = _body_properties(body) or []
        id_property = body.get("idProperty")
        if id_property is not None and (
            not isinstance(id_property, str)
            or id_property not in self.state.definitions[object_type]
        ):
            raise validation_error(
                f"Invalid value for 'idProperty': {id_property!r} is not a property of "
                f"{object_type}."
            )
        found: list[str] = []
        missing: list[str] = []
        for given in dict.fromkeys(_input_id(item) for item in inputs):
            object_id = (
                self.state.find_by_property(object_type, id_property, given)
                if id_property
                else (given if given in self.state.objects[object_type] else None)
            )
            if object_id is None:
                missing.append(given)
            elif object_id not in found:
                found.append(object_id)
        wanted = [*properties, id_property] if id_property and properties else properties
        results = [self.state.render(object_type, i, wanted or None) for i in found]
        return _batch_answer(results, missing, started_at, self.state.timestamp(), object_type)

    async def batch_update(self, request: Request) -> Response:
        object_type = _object_type(request)
        started_at = self.state.timestamp()
        body = await json_object(request)
        inputs = _inputs(body, "BatchInputSimplePublicObjectBatchInput")
        updates: list[tuple[str, dict[str, Any]]] = []
        for item in inputs:
            properties = item.get("properties")
            if not isinstance(properties, dict):
                raise missing_attributes("SimplePublicObjectBatchInput", ["properties"])
            updates.append((_input_id(item), properties))
        _unique_ids([object_id for object_id, _ in updates])
        # Validate every input before writing any: a batch with a bad value changes nothing.
        validated: list[tuple[str, PropertyValues]] = [
            (object_id, self.state.validate_values(properties, object_type=object_type))
            for object_id, properties in updates
        ]
        records = self.state.objects[object_type]
        results: list[JSONObject] = []
        missing: list[str] = []
        for object_id, values in validated:
            if object_id not in records:
                missing.append(object_id)
                continue
            self.state.apply(object_type, object_id, values)
            results.append(
                self.state.render(object_type, object_id, list(values), cleared=_cleared(values))
            )
        return _batch_answer(results, missing, started_at, self.state.timestamp(), object_type)

    # associations v4

    async def batch_read_associations(self, request: Request) -> Response:
        from_type = _v4_object_type(request.path_params["from_type"])
        to_type = _v4_object_type(request.path_params["to_type"])
        started_at = self.state.timestamp()
        body = await json_object(request)
        inputs = _inputs(body, "BatchInputPublicFetchAssociationsBatchRequest")
        results: list[JSONObject] = []
        errors: list[JSONObject] = []
        for from_id in dict.fromkeys(_input_id(item) for item in inputs):
            to = self.state.associations_v4(from_type, from_id, to_type)
            if to:
                results.append({"from": {"id": from_id}, "to": to})
            else:
                # HubSpot reports a record without associations (or without a record) as an
                # error of the multi-status answer, one per id, not as an empty `to`.
                errors.append(_no_associations_error(from_type, from_id, to_type))
        answer: JSONObject = {"status": "COMPLETE", "results": results}
        if errors:
            answer["numErrors"] = len(errors)
            answer["errors"] = errors
        answer["startedAt"] = started_at
        answer["completedAt"] = self.state.timestamp()
        return json_response(answer, 207 if errors else 200)

    # owners (read-only in HubSpot too: they are the portal's users)

    async def list_owners(self, request: Request) -> Response:
        if archived(request):
            return json_response({"results": []})
        email = request.query_params.get("email")
        owners = [owner_json(owner_id) for owner_id, *_ in SEEDED_OWNERS]
        return json_response(
            {
                "results": [
                    owner
                    for owner in owners
                    if owner is not None and (email is None or owner["email"] == email)
                ]
            }
        )

    async def get_owner(self, request: Request) -> Response:
        owner_id = request.path_params["owner_id"]
        owner = None if archived(request) else owner_json(owner_id)
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Owner {owner_id} does not exist")
        return json_response(owner)
