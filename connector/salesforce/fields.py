"""The "Customer health" custom fields on Salesforce Accounts: their Tooling API definitions and
how neutral health values become the JSON Salesforce accepts for them. `FIELDS` are the fixed
ones; a connection's `FieldTable` adds what its field plan asks for (`field_table`).

A definition is the `Metadata` of a Tooling API `CustomField` (the Metadata API's CustomField
type in JSON); picklist values are `valueName` there, where the Metadata API says `fullName`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from connector.base import HEALTH_FIELDS, ConfiguredField, FieldPlan, FieldValue
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

# Salesforce's limits on a custom field: label 40 characters, API name 40 without `__c`
# (a letter first, no double or trailing underscore), description 1,000, help text 510.
LABEL_LENGTH: Final = 40
DEVELOPER_NAME_LENGTH: Final = 40
DESCRIPTION_LENGTH: Final = 1_000
HELP_TEXT_LENGTH: Final = 510
_DEVELOPER_NAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?<!_)")

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
        # A value dropped from the definition is deactivated, not deleted (records may still
        # hold it): it is no longer one of the field's values.
        if not isinstance(item, Mapping) or item.get("isActive") is False:
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
    """A 0-100 score: the composite, a built-in signal or a custom one."""
    return FieldSpec(
        neutral=neutral,
        api_name=api_name,
        label=label,
        type="Number",
        precision=3,
        scale=0,
        description=description,
        help_text=help_text,
    )


def api_name_of(neutral: str) -> str:
    """A health field's Account API name from its neutral name: each word capitalised,
    `health_mutual_value` -> `Health_Mutual_Value__c`."""
    return "_".join(word.capitalize() for word in neutral.split("_")) + "__c"


def _signal_field(signal: SignalSpec) -> FieldSpec:
    neutral = f"health_{signal.name}"
    return _score(
        neutral,
        api_name_of(neutral),
        f"Health: {signal.label_in_sentence}",
        f"Customer health: {signal.label_in_sentence} signal, 0 to 100 ({signal.description}).",
        f"Customer health signal: {signal.question} 0 to 100.",
    )


FIELDS: tuple[FieldSpec, ...] = (
    _score(
        "health_score",
        "Health_Score__c",
        "Health score",
        "Customer health: composite score, 0 (at risk) to 100. Written by crm-health.",
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


@dataclass(frozen=True)
class FieldTable:
    """One connection's Account fields: `written`, the fixed health fields and a Number per
    custom signal of its field plan; `inputs`, the picklists people set on the record, which
    are provisioned and read but never written."""

    written: tuple[FieldSpec, ...]
    inputs: tuple[FieldSpec, ...] = ()
    by_neutral: Mapping[str, FieldSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_neutral", {spec.neutral: spec for spec in self.written})

    @property
    def provisioned(self) -> tuple[FieldSpec, ...]:
        """Every field `ensure_fields` creates and keeps to its definition."""
        return (*self.written, *self.inputs)

    def to_api_fields(self, values: Mapping[str, FieldValue]) -> dict[str, JSONValue]:
        """Neutral health field values as Account field values (`Health_Score__c`: 80, ...).

        ValueError for a name that is not a written field or a value its field cannot take.
        """
        converted: dict[str, JSONValue] = {}
        for name, value in values.items():
            spec = self.by_neutral.get(name)
            if spec is None:
                raise ValueError(
                    f"{name!r} is not a health field; expected one of {tuple(self.by_neutral)}"
                )
            converted[spec.api_name] = spec.to_value(value)
        return converted

    def health_values(self, record: Mapping[str, Any]) -> dict[str, FieldValue]:
        """The written fields of an Account record (API names to values) by neutral name; an
        empty text is no value, as Salesforce stores it."""
        values: dict[str, FieldValue] = {}
        for spec in self.written:
            value: Any = record.get(spec.api_name)
            if value == "" or isinstance(value, bool):
                value = None
            values[spec.neutral] = value if isinstance(value, str | int | float) else None
        return values


BASE_TABLE: Final = FieldTable(written=FIELDS)


def to_api_fields(values: Mapping[str, FieldValue]) -> dict[str, JSONValue]:
    """`FieldTable.to_api_fields` of the fixed health fields."""
    return BASE_TABLE.to_api_fields(values)


def field_table(plan: FieldPlan) -> FieldTable:
    """The fixed fields plus what `plan` adds: a Number per score (like the built-in signals'),
    a restricted Picklist per input. ValueError for a field Salesforce could not create (an
    API name that is not one, or two fields of one name)."""
    table = FieldTable(
        written=(*FIELDS, *(_configured_score(item) for item in plan.scores)),
        inputs=tuple(_configured_picklist(item) for item in plan.inputs),
    )
    seen: set[str] = set()
    for spec in table.provisioned:
        name = spec.developer_name
        if len(name) > DEVELOPER_NAME_LENGTH or not _DEVELOPER_NAME.fullmatch(name):
            raise ValueError(f"{spec.neutral!r} cannot be a Salesforce field name ({name})")
        # API names are case-insensitive in Salesforce.
        if name.casefold() in seen:
            raise ValueError(f"{spec.neutral!r} is planned twice (as {spec.api_name})")
        seen.add(name.casefold())
    return table


def _configured_score(item: ConfiguredField) -> FieldSpec:
    return _score(
        item.neutral,
        api_name_of(item.neutral),
        short_label(item.label),
        item.description[:DESCRIPTION_LENGTH],
        _help_text(item),
    )


def _configured_picklist(item: ConfiguredField) -> FieldSpec:
    if not item.options:
        raise ValueError(f"{item.neutral!r}: a picklist needs options")
    return FieldSpec(
        neutral=item.neutral,
        api_name=api_name_of(item.neutral),
        label=short_label(item.label),
        type="Picklist",
        options=tuple((value, option_label(value)) for value in item.options),
        description=item.description[:DESCRIPTION_LENGTH],
        help_text=_help_text(item),
    )


def short_label(label: str) -> str:
    """`label` within Salesforce's 40 characters: cut at the last whole word that fits, with
    an ellipsis saying something was left out."""
    label = " ".join(label.split())
    if len(label) <= LABEL_LENGTH:
        return label
    cut = label[: LABEL_LENGTH - 1]
    words = cut.rsplit(" ", 1)[0] if " " in cut[LABEL_LENGTH // 2 :] else cut
    return words.rstrip(" :,;-") + "\N{HORIZONTAL ELLIPSIS}"


def option_label(value: str) -> str:
    """A picklist value's label, capitalised like the band's ("at risk" -> "At risk"): only the
    first letter, so "CSM left" keeps its capitals."""
    return value[:1].upper() + value[1:]


def _help_text(item: ConfiguredField) -> str:
    # The help text is where a label cut to 40 characters can still be read whole.
    text = item.description
    if short_label(item.label) != item.label:
        text = f"{item.label}: {text}"
    return text[:HELP_TEXT_LENGTH]
