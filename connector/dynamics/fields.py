"""The "Customer health" columns on the Dataverse account table: their Web API attribute
definitions (`EntityDefinitions(LogicalName='account')/Attributes`) and how neutral health values
become the JSON the Web API accepts for them.

Column names carry the solution publisher's customization prefix (`cr123_healthscore`), and the
choices' option values its option value prefix (72700 gives 727000001 ...), as Dataverse expects
of a publisher's customizations. Beyond the fixed columns, a field plan (connector.base.FieldPlan)
adds a whole-number column per custom signal and a choice column per input (the CSM sentiment).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from connector.base import HEALTH_FIELDS, NO_FIELD_PLAN, ConfiguredField, FieldPlan, FieldValue
from connector.values import finite_number, truncate_lines, updated_at_instant
from signals.model import Band, SignalSpec
from signals.registry import SIGNALS

__all__ = [
    "BAND_LABELS",
    "CHOICE_SLOTS",
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
    "choice_key",
    "choice_options",
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
# A publisher's option values are its prefix times 10,000 plus 0 to 9,999; an input's choices take
# theirs from 1 to 9,999 by their label (`choice_options`).
CHOICE_SLOTS: Final = 9_999
# A neutral field name, which becomes a column's name: `health_nps` -> `cr123_healthnps`.
_NEUTRAL = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")

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
    # (option value, neutral value, label) of a choice column, in display order: the band's
    # neutral values are bands, an input's are its labels as the plan gives them.
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


def _column_names(neutral: str) -> tuple[str, str]:
    """(suffix, schema suffix) of a neutral name: health_mutual_value -> healthmutualvalue,
    HealthMutualValue. ValueError for a name that is no snake_case word."""
    if not _NEUTRAL.fullmatch(neutral):
        raise ValueError(f"{neutral!r} is no neutral field name (snake_case)")
    words = neutral.split("_")
    return "".join(words), "".join(word.capitalize() for word in words)


def _signal_column(signal: SignalSpec) -> ColumnSpec:
    about = _PROVISIONED_DESCRIPTIONS.get(signal.name)
    if about is None:
        about = f"{signal.label_in_sentence} signal, 0 to 100: {signal.description}."
    neutral = f"health_{signal.name}"
    return _score(neutral, *_column_names(neutral), f"Health: {signal.label_in_sentence}", about)


def _planned_column(planned: ConfiguredField, *, choice: bool) -> ColumnSpec:
    """A plan's column: a custom signal's whole number 0 to 100, or an input's choice; named
    from its neutral name like the fixed signals' columns, labelled as the plan says."""
    suffix, schema_suffix = _column_names(planned.neutral)
    return ColumnSpec(
        neutral=planned.neutral,
        suffix=suffix,
        schema_suffix=schema_suffix,
        display_name=planned.label,
        description=planned.description,
        type="Picklist" if choice else "Integer",
        min_value=None if choice else 0,
        max_value=None if choice else 100,
    )


def choice_key(label_text: str) -> str:
    """What identifies a choice: its label, without regard to case or surrounding space (the
    configuration refuses reasons that differ only in case)."""
    return label_text.strip().casefold()


def _label_slot(label_text: str) -> int:
    digest = hashlib.sha256(choice_key(label_text).encode()).digest()
    return int.from_bytes(digest[:8], "big") % CHOICE_SLOTS + 1


def _free_value(label_text: str, *, base: int, taken: set[int]) -> int:
    """The label's own slot, or the next one not taken."""
    start = _label_slot(label_text)
    for step in range(CHOICE_SLOTS):
        value = base + (start - 1 + step) % CHOICE_SLOTS + 1
        if value not in taken:
            return value
    raise ValueError(f"no option value is left for choice {label_text!r}")


def choice_options(
    labels: Sequence[str],
    *,
    base: int,
    known: Mapping[str, int],
    occupied: frozenset[int] = frozenset(),
) -> tuple[tuple[int, str, str], ...]:
    """(option value, label, label) per label, in order: the value `known` holds for it (by
    `choice_key`), else `base` plus a slot derived from the label itself, moved on past values
    taken or `occupied` (the environment's other choices).

    Derived from the label, a value does not depend on the list around it: adding, removing or
    reordering choices leaves every other choice its value, in every process, without asking
    Dataverse. ValueError for two labels that are one choice.
    """
    keys = [choice_key(text) for text in labels]
    if len(set(keys)) != len(keys):
        raise ValueError(f"choices {list(labels)} repeat a label")
    values: dict[str, int] = {}
    for key in keys:
        value = known.get(key)
        if value is not None and value not in values.values():
            values[key] = value
    taken = set(values.values()) | occupied
    for key, text in zip(keys, labels, strict=True):
        if key in values:
            continue
        values[key] = _free_value(text, base=base, taken=taken)
        taken.add(values[key])
    return tuple((values[key], text, text) for key, text in zip(keys, labels, strict=True))


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
    of range.

    `plan` adds its scores (written like the fixed columns) and inputs (choices, provisioned
    and read, never written); `known_choices` gives an input's option values as the
    environment holds them (neutral name -> `choice_key` of a label -> value), so a choice
    keeps the value it has. ValueError for a plan whose columns would share a name.
    """

    def __init__(
        self,
        *,
        prefix: str,
        option_value_prefix: int,
        language_code: int = LANGUAGE_CODE,
        plan: FieldPlan = NO_FIELD_PLAN,
        known_choices: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.option_value_prefix = check_option_value_prefix(option_value_prefix)
        self.language_code = language_code
        self.plan = plan
        base = self.option_base
        band_options = tuple(
            (base + number, band, text)
            for number, (band, text) in enumerate(BAND_LABELS.items(), start=1)
        )
        known = known_choices or {}
        # The columns written (the fixed ones, then the scores), then the inputs.
        self.health_columns: tuple[HealthColumn, ...] = (
            *(
                self._column(spec, band_options if spec.type == "Picklist" else ())
                for spec in COLUMNS
            ),
            *(self._column(_planned_column(score, choice=False)) for score in plan.scores),
        )
        self.input_columns: tuple[HealthColumn, ...] = tuple(
            self._column(
                _planned_column(planned, choice=True),
                choice_options(planned.options, base=base, known=known.get(planned.neutral, {})),
            )
            for planned in plan.inputs
        )
        self.columns: tuple[HealthColumn, ...] = (*self.health_columns, *self.input_columns)
        self.by_neutral: Mapping[str, HealthColumn] = MappingProxyType(
            {column.neutral: column for column in self.columns}
        )
        self.by_logical_name: Mapping[str, HealthColumn] = MappingProxyType(
            {column.logical_name: column for column in self.columns}
        )
        names = Counter(column.logical_name for column in self.columns)
        clashing = [
            f"{column.neutral} ({column.logical_name})"
            for column in self.columns
            if names[column.logical_name] > 1
        ]
        if clashing:
            # Underscores are not part of a column's name: health_a_b and health_ab are one.
            raise ValueError(f"these fields would share an account column: {clashing}")
        self._written: Mapping[str, HealthColumn] = MappingProxyType(
            {column.neutral: column for column in self.health_columns}
        )

    @property
    def option_base(self) -> int:
        """The publisher's first option value: its option value prefix times 10,000."""
        return self.option_value_prefix * 10_000

    def _column(
        self, spec: ColumnSpec, options: tuple[tuple[int, str, str], ...] = ()
    ) -> HealthColumn:
        return HealthColumn(
            spec=spec,
            logical_name=f"{self.prefix}_{spec.suffix}",
            schema_name=f"{self.prefix}_{spec.schema_suffix}",
            language_code=self.language_code,
            options=options,
        )

    def planned(
        self, plan: FieldPlan, *, known_choices: Mapping[str, Mapping[str, int]] | None = None
    ) -> DynamicsFields:
        """The same publisher's columns under `plan`."""
        return DynamicsFields(
            prefix=self.prefix,
            option_value_prefix=self.option_value_prefix,
            language_code=self.language_code,
            plan=plan,
            known_choices=known_choices,
        )

    def choice_values(self) -> dict[str, dict[str, int]]:
        """Each input's option values: neutral name -> `choice_key` of a label -> value."""
        return {
            column.neutral: {choice_key(text): value for value, _, text in column.options}
            for column in self.input_columns
        }

    @property
    def logical_names(self) -> Mapping[str, str]:
        """Neutral name -> logical name of the columns written (`health_score` ->
        `cr123_healthscore`)."""
        return MappingProxyType(
            {column.neutral: column.logical_name for column in self.health_columns}
        )

    @property
    def band_values(self) -> Mapping[str, int]:
        """Neutral band -> option value of the band choice (`healthy` -> 100000001 ...)."""
        column = self.by_neutral["health_band"]
        return MappingProxyType({band: value for value, band, _ in column.options})

    def to_web_api(self, values: Mapping[str, FieldValue]) -> dict[str, JSONValue]:
        """Neutral health field values as account column values (`cr123_healthscore`: 80, ...).

        ValueError for a name that is not a field written (an input is never written) or a
        value its column cannot take.
        """
        converted: dict[str, JSONValue] = {}
        for name, value in values.items():
            column = self._written.get(name)
            if column is None:
                raise ValueError(
                    f"{name!r} is not a health field; expected one of {self.plan.written}"
                )
            converted[column.logical_name] = column.to_value(value)
        return converted
