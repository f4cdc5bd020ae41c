"""The job queue's plumbing: procrastinate's app on the project's database (its tables in the
`procrastinate` schema), the queues' names, and what a worker process builds once (its
engine, its services, the pause toggle). The tasks are backfill/jobs.py; deferring them,
backfill/enqueue.py; a job's run row while it works, backfill/job_tracking.py."""

from __future__ import annotations

from functools import lru_cache

from procrastinate import App, PsycopgConnector
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.composition import Services, build
from app.core.database import make_engine, resolve_database_url
from app.core.settings import get_settings
from backfill.controls import PauseToggle

BACKFILL_QUEUE = "backfill"
MAINTENANCE_QUEUE = "maintenance"
STALLED_AFTER_SECONDS = 30


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy psycopg URL as a plain libpq URI."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def build_app(database_url: str | None = None) -> App:
    """The procrastinate app; its tables live in the `procrastinate` schema."""
    url = database_url or resolve_database_url(get_settings())
    connector = PsycopgConnector(
        conninfo=libpq_url(url), kwargs={"options": "-c search_path=procrastinate"}
    )
    return App(connector=connector)


@lru_cache(maxsize=1)
def worker_services() -> Services:
    """The worker process's services (app/composition.py), built on first use."""
    return build(get_settings(), worker_engine())


def worker_pause() -> PauseToggle:
    """The backfill-pause toggle, read through the worker's flags client."""
    return PauseToggle(worker_services().flags)


@lru_cache(maxsize=1)
def worker_engine() -> Engine:
    """The worker process's engine (a small pool: jobs run in a few threads)."""
    return make_engine(resolve_database_url(get_settings()), pool_size=4)
