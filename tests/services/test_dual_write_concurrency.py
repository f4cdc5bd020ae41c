"""Many concurrent mutations on the same products: the row lock keeps both representations
equal, orders contiguous, and no write lost."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.images import ImageError
from app.services.product_image_service import NewImage, ProductImageService
from tests.images_db import assert_representations_equal, insert_legacy_product, table_elements

BASE = "http://testserver/media"
THREADS = 8
OPERATIONS_PER_THREAD = 30


def legacy_images(count: int) -> list[dict[str, object]]:
    return [{"url": f"{BASE}/p/{i}.jpg", "order": i} for i in range(count)]


def test_concurrent_mutations_leave_table_equal_to_jsonb_with_no_lost_write(
    engine: Engine, tenant: int
) -> None:
    service = ProductImageService(
        legacy_sources=["pythonApiWOO"], max_images=1000, url_bases=[BASE]
    )
    products = [insert_legacy_product(engine, tenant, legacy_images(5)) for _ in range(3)]
    added: Counter[int] = Counter()
    deleted: Counter[int] = Counter()
    counts_lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for step in range(OPERATIONS_PER_THREAD):
            product_id = rng.choice(products)
            now = datetime.now(UTC)
            try:
                with unit_of_work(engine, tenant) as session:
                    current = service.list_images(session, product_id=product_id).images
                    action = rng.choice(["add", "delete", "reorder", "label", "alt"])
                    if action == "add" or not current:
                        service.add_image(
                            session,
                            product_id=product_id,
                            image_data=NewImage(url=f"{BASE}/new/{seed}-{step}.jpg"),
                            position=rng.choice([None, 0]),
                            now=now,
                        )
                        with counts_lock:
                            added[product_id] += 1
                    elif action == "delete":
                        victim = rng.choice(current).id
                        service.delete_image(
                            session, product_id=product_id, image_id=victim, now=now
                        )
                        with counts_lock:
                            deleted[product_id] += 1
                    elif action == "reorder":
                        ids = [image.id for image in current]
                        rng.shuffle(ids)
                        service.reorder_images(
                            session, product_id=product_id, new_order=ids, now=now
                        )
                    elif action == "label":
                        service.set_label_flag(
                            session,
                            product_id=product_id,
                            image_id=rng.choice(current).id,
                            is_label=rng.random() < 0.7,
                            now=now,
                        )
                    else:
                        service.update_image(
                            session,
                            product_id=product_id,
                            image_id=rng.choice(current).id,
                            alt_text=f"alt {seed}-{step}",
                            now=now,
                        )
            except ImageError:
                # Another thread changed the list between our read and our write (the image
                # is gone, or the permutation is stale): refused, and nothing was written.
                continue
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    for product_id in products:
        assert_representations_equal(engine, tenant, product_id)
        expected = 5 + added[product_id] - deleted[product_id]
        assert len(table_elements(engine, tenant, product_id)) == expected
