"""The way back from the contract without holding the tenant: while the uncontract rebuilds
the JSONB, reads are not blocked and still come from the table, writes land in the JSONB it
gives back, and an interrupted run resumes where it stopped.

The uncontract is held or broken at one product by a trigger the test puts on `products`
(it fires when the rebuild writes that product's row, whatever the rebuild's code looks
like), so the tests say what happens in the middle of the rebuild, not how it is coded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.core.settings import Settings
from app.main import create_app
from backfill import contract as steps
from backfill import uncontract as uncontract_steps
from backfill.tenants import is_contracted
from backfill.verify import verify_tenant
from migrations.tenancy import TenantMigrationFailed
from tests.backfill.test_contract import jsonb_by_product, ready_tenant
from tests.backfill.test_runner import BASE
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import assert_representations_equal, jsonb_elements

PAUSE_KEY = 21_005  # the advisory lock the test holds while the rebuild waits at its product


def schema_of(tenant: int) -> str:
    return f'"{tenant_schema(tenant)}"'


def product_ids(engine: Engine, tenant: int) -> list[int]:
    with engine.connect() as connection:
        return [
            int(i)
            for i in connection.execute(
                text(f"SELECT id FROM {schema_of(tenant)}.products ORDER BY id")
            ).scalars()
        ]


def on_rebuilding(engine: Engine, tenant: int, product: int, body: str) -> None:
    """A BEFORE UPDATE trigger on the tenant's products that runs `body` (plpgsql) when
    `product`'s row is written."""
    schema = schema_of(tenant)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE FUNCTION {schema}.test_at_product() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = {int(product)} THEN {body} END IF; "
                "RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                f"CREATE TRIGGER test_at_product BEFORE UPDATE ON {schema}.products "
                f"FOR EACH ROW EXECUTE FUNCTION {schema}.test_at_product()"
            )
        )


def remove_trigger(engine: Engine, tenant: int) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"DROP FUNCTION {schema_of(tenant)}.test_at_product() CASCADE"))


class Uncontract(threading.Thread):
    """`migrate.uncontract` in a thread of its own, keeping what it raised."""

    def __init__(self, engine: Engine, tenant: int) -> None:
        super().__init__()
        self.engine, self.tenant = engine, tenant
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            migrate.uncontract(self.engine, tenant_ids=[self.tenant])
        except BaseException as exc:
            self.failure = exc


@contextmanager
def held_at(engine: Engine, tenant: int, product: int) -> Iterator[Uncontract]:
    """An uncontract running in a thread, held while it writes `product`'s row (the rest of
    that product's batch locked with it); released, and finished, when the block ends."""
    on_rebuilding(engine, tenant, product, f"PERFORM pg_advisory_xact_lock_shared({PAUSE_KEY});")
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PAUSE_KEY})
        holder.commit()
        running = Uncontract(engine, tenant)
        running.start()
        try:
            wait_until_held(engine, running)
            yield running
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PAUSE_KEY})
            holder.commit()
            running.join()
    remove_trigger(engine, tenant)


def wait_until_held(engine: Engine, running: Uncontract, bound: float = 60.0) -> None:
    """Until the uncontract waits on the test's advisory lock (a bound on a hang, not a
    timing assertion)."""
    deadline = time.monotonic() + bound
    with engine.connect() as watcher:
        while time.monotonic() < deadline and running.is_alive():
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                )
            ).scalar_one()
            watcher.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError(f"the uncontract never reached the held product ({running.failure!r})")


def read_without_waiting(engine: Engine, tenant: int, product: int) -> int:
    """What a request's read takes (products' ACCESS SHARE, the product's row, its rows),
    refusing to wait for any lock: LockNotAvailable if the tenant is held."""
    schema = schema_of(tenant)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '200ms'"))
        connection.execute(text("SET LOCAL statement_timeout = '10s'"))
        connection.execute(
            text(f"SELECT title FROM {schema}.products WHERE id = :id"), {"id": product}
        ).one()
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {schema}.product_images WHERE product_id = :id"),
                {"id": product},
            ).scalar_one()
        )


@pytest.fixture
def client(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    """The API with no read-table flag: a contracted tenant reads the table, the others the
    JSONB."""
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])
    with TestClient(create_app(settings.model_copy(update={"flags_file": toggles}), engine)) as c:
        yield c


def urls(client: TestClient, tenant: int, product: int) -> tuple[str, list[str]]:
    listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
    assert listed.status_code == 200, listed.text
    return listed.headers["x-images-read-path"], [i["url"] for i in listed.json()["images"]]


def add(client: TestClient, tenant: int, product: int, name: str) -> str:
    url = f"{BASE}/{name}.jpg"
    added = client.post(
        f"/api/products/{product}/images", json={"url": url}, headers=bearer(tenant)
    )
    assert added.status_code == 201, added.text
    return url


def contracted_tenant(
    engine: Engine, make_tenant: Callable[[], int], copies: int
) -> tuple[int, dict[int, object]]:
    """A tenant contracted, and every product's JSONB before the contract."""
    tenant = ready_tenant(engine, make_tenant, copies=copies)
    before = jsonb_by_product(engine, tenant)
    migrate.contract(engine, tenant_ids=[tenant])
    assert is_contracted(engine, tenant)
    return tenant, before


def test_a_read_during_the_rebuild_waits_for_no_lock_and_still_comes_from_the_table(
    engine: Engine,
    make_tenant: Callable[[], int],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uncontract_steps, "BATCH", 2)
    tenant, before = contracted_tenant(engine, make_tenant, copies=2)
    products = sorted(before)
    held = products[len(products) // 2]

    with held_at(engine, tenant, held):
        # The held product's row is locked by its batch: a read of it does not wait either.
        for product in (products[0], held, products[-1]):
            read_without_waiting(engine, tenant, product)
            path, _ = urls(client, tenant, product)
            assert path == "table", "the JSONB is not read before the rebuild is complete"
        assert is_contracted(engine, tenant), "contracted for everyone until the switch"

    assert not is_contracted(engine, tenant)
    assert jsonb_by_product(engine, tenant) == before
    assert verify_tenant(engine, tenant).is_verified
    assert steps.backup_tenant(engine, tenant).products == len(products), "backups work again"


def test_writes_during_the_rebuild_land_in_the_jsonb_it_gives_back(
    engine: Engine,
    make_tenant: Callable[[], int],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uncontract_steps, "BATCH", 2)
    tenant, _ = contracted_tenant(engine, make_tenant, copies=3)
    products = product_ids(engine, tenant)
    middle = len(products) // 2 // 2 * 2  # the first product of a batch of 2
    held, same_batch = products[middle], products[middle + 1]
    filled, not_yet, deleted_from = products[0], products[-1], products[1]
    expected: dict[int, list[str]] = {}
    hammered = products[-2]
    acknowledged: list[str] = []
    done = threading.Event()

    def hammer() -> None:  # writes through the rest of the rebuild and the switch
        step = 0
        while not done.is_set():
            step += 1
            acknowledged.append(add(client, tenant, hammered, f"hammer-{step}"))

    blocked_write: list[str] = []
    writer = threading.Thread(
        target=lambda: blocked_write.append(add(client, tenant, same_batch, "waits-for-batch"))
    )
    with held_at(engine, tenant, held) as running:
        read_without_waiting(engine, tenant, filled)
        for product in (filled, not_yet):
            add(client, tenant, product, f"during-{product}")
        first = client.get(f"/api/products/{deleted_from}/images", headers=bearer(tenant))
        gone = first.json()["images"][0]["id"]
        removed = client.delete(
            f"/api/products/{deleted_from}/images/{gone}", headers=bearer(tenant)
        )
        assert removed.status_code == 204, removed.text
        created = client.post(
            "/api/products", json={"title": "New", "price": "10"}, headers=bearer(tenant)
        )
        assert created.status_code == 201, created.text
        new_product = int(created.json()["id"])
        add(client, tenant, new_product, "first-of-new")
        for product in (filled, not_yet, deleted_from, new_product):
            path, expected[product] = urls(client, tenant, product)
            assert path == "table"
        writer.start()  # the held batch has this product locked: the write waits for it
        thread = threading.Thread(target=hammer)
        thread.start()
    assert running.failure is None, running.failure
    writer.join()
    done.set()
    thread.join()

    assert not is_contracted(engine, tenant)
    for product in (*products, new_product):
        assert_representations_equal(engine, tenant, product)
    for product, listed in expected.items():
        assert [e["url"] for e in jsonb_elements(engine, tenant, product)] == listed
    in_jsonb = [e["url"] for e in jsonb_elements(engine, tenant, same_batch)]
    assert blocked_write and blocked_write[0] in in_jsonb
    assert set(acknowledged) <= {e["url"] for e in jsonb_elements(engine, tenant, hammered)}
    assert verify_tenant(engine, tenant).is_verified


def count_row_writes(engine: Engine, tenant: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT last_value FROM {schema_of(tenant)}.test_row_writes")
            ).scalar_one()
        )


def test_an_interrupted_uncontract_resumes_where_it_stopped(
    engine: Engine,
    make_tenant: Callable[[], int],
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uncontract_steps, "BATCH", 2)
    tenant, _ = contracted_tenant(engine, make_tenant, copies=3)
    products = product_ids(engine, tenant)
    broken = products[-3]  # near the end: most of the rebuild is done when it breaks
    schema = schema_of(tenant)
    with engine.begin() as connection:  # counts every write of a product row (not rolled back)
        connection.execute(text(f"CREATE SEQUENCE {schema}.test_row_writes"))
        connection.execute(
            text(
                f"CREATE FUNCTION {schema}.test_count() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM nextval('{schema}.test_row_writes'); RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                f"CREATE TRIGGER test_count BEFORE UPDATE ON {schema}.products "
                f"FOR EACH ROW EXECUTE FUNCTION {schema}.test_count()"
            )
        )
    on_rebuilding(engine, tenant, broken, "RAISE EXCEPTION 'interrupted by the test';")

    with pytest.raises(TenantMigrationFailed, match="interrupted by the test"):
        migrate.uncontract(engine, tenant_ids=[tenant], lock_retries=0)
    remove_trigger(engine, tenant)

    # Interrupted: still contracted for everyone, served and written through the table.
    assert is_contracted(engine, tenant)
    written = add(client, tenant, products[0], "while-interrupted")
    path, _ = urls(client, tenant, products[0])
    assert path == "table"

    writes_before_rerun = count_row_writes(engine, tenant)
    migrate.uncontract(engine, tenant_ids=[tenant])
    rebuilt_by_rerun = count_row_writes(engine, tenant) - writes_before_rerun
    left_when_broken = len([p for p in products if p >= broken])
    assert rebuilt_by_rerun <= left_when_broken + 2, (
        f"the rerun rebuilt {rebuilt_by_rerun} of {len(products)} products: it started over"
    )

    assert not is_contracted(engine, tenant)
    for product in products:
        assert_representations_equal(engine, tenant, product)
    assert written in [e["url"] for e in jsonb_elements(engine, tenant, products[0])]
    assert verify_tenant(engine, tenant).is_verified
    # And the round trip works again from there: contract, then uncontract.
    again = jsonb_by_product(engine, tenant)
    migrate.contract(engine, tenant_ids=[tenant])
    assert is_contracted(engine, tenant)
    migrate.uncontract(engine, tenant_ids=[tenant])
    assert jsonb_by_product(engine, tenant) == again
