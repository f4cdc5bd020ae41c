"""What a backfill worker consults between two batches: a stop or a pause (its controls), the
knobs, the rate, live traffic and the database's health. Each worker of a run consults them
for itself; the rate is the tenant's, shared among the workers on it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import Connection, text

from app.repositories.migration_state import claims
from backfill import health, knobs
from backfill.health import HealthLimits, HealthSample
from backfill.knobs import Knobs


class Controls(Protocol):
    """What a run consults between batches."""

    def should_stop(self) -> bool:
        """SIGINT/SIGTERM or job abort: finish the batch, then stop."""

    def is_paused(self) -> bool:
        """The pause toggle: wait between batches while on."""

    def sleep(self, seconds: float) -> None:
        """Wait (interruptible by a stop where possible)."""


class NoControls:
    """Never stops, never pauses."""

    def should_stop(self) -> bool:
        """Never."""
        return False

    def is_paused(self) -> bool:
        """Never."""
        return False

    def sleep(self, seconds: float) -> None:
        """time.sleep."""
        time.sleep(seconds)


def wait_while_paused(controls: Controls, log: structlog.stdlib.BoundLogger) -> bool:
    """Block while paused; True when a stop was asked for instead."""
    announced = False
    while True:
        if controls.should_stop():
            return True
        if not controls.is_paused():
            if announced:
                log.info("backfill.resumed")
            return False
        if not announced:
            log.info("backfill.paused")
            announced = True
        controls.sleep(1.0)


def wait_for_health(
    connection: Connection,
    schema: str,
    limits: HealthLimits,
    controls: Controls,
    previous: HealthSample,
    log: structlog.stdlib.BoundLogger,
) -> tuple[HealthSample, int]:
    """Wait, a second at a time, while the database is under pressure: the last sample, and
    how many seconds were waited."""
    waits = 0
    current = health.sample(connection, schema, limits)
    reason = health.pressure(previous, current, limits)
    while reason is not None and not controls.should_stop():
        waits += 1
        log.info("backfill.throttled", reason=reason)
        controls.sleep(1.0)
        previous, current = current, health.sample(connection, schema, limits)
        reason = health.pressure(previous, current, limits)
    return current, waits


APP_NAME = "product-images"  # app.core.database.make_engine's application_name
BACKFILL_APP_NAME = "product-images-backfill"


def app_busy(connection: Connection) -> bool:
    """Whether another of the app's sessions is working in this database right now (not
    idle; backfill sessions are named apart and do not count)."""
    busy = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = :app "
            "AND state IN ('active', 'idle in transaction'))"
        ),
        {"app": APP_NAME},
    ).scalar()
    connection.commit()
    return bool(busy)


@dataclass
class Pace:
    """The rate a run keeps (`--max-rate`, or its knob), counted from when it was set."""

    rate: float | None
    since: float
    inserted_then: int = 0

    def aim(self, rate: float | None, now: float, inserted: int) -> None:
        """Keep `rate` from now on (a change restarts the count: no burst, no long sleep)."""
        if rate != self.rate:
            self.rate, self.since, self.inserted_then = rate, now, inserted

    def wait(self, now: float, inserted: int) -> float:
        """Seconds to sleep to stay within the rate. A run behind its rate (a pause, a
        throttle, a yield, a slow batch) earns no credit: the count starts again from now,
        so a rate is a ceiling at every moment, never an average to catch up on."""
        if not self.rate:
            return 0.0
        ahead = (inserted - self.inserted_then) / self.rate - (now - self.since)
        if ahead <= 0:
            self.since, self.inserted_then = now, inserted
        return max(ahead, 0.0)


def rate_share(connection: Connection, schema: str, rate: float | None) -> float | None:
    """This worker's part of the tenant's rate: the rate over the workers on it now."""
    if not rate:
        return rate
    return rate / claims.live_workers(connection, schema)


def read_knobs(
    connection: Connection, tenant_id: int, before: Knobs, log: structlog.stdlib.BoundLogger
) -> Knobs:
    """The knobs in force now (`backfill tune`), logged when they changed."""
    now = knobs.in_force(connection, tenant_id)
    connection.commit()
    if now != before:
        log.info("backfill.knobs_changed", max_rate=now.max_rate, batch_size=now.batch_size)
    return now
