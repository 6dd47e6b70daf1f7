"""The "Customer health" company properties in HubSpot and how values are formatted for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.base import ConfiguredField, FieldPlan, FieldValue
from signals.model import Band, SignalSpec
from signals.registry import SIGNALS

GROUP_NAME = "customer_health"
GROUP_LABEL = "Customer health"


@dataclass(frozen=True, kw_only=True)
class PropertySpec:
    name: str
    label: str
    type: str
    field_type: str
    description: str
    options: tuple[str, ...] = field(default=())

    def definition(self) -> dict[str, Any]:
        """The body of HubSpot's create-property call."""
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": GROUP_NAME,
            "description": self.description,
        }
        if self.options:
            # HubSpot's OptionInput requires `hidden` next to label and value (CRM Properties
            # v3); an option without it may be refused, and the property with it.
            body["options"] = [
                {
                    "label": _option_label(option),
                    "value": option,
                    "displayOrder": i,
                    "hidden": False,
                }
                for i, option in enumerate(self.options)
            ]
        return body


def _option_label(value: str) -> str:
    # The first letter only is raised: an admin's reason ("poor ROI") keeps its own capitals,
    # and the band values (lowercase) read as they always have ("At risk").
    text = value.replace("_", " ")
    return f"{text[:1].upper()}{text[1:]}"


def _number(name: str, label: str, description: str) -> PropertySpec:
    return PropertySpec(
        name=name, label=label, type="number", field_type="number", description=description
    )


# The descriptions the first signals were provisioned with, word for word: provisioning
# updates a property whose description differs, so another wording would rewrite it in every
# portal. A signal not listed is described from its declaration.
_PROVISIONED_DESCRIPTIONS: Mapping[str, str] = {
    "active_use": "Seat use, usage trend and recency.",
    "collaboration": "Two-way contact, co-innovation, breadth and executive access.",
    "mutual_value": "Support load and escalations.",
    "momentum": "Spend growth versus leveling off.",
}


def _signal_property(signal: SignalSpec) -> PropertySpec:
    description = _PROVISIONED_DESCRIPTIONS.get(signal.name)
    if description is None:
        description = f"{signal.description[:1].upper()}{signal.description[1:]}."
    return _number(f"health_{signal.name}", f"Health: {signal.label_in_sentence}", description)


PROPERTIES: tuple[PropertySpec, ...] = (
    _number("health_score", "Health score", "Composite customer health, 0 (at risk) to 100."),
    PropertySpec(
        name="health_band",
        label="Health band",
        type="enumeration",
        field_type="select",
        description=(
            "healthy, neutral, at risk, unknown when too little is known, or onboarding for "
            "a customer still in its onboarding period."
        ),
        options=tuple(band.value for band in Band),
    ),
    _number("health_trend_30d", "Health trend (30 days)", "Score change over the last 30 days."),
    *(_signal_property(signal) for signal in SIGNALS),
    PropertySpec(
        name="health_drivers",
        label="Health drivers",
        type="string",
        field_type="textarea",
        description="Why the score is what it is, one reason per line.",
    ),
    PropertySpec(
        name="health_updated_at",
        label="Health updated at",
        type="datetime",
        field_type="date",
        description="When crm-health last computed these values.",
    ),
)

# HubSpot internal names equal the neutral health field names.
PROPERTY_BY_FIELD: dict[str, PropertySpec] = {spec.name: spec for spec in PROPERTIES}


def _score_property(field: ConfiguredField) -> PropertySpec:
    return _number(field.neutral, field.label, field.description)


def _input_property(field: ConfiguredField) -> PropertySpec:
    return PropertySpec(
        name=field.neutral,
        label=field.label,
        type="enumeration",
        field_type="select",
        description=field.description,
        options=field.options,
    )


def planned_properties(plan: FieldPlan) -> tuple[PropertySpec, ...]:
    """Every company property a connection under `plan` provisions, by its internal name (the
    neutral name): the fixed PROPERTIES, a number per custom signal score, a select per input
    picklist."""
    return (
        *PROPERTIES,
        *(_score_property(field) for field in plan.scores),
        *(_input_property(field) for field in plan.inputs),
    )


def to_property_value(value: FieldValue) -> str:
    """HubSpot takes every property value as a string; an empty string clears the property."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
