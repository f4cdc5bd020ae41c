"""Run the multi-tenant Alembic history from code (tenant creation, tests, the demo)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT

# alembic.context is a process-global proxy: two commands in one process must not overlap.
_alembic_lock = threading.Lock()


def alembic_config(engine: Engine | None = None, **attributes: object) -> Config:
    """The repository's alembic.ini, with an engine and run options passed as attributes;
    attribute `section="contract"` selects the contract history."""
    section = str(attributes.pop("section", "alembic"))
    config = Config(str(PROJECT_ROOT / "alembic.ini"), ini_section=section)
    config.attributes.update({"engine": engine, **attributes})
    return config


def upgrade(
    engine: Engine | None,
    *,
    revision: str = "head",
    tenant_ids: Sequence[int] | None = None,
    **options: object,
) -> None:
    """`alembic upgrade`: public, then the given tenants (or all of them)."""
    config = alembic_config(engine, command="upgrade", tenant_ids=tenant_ids, **options)
    with _alembic_lock:
        command.upgrade(config, revision)


def downgrade(
    engine: Engine | None,
    *,
    revision: str,
    tenant_ids: Sequence[int] | None = None,
    **options: object,
) -> None:
    """`alembic downgrade` of tenant schemas (public only with scope="public")."""
    config = alembic_config(engine, command="downgrade", tenant_ids=tenant_ids, **options)
    with _alembic_lock:
        command.downgrade(config, revision)


def contract(engine: Engine | None, *, tenant_ids: Sequence[int] | None, **options: object) -> None:
    """The contract history to head for these tenants (None: every tenant): drop
    products.images behind its guards. Never part of `upgrade`."""
    config = alembic_config(
        engine, section="contract", command="upgrade", tenant_ids=tenant_ids, **options
    )
    with _alembic_lock:
        command.upgrade(config, "head")


def uncontract(
    engine: Engine | None, *, tenant_ids: Sequence[int] | None, **options: object
) -> None:
    """The contract history back to base: re-add products.images, rebuilt from the table."""
    config = alembic_config(
        engine, section="contract", command="downgrade", tenant_ids=tenant_ids, **options
    )
    with _alembic_lock:
        command.downgrade(config, "base")
