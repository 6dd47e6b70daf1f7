"""Provisioning the health columns on Dataverse's account table (the fixed ones and a field
plan's): create what is missing, bring labels and choices back to ours, publish the table when
anything changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import structlog

from connector.base import ProvisionReport
from connector.dynamics.fields import (
    ENTITY,
    DynamicsFields,
    HealthColumn,
    choice_key,
    choice_options,
    label,
    label_text,
)
from connector.dynamics.webapi import answer_json
from connector.errors import ConnectorError, CRMRequestRejected, PayloadError
from connector.http import RetryingClient

log = structlog.get_logger(__name__)

PUBLISH_ENTRY: Final = f"publish:{ENTITY}"


class ColumnProvisioner:
    """The health columns of one environment, reached through `client`; `data` is the Web API's
    path (`/api/data/v9.2`), `solution` the unmanaged solution the columns are created in.

    After `ensure_fields`, `choices` holds each input's option values as the environment holds
    them (neutral name -> `choice_key` of a label -> value), for the connector to read by."""

    def __init__(
        self, *, client: RetryingClient, data: str, fields: DynamicsFields, solution: str
    ) -> None:
        self._client = client
        self._data = data
        self.fields = fields
        self.solution = solution
        self.choices: dict[str, dict[str, int]] = {}

    async def ensure_fields(self) -> ProvisionReport:
        """Create the health columns on account that are missing (the plan's too), bring the
        labels of existing ones back to ours, add missing choices and relabel drifted ones,
        and publish the account table when anything changed (so the columns can be put on
        forms).

        Idempotent: a second run sends no POST or PUT. A create that finds its column already
        there (another provision run won the race) counts as unchanged. ConnectorError when a
        column of ours exists with another type: that cannot be changed in place.
        """
        report = ProvisionReport()
        existing = await self._existing_columns()
        for column in self.fields.columns:
            outcome = await self._ensure_column(column, existing.get(column.logical_name))
            if outcome == "created":
                report.created.append(column.logical_name)
            elif outcome == "updated":
                report.updated.append(column.logical_name)
            else:
                report.unchanged.append(column.logical_name)
        if report.created or report.updated:
            await self._client.request(
                "POST",
                f"{self._data}/PublishXml",
                json={
                    "ParameterXml": (
                        f"<importexportxml><entities><entity>{ENTITY}</entity></entities>"
                        "</importexportxml>"
                    )
                },
            )
            report.updated.append(PUBLISH_ENTRY)
        else:
            report.unchanged.append(PUBLISH_ENTRY)
        log.info(
            "dynamics_fields_ensured",
            created=len(report.created),
            updated=len(report.updated),
            unchanged=len(report.unchanged),
        )
        return report

    async def _ensure_column(
        self, column: HealthColumn, current: Mapping[str, Any] | None
    ) -> Literal["created", "updated", "unchanged"]:
        """Create the column when `current` (its definition as answered) is None, else bring it
        back to ours."""
        inputs = self.fields.input_columns
        if current is None:
            if not await self._create_column(column):
                return "unchanged"
            if column in inputs:
                self.choices[column.neutral] = _values_by_label(column.options)
            return "created"
        attribute_type = current.get("AttributeType")
        if attribute_type != column.attribute_type:
            raise ConnectorError(
                f"Dataverse: account column {column.logical_name} exists as "
                f"{attribute_type}, not {column.attribute_type}; delete it or use another "
                "publisher prefix"
            )
        changed = await self._update_labels(column, current)
        if column in inputs:
            changed = await self._ensure_input_choices(column) or changed
        elif column.options:
            changed = await self._ensure_band_choices(column) or changed
        return "updated" if changed else "unchanged"

    @property
    def _attributes(self) -> str:
        return f"{self._data}/EntityDefinitions(LogicalName='{ENTITY}')/Attributes"

    @property
    def _solution_header(self) -> dict[str, str]:
        return {"MSCRM.SolutionUniqueName": self.solution}

    async def missing_health_fields(self) -> list[str]:
        """The health columns account lacks (one metadata read, no write)."""
        existing = await self._existing_columns()
        return [
            column.logical_name
            for column in self.fields.columns
            if column.logical_name not in existing
        ]

    async def _existing_columns(self) -> dict[str, Mapping[str, Any]]:
        """Our columns that exist on account, by logical name. Metadata queries are not paged:
        every custom column comes in one answer."""
        response = await self._client.request(
            "GET",
            self._attributes,
            params={
                "$select": "LogicalName,AttributeType,DisplayName,Description",
                "$filter": "IsCustomAttribute eq true",
            },
        )
        document = answer_json(response, "Dataverse account attributes")
        values = document.get("value") if isinstance(document, Mapping) else None
        if not isinstance(values, list):
            raise PayloadError("Dataverse account attributes: the answer has no 'value' list")
        ours = self.fields.by_logical_name
        return {
            str(item["LogicalName"]): item
            for item in values
            if isinstance(item, Mapping) and item.get("LogicalName") in ours
        }

    async def _create_column(self, column: HealthColumn) -> bool:
        """POST the column; False when Dataverse says it exists already."""
        try:
            await self._client.request(
                "POST", self._attributes, json=column.definition(), headers=self._solution_header
            )
        except CRMRequestRejected as exc:
            if exc.status == 400 and "already exists" in exc.body.lower():
                log.info("dynamics_column_exists", column=column.logical_name)
                return False
            raise
        log.info("dynamics_column_created", column=column.logical_name)
        return True

    async def _update_labels(self, column: HealthColumn, current: Mapping[str, Any]) -> bool:
        """PUT the column's definition with our labels when its display name or description
        drifted; True when it did. An update replaces the whole definition, so it is read
        first (cast to its type, for the type's own properties)."""
        changed = column.label_differences(current)
        if not changed:
            return False
        path = f"{self._attributes}(LogicalName='{column.logical_name}')"
        response = await self._client.request("GET", f"{path}/{column.metadata_type}")
        definition = answer_json(response, f"Dataverse column {column.logical_name}")
        if not isinstance(definition, Mapping):
            raise PayloadError(f"Dataverse column {column.logical_name}: not a JSON object")
        await self._client.request(
            "PUT",
            path,
            json=column.with_our_labels(definition),
            headers={**self._solution_header, "MSCRM.MergeLabels": "true"},
        )
        log.info("dynamics_column_updated", column=column.logical_name, changed=changed)
        return True

    async def _held_options(self, column: HealthColumn) -> dict[int, str | None]:
        """The column's choices as the environment holds them: value -> label in our language
        (None without one)."""
        response = await self._client.request(
            "GET",
            f"{self._attributes}(LogicalName='{column.logical_name}')/{column.metadata_type}",
            params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
        )
        document = answer_json(response, f"Dataverse choices of {column.logical_name}")
        option_set = document.get("OptionSet") if isinstance(document, Mapping) else None
        options = option_set.get("Options") if isinstance(option_set, Mapping) else None
        if not isinstance(options, list):
            raise PayloadError(f"Dataverse choices of {column.logical_name}: no OptionSet.Options")
        return {
            option["Value"]: label_text(option.get("Label"), language_code=column.language_code)
            for option in options
            if isinstance(option, Mapping)
            and isinstance(option.get("Value"), int)
            and not isinstance(option.get("Value"), bool)
        }

    async def _ensure_band_choices(self, column: HealthColumn) -> bool:
        """Insert band choices that are missing and relabel ones that drifted, by value (the
        band's values are fixed); True when any was. Other choices an admin added are left
        alone."""
        held = await self._held_options(column)
        return await self._send_options(column, column.options, held)

    async def _ensure_input_choices(self, column: HealthColumn) -> bool:
        """Bring an input's choices to the plan's labels, by label: a label the environment
        holds keeps that value (relabelled when only its case or spacing differs), a new one
        is inserted at a value no other choice holds. Choices no longer planned are left, so
        records holding them keep their value. True when any choice was sent."""
        held = await self._held_options(column)
        known = {choice_key(text): value for value, text in held.items() if text is not None}
        options = choice_options(
            [text for _, _, text in column.options],
            base=self.fields.option_base,
            known=known,
            occupied=frozenset(held),
        )
        self.choices[column.neutral] = _values_by_label(options)
        return await self._send_options(column, options, held)

    async def _send_options(
        self,
        column: HealthColumn,
        options: tuple[tuple[int, str, str], ...],
        held: Mapping[int, str | None],
    ) -> bool:
        """InsertOptionValue for each of `options` whose value is not `held`, UpdateOptionValue
        for each held with another label; True when any was sent."""
        changed = False
        for value, _, text in options:
            if value not in held:
                action = "InsertOptionValue"
                extra: dict[str, Any] = {}
            elif held[value] != text:
                action = "UpdateOptionValue"
                extra = {"MergeLabels": True}
            else:
                continue
            await self._client.request(
                "POST",
                f"{self._data}/{action}",
                json={
                    "EntityLogicalName": ENTITY,
                    "AttributeLogicalName": column.logical_name,
                    "Value": value,
                    "Label": label(text, language_code=column.language_code),
                    "SolutionUniqueName": self.solution,
                    **extra,
                },
            )
            log.info("dynamics_choice_ensured", column=column.logical_name, value=value)
            changed = True
        return changed


def _values_by_label(options: tuple[tuple[int, str, str], ...]) -> dict[str, int]:
    return {choice_key(text): value for value, _, text in options}
