"""Stop and pause for a running backfill: signals from the CLI, the pause toggle, job aborts."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from app.core.settings import Settings
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

        def request_stop(signum: int, _frame: object) -> None:
            if self.stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.warning("backfill.stop_requested", signal=signal.Signals(signum).name)
            self.stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


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
    return PauseToggle(
        FlagClient(
            url=settings.unleash_url,
            api_token=settings.unleash_api_token,
            toggles_file=settings.flags_file,
        )
    )
