"""Backfill jobs on the real queue: one job per tenant, run by a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.core.settings import PROJECT_ROOT
from backfill.jobs import build_app, enqueue_backfills, register_tasks
from backfill.verify import verify_tenant
from tests.backfill.test_cli import image_rows, many_products
from tests.conftest import bearer


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

    jobs = enqueue_backfills(tenants, procrastinate_app=queue)
    again = enqueue_backfills(tenants[:1], procrastinate_app=queue)

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
    job_id = enqueue_backfills([tenant], batch_size=10, max_rate=200.0, procrastinate_app=queue)[
        tenant
    ]
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
