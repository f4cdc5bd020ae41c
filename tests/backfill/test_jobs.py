"""Backfill jobs on the real queue: one job per tenant, run by a real worker process; every
tenant job (verify, audit, ...) with its run row: progress, result, pause, resume, cancel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.core.settings import PROJECT_ROOT
from backfill import job_runs
from backfill.enqueue import enqueue_backfills, enqueue_runs
from backfill.jobs import build_app, register_tasks
from backfill.verify import verify_tenant
from tests.backfill.test_cli import image_rows, many_products
from tests.conftest import bearer


@contextmanager
def real_worker(
    database_url: str, data_dir: Path, concurrency: int = 2, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """`python -m backfill worker` on the test database, stopped (SIGTERM) on the way out."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "backfill", "worker", "--concurrency", str(concurrency)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def wait_for_run(
    engine: Engine,
    run_id: int,
    until: Callable[[job_runs.JobRun], bool] = lambda run: not run.is_active,
    seconds: float = 120,
) -> job_runs.JobRun:
    """The run once `until` holds (by default: once it has ended); a bound on a hang only."""
    deadline = time.monotonic() + seconds
    while True:
        run = job_runs.get(engine, run_id)
        assert run is not None
        if until(run) or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def job_statuses(engine: Engine, job_ids: list[int]) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT status FROM procrastinate.procrastinate_jobs WHERE id = ANY(:ids)"),
                {"ids": job_ids},
            ).scalars()
        )


def test_a_worker_runs_one_job_per_tenant_and_a_second_enqueue_is_refused(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenants = [make_tenant(), make_tenant()]
    for tenant in tenants:
        many_products(engine, tenant, 40)
    queue = build_app(database_url)
    register_tasks(queue)

    jobs = enqueue_backfills(tenants, procrastinate_app=queue, engine=engine)
    again = enqueue_backfills(tenants[:1], procrastinate_app=queue, engine=engine)

    assert all(isinstance(job, int) for job in jobs.values())
    assert again == {tenants[0]: None}, "one queued job per tenant (queueing lock)"
    worker = subprocess.Popen(
        [sys.executable, "-m", "backfill", "worker", "--concurrency", "2"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        job_ids = [job for job in jobs.values() if job is not None]
        while time.monotonic() < deadline and set(job_statuses(engine, job_ids)) != {"succeeded"}:
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)

    assert set(job_statuses(engine, job_ids)) == {"succeeded"}
    assert worker.returncode == 0
    for tenant in tenants:
        assert image_rows(engine, tenant) == (200, 200)
        assert verify_tenant(engine, tenant).is_verified


def test_admin_endpoint_queues_jobs_and_shows_the_migration(
    client: TestClient, engine: Engine, tenant: int
) -> None:
    many_products(engine, tenant, 5)
    admin = bearer(None, admin=True)

    queued = client.post("/api/admin/backfill", json={"tenant_ids": [tenant]}, headers=admin)
    again = client.post("/api/admin/backfill", json={"tenant_ids": [tenant]}, headers=admin)
    unknown = client.post("/api/admin/backfill", json={"tenant_ids": [10**15]}, headers=admin)
    forbidden = client.post("/api/admin/backfill", json={}, headers=bearer(tenant))
    state = client.get("/api/admin/migration", headers=admin)

    assert queued.status_code == 202, queued.text
    assert isinstance(queued.json()["jobs"][0]["job_id"], int)
    assert again.json()["jobs"] == [{"tenant_id": tenant, "job_id": None}]
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"][-1] == "tenant_ids"
    assert forbidden.status_code == 403
    mine = next(row for row in state.json() if row["tenant_id"] == tenant)
    assert (mine["products"], mine["jsonb_images"], mine["table_rows"]) == (5, 25, 0)
    assert mine["verified_at"] is None


def test_admin_endpoint_queues_one_enrichment_job_per_tenant(
    client: TestClient, engine: Engine, tenant: int
) -> None:
    admin = bearer(None, admin=True)
    queued = client.post("/api/admin/enrich", json={"tenant_ids": [tenant]}, headers=admin)
    again = client.post("/api/admin/enrich", json={"tenant_ids": [tenant]}, headers=admin)
    forbidden = client.post("/api/admin/enrich", json={}, headers=bearer(tenant))
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["jobs"][0]["job_id"]
    assert isinstance(job_id, int)
    assert again.json()["jobs"] == [{"tenant_id": tenant, "job_id": None}]
    assert forbidden.status_code == 403
    assert job_statuses(engine, [job_id]) == ["todo"]


def test_a_killed_workers_tenant_is_taken_over_and_finished_by_another_worker(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    """The lease drill: kill -9 a worker mid-tenant; after its heartbeat goes stale (30 s),
    the periodic sweeper of the surviving worker requeues the job, which resumes from the
    checkpoint. Takes about a minute (heartbeat timeout plus the sweeper's minute cron)."""
    many_products(engine, tenant, 400, images_each=5)
    queue = build_app(database_url)
    register_tasks(queue)
    job_id = enqueue_backfills(
        [tenant], batch_size=10, max_rate=200.0, procrastinate_app=queue, engine=engine
    )[tenant]
    assert job_id is not None

    def worker() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "backfill", "worker", "--concurrency", "1"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    first = worker()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and image_rows(engine, tenant)[0] < 200:
        time.sleep(0.1)
    first.kill()  # SIGKILL: no chance to finish the batch or release the job
    first.wait(timeout=10)
    stopped_at = image_rows(engine, tenant)[0]
    assert 0 < stopped_at < 2000
    assert job_statuses(engine, [job_id]) == ["doing"], "a dead worker's job stays in doing"

    second = worker()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and image_rows(engine, tenant)[0] < 2000:
            assert second.poll() is None
            time.sleep(0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    assert image_rows(engine, tenant) == (2000, 2000)
    assert verify_tenant(engine, tenant).is_verified
    with engine.connect() as connection:
        runs = connection.execute(
            text(f"SELECT count(*) FROM user_{tenant}.backfill_runs")
        ).scalar_one()
    assert runs == 1, "the second worker resumed the first one's run from its checkpoint"


def test_verify_and_audit_run_as_jobs_with_progress_and_their_results_stored(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant, contracted_like = make_tenant(), make_tenant()
    many_products(engine, tenant, 30)
    queue = build_app(database_url)
    register_tasks(queue)
    backfill = enqueue_runs("backfill", [tenant], procrastinate_app=queue, engine=engine)[tenant]
    assert backfill is not None
    with real_worker(database_url, tmp_path):
        assert wait_for_run(engine, backfill[0]).state == "done"
        verify = enqueue_runs(
            "verify", [tenant], requested_by="me", procrastinate_app=queue, engine=engine
        )
        audit = enqueue_runs("audit", [tenant], procrastinate_app=queue, engine=engine)
        verified = wait_for_run(engine, verify[tenant][0])  # type: ignore[index]
        audited = wait_for_run(engine, audit[tenant][0])  # type: ignore[index]
        uncontract = enqueue_runs(
            "uncontract", [contracted_like], procrastinate_app=queue, engine=engine
        )
        refused = wait_for_run(engine, uncontract[contracted_like][0])  # type: ignore[index]

    finished = wait_for_run(engine, backfill[0])
    assert (finished.done, finished.total, finished.unit) == (30, 30, "products")
    assert verified.state == "done" and verified.requested_by == "me"
    assert verified.result is not None and verified.result["is_verified"] is True
    assert (verified.done, verified.total) == (30, 30)
    assert verify_tenant(engine, tenant).is_verified, "the job recorded the tenant verified"
    assert audited.state == "done" and audited.result is not None
    assert audited.result["products"] == 30 and audited.result["leaking"] == 0
    assert set(audited.result["marketplaces"]) >= {"vinted", "ebay"}
    assert refused.state == "refused", "a guard's no is a refusal, with its reason"
    assert refused.error is not None and "not contracted" in refused.error


def test_a_backfill_run_pauses_resumes_and_cancels_at_the_next_batch(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    many_products(engine, tenant, 400, images_each=2)
    queue = build_app(database_url)
    register_tasks(queue)
    queued = enqueue_runs(
        "backfill", [tenant], procrastinate_app=queue, engine=engine, batch_size=5, max_rate=100.0
    )[tenant]
    assert queued is not None
    run_id = queued[0]
    with real_worker(database_url, tmp_path):
        wait_for_run(engine, run_id, lambda run: run.done > 0)
        job_runs.request(engine, run_id, "pause")
        paused = wait_for_run(engine, run_id, lambda run: run.state == "paused")
        assert paused.state == "paused"
        before = image_rows(engine, tenant)[0]
        time.sleep(2.5)  # not a timing assertion: the run must not move while paused
        assert image_rows(engine, tenant)[0] == before
        job_runs.request(engine, run_id, "resume")
        wait_for_run(engine, run_id, lambda run: run.state == "running" and run.done > paused.done)
        job_runs.request(engine, run_id, "cancel")
        cancelled = wait_for_run(engine, run_id)

    assert cancelled.state == "cancelled"
    assert 0 < image_rows(engine, tenant)[0] < 800, "stopped at a batch, not at the end"
    with engine.connect() as connection:
        status = connection.execute(
            text(f"SELECT status FROM user_{tenant}.backfill_runs ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    assert status == "interrupted", "the run stopped between batches, resumable"


def test_a_queued_run_cancelled_never_starts_and_an_ended_run_takes_no_control(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    many_products(engine, tenant, 10)
    queue = build_app(database_url)
    register_tasks(queue)
    queued = enqueue_runs("backfill", [tenant], procrastinate_app=queue, engine=engine)[tenant]
    assert queued is not None
    job_runs.request(engine, queued[0], "cancel")
    with real_worker(database_url, tmp_path):
        statuses = lambda: job_statuses(engine, [queued[1]])  # noqa: E731
        deadline = time.monotonic() + 60
        while statuses() != ["succeeded"] and time.monotonic() < deadline:
            time.sleep(0.1)
    assert image_rows(engine, tenant) == (0, 0)
    run = job_runs.get(engine, queued[0])
    assert run is not None and run.state == "cancelled"
    for control in ("pause", "resume", "cancel"):
        try:
            job_runs.request(engine, queued[0], control)  # type: ignore[arg-type]
        except job_runs.NotControllable as exc:
            assert "has ended" in str(exc)
        else:
            raise AssertionError(f"{control} of an ended run was taken")
