"""Failed console sign-ins per client address: past the limit within a minute, sign-in is
refused (429) without looking at the token, so a token cannot be guessed from one address.

Per app process (the image runs two workers: up to twice the limit per address); behind a
reverse proxy the address is the one uvicorn trusts from `X-Forwarded-For`
(`--forwarded-allow-ips`), otherwise every client shares the proxy's."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000  # memory bound: the oldest address is forgotten first


class LoginThrottle:
    """Count failed sign-ins per address over a sliding minute."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int:
        """Seconds until this address may try again (0: it may now)."""
        failures = self._recent(address)
        if len(failures) < self.limit:
            return 0
        return max(1, int(failures[0] + WINDOW_SECONDS - self.clock()) + 1)

    def failed(self, address: str) -> None:
        """Record a failed sign-in from this address."""
        failures = self._recent(address)
        failures.append(self.clock())
        self._failures.pop(address, None)
        self._failures[address] = failures  # most recent last, for the memory bound
        while len(self._failures) > MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= self.clock() - WINDOW_SECONDS:
            failures.popleft()
        return failures
