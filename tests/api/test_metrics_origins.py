"""Image reads by origin through the API: each read is timed and counted under the path its
tenant's stage chose (jsonb, table, shadow), on /metrics (no tenant label) and per tenant in
the store the console reads; failed reads are counted as errors, an unknown product is not;
under multiprocess mode /metrics adds up every process's figures, and `serve --workers 2`
gives them a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from app.cli import cli
from app.core.read_origins import ReadOrigin
from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from app.services.read_origins import origin_stats
from tests.api.test_read_switch import LEGACY, migrated_tenant
from tests.api.test_shadow_reads import sql
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"


def sample(client: TestClient, name: str) -> float:
    """One sample's value on /metrics (0 when absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def read_figures(client: TestClient, origin: str) -> tuple[float, float, float]:
    """Reads, their latency sum and errors of an origin on /metrics."""
    return (
        sample(client, f'product_images_read_seconds_count{{origin="{origin}"}}'),
        sample(client, f'product_images_read_seconds_sum{{origin="{origin}"}}'),
        sample(client, f'product_images_read_errors_total{{origin="{origin}"}}'),
    )


@pytest.fixture
def app_for(settings: Settings, engine: Engine, tmp_path: Path) -> Callable[..., TestClient]:
    def build(*, read_table: list[int] = [], shadow: list[int] = []) -> TestClient:  # noqa: B006
        toggles = tmp_path / "toggles.json"
        write_toggles(
            toggles, [str(t) for t in read_table], shadow_tenants=[str(t) for t in shadow]
        )
        app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)
        return TestClient(app, raise_server_exceptions=False)

    return build


def test_reads_of_each_origin_are_counted_and_timed_on_metrics_and_per_tenant(
    engine: Engine, make_tenant: Callable[[], int], app_for: Callable[..., TestClient]
) -> None:
    on_jsonb = make_tenant()
    jsonb_product = insert_legacy_product(engine, on_jsonb, LEGACY)
    on_table, table_product = migrated_tenant(engine, make_tenant, verify=True)
    in_shadow, shadow_product = migrated_tenant(engine, make_tenant, verify=True)
    reads = {
        "jsonb": (on_jsonb, jsonb_product, 1),
        "table": (on_table, table_product, 2),
        "shadow": (in_shadow, shadow_product, 3),
    }

    with app_for(read_table=[on_table], shadow=[in_shadow]) as client:
        before = {origin: read_figures(client, origin) for origin in reads}
        for tenant, product, times in reads.values():
            for _ in range(times):
                response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
                assert response.status_code == 200, response.text
        after = {origin: read_figures(client, origin) for origin in reads}
        assert "tenant=" not in client.get("/metrics").text, "no tenant label on /metrics"

    for origin, (tenant, _product, times) in reads.items():
        (count, seconds, errors), (count0, seconds0, errors0) = after[origin], before[origin]
        assert (count - count0, errors - errors0) == (times, 0), origin
        assert seconds > seconds0, f"{origin}: the reads were timed"
        # Written by the app's shutdown (the recorder's last flush).
        (summary,) = origin_stats(engine, tenant)
        assert (summary.origin, summary.reads, summary.errors) == (ReadOrigin(origin), times, 0)
        assert summary.mean_seconds > 0


def test_a_failed_read_is_an_error_of_its_origin_and_an_unknown_product_is_not(
    engine: Engine, make_tenant: Callable[[], int], app_for: Callable[..., TestClient]
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    with app_for(read_table=[tenant]) as client:
        reads, _, errors = read_figures(client, "table")
        missing = client.get(f"/api/products/{product + 1000}/images", headers=bearer(tenant))
        assert missing.status_code == 404
        assert read_figures(client, "table")[::2] == (reads + 1, errors)
        # A fault on the table's side: its rows cannot be read any more.
        sql(engine, tenant, "ALTER TABLE product_images RENAME COLUMN alt_text TO alt_text_gone")
        try:
            failed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
        finally:
            sql(
                engine, tenant, "ALTER TABLE product_images RENAME COLUMN alt_text_gone TO alt_text"
            )
        assert failed.status_code == 500
        assert read_figures(client, "table")[::2] == (reads + 2, errors + 1)

    (summary,) = origin_stats(engine, tenant)
    assert (summary.origin, summary.reads, summary.errors) == (ReadOrigin.TABLE, 2, 1)
    assert summary.error_rate == 0.5


WORKER = """
import sys
from app.core.metrics import IMAGE_READ_ERRORS, IMAGE_READ_SECONDS
reads, errors = int(sys.argv[1]), int(sys.argv[2])
for _ in range(reads):
    IMAGE_READ_SECONDS.labels(origin="shadow").observe(0.01)
IMAGE_READ_ERRORS.labels(origin="shadow").inc(errors)
"""


def run_worker(directory: Path, reads: int, errors: int) -> None:
    subprocess.run(
        [sys.executable, "-c", WORKER, str(reads), str(errors)],
        cwd=PROJECT_ROOT,
        env={**os.environ, MULTIPROC: str(directory)},
        check=True,
        timeout=60,
    )


def test_metrics_adds_up_every_process_under_multiprocess_mode(
    app_for: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    run_worker(directory, reads=2, errors=1)
    run_worker(directory, reads=3, errors=1)
    monkeypatch.setenv(MULTIPROC, str(directory))

    with app_for() as client:
        count, seconds, errors = read_figures(client, "shadow")

    assert (count, errors) == (5, 2), "both processes' reads"
    assert seconds == pytest.approx(0.05)


@pytest.fixture
def served_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """What PROMETHEUS_MULTIPROC_DIR was while `serve` ran uvicorn (which is not started)."""
    seen: list[str | None] = []

    def run(*_args: object, **_kwargs: object) -> None:
        directory = os.environ.get(MULTIPROC)
        seen.append(directory)
        if directory is not None:
            seen.extend(sorted(p.name for p in Path(directory).iterdir()))

    monkeypatch.delenv(MULTIPROC, raising=False)  # and put back as it was afterwards
    monkeypatch.setattr(uvicorn, "run", run)
    yield seen


def test_serve_with_two_workers_gives_them_a_fresh_metrics_directory(
    served_env: list[str | None],
) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "2"])

    assert result.exit_code == 0, result.output
    (directory,) = served_env  # set, and empty
    assert directory is not None and "pim-metrics-" in directory
    assert not Path(directory).exists(), "removed when the server stops"
    assert MULTIPROC not in os.environ, "and no longer named: nothing started later inherits it"


def test_serve_empties_a_given_metrics_directory_and_one_worker_needs_none(
    served_env: list[str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CliRunner().invoke(cli, ["serve"]).exit_code == 0
    assert served_env == [None], "one worker: its own registry"

    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_4242.db").write_bytes(b"a previous run's")
    (given / "README").write_text("kept")
    monkeypatch.setenv(MULTIPROC, str(given))
    assert CliRunner().invoke(cli, ["serve"]).exit_code == 0
    assert served_env[1:] == [str(given), "README"]
