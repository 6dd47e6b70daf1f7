"""HealthConfig: defaults, strict validation with field paths, round trips, version hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from signals.config import HealthConfig


def _errors(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        HealthConfig.model_validate(document)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def test_defaults_are_the_documented_ones() -> None:
    config = HealthConfig()
    signals = config.signals
    assert [s.weight for s in signals.items().values()] == [0.40, 0.35, 0.15, 0.10]
    indicators = {
        name: (i.at_risk, i.healthy, i.weight)
        for signal in signals.items().values()
        for name, i in signal.indicators.items().items()
    }
    assert indicators == {
        "seat_utilization": (0.40, 0.70, 1.0),
        "usage_trend": (-0.25, 0.0, 1.0),
        "stickiness": (0.05, 0.20, 1.0),
        "recency_days": (14, 3, 1.0),
        "usage_depth": (5, 25, 0.0),
        "depth_trend": (-0.3, 0.0, 1.0),
        "key_feature_adoption": (0.2, 0.5, 1.0),
        "two_way_ratio": (0.15, 0.40, 1.0),
        "co_innovation": (0, 2, 1.0),
        "stakeholder_breadth": (1, 4, 1.0),
        "executive_access": (0, 1, 1.0),
        "support_load": (5, 1, 1.0),
        "escalations": (3, 0, 1.0),
        "nps": (0, 30, 1.0),
        "nps_latest": (6, 9, 0.5),
        "csat": (3, 4.3, 1.0),
        "csat_latest": (2, 4, 0.5),
        "arr_change": (-0.10, 0.05, 1.0),
    }
    assert (config.bands.healthy_min, config.bands.at_risk_below) == (70, 40)
    assert config.bands.hysteresis == 3


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        ({"signals": {"active_use": {"weight": -0.1}}}, "signals.active_use.weight",
         "greater than or equal to 0"),
        ({"signals": {"momentum": {"indicators": {"arr_change": {
            "at_risk": 0.05, "healthy": 0.05}}}}},
         "signals.momentum.indicators.arr_change", "must differ"),
        ({"signals": {"mutual_value": {"indicators": {"escalations": {
            "at_risk": 3, "healthy": 0, "weight": -1}}}}},
         "signals.mutual_value.indicators.escalations.weight", "greater than or equal to 0"),
        ({"signals": {"active_use": {"indicators": {"seat_usage": {
            "at_risk": 0.4, "healthy": 0.7}}}}},
         "signals.active_use.indicators.seat_usage", "Extra inputs are not permitted"),
        ({"signals": {"active_use": {"weight": 0}, "collaboration": {"weight": 0},
                      "mutual_value": {"weight": 0}, "momentum": {"weight": 0}}},
         "signals", "at least one signal needs a weight above 0"),
        ({"signals": {"momentum": {"indicators": {"arr_change": {
            "at_risk": -0.1, "healthy": 0.05, "weight": 0}}}}},
         "signals.momentum.indicators", "at least one indicator"),
        ({"bands": {"healthy_min": 30, "at_risk_below": 40}}, "bands", "must not exceed"),
        ({"bands": {"hysteresis": -1}}, "bands.hysteresis", "greater than or equal to 0"),
        ({"bands": {"healthy_min": 101}}, "bands.healthy_min", "less than or equal to 100"),
        ({"signals": {"active_use": {"weight": "lots"}}}, "signals.active_use.weight",
         "valid number"),
        ({"signals": {"active_use": {"weight": float("nan")}}}, "signals.active_use.weight",
         "finite number"),
        ({"thresholds": {}}, "thresholds", "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_invalid_config_is_refused_naming_the_field_path(document, path, message) -> None:
    errors = _errors(document)
    assert any(loc == path and message in msg for loc, msg in errors), errors


def test_every_invalid_field_is_listed_not_only_the_first() -> None:
    errors = _errors(
        {"signals": {"active_use": {"weight": -1}, "momentum": {"weight": -2}},
         "bands": {"hysteresis": -3}}
    )  # fmt: skip
    assert {loc for loc, _ in errors} == {
        "signals.active_use.weight", "signals.momentum.weight", "bands.hysteresis"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ({"name": "x", "match": {"tier": "a"},
          "changes": {"signals": {"momentum": {"weight": -1}}}},
         "segments.0.changes.signals.momentum.weight: Input should be greater than or equal to 0"),
        ({"name": "x", "match": {"tier": "a"}, "changes": {"bands": {"healthy_min": 10}}},
         "segments.0.changes.bands: at_risk_below (40) must not exceed healthy_min (10)"),
        ({"name": "x", "match": {"tier": "a"}, "changes": {"weights": {}}},
         "segments.0.changes: unknown keys ['weights']"),
    ],
)  # fmt: skip
def test_invalid_segment_override_names_its_path(segment, message) -> None:
    [(_, msg)] = _errors({"segments": [segment]})
    assert message in msg


def test_segment_needs_a_match_and_unique_names() -> None:
    assert _errors({"segments": [{"name": "x", "match": {}}]})[0][0] == "segments.0.match"
    twice = {"segments": [{"name": "x", "match": {"a": "1"}}, {"name": "x", "match": {"a": "2"}}]}
    assert "duplicate names ['x']" in _errors(twice)[0][1]


def _custom() -> HealthConfig:
    return HealthConfig.model_validate(
        {
            "signals": {"active_use": {"weight": 0.5, "indicators": {"recency_days": {
                "at_risk": 21, "healthy": 7, "weight": 2}}}},
            "bands": {"healthy_min": 75, "hysteresis": 5},
            "segments": [{"name": "enterprise", "match": {"tier": "enterprise"},
                          "changes": {"signals": {"momentum": {"weight": 0.3}}}}],
        }
    )  # fmt: skip


def test_json_round_trip_keeps_everything() -> None:
    config = _custom()
    assert HealthConfig.from_json(config.to_json()) == config


def test_yaml_round_trip_keeps_everything() -> None:
    config = _custom()
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    assert HealthConfig.model_validate(yaml.safe_load(text)) == config


def test_version_is_stable_and_follows_content() -> None:
    config = _custom()
    assert config.version == _custom().version
    reordered = json.loads(config.to_json(), object_pairs_hook=lambda p: dict(reversed(p)))
    assert HealthConfig.model_validate(reordered).version == config.version
    assert HealthConfig().version != config.version
    assert len(config.version) == 16


def test_config_is_immutable() -> None:
    with pytest.raises(ValidationError):
        HealthConfig().bands.hysteresis = 5
