"""The sweep (`python -m app sweep-media`): old objects nothing references go, young and
referenced ones stay, the usage counter is set to what is stored; the CLI's figures and
refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from app.core.database import tenant_schema, unit_of_work
from app.core.settings import PROJECT_ROOT
from app.repositories import stored_media
from app.services.media_gc import MediaLifecycle
from app.services.media_sweep import SweepBusy, sweep
from app.storage.local import LocalStorage
from tests.images_db import insert_legacy_product
from tests.services.test_media_gc import backup, reject

BASE = "http://testserver/media"
GRACE = timedelta(minutes=60)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media", BASE)


@pytest.fixture
def media(storage: LocalStorage) -> MediaLifecycle:
    return MediaLifecycle(storage, url_bases=(BASE,), quota_bytes=10**9)


def later() -> datetime:
    """A sweep run two hours from now: everything stored so far is past the grace period."""
    return datetime.now(UTC) + 2 * GRACE


def usage(engine: Engine, tenant: int) -> int:
    with unit_of_work(engine, tenant) as session:
        return stored_media.usage(session)


def set_usage(engine: Engine, tenant: int, value: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {tenant_schema(tenant)}.media_usage SET bytes = :v"), {"v": value}
        )


class Objects:
    """One tenant's stored objects, each with distinct bytes (no shared blob)."""

    def __init__(self, storage: LocalStorage, tenant: int) -> None:
        self.storage = storage
        self.tenant = tenant

    def put(self, name: str, size: int = 100) -> str:
        key = f"t{self.tenant}/p1/{name}.jpg"
        self.storage.put(key, name.encode().ljust(size, b"."), content_type="image/jpeg")
        return key

    def url(self, key: str) -> str:
        return self.storage.url_for(key)

    def make_young(self, key: str) -> None:
        """Written (as the listing sees it) after the sweep's cut-off."""
        future = (later() + GRACE).timestamp()
        os.utime(self.storage.root / key, (future, future))

    def present(self) -> set[str]:
        return {found.key for found in self.storage.list_objects(f"t{self.tenant}/")}


def test_the_sweep_removes_old_orphans_and_keeps_young_and_referenced_objects(
    engine: Engine, tenant: int, storage: LocalStorage, media: MediaLifecycle
) -> None:
    objects = Objects(storage, tenant)
    orphan, other_orphan = objects.put("orphan", 300), objects.put("orphan-2", 200)
    in_jsonb, in_backup, in_rejected = objects.put("a"), objects.put("b"), objects.put("c")
    young = objects.put("young")
    objects.make_young(young)
    product = insert_legacy_product(engine, tenant, [{"url": objects.url(in_jsonb)}])
    backup(engine, tenant, product, [objects.url(in_backup)])
    reject(engine, tenant, product, {"url": objects.url(in_rejected), "order": []})
    legacy = storage.put("legacy/a.jpg", b"legacy", content_type="image/jpeg").key

    report = sweep(media, engine, tenant, now=later(), grace=GRACE)

    assert objects.present() == {in_jsonb, in_backup, in_rejected, young}
    assert storage.exists(legacy), "outside every t<id>/ prefix: never swept"
    assert sorted(report.removal.removed) == sorted([orphan, other_orphan])
    assert report.removal.freed_bytes == 500
    assert (report.listed, report.young, report.removal.referenced) == (6, 1, 3)
    assert (report.listed_bytes, report.usage_after) == (900, 400)


def test_a_dry_run_deletes_nothing_changes_no_count_and_reports_what_would_go(
    engine: Engine, tenant: int, storage: LocalStorage, media: MediaLifecycle
) -> None:
    objects = Objects(storage, tenant)
    orphan = objects.put("orphan", 300)
    kept = objects.put("kept")
    insert_legacy_product(engine, tenant, [{"url": objects.url(kept)}])
    set_usage(engine, tenant, 7)

    report = sweep(media, engine, tenant, now=later(), grace=GRACE, dry_run=True)

    assert objects.present() == {orphan, kept}
    assert usage(engine, tenant) == 7
    assert report.removal.removed == (orphan,)
    assert (report.removal.freed_bytes, report.usage_before, report.usage_after) == (300, 7, 100)


def test_the_sweep_sets_the_usage_count_to_what_is_stored(
    engine: Engine, tenant: int, storage: LocalStorage, media: MediaLifecycle
) -> None:
    objects = Objects(storage, tenant)
    objects.put("orphan", 300)
    kept = objects.put("kept", 250)
    insert_legacy_product(engine, tenant, [objects.url(kept)])
    set_usage(engine, tenant, 123_456)  # drifted: a crash between a reservation and its release

    report = sweep(media, engine, tenant, now=later(), grace=GRACE)

    assert usage(engine, tenant) == 250 == report.usage_after
    assert report.usage_before == 123_456


def test_a_second_sweep_of_a_tenant_being_swept_is_refused(
    engine: Engine, tenant: int, media: MediaLifecycle
) -> None:
    with engine.connect() as connection:
        connection.execute(
            text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
            {"key": f"media-sweep:{tenant_schema(tenant)}"},
        )
        connection.commit()
        with pytest.raises(SweepBusy):
            sweep(media, engine, tenant, now=later(), grace=GRACE)
        connection.execute(text("SELECT pg_advisory_unlock_all()"))
        connection.commit()


# --- the command ------------------------------------------------------------------------


def sweep_media(
    database_url: str, media_root: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "APP_ENV")}
    env = {
        **clean,
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(media_root),
        "MEDIA_BASE_URL": BASE,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "sweep-media", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_sweeps_a_tenant_and_prints_counts_and_bytes_freed(
    database_url: str, engine: Engine, tenant: int, storage: LocalStorage
) -> None:
    objects = Objects(storage, tenant)
    orphan = objects.put("orphan", 300)
    kept = objects.put("kept", 100)
    insert_legacy_product(engine, tenant, [objects.url(kept)])

    dry = sweep_media(
        database_url, storage.root, "--tenant", str(tenant), "--grace-minutes", "0", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert objects.present() == {orphan, kept}
    assert "1 would remove (300 bytes)" in dry.stdout
    assert "1 tenant(s): 1 object(s) would remove, 300 bytes would be freed" in dry.stdout

    done = sweep_media(database_url, storage.root, "--tenant", str(tenant), "--grace-minutes", "0")
    assert done.returncode == 0, done.stderr
    assert objects.present() == {kept}
    assert f"tenant {tenant}: 2 objects (400 bytes), 0 younger than 0 min kept" in done.stdout
    assert "1 referenced kept, 1 removed (300 bytes), 0 failed; usage 0 -> 100 bytes" in (
        done.stdout
    )
    assert "1 tenant(s): 1 object(s) removed, 300 bytes freed" in done.stdout
    assert usage(engine, tenant) == 100


def test_the_command_keeps_young_objects_by_default(
    database_url: str, tenant: int, storage: LocalStorage
) -> None:
    objects = Objects(storage, tenant)
    orphan = objects.put("orphan")
    result = sweep_media(database_url, storage.root, "--tenant", str(tenant))
    assert result.returncode == 0, result.stderr
    assert objects.present() == {orphan}
    assert "1 younger than 60 min kept" in result.stdout


def test_the_command_sweeps_all_tenants(
    database_url: str, make_tenant: Callable[[], int], storage: LocalStorage
) -> None:
    first, second = make_tenant(), make_tenant()
    Objects(storage, first).put("orphan")
    Objects(storage, second).put("orphan")
    result = sweep_media(database_url, storage.root, "--all", "--grace-minutes", "0")
    assert result.returncode == 0, result.stderr
    assert not Objects(storage, first).present() and not Objects(storage, second).present()
    assert f"tenant {first}: " in result.stdout and f"tenant {second}: " in result.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "--tenant"),
        (("--all", "--tenant", "{tenant}"), "--tenant"),
        (("--tenant", "999999999"), "no tenant with id 999999999"),
        (("--all", "--grace-minutes", "-5"), "--grace-minutes"),
        (("--all", "--grace-minutes", "soon"), "--grace-minutes"),
    ],
)
def test_the_command_refuses_bad_arguments_with_exit_code_2(
    database_url: str, tenant: int, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    argv = [arg.format(tenant=tenant) for arg in args]
    result = sweep_media(database_url, tmp_path / "media", *argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert said in result.stderr


def test_a_tenant_not_migrated_to_head_is_skipped_by_all_and_fails_when_named(
    database_url: str,
    engine: Engine,
    make_tenant: Callable[[], int],
    storage: LocalStorage,
) -> None:
    behind, ready = make_tenant(), make_tenant()
    with engine.begin() as connection:  # as if its schema were still at revision 0010
        connection.execute(text(f'DROP TABLE "{tenant_schema(behind)}".media_usage'))
    Objects(storage, ready).put("orphan")
    every = sweep_media(database_url, storage.root, "--all", "--grace-minutes", "0")
    assert every.returncode == 0, every.stderr
    assert f"tenant {behind}: no media_usage table" in every.stderr
    assert "skipped" in every.stderr
    assert not Objects(storage, ready).present()
    named = sweep_media(database_url, storage.root, "--tenant", str(behind))
    assert named.returncode == 1
    assert f"tenant {behind}: failed" in named.stderr
