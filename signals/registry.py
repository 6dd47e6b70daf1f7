"""The signals, in the order the configuration, the API and the CRM fields list them: the one
list every other place derives its signals from. Adding a signal is a module declaring a
`SignalSpec` and a line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from signals import active_use, collaboration, momentum, mutual_value
from signals.model import SignalSpec

SIGNALS: tuple[SignalSpec, ...] = (
    active_use.SIGNAL,
    collaboration.SIGNAL,
    mutual_value.SIGNAL,
    momentum.SIGNAL,
)

SIGNAL_NAMES: tuple[str, ...] = tuple(signal.name for signal in SIGNALS)
SIGNAL_BY_NAME: Mapping[str, SignalSpec] = MappingProxyType(
    {signal.name: signal for signal in SIGNALS}
)

if len(SIGNAL_BY_NAME) != len(SIGNALS):  # pragma: no cover - guards an edit of the list
    raise RuntimeError(f"signals.registry.SIGNALS: duplicate names in {SIGNAL_NAMES}")
