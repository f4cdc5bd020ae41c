"""Stop and pause for a running backfill: signals from the CLI, the pause toggle, job aborts,
and an operator's pause, resume and cancel of one job run (`RunRequests`)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import structlog
from sqlalchemy import Engine

from app.core.settings import Settings
from backfill import job_runs
from flags.client import FlagClient, Toggle

log = structlog.get_logger("backfill")


class RunControls:
    """A stop event (set by SIGINT/SIGTERM) and a pause check, consulted between batches."""

    def __init__(self, is_paused: Callable[[], bool] | None = None) -> None:
        self.stop = threading.Event()
        self._is_paused = is_paused or (lambda: False)

    def should_stop(self) -> bool:
        """A stop was asked for."""
        return self.stop.is_set()

    def is_paused(self) -> bool:
        """The pause toggle is on."""
        return self._is_paused()

    def sleep(self, seconds: float) -> None:
        """Wait, waking up at once on a stop."""
        self.stop.wait(seconds)

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM finish the current batch and stop; a second SIGINT aborts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # A Python signal handler runs in the main thread between any two bytecodes, also
        # while that thread holds a lock the handler would take: the stop event's own lock
        # while `sleep` waits on it, or an outer handler's when signals come in a burst.
        # Setting the event there deadlocked the run after `backfill.stop_requested`, for
        # good (each later SIGTERM blocks the same way). So the handler takes no lock: it
        # writes the signal to a pipe, and a thread logs it and sets the event.
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        stop_signalled = False

        def request_stop(signum: int, _frame: object) -> None:
            nonlocal stop_signalled
            if signum == signal.SIGINT and (stop_signalled or self.stop.is_set()):
                raise KeyboardInterrupt
            stop_signalled = True
            with suppress(BlockingIOError):  # a full pipe holds stop requests enough
                os.write(write_end, bytes([signum]))

        relay = threading.Thread(
            target=self._relay_stop_requests, args=(read_end,), name="stop-signals", daemon=True
        )
        relay.start()
        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(write_end)  # the relay reads what is left, then the end of the pipe
        # Only after a normal exit, where should_stop() must be final. After a second SIGINT
        # the KeyboardInterrupt may have left the stop event's lock taken (raised between an
        # acquire and the `with` that releases it): the relay would wait for it forever.
        relay.join()

    def _relay_stop_requests(self, read_end: int) -> None:
        """Log each signal the handler wrote and set the stop event, until the pipe closes."""
        try:
            while signals := os.read(read_end, 64):
                for signum in signals:
                    log.warning("backfill.stop_requested", signal=signal.Signals(signum).name)
                    self.stop.set()
        finally:
            os.close(read_end)


class PauseToggle:
    """The `product-images.backfill-pause` toggle, read between batches (logged when it flips)."""

    def __init__(self, client: FlagClient) -> None:
        self.client = client

    def is_paused(self) -> bool:
        """True while the toggle is on."""
        return self.client.is_enabled(Toggle.BACKFILL_PAUSE)

    def close(self) -> None:
        """Stop the flags client."""
        self.client.close()


def pause_toggle(settings: Settings) -> PauseToggle:
    """The pause toggle from Unleash (UNLEASH_URL) or the local toggle file."""
    return PauseToggle(FlagClient.from_settings(settings))


class RunRequests:
    """An operator's request for one job run (`public.job_runs.requested`: pause or cancel),
    read at most once every `every` seconds: a run consults it between batches, so it takes
    effect at the next batch. A pause seen or lifted is written back as the run's state."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        *,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.every = every
        self.clock = clock
        self._read_at: float | None = None
        self._requested: str | None = None
        self._paused = False

    def requested(self) -> str | None:
        """The request in force (read again when the last read is older than `every`)."""
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.every:
            self._requested = job_runs.requested(self.engine, self.run_id)
            self._read_at = now
        return self._requested

    def seen(self, requested: str | None) -> None:
        """A request the job read along with its progress (no second query)."""
        self._requested, self._read_at = requested, self.clock()

    def is_cancelled(self) -> bool:
        return self.requested() == "cancel"

    def is_paused(self) -> bool:
        """Paused by the operator; the run's state follows (paused, then running again)."""
        paused = self.requested() == "pause"
        if paused != self._paused:
            self._paused = paused
            job_runs.set_state(self.engine, self.run_id, "paused" if paused else "running")
            log.info("backfill.run_paused" if paused else "backfill.run_resumed", run=self.run_id)
        return paused
