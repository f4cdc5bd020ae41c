"""The backfill yields to the database's health (issue 21, item 7): the pure decision on
hand-made samples, the sampling on the real server, and a run that meets a forced checkpoint."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

import backfill.runner as runner
from app.core.database import quoted_schema, tenant_schema
from backfill.health import HealthLimits, HealthSample, pressure, sample
from backfill.runner import RunOptions, run_tenant
from tests.backfill.test_throttles import HandClock, seed

CALM = HealthSample(replication_lag_seconds=0.0, long_autovacuums=0, requested_checkpoints=7)


def test_each_signal_alone_makes_pressure_and_none_turns_it_off() -> None:
    limits = HealthLimits(max_replication_lag_seconds=5.0, autovacuum_after_seconds=60.0)
    lagging = HealthSample(5.5, 0, 7)
    vacuuming = HealthSample(0.0, 1, 7)
    checkpointed = HealthSample(0.0, 0, 8)
    assert pressure(CALM, CALM, limits) is None
    assert "replication lag 5.5 s" in str(pressure(CALM, lagging, limits))
    assert "autovacuum" in str(pressure(CALM, vacuuming, limits))
    assert "checkpoint" in str(pressure(CALM, checkpointed, limits))
    assert pressure(None, checkpointed, limits) is None  # a counter needs a previous reading
    off = HealthLimits(
        max_replication_lag_seconds=None,
        autovacuum_after_seconds=None,
        yield_to_forced_checkpoints=False,
    )
    for signal in (lagging, vacuuming, checkpointed):
        assert pressure(CALM, signal, off) is None


@given(
    lag=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    limit=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_lag_is_pressure_exactly_when_over_the_limit(lag: float, limit: float) -> None:
    limits = HealthLimits(max_replication_lag_seconds=limit)
    found = pressure(CALM, HealthSample(lag, 0, 7), limits)
    assert (found is not None) == (lag > limit)


def test_a_sample_reads_the_real_server(engine: Engine, tenant: int) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        first = sample(connection, schema, HealthLimits())
        # A CHECKPOINT asked while a timed one runs may be served by it without counting:
        # ask again (a few times at most) until the counter moves.
        for _ in range(5):
            connection.execute(text("CHECKPOINT"))
            connection.commit()
            second = sample(connection, schema, HealthLimits())
            if second.requested_checkpoints > first.requested_checkpoints:
                break
    assert first.replication_lag_seconds == 0.0  # no standby here
    assert first.long_autovacuums == 0
    assert second.requested_checkpoints > first.requested_checkpoints


@pytest.mark.parametrize("yield_to_checkpoints", [True, False])
def test_a_run_waits_after_a_forced_checkpoint(
    engine: Engine,
    tenant: int,
    monkeypatch: pytest.MonkeyPatch,
    yield_to_checkpoints: bool,
) -> None:
    clock = HandClock()
    monkeypatch.setattr(runner, "monotonic", clock.monotonic)
    seed(engine, tenant, products=30, images_each=1)
    batch_after = runner._batch_after
    batches = 0

    def checkpoint_after_the_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        outcome = batch_after(*args, **kwargs)
        batches += 1
        if batches == 1:
            with engine.connect() as other:
                other.execute(text("CHECKPOINT"))
                other.commit()
        return outcome

    monkeypatch.setattr(runner, "_batch_after", checkpoint_after_the_first)
    limits = HealthLimits(yield_to_forced_checkpoints=yield_to_checkpoints)
    options = RunOptions(batch_size=10, yield_ratio=0, health=limits)
    result = run_tenant(engine, tenant, options, controls=clock)
    assert result.images_inserted == 30
    if yield_to_checkpoints:
        assert result.throttles >= 1
        assert 1.0 in clock.sleeps
    else:
        assert result.throttles == 0
        assert clock.sleeps == []
