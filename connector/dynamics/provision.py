"""Provisioning the health columns on Dataverse's account table: create what is missing, bring
labels and band choices back to ours, publish the table when anything changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import structlog

from connector.base import ProvisionReport
from connector.dynamics.fields import ENTITY, DynamicsFields, HealthColumn, label
from connector.dynamics.webapi import answer_json
from connector.errors import ConnectorError, CRMRequestRejected, PayloadError
from connector.http import RetryingClient

log = structlog.get_logger(__name__)

PUBLISH_ENTRY: Final = f"publish:{ENTITY}"


class ColumnProvisioner:
    """The health columns of one environment, reached through `client`; `data` is the Web API's
    path (`/api/data/v9.2`), `solution` the unmanaged solution the columns are created in."""

    def __init__(
        self, *, client: RetryingClient, data: str, fields: DynamicsFields, solution: str
    ) -> None:
        self._client = client
        self._data = data
        self.fields = fields
        self.solution = solution

    async def ensure_fields(self) -> ProvisionReport:
        """Create the health columns on account that are missing, bring the labels of existing
        ones back to ours, add missing band choices, and publish the account table when
        anything changed (so the columns can be put on forms).

        Idempotent: a second run sends no POST or PUT. A create that finds its column already
        there (another provision run won the race) counts as unchanged. ConnectorError when a
        column of ours exists with another type: that cannot be changed in place.
        """
        report = ProvisionReport()
        existing = await self._existing_columns()
        for column in self.fields.columns:
            current = existing.get(column.logical_name)
            if current is None:
                created = await self._create_column(column)
                (report.created if created else report.unchanged).append(column.logical_name)
                continue
            attribute_type = current.get("AttributeType")
            if attribute_type != column.attribute_type:
                raise ConnectorError(
                    f"Dataverse: account column {column.logical_name} exists as "
                    f"{attribute_type}, not {column.attribute_type}; delete it or use another "
                    "publisher prefix"
                )
            changed = await self._update_labels(column, current)
            if column.options and await self._ensure_options(column):
                changed = True
            (report.updated if changed else report.unchanged).append(column.logical_name)
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

    async def _ensure_options(self, column: HealthColumn) -> bool:
        """Insert band choices that are missing and relabel ones that drifted; True when any
        was. Other choices an admin added are left alone."""
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
        labels: dict[int, str | None] = {}
        for option in options:
            if isinstance(option, Mapping) and isinstance(option.get("Value"), int):
                labels[option["Value"]] = _option_label(option, column.language_code)
        changed = False
        for value, _, text in column.options:
            if value not in labels:
                action = "InsertOptionValue"
                extra: dict[str, Any] = {}
            elif labels[value] != text:
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


def _option_label(option: Mapping[str, Any], language_code: int) -> str | None:
    value = option.get("Label")
    labels = value.get("LocalizedLabels") if isinstance(value, Mapping) else None
    for item in labels if isinstance(labels, list) else []:
        if isinstance(item, Mapping) and item.get("LanguageCode") == language_code:
            text = item.get("Label")
            return text if isinstance(text, str) else None
    return None
