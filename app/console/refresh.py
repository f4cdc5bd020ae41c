"""A value the console serves from memory and recomputes in the background
(stale-while-revalidate), so that no page view or poll waits on a refresh over 1,000
tenants, and the refreshes themselves cost the database a bounded share of one backend."""

from __future__ import annotations

import math
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
    refresh's duration: a refresh that takes 1.5 s runs at most every 7.5 s, so this
    process's database work for it is at most 1/(1 + cost_factor) of a backend however many
    pages poll. A failed refresh keeps the last value, says so (`error`) and is tried again
    when stale, not in a loop. `update()` patches the value now and again on top of the
    refresh in flight when its figures were read before the patch's."""

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
        self._read = -math.inf  # when the computation of the value served began reading
        self._tried = -math.inf  # when the last computation ended, well or not
        self._took = 0.0
        self._generation = 0  # bumped by invalidate(): a computation in flight is dropped
        self._in_flight: float | None = None  # when the computation in flight began reading
        # Patches read after the computation in flight began: replayed on its result.
        self._patches: list[Callable[[T], T]] = []
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
            if self._stale():
                self._start()
            return self._value if self._have else None

    def age(self) -> float:
        """Seconds since the value served was computed."""
        with self._lock:
            return max(0.0, self._clock() - self._at) if self._have else 0.0

    def now(self) -> float:
        """This value's clock: take it before reading the figures of an `update()`."""
        return self._clock()

    def update(self, change: Callable[[T], T], read_at: float) -> None:
        """Apply a change computed by the caller (fresh rows for one tenant, whose reading
        began at `read_at`) to the value, unless the value was read after it; and to the
        result of the computation in flight when it lands, if that began reading first."""
        with self._lock:
            if self._have and read_at >= self._read:
                self._value = change(self._value)  # type: ignore[arg-type]
            if self._in_flight is not None and read_at >= self._in_flight:
                self._patches.append(change)

    def invalidate(self) -> None:
        """Drop the value: the next `get()` computes it (after an action on every tenant)."""
        with self._lock:
            self._have = False
            self._value = None
            self._tried = -math.inf
            self._generation += 1

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background refresh in flight, if any, has finished (False if it
        had not within `timeout` seconds, real ones)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _start(self) -> None:  # under self._lock
        if self._thread is None:
            thread = threading.Thread(
                target=self._background, name=f"refresh-{self._name}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": serve what there is
                log.error("console.refresh_not_started", value=self._name, error=str(exc))
                return
            self._thread = thread

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
        finally:
            with self._lock:
                self._thread = None

    def _run(self) -> T:
        with self._lock:
            generation = self._generation
            started = self._clock()
            self._in_flight = started
        try:
            value = self._compute()
        except BaseException as exc:
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}"
                self._tried = self._clock()
            raise
        else:
            finished = self._clock()
            with self._lock:
                for change in self._patches:  # read after this began: newer
                    value = change(value)
                if generation == self._generation:  # not invalidated meanwhile
                    self._value, self._have = value, True
                    self._at, self._read = finished, started
                    self._tried, self._took = finished, finished - started
                    self.error = None
            log.debug("console.refreshed", value=self._name, seconds=round(finished - started, 3))
            return value
        finally:
            with self._lock:
                self._in_flight = None
                self._patches.clear()
