"""The "Customer health" custom fields on Salesforce Accounts: their Tooling API definitions and
how neutral health values become the JSON Salesforce accepts for them.

A definition is the `Metadata` of a Tooling API `CustomField` (the Metadata API's CustomField
type in JSON); picklist values are `valueName` there, where the Metadata API says `fullName`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from connector.base import HEALTH_FIELDS, FieldValue
from connector.values import finite_number, truncate_lines, updated_at_instant
from signals.model import Band, SignalSpec
from signals.registry import SIGNALS

OBJECT: Final = "Account"
SECTION_LABEL: Final = "Customer health"

# What a value is sent as: sObject field values in a REST request body.
JSONValue = str | int | float | None

FieldType = Literal["Number", "Picklist", "LongTextArea", "DateTime"]

# A Long Text Area holds up to 131,072 characters; the drivers are a handful of short lines.
DRIVERS_LENGTH: Final = 32_768

BAND_LABELS: Final[Mapping[str, str]] = {
    Band.HEALTHY.value: "Healthy",
    Band.NEUTRAL.value: "Neutral",
    Band.AT_RISK.value: "At risk",
    Band.UNKNOWN.value: "Unknown",
    Band.ONBOARDING.value: "Onboarding",
}


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One health field: its neutral name, its Account API name and its definition."""

    neutral: str
    api_name: str
    label: str
    type: FieldType
    description: str
    help_text: str
    precision: int | None = None
    scale: int | None = None
    length: int | None = None
    visible_lines: int | None = None
    # (value, label) pairs of a restricted picklist, in display order.
    options: tuple[tuple[str, str], ...] = field(default=())

    @property
    def developer_name(self) -> str:
        """The name without the `__c` suffix, as the Tooling API's CustomField lists it."""
        return self.api_name.removesuffix("__c")

    @property
    def full_name(self) -> str:
        """`Account.Health_Score__c`: the Tooling API FullName and FieldPermissions Field."""
        return f"{OBJECT}.{self.api_name}"

    def metadata(self) -> dict[str, Any]:
        """The Tooling API `Metadata` of this field."""
        body: dict[str, Any] = {
            "label": self.label,
            "description": self.description,
            "inlineHelpText": self.help_text,
            "type": self.type,
        }
        if self.type == "Number":
            body["precision"] = self.precision
            body["scale"] = self.scale
        elif self.type == "LongTextArea":
            body["length"] = self.length
            body["visibleLines"] = self.visible_lines
        elif self.type == "Picklist":
            body["valueSet"] = {
                "restricted": True,
                "valueSetDefinition": {
                    "sorted": False,
                    "value": [
                        {"valueName": value, "label": label, "default": False}
                        for value, label in self.options
                    ],
                },
            }
        return body

    def differences(self, current: Mapping[str, Any]) -> list[str]:
        """The Metadata keys whose current value (as a Tooling API GET returns it) is not
        this definition's; empty when the field needs no update."""
        changed = []
        for key, wanted in self.metadata().items():
            if key == "valueSet":
                if _picklist(current.get("valueSet")) != _picklist(wanted):
                    changed.append(key)
            elif not _same(current.get(key), wanted):
                changed.append(key)
        return changed

    def to_value(self, value: FieldValue) -> JSONValue:
        """The JSON Salesforce accepts for this field; None clears it (JSON null).

        ValueError when the value cannot be one of this field's (a programming error: the
        values come from `connector.base.health_field_values`).
        """
        if value is None:
            return None
        if self.type == "Number":
            return _number(value, scale=self.scale or 0, name=self.api_name)
        if self.type == "DateTime":
            return _datetime(value, name=self.api_name)
        text = str(value)
        if self.type == "LongTextArea" and self.length is not None:
            return truncate_lines(text, self.length)
        return text


def _same(current: Any, wanted: Any) -> bool:
    # The Tooling API answers numbers as JSON numbers that may carry a fraction (3.0).
    if (
        isinstance(wanted, int)
        and isinstance(current, int | float)
        and not isinstance(current, bool)
    ):
        return bool(current == wanted)
    if isinstance(wanted, str) and isinstance(current, str):
        # Salesforce stores text without trailing whitespace.
        return current.strip() == wanted.strip()
    return bool(current == wanted)


def _picklist(value_set: Any) -> tuple[bool, tuple[tuple[str, str], ...]] | None:
    """What matters of a valueSet: restricted or not, and its (value, label) pairs in order."""
    if not isinstance(value_set, Mapping):
        return None
    definition = value_set.get("valueSetDefinition")
    values = definition.get("value") if isinstance(definition, Mapping) else None
    pairs: list[tuple[str, str]] = []
    for item in values if isinstance(values, list) else []:
        if not isinstance(item, Mapping):
            continue
        # Tooling API JSON says valueName; accept the Metadata API's fullName as well.
        name = item.get("valueName", item.get("fullName"))
        pairs.append((str(name), str(item.get("label") or name)))
    return value_set.get("restricted") is True, tuple(pairs)


def _number(value: FieldValue, *, scale: int, name: str) -> int | float:
    number = finite_number(value, name=name)
    # More decimals than the field's scale would be rounded by Salesforce anyway; sending
    # them rounded keeps what is written equal to what was meant.
    return round(number) if scale == 0 else round(number, scale)


def _datetime(value: FieldValue, *, name: str) -> str:
    # Salesforce's own form: UTC, milliseconds, Z.
    moment = updated_at_instant(value, name=name)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _score(neutral: str, api_name: str, label: str, description: str, help_text: str) -> FieldSpec:
    return FieldSpec(
        neutral=neutral,
        api_name=api_name,
        label=label,
        type="Number",
        precision=3,
        scale=0,
        description=f"Customer health: {description}",
        help_text=help_text,
    )


def _signal_field(signal: SignalSpec) -> FieldSpec:
    # health_mutual_value -> Health_Mutual_Value__c
    words = "_".join(word.capitalize() for word in signal.name.split("_"))
    return _score(
        f"health_{signal.name}",
        f"Health_{words}__c",
        f"Health: {signal.label_in_sentence}",
        f"{signal.label_in_sentence} signal, 0 to 100 ({signal.description}).",
        f"Customer health signal: {signal.question} 0 to 100.",
    )


FIELDS: tuple[FieldSpec, ...] = (
    _score(
        "health_score",
        "Health_Score__c",
        "Health score",
        "composite score, 0 (at risk) to 100. Written by crm-health.",
        "Customer health score from 0 (at risk) to 100; see Health drivers for why.",
    ),
    FieldSpec(
        neutral="health_band",
        api_name="Health_Band__c",
        label="Health band",
        type="Picklist",
        options=tuple(BAND_LABELS.items()),
        description="Customer health: healthy, neutral, at risk, or unknown when too little is "
        "known. Written by crm-health.",
        help_text="Customer health band: Healthy, Neutral, At risk, or Unknown when too little "
        "is known yet.",
    ),
    FieldSpec(
        neutral="health_trend_30d",
        api_name="Health_Trend_30d__c",
        label="Health trend (30 days)",
        type="Number",
        # -100.0 to 100.0: three integer digits and one decimal.
        precision=4,
        scale=1,
        description="Customer health: change of the health score over the last 30 days. Written "
        "by crm-health.",
        help_text="Customer health score change over the last 30 days (negative: worsening).",
    ),
    *(_signal_field(signal) for signal in SIGNALS),
    FieldSpec(
        neutral="health_drivers",
        api_name="Health_Drivers__c",
        label="Health drivers",
        type="LongTextArea",
        length=DRIVERS_LENGTH,
        visible_lines=5,
        description="Customer health: why the score is what it is, one reason per line. Written "
        "by crm-health.",
        help_text="Customer health: the reasons behind the score, one per line.",
    ),
    FieldSpec(
        neutral="health_updated_at",
        api_name="Health_Updated_At__c",
        label="Health updated at",
        type="DateTime",
        description="Customer health: when crm-health last computed these values.",
        help_text="Customer health: when these values were last computed.",
    ),
)

FIELD_BY_NEUTRAL: Final[Mapping[str, FieldSpec]] = {spec.neutral: spec for spec in FIELDS}
API_NAME_BY_NEUTRAL: Final[Mapping[str, str]] = {spec.neutral: spec.api_name for spec in FIELDS}

if tuple(FIELD_BY_NEUTRAL) != HEALTH_FIELDS:  # pragma: no cover - guards an edit to either list
    raise RuntimeError("connector.salesforce.fields.FIELDS must cover HEALTH_FIELDS in order")


def to_api_fields(values: Mapping[str, FieldValue]) -> dict[str, JSONValue]:
    """Neutral health field values as Account field values (`Health_Score__c`: 80, ...).

    ValueError for a name that is not a health field or a value its field cannot take.
    """
    converted: dict[str, JSONValue] = {}
    for name, value in values.items():
        spec = FIELD_BY_NEUTRAL.get(name)
        if spec is None:
            raise ValueError(f"{name!r} is not a health field; expected one of {HEALTH_FIELDS}")
        converted[spec.api_name] = spec.to_value(value)
    return converted
