"""Failed shared-secret attempts of one connection, per client address: after `limit` failures
within `window_seconds` an address is refused without its secret being checked, so guessing a
secret costs a window per `limit` tries. Counted in memory: each API process counts its own."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Failures allowed per address within the window, and the window itself.
DEFAULT_LIMIT = 10
DEFAULT_WINDOW_SECONDS = 60.0
# Addresses remembered per connection; beyond it the least recently failing one is forgotten,
# so a flood from many addresses costs bounded memory (each address still gets `limit` tries).
DEFAULT_MAX_ADDRESSES = 4096


class SecretGuesses:
    """Sliding window of failure times per client address (`None`: the address is unknown)."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_addresses: int = DEFAULT_MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0 or max_addresses < 1:
            raise ValueError("limit, window_seconds and max_addresses must be positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self.clock = clock
        # Least recently failing first: the order eviction follows.
        self._failures: OrderedDict[str | None, deque[float]] = OrderedDict()

    def blocked_for(self, address: str | None) -> float:
        """Seconds until `address` may try a secret again; 0 when it may now."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        now = self.clock()
        self._expire(failures, now)
        if not failures:
            del self._failures[address]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window_seconds - now

    def failed(self, address: str | None) -> None:
        now = self.clock()
        failures = self._failures.get(address)
        if failures is None:
            if len(self._failures) >= self.max_addresses:
                self._evict(now)
            # Only the last `limit` failures decide whether an address is blocked.
            failures = self._failures[address] = deque(maxlen=self.limit)
        else:
            self._failures.move_to_end(address)
        self._expire(failures, now)
        failures.append(now)

    def __len__(self) -> int:
        return len(self._failures)

    def _expire(self, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()

    def _evict(self, now: float) -> None:
        """Forget addresses with no failure left in the window (the front of the order, which
        follows the last failure); if there are none, the least recently failing one."""
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if oldest and oldest[-1] > now - self.window_seconds:
                break
            self._failures.popitem(last=False)
        if len(self._failures) >= self.max_addresses:
            self._failures.popitem(last=False)
