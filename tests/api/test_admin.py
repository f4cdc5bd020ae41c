"""The admin API refuses what it cannot honour, by field, queuing nothing: a non-finite or
negative `max_rate`, and an empty or missing tenant list (every tenant takes `all: true`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from tests.conftest import bearer

ADMIN = bearer(None, admin=True)
ENDPOINTS = ["/api/admin/backfill", "/api/admin/enrich"]


def queued_jobs(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM procrastinate.procrastinate_jobs")
            ).scalar_one()
        )


@pytest.fixture
def forget_jobs(engine: Engine) -> Iterator[list[int]]:
    """Job ids a test queued, deleted after it (they would hold their tenants' queue locks)."""
    ids: list[int] = []
    yield ids
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL search_path TO procrastinate"))
        connection.execute(
            text("DELETE FROM procrastinate.procrastinate_jobs WHERE id = ANY(:ids)"), {"ids": ids}
        )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "raw", [b'"Infinity"', b'"-Infinity"', b'"NaN"', b"Infinity", b"NaN", b"1e400", b"-1", b"0"]
)
def test_a_max_rate_that_is_not_a_finite_rate_is_a_422_naming_it(
    client: TestClient, engine: Engine, tenant: int, endpoint: str, raw: bytes
) -> None:
    before = queued_jobs(engine)
    body = b'{"tenant_ids": [%d], "max_rate": %s}' % (tenant, raw)
    response = client.post(
        endpoint, content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "max_rate"]
    assert queued_jobs(engine) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        {"tenant_ids": []},
        {},
        {"tenant_ids": None},
        {"all": False},
        {"all": True, "tenant_ids": [1]},
    ],
)
def test_every_tenant_takes_an_explicit_all_and_anything_else_is_a_422_naming_tenant_ids(
    client: TestClient, engine: Engine, endpoint: str, body: dict[str, object]
) -> None:
    before = queued_jobs(engine)
    response = client.post(endpoint, json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "tenant_ids"] and "all" in error["msg"]
    assert queued_jobs(engine) == before


def test_all_true_queues_one_backfill_per_tenant(
    client: TestClient, tenant: int, forget_jobs: list[int]
) -> None:
    response = client.post(
        "/api/admin/backfill", json={"all": True, "dry_run": True}, headers=ADMIN
    )
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    forget_jobs.extend(job["job_id"] for job in jobs if job["job_id"] is not None)
    assert tenant in {job["tenant_id"] for job in jobs}
