"""The sandbox's in-memory CRM: companies, contacts, engagements and tickets with their
associations, property definitions and groups, recorded calls, faults.

Everything HubSpot would validate is validated here or in `properties` (pure Python, no HTTP);
the app only frames it. Errors are `errors.ApiError`; the seed portal is in `seed`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.sandbox.catalog import (
    ASSOCIATION_TYPE_IDS,
    PRIMARY_TYPE_IDS,
    TARGET_BY_TYPE_ID,
    Change,
    can_associate,
)
from connector.sandbox.errors import (
    ApiError,
    JSONObject,
    missing_attributes,
    unknown_object_type,
    validation_error,
)
from connector.sandbox.faults import FaultPlan, RecordedRequest
from connector.sandbox.limits import RateLimiter
from connector.sandbox.oauth import DEFAULT_ACCESS_TTL_SECONDS, DEFAULT_APP_ID, OAuthServer
from connector.sandbox.outbound import WebhookDispatcher
from connector.sandbox.properties import (
    PropertyValues,
    new_group,
    new_property,
    problem,
    property_values_error,
    updated_property,
    validate_values,
)
from connector.sandbox.seed import (
    ALL_OBJECT_TYPES,
    DEFAULT_PROPERTIES,
    OBJECT_TYPE_SPECS,
    SEED_GROUPS,
    SEED_PROPERTIES,
    SYSTEM_PROPERTIES,
    association_name,
    modified_property,
    seed_property,
)
from connector.sandbox.store import SandboxStore, Snapshot


def format_timestamp(moment: datetime) -> str:
    """HubSpot's timestamp form: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the state -------------------------------------------------------------------------------


class SandboxState:
    """The sandbox CRM's data. Single event loop, so no locking.

    `companies` and `properties` are the company records and definitions (kept as their own
    attributes for existing callers); `objects` and `definitions` hold them too, next to the
    other object types, so generic code can take any type by name.

    With `database` (a SQLite file path, or ":memory:") every change is written through to
    SQLite and a state opened on the same file later starts from it; without, it lives in
    memory only. `limits`, `oauth` and `webhooks` are the rate limiter, the OAuth server and the
    outgoing webhook dispatcher; `observers` get every `Change` (the dispatcher is the first).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utc_now,
        portal_id: int = 1000001,
        database: str | None = None,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        app_id: int = DEFAULT_APP_ID,
        access_token_ttl_seconds: int = DEFAULT_ACCESS_TTL_SECONDS,
    ) -> None:
        self.clock = clock
        self.portal_id = portal_id
        self.companies: dict[str, PropertyValues] = {}
        self.properties: dict[str, JSONObject] = {}
        self.objects: dict[str, dict[str, PropertyValues]] = {"companies": self.companies}
        self.objects.update({name: {} for name in OBJECT_TYPE_SPECS})
        self.definitions: dict[str, dict[str, JSONObject]] = {"companies": self.properties}
        self.definitions.update({name: {} for name in OBJECT_TYPE_SPECS})
        # links[from type][from id][to type] -> ids in the order they were associated; kept in
        # both directions so either side answers `associations=` without a scan.
        self.links: dict[str, dict[str, dict[str, list[str]]]] = {
            name: {} for name in ALL_OBJECT_TYPES
        }
        self.groups: dict[str, JSONObject] = {}
        self.requests: list[RecordedRequest] = []
        self.faults = FaultPlan()
        self.store = SandboxStore(database) if database is not None else None
        self.limits = RateLimiter(clock=clock)
        self.oauth = OAuthServer(
            clock=clock,
            portal_id=portal_id,
            client_id=oauth_client_id,
            client_secret=oauth_client_secret,
            app_id=app_id,
            access_ttl_seconds=access_token_ttl_seconds,
            store=self.store,
        )
        self.webhooks = WebhookDispatcher(clock=clock, portal_id=portal_id)
        self.observers: list[Callable[[Change], None]] = [self.webhooks.on_change]
        self._next_id = 1
        self._last_moment: datetime | None = None
        if self.store is not None and self.store.initialised:
            self._load(self.store.load())
        else:
            self.reset()

    def close(self) -> None:
        """Close the SQLite connection (a file-backed state is then read-only in memory)."""
        if self.store is not None:
            self.store.close()
            self.store = None
            self.oauth.store = None

    def reset(self) -> None:
        """Back to a fresh portal: seeded definitions, no records, no calls, no faults.

        Containers are cleared in place so references handed out earlier stay valid. Rate-limit
        counters start over; OAuth tokens and the webhook subscription are kept (they belong to
        the app, not to the portal's data).
        """
        at = self.timestamp()
        for records in self.objects.values():
            records.clear()
        for links in self.links.values():
            links.clear()
        self.requests.clear()
        self.faults.clear()
        self.limits.reset_counters()
        self.groups.clear()
        self.groups.update(
            {
                name: {"name": name, "label": label, "displayOrder": order, "archived": False}
                for name, label, order in SEED_GROUPS
            }
        )
        self.properties.clear()
        self.properties.update({spec[0]: seed_property(spec, at) for spec in SEED_PROPERTIES})
        for name, type_spec in OBJECT_TYPE_SPECS.items():
            definitions = self.definitions[name]
            definitions.clear()
            definitions.update(
                {
                    spec[0]: seed_property(spec, at, type_spec.group_name)
                    for spec in type_spec.properties
                }
            )
        self._next_id = 1
        if self.store is not None:
            self.store.replace_portal(definitions=self.definitions, groups=self.groups)

    def _load(self, snapshot: Snapshot) -> None:
        for object_type, records in snapshot.records.items():
            if object_type in self.objects:
                self.objects[object_type].update(records)
        for object_type, definitions in snapshot.definitions.items():
            if object_type in self.definitions:
                self.definitions[object_type].update(definitions)
        # Types added to the sandbox after the file was written start with their seed.
        at = self.timestamp()
        for name, type_spec in OBJECT_TYPE_SPECS.items():
            for spec in type_spec.properties:
                self.definitions[name].setdefault(
                    spec[0], seed_property(spec, at, type_spec.group_name)
                )
        self.groups.update(snapshot.groups)
        for from_type, from_id, to_type, to_id in snapshot.links:
            if from_type in self.links and to_type in self.links:
                self._remember_link(from_type, from_id, to_type, to_id)
        for kind, token, data in snapshot.tokens:
            self.oauth.load(kind, token, data)
        self._next_id = snapshot.next_id

    def timestamp(self) -> str:
        """Now, strictly later than the previous timestamp, so every change moves `updatedAt`."""
        return format_timestamp(self._moment())

    def _moment(self) -> datetime:
        # Truncate to HubSpot's millisecond precision before comparing: two calls within the
        # same millisecond must still come out strictly ordered.
        moment = self.clock().astimezone(UTC)
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        if self._last_moment is not None and moment <= self._last_moment:
            moment = self._last_moment + timedelta(milliseconds=1)
        self._last_moment = moment
        return moment

    def _emit(self, change: Change) -> None:
        for observer in self.observers:
            observer(change)

    def _save(self, object_type: str, object_id: str) -> None:
        if self.store is not None:
            self.store.put_record(object_type, object_id, self.objects[object_type][object_id])

    # --- companies ---------------------------------------------------------------------------

    def add_company(self, properties: Mapping[str, Any]) -> str:
        """Create a company directly (test and demo seeding); returns its new id.

        Values are validated like an API create; ValueError names what HubSpot would refuse.
        Subscribers see it as a change made in the HubSpot UI.
        """
        try:
            return self.create_company(properties, source="CRM_UI")
        except ApiError as error:
            raise ValueError(error.message) from error

    def create_company(self, properties: Mapping[str, Any], *, source: str = "API") -> str:
        values = self.validate_values(properties)
        return self._insert("companies", values, [], source)

    def company(self, company_id: str) -> PropertyValues:
        return self.record("companies", company_id)

    def update_company(
        self, company_id: str, values: Mapping[str, str | None], *, source: str = "API"
    ) -> bool:
        """Apply already-validated values; True when something changed (and the clock moved)."""
        return self._apply("companies", company_id, values, source)

    def render_company(
        self, company_id: str, properties: Iterable[str] | None = None
    ) -> JSONObject:
        """A company as HubSpot's SimplePublicObject, with the asked-for (or default) properties.

        Unknown names are skipped, as HubSpot does for reads; known but unset ones are null.
        """
        return self.render("companies", company_id, properties)

    def ordered_company_ids(self) -> list[str]:
        return self.ordered_ids("companies")

    # --- contacts, deals, engagements, tasks, tickets ---------------------------------------

    def add_object(
        self,
        object_type: str,
        properties: Mapping[str, str | None],
        associations: Mapping[str, Iterable[str]] | None = None,
    ) -> str:
        """Create a contact, deal, email, call, meeting, note, task or ticket directly.

        `associations` maps an object type to the ids to associate with, in order (a contact's
        first company is its primary one), e.g. {"companies": ["1"], "contacts": ["7"]}.
        Values are validated against the type's definitions and the associated records must
        exist; ValueError names what HubSpot would refuse. Required properties are not
        enforced here (seeding is an import, not an API create). Returns the new id.
        """
        spec = OBJECT_TYPE_SPECS.get(object_type)
        if spec is None:
            known = ", ".join(OBJECT_TYPE_SPECS)
            raise ValueError(f"Unknown object type {object_type!r}; expected one of {known}")
        try:
            values = self.validate_values(properties, object_type=object_type)
        except ApiError as error:
            raise ValueError(error.message) from error
        targets = self._association_targets(object_type, associations or {})
        links = [(to_type, to_id) for to_type, to_ids in targets.items() for to_id in to_ids]
        return self._insert(object_type, values, links, "CRM_UI")

    def update_object(
        self, object_type: str, object_id: str, properties: Mapping[str, str | None]
    ) -> bool:
        """Change a record's values as a user in HubSpot would; True when something changed.

        Raises ValueError for an unknown type, a missing record or a value HubSpot would refuse.
        """
        self._require_type(object_type)
        try:
            self.record(object_type, object_id)
            values = self.validate_values(properties, object_type=object_type)
        except ApiError as error:
            raise ValueError(error.message) from error
        return self._apply(object_type, object_id, values, "CRM_UI")

    def create_object(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: list[JSONObject] | None = None,
        *,
        source: str = "API",
    ) -> str:
        """`POST /crm/v3/objects/{objectType}`: validate values, required properties and the
        `associations` array ([{"to": {"id"}, "types": [{"associationCategory",
        "associationTypeId"}]}]) before writing anything; ApiError as HubSpot answers."""
        self._require_type(object_type)
        values = self.validate_values(properties, object_type=object_type)
        spec = OBJECT_TYPE_SPECS.get(object_type)
        missing = [name for name in (spec.required if spec else ()) if not values.get(name)]
        if missing:
            raise property_values_error(
                [
                    problem(name, "", "REQUIRED_PROPERTY", f"{name} is required", self.portal_id)
                    for name in missing
                ]
            )
        links = self._parse_create_associations(object_type, associations or [])
        return self._insert(object_type, values, links, source)

    def _parse_create_associations(
        self, object_type: str, associations: list[JSONObject]
    ) -> list[tuple[str, str]]:
        links: list[tuple[str, str, bool]] = []
        for index, item in enumerate(associations):
            where = f"associations[{index}]"
            to = item.get("to") if isinstance(item, dict) else None
            raw_id = to.get("id") if isinstance(to, dict) else None
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                raw_id = str(raw_id)
            if not isinstance(raw_id, str) or not raw_id:
                raise missing_attributes("PublicObjectId", [f"{where}.to.id"])
            types = item.get("types")
            if not isinstance(types, list) or not types:
                raise missing_attributes("PublicAssociationsForObject", [f"{where}.types"])
            for type_index, spec in enumerate(types):
                type_where = f"{where}.types[{type_index}]"
                category = spec.get("associationCategory") if isinstance(spec, dict) else None
                type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
                if category not in {"HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"}:
                    raise validation_error(
                        f"Invalid value for {type_where}.associationCategory: {category!r}; "
                        "expected HUBSPOT_DEFINED, USER_DEFINED or INTEGRATOR_DEFINED."
                    )
                to_type = (
                    TARGET_BY_TYPE_ID.get((object_type, type_id))
                    if isinstance(type_id, int) and category == "HUBSPOT_DEFINED"
                    else None
                )
                if to_type is None:
                    raise validation_error(
                        f"{type_where}.associationTypeId {type_id!r} is not a valid "
                        f"{category} association type from {association_name(object_type)}."
                    )
                if raw_id not in self.objects[to_type]:
                    raise ApiError(
                        400,
                        "VALIDATION_ERROR",
                        f"{where}.to.id {raw_id} is not a valid "
                        f"{association_name(to_type)} id: no such record.",
                    )
                primary = PRIMARY_TYPE_IDS.get((object_type, to_type)) == type_id
                links.append((to_type, raw_id, primary))
        # Primary ones first: the first company linked is the primary one.
        ordered = sorted(links, key=lambda link: not link[2])
        return list(dict.fromkeys((to_type, to_id) for to_type, to_id, _ in ordered))

    def _association_targets(
        self, object_type: str, associations: Mapping[str, Iterable[str]]
    ) -> dict[str, list[str]]:
        targets: dict[str, list[str]] = {}
        for to_type, ids in associations.items():
            if to_type not in self.objects or not can_associate(object_type, to_type):
                raise ValueError(f"Cannot associate {object_type} with {to_type!r}")
            # Repeats collapse, as associating the same pair twice does in HubSpot.
            unique = list(dict.fromkeys(str(i) for i in ids))
            missing = [i for i in unique if i not in self.objects[to_type]]
            if missing:
                raise ValueError(f"No {to_type} with id(s) {', '.join(missing)} to associate")
            targets[to_type] = unique
        return targets

    def _insert(
        self,
        object_type: str,
        values: PropertyValues,
        links: Iterable[tuple[str, str]],
        source: str,
    ) -> str:
        spec = OBJECT_TYPE_SPECS.get(object_type)
        created, modified = (
            ("createdate", "hs_lastmodifieddate") if spec is None else (spec.created, spec.modified)
        )
        object_id = str(self._next_id)
        self._next_id += 1
        moment = self._moment()
        at = format_timestamp(moment)
        record: PropertyValues = {name: value for name, value in values.items() if value}
        record.update({"hs_object_id": object_id, modified: at})
        record.setdefault(created, at)
        self.objects[object_type][object_id] = record
        if self.store is not None:
            self.store.set_next_id(self._next_id)
            self._save(object_type, object_id)
        self._emit(
            Change(
                kind="creation",
                object_type=object_type,
                object_id=object_id,
                occurred_at=moment,
                source=source,
            )
        )
        # HubSpot also reports each value a create set, as a property change.
        for name, value in record.items():
            if name in values:
                self._emit(
                    Change(
                        kind="propertyChange",
                        object_type=object_type,
                        object_id=object_id,
                        occurred_at=moment,
                        source=source,
                        property_name=name,
                        property_value=value,
                    )
                )
        for to_type, to_id in links:
            self.link(object_type, object_id, to_type, to_id, source=source)
        return object_id

    def link(
        self, from_type: str, from_id: str, to_type: str, to_id: str, *, source: str = "API"
    ) -> bool:
        """Associate two existing records (both directions); False when they already were."""
        if to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            return False
        self._remember_link(from_type, from_id, to_type, to_id)
        if self.store is not None:
            self.store.add_links([(from_type, from_id, to_type, to_id)])
        moment = self._moment()
        for a_type, a_id, b_type, b_id in (
            (from_type, from_id, to_type, to_id),
            (to_type, to_id, from_type, from_id),
        ):
            self._emit(
                Change(
                    kind="associationChange",
                    object_type=a_type,
                    object_id=a_id,
                    occurred_at=moment,
                    source=source,
                    to_type=b_type,
                    to_id=b_id,
                    association_type_id=ASSOCIATION_TYPE_IDS.get((a_type, b_type)),
                    primary=self._is_primary(a_type, a_id, b_type, b_id),
                )
            )
        return True

    def _remember_link(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.links[from_type].setdefault(from_id, {}).setdefault(to_type, []).append(to_id)
        self.links[to_type].setdefault(to_id, {}).setdefault(from_type, []).append(from_id)

    def _is_primary(self, a_type: str, a_id: str, b_type: str, b_id: str) -> bool:
        """Whether the pair is linked as primary: the record's first company."""
        if (a_type, b_type) not in PRIMARY_TYPE_IDS:
            return False
        record_type, record_id, company_id = (
            (a_type, a_id, b_id) if b_type == "companies" else (b_type, b_id, a_id)
        )
        companies = self.links[record_type].get(record_id, {}).get("companies", [])
        return bool(companies) and companies[0] == company_id

    # --- any object type ---------------------------------------------------------------------

    def _require_type(self, object_type: str) -> None:
        if object_type not in self.objects:
            raise unknown_object_type(object_type)

    def record(self, object_type: str, object_id: str) -> PropertyValues:
        """The stored values of one record; HubSpot's 404 when there is none."""
        self._require_type(object_type)
        try:
            return self.objects[object_type][object_id]
        except KeyError:
            raise ApiError(404, "OBJECT_NOT_FOUND", "resource not found") from None

    def ordered_ids(self, object_type: str) -> list[str]:
        self._require_type(object_type)
        return sorted(self.objects[object_type], key=company_sort_key)

    def find_by_property(self, object_type: str, name: str, value: str) -> str | None:
        """The id of the record whose `name` is `value` (batch read with `idProperty`)."""
        self._require_type(object_type)
        if name in {"hs_object_id", "id"}:
            return value if value in self.objects[object_type] else None
        for object_id, record in self.objects[object_type].items():
            if record.get(name) == value:
                return object_id
        return None

    def apply(
        self,
        object_type: str,
        object_id: str,
        values: Mapping[str, str | None],
        *,
        source: str = "API",
    ) -> bool:
        """Write already-validated values (an API update); True when something changed."""
        return self._apply(object_type, object_id, values, source)

    def _apply(
        self,
        object_type: str,
        object_id: str,
        values: Mapping[str, str | None],
        source: str = "API",
    ) -> bool:
        record = self.record(object_type, object_id)
        changed: list[tuple[str, str | None]] = []
        for name, value in values.items():
            if record.get(name) != value:
                changed.append((name, value))
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
        if not changed:
            return False
        moment = self._moment()
        record[modified_property(object_type)] = format_timestamp(moment)
        self._save(object_type, object_id)
        for name, value in changed:
            self._emit(
                Change(
                    kind="propertyChange",
                    object_type=object_type,
                    object_id=object_id,
                    occurred_at=moment,
                    source=source,
                    property_name=name,
                    property_value=value,
                )
            )
        return True

    def render(
        self,
        object_type: str,
        object_id: str,
        properties: Iterable[str] | None = None,
        associations: Iterable[str] = (),
        *,
        cleared: Collection[str] = (),
    ) -> JSONObject:
        """A record as HubSpot's SimplePublicObject(WithAssociations).

        Unknown property names are skipped, as HubSpot does for reads; known but unset ones are
        null, except the `cleared` ones: a write answer echoes a value it just cleared as "", as
        HubSpot does. `associations` are object types; each one the record is associated with
        comes back as {"results": [{"id", "type"}]}, and the key is left out when there are none.
        """
        record = self.record(object_type, object_id)
        spec = OBJECT_TYPE_SPECS.get(object_type)
        defaults = DEFAULT_PROPERTIES if spec is None else spec.defaults
        system = SYSTEM_PROPERTIES if spec is None else spec.system_properties
        definitions = self.definitions[object_type]
        wanted = defaults if properties is None else properties
        names = sorted({name for name in wanted if name in definitions} | set(system))
        rendered: JSONObject = {
            "id": object_id,
            "properties": {
                name: "" if name in cleared and record.get(name) is None else record.get(name)
                for name in names
            },
            "createdAt": record.get(system[0]),
            "updatedAt": record.get(system[1]),
            "archived": False,
        }
        associated: JSONObject = {}
        for to_type in dict.fromkeys(associations):
            self._require_type(to_type)
            results = self._association_results(object_type, object_id, to_type)
            if results:
                associated[to_type] = {"results": results}
        if associated:
            rendered["associations"] = associated
        return rendered

    def _association_results(self, from_type: str, from_id: str, to_type: str) -> list[JSONObject]:
        stem = f"{association_name(from_type)}_to_{association_name(to_type)}"
        results: list[JSONObject] = []
        for to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            if {from_type, to_type} == {"contacts", "companies"}:
                # v3 lists a contact's primary company under the plain type and again as
                # unlabeled; other companies only as unlabeled. Readers must de-duplicate.
                contact_id = from_id if from_type == "contacts" else to_id
                company_id = to_id if from_type == "contacts" else from_id
                if self._primary_company(contact_id) == company_id:
                    results.append({"id": to_id, "type": stem})
                results.append({"id": to_id, "type": f"{stem}_unlabeled"})
            else:
                results.append({"id": to_id, "type": stem})
        return results

    def _primary_company(self, contact_id: str) -> str | None:
        companies = self.links["contacts"].get(contact_id, {}).get("companies", [])
        return companies[0] if companies else None

    def associations_v4(self, from_type: str, from_id: str, to_type: str) -> list[JSONObject]:
        """The v4 `to` list of one record: ids as numbers, each with its association types.

        A primary pair carries the "Primary" labelled type next to the unlabeled default.
        """
        results: list[JSONObject] = []
        for to_id in self.links[from_type].get(from_id, {}).get(to_type, []):
            types: list[JSONObject] = []
            if self._is_primary(from_type, from_id, to_type, to_id):
                types.append(
                    {
                        "category": "HUBSPOT_DEFINED",
                        "typeId": PRIMARY_TYPE_IDS[(from_type, to_type)],
                        "label": "Primary",
                    }
                )
            type_id = ASSOCIATION_TYPE_IDS.get((from_type, to_type))
            if type_id is not None:
                types.append({"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None})
            results.append(
                {"toObjectId": int(to_id) if to_id.isdigit() else to_id, "associationTypes": types}
            )
        return results

    # --- property values ---------------------------------------------------------------------

    def validate_values(
        self, values: Mapping[str, Any], *, object_type: str = "companies"
    ) -> PropertyValues:
        """Check values against the type's definitions as HubSpot does (see `properties`)."""
        self._require_type(object_type)
        return validate_values(values, self.definitions[object_type], portal_id=self.portal_id)

    # --- property definitions ----------------------------------------------------------------

    def property_definition(self, name: str) -> JSONObject:
        try:
            return self.properties[name]
        except KeyError:
            raise ApiError(
                404, "OBJECT_NOT_FOUND", f"Property {name} does not exist on object type companies"
            ) from None

    def create_property(self, body: Mapping[str, Any]) -> JSONObject:
        definition = new_property(
            body, taken=self.properties, groups=self.groups, timestamp=self.timestamp
        )
        self.properties[definition["name"]] = definition
        self._save_definition(definition["name"])
        return definition

    def update_property(self, name: str, body: Mapping[str, Any]) -> JSONObject:
        definition = self.property_definition(name)
        updated = updated_property(definition, body, groups=self.groups, timestamp=self.timestamp)
        self.properties[name] = updated
        self._save_definition(name)
        return updated

    def _save_definition(self, name: str) -> None:
        if self.store is not None:
            self.store.put_definition("companies", name, self.properties[name])

    def create_group(self, body: Mapping[str, Any]) -> JSONObject:
        group = new_group(body, taken=self.groups)
        self.groups[group["name"]] = group
        if self.store is not None:
            self.store.put_group(group["name"], group)
        return group


def company_sort_key(company_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order; anything else (only seeded by hand) after them."""
    return (0, int(company_id), "") if company_id.isdigit() else (1, 0, company_id)
