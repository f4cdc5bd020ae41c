"""The stored objects' lifecycle on real PostgreSQL: which objects are still referenced, the
per-object lock between attaching and removing, and the quota counter under concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from app.core.database import tenant_schema, unit_of_work
from app.repositories import stored_media
from app.repositories.stored_media import KeyRuns
from app.services.media_gc import (
    ForeignStoredObject,
    MediaLifecycle,
    MediaQuotaExceeded,
    MissingStoredObject,
)
from app.services.product_image_service import NewImage, ProductImageService
from app.storage.local import LocalStorage
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media", BASE)


@pytest.fixture
def media(storage: LocalStorage) -> MediaLifecycle:
    return MediaLifecycle(storage, url_bases=(BASE,), quota_bytes=1000)


def stored(storage: LocalStorage, key: str, data: bytes | None = None) -> str:
    """Store an object (distinct bytes unless given) and return its URL."""
    return storage.put(key, data or key.encode(), content_type="image/jpeg").url


def referenced(engine: Engine, tenant: int, keys: list[str]) -> frozenset[str]:
    with unit_of_work(engine, tenant) as session:
        return stored_media.referenced_keys(session, keys)


def referenced_one_by_one(engine: Engine, tenant: int, keys: list[str]) -> frozenset[str]:
    """Each key alone: the search PostgreSQL does (a few keys at a time)."""
    return frozenset(key for key in keys if referenced(engine, tenant, [key]))


def execute(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def backup(engine: Engine, tenant: int, product: int, images: Any) -> None:
    schema = tenant_schema(tenant)
    with engine.begin() as connection:
        backup_id = connection.execute(
            text(
                f"INSERT INTO {schema}.image_backups (reason, products, elements) "
                "VALUES ('test', 1, 1) RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                f"INSERT INTO {schema}.image_backup_rows (backup_id, product_id, images) "
                "VALUES (:b, :p, CAST(:images AS jsonb))"
            ),
            {"b": backup_id, "p": product, "images": json.dumps(images)},
        )


def reject(engine: Engine, tenant: int, product: int, raw: Any) -> None:
    execute(
        engine,
        f"INSERT INTO {tenant_schema(tenant)}.rejected_image_elements "
        "(product_id, position, raw, reason, detail, found_by) "
        "VALUES (:p, 0, CAST(:raw AS jsonb), 'test', 'test', 'test')",
        p=product,
        raw=json.dumps(raw),
    )


# --- what keeps an object alive ---------------------------------------------------------


def test_every_reference_source_keeps_its_key_and_both_searches_say_so(
    engine: Engine, tenant: int
) -> None:
    prefix = f"t{tenant}/p1/"
    in_jsonb, in_row, in_backup, in_rejected, nowhere = (
        f"{prefix}{name}.jpg" for name in ("jsonb", "row", "backup", "rejected", "nowhere")
    )
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/{in_jsonb}?v=2"}])
    service = ProductImageService(legacy_sources=(), max_images=30, url_bases=(BASE,))
    other = insert_legacy_product(engine, tenant, [])
    with unit_of_work(engine, tenant) as session:  # a row (and its JSONB element)
        service.add_image(
            session,
            product_id=other,
            image_data=NewImage(url=f"HTTPS://TESTSERVER/media/{in_row}"),
            position=None,
            now=datetime.now(UTC),
        )
    execute(
        engine, f"UPDATE {tenant_schema(tenant)}.products SET images = '[]' WHERE id = :p", p=other
    )
    backup(engine, tenant, product, [{"url": f"{BASE}/{in_backup}"}])
    reject(engine, tenant, product, {"url": f"{BASE}/{in_rejected}", "order": "x"})
    keys = [in_jsonb, in_row, in_backup, in_rejected, nowhere]

    expected = {in_jsonb, in_row, in_backup, in_rejected}
    assert referenced(engine, tenant, keys) == expected  # one pass over every text
    assert referenced_one_by_one(engine, tenant, keys) == expected  # PostgreSQL, per key


FRAGMENTS = ["t5/", "t55/", "t5", "a", "b", "/", ".", "-", "?", '"', "\\", " ", "x", "é"]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(  # a key inside a longer run, after another occurrence of the prefix, a quote
    texts=["/media/t5/t5/a.b?v", 'xt5/b"t5/a'],
    keys=["t5/a", "t5/a.b", "t5/t5/a.", "t5/b", "t5/ab"],
)
@given(
    texts=st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join), max_size=5),
    keys=st.lists(
        st.text(alphabet="ab./t5", min_size=1, max_size=5).map(lambda rest: "t5/" + rest),
        min_size=5,
        max_size=10,
        unique=True,
    ),
)
def test_the_one_pass_search_finds_exactly_what_postgresql_finds(
    engine: Engine, tenant: int, texts: list[str], keys: list[str]
) -> None:
    """The sweep's one-pass search (runs of key characters after each `t<id>/`) against
    PostgreSQL's strpos on the same texts, keys of one tenant prefix."""
    schema = tenant_schema(tenant)
    execute(engine, f"DELETE FROM {schema}.products")
    for value in texts:
        insert_legacy_product(engine, tenant, [value])
    with engine.connect() as connection:
        rendered = (
            connection.execute(text(f"SELECT images::text FROM {schema}.products")).scalars().all()
        )
        by_strpos = {key for key in keys if any(key in value for value in rendered)}
    assert referenced(engine, tenant, keys) == by_strpos
    assert referenced_one_by_one(engine, tenant, keys) == by_strpos
    assert KeyRuns.of(texts, "t5/").referenced(keys) == {
        key for key in keys if any(key in value for value in texts)
    }


# --- attaching a URL ------------------------------------------------------------------


def test_attaching_another_tenants_object_or_a_missing_one_is_refused(
    engine: Engine, make_tenant: Callable[[], int], storage: LocalStorage, media: MediaLifecycle
) -> None:
    owner, caller = make_tenant(), make_tenant()
    theirs = stored(storage, f"t{owner}/p1/a.jpg")
    with unit_of_work(engine, caller) as session:
        with pytest.raises(ForeignStoredObject) as foreign:
            media.check_attachable(session, theirs)
        with pytest.raises(MissingStoredObject) as missing:
            media.check_attachable(session, f"{BASE}/t{caller}/p1/never.jpg")
        media.check_attachable(session, f"{BASE}/legacy/a.jpg")  # nobody's: allowed
        media.check_attachable(session, "http://elsewhere/t1/a.jpg")  # not ours
    assert foreign.value.field == missing.value.field == "url"
    assert "another tenant" in foreign.value.message
    assert "no stored object" in missing.value.message


def blocked_on_an_object_lock(engine: Engine) -> bool:
    """Whether a session of this test database waits for an advisory lock (each xdist
    worker has a database of its own and runs one test at a time)."""
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()))"
                )
            ).scalar_one()
        )


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the other transaction never got there"
        time.sleep(0.02)


def test_an_attach_waiting_on_a_removal_finds_the_object_gone(
    engine: Engine, tenant: int, storage: LocalStorage, media: MediaLifecycle
) -> None:
    key = f"t{tenant}/p1/shared.jpg"
    url = stored(storage, key)
    with ThreadPoolExecutor(1) as pool, unit_of_work(engine, tenant) as removing:
        stored_media.lock_objects(removing, [key])  # a removal holds the object's lock

        def attach() -> None:
            with unit_of_work(engine, tenant) as session:
                media.check_attachable(session, url)

        attaching = pool.submit(attach)
        wait_until(lambda: blocked_on_an_object_lock(engine))
        storage.delete(key)  # ... found no reference, deletes, then commits
        removing.commit()
        with pytest.raises(MissingStoredObject):
            attaching.result(timeout=30)


def test_a_removal_waiting_on_an_attach_keeps_the_object(
    engine: Engine, tenant: int, storage: LocalStorage, media: MediaLifecycle
) -> None:
    url = stored(storage, f"t{tenant}/p1/reattached.jpg")
    product = insert_legacy_product(engine, tenant, [])
    service = ProductImageService(legacy_sources=(), max_images=30, url_bases=(BASE,))
    with ThreadPoolExecutor(1) as pool:
        with unit_of_work(engine, tenant) as attaching:
            media.check_attachable(attaching, url)
            service.add_image(
                attaching,
                product_id=product,
                image_data=NewImage(url=url),
                position=None,
                now=datetime.now(UTC),
            )
            # The image that used to hold the object was deleted; its removal starts now.
            removal = pool.submit(media.remove_unreferenced, engine, tenant, [url])
            wait_until(lambda: blocked_on_an_object_lock(engine))
        result = removal.result(timeout=30)  # the attach committed: the removal sees it
    assert result.removed == ()
    assert result.referenced == 1
    assert storage.exists(f"t{tenant}/p1/reattached.jpg")


def test_removal_never_touches_legacy_or_other_tenants_objects(
    engine: Engine, make_tenant: Callable[[], int], storage: LocalStorage, media: MediaLifecycle
) -> None:
    tenant, other = make_tenant(), make_tenant()
    urls = [
        stored(storage, "legacy/p1/a.jpg"),
        stored(storage, f"seed42/t{tenant}/p1/0.jpg"),
        stored(storage, f"t{other}/p1/b.jpg"),
    ]
    assert media.owned_keys(tenant, urls) == []
    assert media.remove_unreferenced(engine, tenant, urls).removed == ()
    assert all(storage.exists(storage.key_for_url(url) or "") for url in urls)


# --- the quota counter ----------------------------------------------------------------


def usage(engine: Engine, tenant: int) -> int:
    with unit_of_work(engine, tenant) as session:
        return stored_media.usage(session)


def test_concurrent_reservations_never_pass_the_quota(
    engine: Engine, tenant: int, media: MediaLifecycle
) -> None:
    start = threading.Barrier(16)

    def reserve() -> bool:
        start.wait()
        try:
            media.reserve(engine, tenant, 150)  # quota 1000: six fit, not seven
        except MediaQuotaExceeded:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        granted = list(pool.map(lambda _: reserve(), range(16)))

    assert granted.count(True) == 6
    assert usage(engine, tenant) == 900


def test_a_refused_reservation_says_what_is_used_and_allowed_and_counts_nothing(
    engine: Engine, tenant: int, media: MediaLifecycle
) -> None:
    media.reserve(engine, tenant, 700)
    with pytest.raises(MediaQuotaExceeded) as refused:
        media.reserve(engine, tenant, 301)
    assert (refused.value.used, refused.value.allowed, refused.value.size) == (700, 1000, 301)
    assert "700 bytes of the 1000 bytes allowed" in str(refused.value)
    assert usage(engine, tenant) == 700
    media.reserve(engine, tenant, 300)  # exactly the quota is fine
    assert usage(engine, tenant) == 1000


def test_a_release_never_counts_below_zero(
    engine: Engine, tenant: int, media: MediaLifecycle
) -> None:
    media.reserve(engine, tenant, 100)
    media.release(engine, tenant, 250)
    assert usage(engine, tenant) == 0
