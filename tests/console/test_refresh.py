"""The console's stale-while-revalidate value: views never wait on a refresh once there is
a value, one refresh runs at a time, slow refreshes run less often, a failure keeps the
last figures, and a patch after an action is not undone by an older refresh. A fake clock
and events make every step deterministic (no sleeps, no timed assertions)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.console.refresh import Refreshing
from app.console.state import TenantRow, replaced
from backfill.status import TenantStatus
from flags.stages import Flags, resolve

HANG = 30.0  # a bound on a hang, never reached when the code is right


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Computes 1, 2, 3, ...; `hold()` makes the next computations wait for `release()`."""

    def __init__(self, clock: Clock, cost: float = 0.0) -> None:
        self.clock = clock
        self.cost = cost
        self.calls = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def hold(self) -> None:
        self.gate.clear()
        self.started.clear()

    def release(self) -> None:
        self.gate.set()

    def __call__(self) -> int:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(HANG)
        self.clock.now += self.cost
        if self.fail is not None:
            raise self.fail
        return self.calls


def make(cost: float = 0.0) -> tuple[Refreshing[int], Source, Clock]:
    clock = Clock()
    source = Source(clock, cost)
    return Refreshing(source, name="test", min_age=1.0, clock=clock), source, clock


def hold_a_refresh(value: Refreshing[int], source: Source, clock: Clock) -> None:
    """A value, then a stale view whose background refresh is held once it has begun."""
    value.get()
    clock.now += 2
    source.hold()
    value.get()
    assert source.started.wait(HANG)


def test_first_view_computes_then_views_are_served_from_memory() -> None:
    value, source, clock = make()
    assert value.get() == 1
    clock.now += 0.5
    assert value.get() == 1 and source.calls == 1
    assert value.age() == 0.5


def test_a_stale_view_is_answered_at_once_and_refreshes_in_the_background() -> None:
    value, source, clock = make()
    value.get()
    clock.now += 2
    source.hold()
    assert value.get() == 1, "answered while the refresh is held"
    assert source.started.wait(HANG)
    assert value.get() == 1 and source.calls == 2, "one refresh at a time"
    source.release()
    value.wait()
    assert value.get() == 2 and value.age() == 0.0


def test_a_slow_refresh_runs_less_often() -> None:
    value, source, clock = make(cost=10.0)  # each computation takes 10 (fake) seconds
    value.get()
    clock.now += 20  # older than min_age but not than 5 x 10 s
    value.get()
    value.wait()
    assert source.calls == 1
    clock.now += 31
    value.get()
    value.wait()
    assert source.calls == 2 and value.get() == 2


def test_a_failed_refresh_keeps_the_last_value_and_says_why() -> None:
    value, source, clock = make()
    value.get()
    clock.now += 2
    source.fail = RuntimeError("connection refused")
    value.get()
    value.wait()
    assert value.get() == 1
    assert value.error == "RuntimeError: connection refused"
    assert value.age() == 2, "the age of the figures shown, not of the failed attempt"
    clock.now += 0.5
    value.get()
    value.wait()
    assert source.calls == 2, "no retry in a tight loop"
    source.fail = None
    clock.now += 1
    value.get()
    value.wait()
    assert value.get() == 3 and value.error is None


def test_a_patch_shows_at_once_and_again_on_top_of_the_refresh_in_flight() -> None:
    value, source, clock = make()
    hold_a_refresh(value, source, clock)
    value.update(lambda v: v + 100, value.now())  # an action's figures, read after it began
    assert value.get() == 101, "at once"
    source.release()
    value.wait()
    assert value.get() == 102, "the refresh's figures, with the patch on top"
    value.wait()
    assert source.calls == 2, "the refresh counted: no second one right behind it"


def test_a_patch_read_before_the_refresh_began_is_not_put_back_on_top_of_it() -> None:
    value, source, clock = make()
    value.get()
    clock.now += 2
    read_at = value.now()  # an action starts reading its tenant's figures...
    clock.now += 1
    source.hold()
    value.get()  # ...a refresh begins reading after it...
    assert source.started.wait(HANG)
    value.update(lambda v: v + 100, read_at)  # ...and the action's patch lands meanwhile
    assert value.get() == 101, "newer than the value served: applied"
    source.release()
    value.wait()
    assert value.get() == 2, "older than the refresh: not replayed over its figures"


def test_a_patch_older_than_the_value_is_not_applied() -> None:
    value, _source, clock = make()
    read_at = value.now()
    clock.now += 1
    value.get()
    value.update(lambda v: v + 100, read_at)
    assert value.get() == 1


def test_a_patch_during_the_first_computation_is_kept() -> None:
    value, source, _clock = make()
    source.hold()
    assert value.peek() is None
    assert source.started.wait(HANG)
    value.update(lambda v: v + 100, value.now())
    source.release()
    value.wait()
    assert value.peek() == 101


def test_invalidate_drops_a_refresh_in_flight() -> None:
    value, source, clock = make()
    hold_a_refresh(value, source, clock)
    value.invalidate()
    source.release()
    value.wait()
    assert value.get() == 3, "read again, not the refresh that began before"


def test_a_failing_first_count_is_tried_again_when_stale_not_on_every_view() -> None:
    value, source, clock = make()
    source.fail = RuntimeError("column images does not exist")
    assert value.peek() is None
    value.wait()
    for _ in range(5):
        assert value.peek() is None
        value.wait()
    assert source.calls == 1 and value.error is not None
    clock.now += 2
    source.fail = None
    value.peek()
    value.wait()
    assert value.peek() == 2 and value.error is None


def test_invalidate_makes_the_next_view_compute() -> None:
    value, source, _clock = make()
    value.get()
    value.invalidate()
    assert value.get() == 2 and source.calls == 2


def test_a_first_view_waits_for_the_computation_and_propagates_its_error() -> None:
    value, source, _clock = make()
    source.fail = RuntimeError("down")
    with pytest.raises(RuntimeError, match="down"):
        value.get()
    source.fail = None
    assert value.get() == 2


def row(tenant: int, products: int) -> TenantRow:
    status = TenantStatus(tenant, products, 0, 0, 0, 0, None, None, None, None)
    return TenantRow(status, resolve(status.facts, Flags()), Flags())


@given(
    st.sets(st.integers(1, 30)),
    st.sets(st.integers(1, 30)),
    st.sets(st.integers(1, 30)),
)
def test_replaced_swaps_exactly_the_tenants_asked_for(
    listed: set[int], asked: set[int], still_there: set[int]
) -> None:
    fresh_ids = asked & still_there
    rows = [row(t, 1) for t in sorted(listed)]
    fresh = [row(t, 2) for t in sorted(fresh_ids)]
    result = replaced(rows, fresh, sorted(asked))
    assert [r.tenant_id for r in result] == sorted((listed - asked) | fresh_ids)
    for r in result:
        assert r.status.products == (2 if r.tenant_id in asked else 1)


def test_peek_never_waits_and_shows_the_value_once_computed() -> None:
    value, source, clock = make()
    source.hold()
    assert value.peek() is None, "the first computation runs in the background"
    assert source.started.wait(HANG)
    assert value.peek() is None and source.calls == 1
    source.release()
    value.wait()
    assert value.peek() == 1
    clock.now += 2
    assert value.peek() == 1, "stale: the old value, and a refresh behind it"
    value.wait()
    assert value.peek() == 2
