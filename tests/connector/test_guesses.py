"""The failed-secret window per client address: when an address is blocked, for how long, and
that memory stays bounded however many addresses fail."""

from __future__ import annotations

import pytest

from connector.guesses import SecretGuesses


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _guesses(**options: int) -> tuple[SecretGuesses, _Clock]:
    clock = _Clock()
    return SecretGuesses(limit=3, window_seconds=60, clock=clock, **options), clock


def test_an_address_is_blocked_only_at_the_limit() -> None:
    guesses, _ = _guesses()
    for _ in range(2):
        guesses.failed("192.0.2.1")
    assert guesses.blocked_for("192.0.2.1") == 0
    guesses.failed("192.0.2.1")
    assert guesses.blocked_for("192.0.2.1") == 60


def test_the_block_ends_when_the_oldest_failure_leaves_the_window() -> None:
    guesses, clock = _guesses()
    for step in range(3):
        clock.now = step * 10.0
        guesses.failed("192.0.2.1")
    clock.now = 55.0
    assert guesses.blocked_for("192.0.2.1") == pytest.approx(5)
    clock.now = 60.0
    assert guesses.blocked_for("192.0.2.1") == 0


def test_other_addresses_are_not_blocked() -> None:
    guesses, _ = _guesses()
    for _ in range(3):
        guesses.failed("192.0.2.1")
    assert guesses.blocked_for("192.0.2.2") == 0
    assert guesses.blocked_for(None) == 0


def test_memory_stays_bounded_evicting_expired_addresses_first() -> None:
    guesses, clock = _guesses(max_addresses=100)
    for _ in range(3):
        guesses.failed("192.0.2.1")
    clock.now = 61.0
    for i in range(10_000):
        guesses.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(guesses) == 100
    # The newest addresses are the ones kept.
    assert guesses.blocked_for("10.0.39.15") == 0
    for _ in range(2):
        guesses.failed("10.0.39.15")
    assert guesses.blocked_for("10.0.39.15") > 0


def test_a_full_table_keeps_a_blocked_address_and_forgets_an_expired_one() -> None:
    guesses, clock = _guesses(max_addresses=2)
    guesses.failed("192.0.2.1")
    clock.now = 30.0
    for _ in range(3):
        guesses.failed("192.0.2.2")
    clock.now = 61.0
    guesses.failed("192.0.2.3")
    assert len(guesses) == 2
    assert guesses.blocked_for("192.0.2.2") == pytest.approx(29)
