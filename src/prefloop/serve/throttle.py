"""Failed-authentication throttling per client address (a sliding window, in memory).

After ``limit`` wrong or revoked tokens from one address within ``window_s`` seconds, every
request from that address that presents a token is answered 429 with ``Retry-After`` until
the oldest failure leaves the window. Tokens have 256 bits of entropy, so this is not what
keeps them from being guessed; it stops floods of attempts and makes them visible. The counts
live in the server process (with several worker processes, each counts its own).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

FAILURES_PER_WINDOW = 20
WINDOW_S = 60.0
_MAX_TRACKED = 100_000  # addresses remembered at most; the oldest are forgotten first


class FailedAuthThrottle:
    """Counts failed authentications per client address within a sliding window."""

    def __init__(
        self,
        limit: int = FAILURES_PER_WINDOW,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            self._failures.pop(address, None)
        return failures

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[-self.limit] + self.window_s - now))

    def failed(self, address: str) -> None:
        """Record one failed authentication from ``address``."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            failures.append(now)
            self._failures.pop(address, None)
            self._failures[address] = failures  # re-inserted: dict order = least recent first
            if len(self._failures) > _MAX_TRACKED:
                del self._failures[next(iter(self._failures))]
