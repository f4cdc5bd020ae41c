"""Per-tenant reads by origin in `public.read_origin_stats`: the tallies of several processes
(or of one process and its restart) add up, the hour window reads and prunes, a failed write
keeps its tallies, and the console's fragment shows the summary."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError

from app.core.database import make_engine
from app.core.read_origins import LATENCY_BOUNDS, OriginSummary, ReadOrigin
from app.core.security import now_utc
from app.core.settings import PROJECT_ROOT
from app.services.read_origins import ReadOriginRecorder, minute_of, origin_stats

NOW = minute_of(now_utc()) + timedelta(seconds=30)


@pytest.fixture
def tenant_id() -> int:
    """A tenant id of this test's own (the table is public and keyed by id only)."""
    return 10**12 + uuid.uuid4().int % 10**12


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def stored_minutes(engine: Engine, tenant_id: int) -> list[datetime]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT minute FROM public.read_origin_stats WHERE tenant_id = :t"),
                {"t": tenant_id},
            ).scalars()
        )


def test_two_processes_tallies_of_one_minute_add_up(engine: Engine, tenant_id: int) -> None:
    first = ReadOriginRecorder(engine, clock=at(NOW))
    second = ReadOriginRecorder(engine, clock=at(NOW))  # another worker, or after a restart
    first.record(tenant_id, ReadOrigin.JSONB, 0.003, failed=False)
    first.record(tenant_id, ReadOrigin.JSONB, 0.2, failed=True)
    second.record(tenant_id, ReadOrigin.JSONB, 0.004, failed=False)
    second.record(tenant_id, ReadOrigin.TABLE, 0.02, failed=False)
    first.close()
    second.close()

    jsonb, table = origin_stats(engine, tenant_id, now=NOW)

    assert (jsonb.origin, jsonb.reads, jsonb.errors) == (ReadOrigin.JSONB, 3, 1)
    assert jsonb.mean_seconds == pytest.approx(0.207 / 3)
    assert jsonb.p50 <= LATENCY_BOUNDS[0] < jsonb.p99  # two fast reads, one slow
    assert (table.origin, table.reads, table.errors) == (ReadOrigin.TABLE, 1, 0)
    assert stored_minutes(engine, tenant_id) == [minute_of(NOW)] * 2, "a row per origin"


def test_reads_older_than_the_hour_are_left_out_then_pruned(engine: Engine, tenant_id: int) -> None:
    old = NOW - timedelta(minutes=61)
    earlier = ReadOriginRecorder(engine, clock=at(old))
    earlier.record(tenant_id, ReadOrigin.SHADOW, 0.01, failed=False)
    earlier.close()
    assert [s.reads for s in origin_stats(engine, tenant_id, since=timedelta(hours=2), now=NOW)]
    assert origin_stats(engine, tenant_id, now=NOW) == (), "outside the last hour"

    later = ReadOriginRecorder(engine, clock=at(NOW))
    later.record(tenant_id, ReadOrigin.TABLE, 0.01, failed=False)
    later.close()

    assert stored_minutes(engine, tenant_id) == [minute_of(NOW)], "the old minute was deleted"
    (summary,) = origin_stats(engine, tenant_id, since=timedelta(hours=2), now=NOW)
    assert summary.origin is ReadOrigin.TABLE


def test_a_failed_write_keeps_its_tallies_for_the_next(database_url: str, tenant_id: int) -> None:
    engine = make_engine(database_url, pool_size=1)
    failures = [OperationalError("INSERT", {}, Exception("database down"))]

    @event.listens_for(engine, "before_cursor_execute")
    def fail_once(*_args: Any) -> None:
        if failures:
            raise failures.pop()

    try:
        recorder = ReadOriginRecorder(engine, clock=at(NOW))
        recorder.record(tenant_id, ReadOrigin.JSONB, 0.01, failed=False)
        recorder.flush()
        assert stored_minutes(engine, tenant_id) == [], "the first write failed"
        recorder.record(tenant_id, ReadOrigin.JSONB, 0.01, failed=False)
        recorder.close()
        (summary,) = origin_stats(engine, tenant_id, now=NOW)
        assert summary.reads == 2
    finally:
        engine.dispose()


def test_the_recorder_writes_in_the_background(engine: Engine, tenant_id: int) -> None:
    recorder = ReadOriginRecorder(engine, flush_seconds=0.05)
    try:
        recorder.record(tenant_id, ReadOrigin.TABLE, 0.01, failed=False)
        deadline = time.monotonic() + 30  # a bound for a stuck thread, not a timing claim
        while not stored_minutes(engine, tenant_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_minutes(engine, tenant_id), "no write without close or flush"
    finally:
        recorder.close()


def render_origins(origins: tuple[OriginSummary, ...]) -> str:
    templates = Path(PROJECT_ROOT / "app" / "console" / "templates")
    environment = Environment(
        loader=FileSystemLoader(templates), autoescape=select_autoescape(["html"])
    )
    return environment.get_template("_origins.html").render(origins=origins)


def test_the_console_fragment_shows_each_origin_s_figures() -> None:
    html = render_origins(
        (OriginSummary(ReadOrigin.TABLE, 1200, 3, 0.012, p50=0.008, p95=0.04, p99=0.2),)
    )
    assert 'id="origin-table"' in html
    assert "1,200" in html and "0.25%" in html
    assert "8.0 ms" in html and "40.0 ms" in html and "200.0 ms" in html
    assert "No image reads" in render_origins(())
