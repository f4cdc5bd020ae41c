"""`backfill run` over several tenants: a contracted tenant is skipped, not unfinished, and
one tenant's failure never stops the others (it is reported and the run exits 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from tests.backfill.test_cli import backfill, image_rows, many_products
from tests.backfill.test_contract import ready_tenant


def refuse_image_rows(engine: Engine, tenant: int) -> None:
    """Make every insert into the tenant's product_images fail, as a broken schema would."""
    schema = tenant_schema(tenant)
    with engine.begin() as connection:
        connection.execute(
            text(
                f'CREATE FUNCTION "{schema}".refuse_rows() RETURNS trigger LANGUAGE plpgsql AS '
                "$$ BEGIN RAISE EXCEPTION 'product_images refuses rows in this test'; END $$"
            )
        )
        connection.execute(
            text(
                f'CREATE TRIGGER refuse_rows BEFORE INSERT ON "{schema}".product_images '
                f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_rows()'
            )
        )


def test_a_contracted_tenant_is_skipped_and_the_run_succeeds(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    contracted = ready_tenant(engine, make_tenant, copies=1)
    migrate.contract(engine, tenant_ids=[contracted])
    other = make_tenant()
    many_products(engine, other, 4)

    ran = backfill(
        database_url, "run", "--tenant", str(contracted), "--tenant", str(other), tmp=tmp_path
    )

    assert ran.returncode == 0, ran.stderr
    assert f"tenant {contracted}: contracted" in ran.stderr
    assert "unfinished" not in ran.stderr
    assert image_rows(engine, other) == (20, 20)


def test_one_tenant_failing_does_not_stop_the_next_and_the_run_exits_1(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    broken, after = make_tenant(), make_tenant()  # tenants run in id order: broken first
    many_products(engine, broken, 3)
    many_products(engine, after, 3)
    refuse_image_rows(engine, broken)

    ran = backfill(
        database_url, "run", "--tenant", str(broken), "--tenant", str(after), tmp=tmp_path
    )

    assert ran.returncode == 1, ran.stderr
    assert image_rows(engine, after) == (15, 15), "the next tenant was backfilled"
    assert image_rows(engine, broken) == (0, 0)
    assert f"tenant {broken}: failed" in ran.stderr
    assert "product_images refuses rows in this test" in ran.stderr
    assert "backfill.tenant_failed" in ran.stderr, "a structured event names the tenant"
    assert f"failed tenants: {broken}" in ran.stderr
