"""The "Customer health" columns on the Dataverse account table: their Web API attribute
definitions (`EntityDefinitions(LogicalName='account')/Attributes`) and how neutral health values
become the JSON the Web API accepts for them.

Column names carry the solution publisher's customization prefix (`cr123_healthscore`), and the
band choice's option values its option value prefix (72700 gives 727000001 ...), as Dataverse
expects of a publisher's customizations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from connector.base import HEALTH_FIELDS, FieldValue
from connector.values import finite_number, truncate_lines, updated_at_instant
from signals.model import Band, SignalSpec
from signals.registry import SIGNALS

__all__ = [
    "BAND_LABELS",
    "COLUMNS",
    "DRIVERS_LENGTH",
    "ENTITY",
    "ENTITY_SET",
    "LANGUAGE_CODE",
    "MEMO_MAX_LENGTH",
    "SECTION_LABEL",
    "ColumnSpec",
    "ColumnType",
    "DynamicsFields",
    "HealthColumn",
    "JSONValue",
    "check_option_value_prefix",
    "check_prefix",
    "label",
    "label_text",
]

ENTITY: Final = "account"
ENTITY_SET: Final = "accounts"
SECTION_LABEL: Final = "Customer health"
# English (United States); labels in another base language are a `language_code` away.
LANGUAGE_CODE: Final = 1033

# What a value is sent as: a column value in a Web API JSON body.
JSONValue = str | int | float | None

ColumnType = Literal["Integer", "Decimal", "Picklist", "Memo", "DateTime"]

# A Memo (multiple lines of text) column takes up to 1,048,576 characters
# (MemoAttributeMetadata.MaxSupportedLength); the drivers are a handful of short lines, and 4,000
# keeps them readable on a form while leaving room for long ones.
MEMO_MAX_LENGTH: Final = 1_048_576
DRIVERS_LENGTH: Final = 4_000

BAND_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        Band.HEALTHY.value: "Healthy",
        Band.NEUTRAL.value: "Neutral",
        Band.AT_RISK.value: "At risk",
        Band.UNKNOWN.value: "Unknown",
        Band.ONBOARDING.value: "Onboarding",
    }
)

# A publisher's customization prefix: 2 to 8 lowercase letters or digits, a letter first; Dataverse
# reserves those starting with "mscrm".
_PREFIX = re.compile(r"[a-z][a-z0-9]{1,7}")
OPTION_VALUE_PREFIX_MIN: Final = 10_000
OPTION_VALUE_PREFIX_MAX: Final = 99_999

# Web API type names per column type: (AttributeType, AttributeTypeName, metadata entity type).
_TYPE_NAMES: Final[Mapping[ColumnType, tuple[str, str, str]]] = MappingProxyType(
    {
        "Integer": ("Integer", "IntegerType", "IntegerAttributeMetadata"),
        "Decimal": ("Decimal", "DecimalType", "DecimalAttributeMetadata"),
        "Picklist": ("Picklist", "PicklistType", "PicklistAttributeMetadata"),
        "Memo": ("Memo", "MemoType", "MemoAttributeMetadata"),
        "DateTime": ("DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
    }
)


def check_prefix(prefix: str) -> str:
    """`prefix` when it can be a publisher's customization prefix; ValueError otherwise."""
    if not _PREFIX.fullmatch(prefix) or prefix.startswith("mscrm"):
        raise ValueError(
            "prefix must be the publisher's customization prefix: 2 to 8 lowercase letters or "
            f"digits starting with a letter, not starting with 'mscrm'; not {prefix!r}"
        )
    return prefix


def check_option_value_prefix(option_value_prefix: int) -> int:
    """`option_value_prefix` when it is in the range Dataverse gives publishers (10000 to
    99999); ValueError otherwise."""
    if isinstance(option_value_prefix, bool) or not (
        OPTION_VALUE_PREFIX_MIN <= option_value_prefix <= OPTION_VALUE_PREFIX_MAX
    ):
        raise ValueError(
            f"option_value_prefix must be between {OPTION_VALUE_PREFIX_MIN} and "
            f"{OPTION_VALUE_PREFIX_MAX}, not {option_value_prefix!r}"
        )
    return option_value_prefix


def label(text: str, *, language_code: int = LANGUAGE_CODE) -> dict[str, Any]:
    """A `Microsoft.Dynamics.CRM.Label` with one localized label."""
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel",
                "Label": text,
                "LanguageCode": language_code,
            }
        ],
    }


def label_text(value: Any, *, language_code: int = LANGUAGE_CODE) -> str | None:
    """The text of a Label (as the Web API answers it) in `language_code`, None when it has
    none in that language."""
    if not isinstance(value, Mapping):
        return None
    labels = value.get("LocalizedLabels")
    for item in labels if isinstance(labels, list) else []:
        if isinstance(item, Mapping) and item.get("LanguageCode") == language_code:
            text = item.get("Label")
            return text if isinstance(text, str) else None
    return None


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    """One health column, independent of the publisher: its neutral name, the part of its
    name after the prefix, and its definition."""

    neutral: str
    suffix: str  # `healthscore`: the logical name is `<prefix>_healthscore`
    schema_suffix: str  # `HealthScore`: the schema name is `<prefix>_HealthScore`
    display_name: str
    description: str
    type: ColumnType
    min_value: float | None = None
    max_value: float | None = None
    precision: int | None = None
    max_length: int | None = None


@dataclass(frozen=True, kw_only=True)
class HealthColumn:
    """One health column of one publisher: names, option values and Web API definition."""

    spec: ColumnSpec
    logical_name: str
    schema_name: str
    language_code: int
    # (option value, neutral band, label) of the band choice, in display order.
    options: tuple[tuple[int, str, str], ...] = field(default=())

    @property
    def neutral(self) -> str:
        return self.spec.neutral

    @property
    def type(self) -> ColumnType:
        return self.spec.type

    @property
    def attribute_type(self) -> str:
        """The `AttributeType` the Web API answers for this column (`Integer` ...)."""
        return _TYPE_NAMES[self.spec.type][0]

    @property
    def metadata_type(self) -> str:
        """The metadata type to cast to: `Microsoft.Dynamics.CRM.IntegerAttributeMetadata` ..."""
        return f"Microsoft.Dynamics.CRM.{_TYPE_NAMES[self.spec.type][2]}"

    def definition(self) -> dict[str, Any]:
        """The JSON body that creates this column (`POST EntityDefinitions(...)/Attributes`)."""
        attribute_type, type_name, _ = _TYPE_NAMES[self.spec.type]
        body: dict[str, Any] = {
            "@odata.type": self.metadata_type,
            "AttributeType": attribute_type,
            "AttributeTypeName": {"Value": type_name},
            "SchemaName": self.schema_name,
            "DisplayName": label(self.spec.display_name, language_code=self.language_code),
            "Description": label(self.spec.description, language_code=self.language_code),
            "RequiredLevel": {
                "Value": "None",
                "CanBeChanged": True,
                "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
            },
        }
        spec = self.spec
        if spec.type == "Integer":
            body.update(
                Format="None", MinValue=int(spec.min_value or 0), MaxValue=int(spec.max_value or 0)
            )
        elif spec.type == "Decimal":
            body.update(MinValue=spec.min_value, MaxValue=spec.max_value, Precision=spec.precision)
        elif spec.type == "Memo":
            body.update(Format="TextArea", MaxLength=spec.max_length)
        elif spec.type == "DateTime":
            # UserLocal stores the instant in UTC and shows it in each reader's own time zone:
            # right for "when was this computed". TimeZoneIndependent would show the UTC clock
            # time to everyone, and unlike UserLocal it can never be changed afterwards.
            body.update(Format="DateAndTime", DateTimeBehavior={"Value": "UserLocal"})
        elif spec.type == "Picklist":
            body["OptionSet"] = {
                "@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata",
                "IsGlobal": False,
                "OptionSetType": "Picklist",
                "Options": [
                    {"Value": value, "Label": label(text, language_code=self.language_code)}
                    for value, _, text in self.options
                ],
            }
        return body

    def label_differences(self, current: Mapping[str, Any]) -> list[str]:
        """`DisplayName` and/or `Description` when the column's current labels (as the Web API
        answers an attribute) are not ours in our language; empty when they are."""
        changed = []
        wanted = {"DisplayName": self.spec.display_name, "Description": self.spec.description}
        for key, text in wanted.items():
            answered = label_text(current.get(key), language_code=self.language_code)
            if answered is None or answered.strip() != text.strip():
                changed.append(key)
        return changed

    def with_our_labels(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The attribute definition as answered, with our display name and description: the
        body of a `PUT` that updates only the labels (`MSCRM.MergeLabels: true` keeps the
        labels of other languages)."""
        body = {key: value for key, value in current.items() if not key.startswith("@odata.")}
        body["@odata.type"] = self.metadata_type
        body["DisplayName"] = label(self.spec.display_name, language_code=self.language_code)
        body["Description"] = label(self.spec.description, language_code=self.language_code)
        return body

    def to_value(self, value: FieldValue) -> JSONValue:
        """The JSON the Web API accepts for this column; None clears it (JSON null).

        ValueError when the value cannot be one of this column's (a programming error: the
        values come from `connector.base.health_field_values`).
        """
        if value is None:
            return None
        spec = self.spec
        if spec.type == "Integer":
            return round(finite_number(value, name=self.logical_name))
        if spec.type == "Decimal":
            return round(finite_number(value, name=self.logical_name), spec.precision or 0)
        if spec.type == "DateTime":
            return _datetime(value, name=self.logical_name)
        if spec.type == "Picklist":
            for option_value, band, _ in self.options:
                if value == band:
                    return option_value
            raise ValueError(
                f"{self.logical_name} takes one of {[band for _, band, _ in self.options]}, "
                f"not {value!r}"
            )
        return truncate_lines(str(value), spec.max_length or MEMO_MAX_LENGTH)


def _datetime(value: FieldValue, *, name: str) -> str:
    # UTC with a Z: a UserLocal column stores it as is. Dataverse keeps whole seconds.
    moment = updated_at_instant(value, name=name)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _score(neutral: str, suffix: str, schema_suffix: str, name: str, about: str) -> ColumnSpec:
    return ColumnSpec(
        neutral=neutral,
        suffix=suffix,
        schema_suffix=schema_suffix,
        display_name=name,
        description=f"Customer health: {about} Written by crm-health.",
        type="Integer",
        min_value=0,
        max_value=100,
    )


# The descriptions the first signals were provisioned with, word for word: provisioning
# updates a column whose description differs, so another wording would rewrite it in every
# environment. A signal not listed is described from its declaration.
_PROVISIONED_DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "active_use": "active use signal, 0 to 100: do people actually use what was sold (seat "
        "use, usage trend, stickiness, recency)?",
        "collaboration": "collaboration signal, 0 to 100: does value flow both ways, across many "
        "people and the executives?",
        "momentum": "momentum signal, 0 to 100: is spend growing, or leveling off?",
    }
)


def _signal_column(signal: SignalSpec) -> ColumnSpec:
    about = _PROVISIONED_DESCRIPTIONS.get(signal.name)
    if about is None:
        about = f"{signal.label_in_sentence} signal, 0 to 100: {signal.description}."
    # health_mutual_value -> healthmutualvalue, HealthMutualValue
    words = signal.name.split("_")
    return _score(
        f"health_{signal.name}",
        "health" + "".join(words),
        "Health" + "".join(word.capitalize() for word in words),
        f"Health: {signal.label_in_sentence}",
        about,
    )


COLUMNS: tuple[ColumnSpec, ...] = (
    _score(
        "health_score",
        "healthscore",
        "HealthScore",
        "Health score",
        "composite score, 0 (at risk) to 100; see Health drivers for why.",
    ),
    ColumnSpec(
        neutral="health_band",
        suffix="healthband",
        schema_suffix="HealthBand",
        display_name="Health band",
        description="Customer health: Healthy, Neutral, At risk, or Unknown when too little is "
        "known yet. Written by crm-health.",
        type="Picklist",
    ),
    ColumnSpec(
        neutral="health_trend_30d",
        suffix="healthtrend30d",
        schema_suffix="HealthTrend30d",
        display_name="Health trend (30 days)",
        description="Customer health: change of the health score over the last 30 days "
        "(negative: worsening). Written by crm-health.",
        type="Decimal",
        min_value=-100.0,
        max_value=100.0,
        precision=1,
    ),
    *(_signal_column(signal) for signal in SIGNALS),
    ColumnSpec(
        neutral="health_drivers",
        suffix="healthdrivers",
        schema_suffix="HealthDrivers",
        display_name="Health drivers",
        description="Customer health: why the score is what it is, one reason per line. "
        "Written by crm-health.",
        type="Memo",
        max_length=DRIVERS_LENGTH,
    ),
    ColumnSpec(
        neutral="health_updated_at",
        suffix="healthupdatedat",
        schema_suffix="HealthUpdatedAt",
        display_name="Health updated at",
        description="Customer health: when crm-health last computed these values.",
        type="DateTime",
    ),
)

if tuple(spec.neutral for spec in COLUMNS) != HEALTH_FIELDS:  # pragma: no cover - edit guard
    raise RuntimeError("connector.dynamics.fields.COLUMNS must cover HEALTH_FIELDS in order")


class DynamicsFields:
    """The health columns of one publisher: `prefix` is its customization prefix (`cr123`),
    `option_value_prefix` its option value prefix (10000 to 99999). ValueError for either out
    of range."""

    def __init__(
        self, *, prefix: str, option_value_prefix: int, language_code: int = LANGUAGE_CODE
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.option_value_prefix = check_option_value_prefix(option_value_prefix)
        self.language_code = language_code
        base = option_value_prefix * 10_000
        band_options = tuple(
            (base + number, band, text)
            for number, (band, text) in enumerate(BAND_LABELS.items(), start=1)
        )
        self.columns: tuple[HealthColumn, ...] = tuple(
            HealthColumn(
                spec=spec,
                logical_name=f"{prefix}_{spec.suffix}",
                schema_name=f"{prefix}_{spec.schema_suffix}",
                language_code=language_code,
                options=band_options if spec.type == "Picklist" else (),
            )
            for spec in COLUMNS
        )
        self.by_neutral: Mapping[str, HealthColumn] = MappingProxyType(
            {column.neutral: column for column in self.columns}
        )
        self.by_logical_name: Mapping[str, HealthColumn] = MappingProxyType(
            {column.logical_name: column for column in self.columns}
        )

    @property
    def logical_names(self) -> Mapping[str, str]:
        """Neutral name -> logical name (`health_score` -> `cr123_healthscore`)."""
        return MappingProxyType({column.neutral: column.logical_name for column in self.columns})

    @property
    def band_values(self) -> Mapping[str, int]:
        """Neutral band -> option value of the band choice (`healthy` -> 100000001 ...)."""
        column = self.by_neutral["health_band"]
        return MappingProxyType({band: value for value, band, _ in column.options})

    def to_web_api(self, values: Mapping[str, FieldValue]) -> dict[str, JSONValue]:
        """Neutral health field values as account column values (`cr123_healthscore`: 80, ...).

        ValueError for a name that is not a health field or a value its column cannot take.
        """
        converted: dict[str, JSONValue] = {}
        for name, value in values.items():
            column = self.by_neutral.get(name)
            if column is None:
                raise ValueError(f"{name!r} is not a health field; expected one of {HEALTH_FIELDS}")
            converted[column.logical_name] = column.to_value(value)
        return converted
