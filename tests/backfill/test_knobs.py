"""Knobs turned while a backfill runs (issue 21, item 7): `backfill tune` changes the rate and
the batch size, a run takes them at its next batch, a tenant's own knob wins over the
every-tenant one, and bad values change nothing (exit 2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete

import backfill.runner as runner
from backfill import knobs
from backfill.knobs import KNOBS, InvalidKnob, Knobs, in_force, turn
from backfill.runner import RunOptions, run_tenant
from tests.backfill.test_cli import backfill
from tests.backfill.test_throttles import HandClock, seed


@pytest.fixture(autouse=True)
def no_knobs(engine: Engine) -> Iterator[None]:
    """Knobs are shared by the whole database: each test starts and ends with none."""
    with engine.begin() as connection:
        connection.execute(delete(KNOBS))
    yield
    with engine.begin() as connection:
        connection.execute(delete(KNOBS))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> HandClock:
    hand = HandClock()
    monkeypatch.setattr(runner, "monotonic", hand.monotonic)
    return hand


def after_batch(monkeypatch: pytest.MonkeyPatch, hook: Any) -> list[int]:
    """Run `hook(batch_number)` after each batch; return the sizes of the batches."""
    batch_after = runner._batch_after
    sizes: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        outcome = batch_after(*args, **kwargs)
        if outcome is not None and outcome[0]:
            sizes.append(outcome[0])
            hook(len(sizes))
        return outcome

    monkeypatch.setattr(runner, "_batch_after", wrapped)
    return sizes


def test_a_rate_set_while_a_run_goes_paces_the_rest_of_it(
    engine: Engine, tenant: int, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, products=50, images_each=2)
    marks: dict[int, float] = {}

    def hook(batch: int) -> None:
        if batch == 2:  # 40 images in, unthrottled: then 4 images a second from here
            turn(engine, None, max_rate=4.0, batch_size=None)
            marks["set"] = clock.now

    after_batch(monkeypatch, hook)
    result = run_tenant(engine, tenant, RunOptions(batch_size=10, yield_ratio=0), controls=clock)
    assert result.images_inserted == 100
    # Nothing slept before the knob; the 60 images after it took 60 / 4 = 15 s at least.
    assert clock.now - marks["set"] >= 60 / 4.0 - 1e-6
    assert sum(clock.sleeps) == pytest.approx(clock.now - 1_000.0)


def test_a_batch_size_set_while_a_run_goes_is_taken_at_the_next_batch(
    engine: Engine, tenant: int, clock: HandClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, products=60, images_each=1)

    def hook(batch: int) -> None:
        if batch == 2:
            turn(engine, tenant, max_rate=None, batch_size=3)
        if batch == 5:
            knobs.clear(engine, tenant)

    sizes = after_batch(monkeypatch, hook)
    run_tenant(engine, tenant, RunOptions(batch_size=10, yield_ratio=0), controls=clock)
    assert sizes[:5] == [10, 10, 3, 3, 3]
    assert sizes[5:] == [10, 10, 10, 1]  # cleared: back to the run's own size
    assert sum(sizes) == 60


def test_a_tenants_own_knob_wins_field_by_field(engine: Engine, tenant: int) -> None:
    turn(engine, None, max_rate=100.0, batch_size=50)
    turn(engine, tenant, max_rate=7.0, batch_size=None)
    with engine.connect() as connection:
        assert in_force(connection, tenant) == Knobs(max_rate=7.0, batch_size=50)
        assert in_force(connection, tenant + 10_000) == Knobs(max_rate=100.0, batch_size=50)


@pytest.mark.parametrize(
    ("max_rate", "batch_size", "field"),
    [
        (0.0, None, "max_rate"),
        (float("inf"), None, "max_rate"),
        (float("nan"), None, "max_rate"),
        (None, 0, "batch_size"),
        (None, 100_001, "batch_size"),
    ],
)
def test_unusable_values_are_refused(
    engine: Engine, max_rate: float | None, batch_size: int | None, field: str
) -> None:
    with pytest.raises(InvalidKnob) as refused:
        turn(engine, None, max_rate=max_rate, batch_size=batch_size)
    assert refused.value.field == field
    assert knobs.listed(engine) == []


def test_the_tune_command_sets_lists_and_clears(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    turned = backfill(database_url, "tune", "--max-rate", "250", tmp=tmp_path)
    assert turned.returncode == 0, turned.stderr
    assert "all" in turned.stdout and "250" in turned.stdout
    own = backfill(
        database_url, "tune", "--tenant", str(tenant), "--batch-size", "40", tmp=tmp_path
    )
    assert own.returncode == 0, own.stderr
    assert [(r.scope, r.max_rate, r.batch_size) for r in knobs.listed(engine)] == [
        ("all", 250.0, None),
        (str(tenant), None, 40),
    ]
    for bad in (
        ["--max-rate", "inf"],
        ["--max-rate", "0"],
        ["--batch-size", "0"],
        ["--clear", "--max-rate", "5"],
        ["--tenant", "999999", "--max-rate", "5"],
    ):
        refused = backfill(database_url, "tune", *bad, tmp=tmp_path)
        assert refused.returncode == 2, (bad, refused.stdout, refused.stderr)
    assert len(knobs.listed(engine)) == 2
    cleared = backfill(database_url, "tune", "--clear", tmp=tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert [r.scope for r in knobs.listed(engine)] == [str(tenant)]
