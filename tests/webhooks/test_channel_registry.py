"""The alert channel registry: every channel module that declares a KIND is listed once, and the
channels file accepts exactly the registered types."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import webhooks.alerts.channels as channels_package
from webhooks.alerts.channels.config import CHANNEL_TYPES, ChannelsFileError, read_channels_file
from webhooks.alerts.channels.kinds import OPTIONAL_FIELDS, ChannelKind
from webhooks.alerts.channels.registry import KINDS


def _declared_kinds() -> dict[str, ChannelKind]:
    declared = {}
    for module in pkgutil.iter_modules(channels_package.__path__):
        loaded = importlib.import_module(f"{channels_package.__name__}.{module.name}")
        kind = getattr(loaded, "KIND", None)
        if isinstance(kind, ChannelKind):
            declared[module.name] = kind
    return declared


def test_every_channel_module_with_a_kind_is_registered() -> None:
    declared = _declared_kinds()
    assert sorted(declared.values(), key=lambda kind: kind.type) == sorted(
        KINDS.values(), key=lambda kind: kind.type
    )
    for module, kind in declared.items():
        assert KINDS[kind.type] is kind, f"{module}.KIND is not the registered {kind.type!r}"


def test_the_registry_is_the_list_of_channel_types() -> None:
    assert tuple(KINDS) == CHANNEL_TYPES
    assert CHANNEL_TYPES == ("slack", "teams", "email", "webhook", "crm_task", "owner")


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_a_kind_takes_only_fields_of_the_channels_file(kind: ChannelKind) -> None:
    assert kind.fields <= set(OPTIONAL_FIELDS)


def test_an_unknown_type_lists_the_registered_ones(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n  - {name: a, type: sms}\n", encoding="utf-8")
    with pytest.raises(ChannelsFileError) as raised:
        read_channels_file(path)
    assert (
        "channels.0.type: Input should be 'slack', 'teams', 'email', 'webhook', 'crm_task' or "
        "'owner'" in str(raised.value)
    )
