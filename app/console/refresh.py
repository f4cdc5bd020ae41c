"""A value the console serves from memory and recomputes in the background
(stale-while-revalidate), so that no page view or poll waits on a refresh over 1,000
tenants, and the refreshes themselves cost the database a bounded share of one backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("console")
T = TypeVar("T")


class Refreshing(Generic[T]):
    """`get()` computes the value the first time (and after `invalidate()`); afterwards it
    returns the value it has at once and, when that value is stale, starts one background
    refresh. Stale means older than `min_age` seconds, or than `cost_factor` times the last
    refresh's duration: a refresh that takes 1.5 s runs at most every 7.5 s, so the
    database spends at most 1/(1 + cost_factor) of a backend on it however many pages poll.
    A failed background refresh keeps the last value and says so (`error`)."""

    def __init__(
        self,
        compute: Callable[[], T],
        *,
        name: str,
        min_age: float,
        cost_factor: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._name = name
        self._min_age = min_age
        self._cost_factor = cost_factor
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._computing = threading.Lock()  # one computation at a time
        self._value: T | None = None
        self._have = False
        self._at = 0.0  # when the value served was computed
        self._tried = 0.0  # when the last refresh ended, well or not
        self._took = 0.0
        self._generation = 0
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def get(self) -> T:
        with self._lock:
            if self._have:
                if self._stale():
                    self._start()
                return self._value  # type: ignore[return-value]
        return self._now()

    def peek(self) -> T | None:
        """Like `get()`, but never waits: None while the first computation runs in the
        background (for figures a page can show a moment later)."""
        with self._lock:
            if not self._have or self._stale():
                self._start()
            return self._value if self._have else None

    def _start(self) -> None:  # under self._lock
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._background, name=f"refresh-{self._name}", daemon=True
            )
            self._thread.start()

    def age(self) -> float:
        """Seconds since the value served was computed."""
        with self._lock:
            return max(0.0, self._clock() - self._at) if self._have else 0.0

    def update(self, change: Callable[[T], T]) -> None:
        """Apply a change computed by the caller (fresh rows for one tenant after an
        action); a background refresh that started before it is discarded, not allowed to
        put older figures back."""
        with self._lock:
            if self._have:
                self._value = change(self._value)  # type: ignore[arg-type]
                self._generation += 1

    def invalidate(self) -> None:
        """Drop the value: the next `get()` computes it (after an action on every tenant)."""
        with self._lock:
            self._have = False
            self._value = None
            self._generation += 1

    def wait(self) -> None:
        """Block until the background refresh in flight, if any, has finished."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _stale(self) -> bool:
        return self._clock() - self._tried > max(self._min_age, self._cost_factor * self._took)

    def _now(self) -> T:
        with self._computing:
            with self._lock:
                if self._have and not self._stale():
                    return self._value  # type: ignore[return-value]
            return self._run()

    def _background(self) -> None:
        try:
            with self._computing:
                self._run()
        except Exception as exc:  # the page keeps the last figures and shows the error
            log.error("console.refresh_failed", value=self._name, error=str(exc))
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}"
                self._tried = self._clock()  # try again after min_age, not in a tight loop
        finally:
            with self._lock:
                self._thread = None

    def _run(self) -> T:
        with self._lock:
            generation = self._generation
        started = self._clock()
        value = self._compute()
        finished = self._clock()
        with self._lock:
            if generation == self._generation:
                self._value, self._have = value, True
                self._at = self._tried = finished
                self._took = finished - started
                self.error = None
        log.debug("console.refreshed", value=self._name, seconds=round(finished - started, 3))
        return value
