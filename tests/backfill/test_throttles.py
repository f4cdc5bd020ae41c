"""The backfill's throttles, on a clock driven by hand (no timing in tests): `--max-rate`
holds a run to its rate, and the time budget steers the batch size toward
`target_batch_seconds` (issue 21, item 7: disabling either failed no test)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

import backfill.runner as runner
from backfill.runner import RunOptions, run_tenant
from tests.backfill.test_runner import NO_SERVER_SIGNALS
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


class HandClock:
    """A clock that moves only when the run sleeps or a batch 'takes' time."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    # Controls
    def should_stop(self) -> bool:
        return False

    def is_paused(self) -> bool:
        return False

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> HandClock:
    hand = HandClock()
    monkeypatch.setattr(runner, "monotonic", hand.monotonic)
    return hand


def seed(engine: Engine, tenant: int, products: int, images_each: int) -> None:
    for p in range(products):
        images = [{"url": f"{BASE}/{p}/{k}.jpg", "order": k} for k in range(images_each)]
        insert_legacy_product(engine, tenant, images)


def test_max_rate_holds_the_run_to_its_rate(engine: Engine, tenant: int, clock: HandClock) -> None:
    seed(engine, tenant, products=40, images_each=3)
    started = clock.now
    options = RunOptions(batch_size=5, max_rate=12.0, yield_ratio=0)
    result = run_tenant(engine, tenant, options, controls=clock)
    assert result.images_inserted == 120
    # 120 images at 12 a second cannot take less than 10 s, less the last batch's share
    # (the run sleeps after a batch, for the images it has inserted so far).
    assert clock.now - started >= 120 / 12.0 - 1e-6
    assert len(clock.sleeps) >= 7  # paced throughout, not one sleep at the end


class PausingClock(HandClock):
    """Paused (a second at a time, like the runner's wait) for `pause_s` seconds before the
    `at`-th batch; remembers when it resumed."""

    def __init__(self, at: int, pause_s: int) -> None:
        super().__init__()
        self.checks, self.at, self.pause_left = 0, at, pause_s
        self.resumed_at: float | None = None

    def is_paused(self) -> bool:
        self.checks += 1
        if self.checks >= self.at and self.pause_left > 0:
            self.pause_left -= 1
            return True
        if self.checks >= self.at and self.resumed_at is None:
            self.resumed_at = self.now
        return False


def test_a_long_pause_earns_no_burst_after_resume(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pace once counted from the run's start: after a 100 s pause the run owed itself
    # 1,200 images at 12 a second and sent the rest of the tenant at full speed.
    seed(engine, tenant, products=40, images_each=3)
    clock = PausingClock(at=3, pause_s=100)
    monkeypatch.setattr(runner, "monotonic", clock.monotonic)
    options = RunOptions(batch_size=5, max_rate=12.0, yield_ratio=0)
    result = run_tenant(engine, tenant, options, controls=clock)
    assert result.images_inserted == 120 and clock.resumed_at is not None
    after_resume = 120 - 2 * 15  # two batches of 5 products x 3 images went before the pause
    assert clock.now - clock.resumed_at >= (after_resume - 15) / 12.0 - 1e-6


def test_without_a_rate_an_idle_run_never_sleeps(
    engine: Engine, tenant: int, clock: HandClock
) -> None:
    seed(engine, tenant, products=20, images_each=2)
    options = RunOptions(batch_size=5, yield_ratio=0, health=NO_SERVER_SIGNALS)
    result = run_tenant(engine, tenant, options, controls=clock)
    assert result.images_inserted == 40
    assert clock.sleeps == []


def test_the_batch_size_steers_toward_the_time_budget(
    engine: Engine, tenant: int, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, products=400, images_each=1)
    batch_after = runner._batch_after
    sizes: list[int] = []

    def timed_batch(*args: Any, **kwargs: Any) -> Any:
        outcome = batch_after(*args, **kwargs)
        if outcome is not None and outcome[0]:
            sizes.append(outcome[0])
            clock.now += outcome[0] * 0.05  # 20 products a second on this "database"
        return outcome

    monkeypatch.setattr(runner, "_batch_after", timed_batch)
    options = RunOptions(initial_batch_size=2, target_batch_seconds=1.0, yield_ratio=0)
    result = run_tenant(engine, tenant, options, controls=clock)
    assert result.images_inserted == 400
    assert sizes[:4] == [2, 4, 8, 16]  # doubles while under budget (at most 2x a step)
    assert all(18 <= size <= 22 for size in sizes[5:-1]), sizes  # then holds ~1 s batches


def test_a_fixed_batch_size_is_kept_whatever_the_time(
    engine: Engine, tenant: int, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, products=60, images_each=1)
    batch_after = runner._batch_after
    sizes: list[int] = []

    def slow_batch(*args: Any, **kwargs: Any) -> Any:
        outcome = batch_after(*args, **kwargs)
        if outcome is not None and outcome[0]:
            sizes.append(outcome[0])
            clock.now += 30.0
        return outcome

    monkeypatch.setattr(runner, "_batch_after", slow_batch)
    run_tenant(engine, tenant, RunOptions(batch_size=7, yield_ratio=0), controls=clock)
    assert sizes == [7] * 8 + [4]
