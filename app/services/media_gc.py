"""The lifecycle of tenants' stored objects: who may attach one, the upload quota, and the
removal of objects no image references any more (after the request that dropped them here;
by the sweep, `python -m app sweep-media`, in app/services/media_sweep.py).

Every object under `t<id>/` belongs to that tenant (app/storage/ownership.py). An object is
removed only under its advisory lock (`stored_media.lock_objects`) and only when nothing of
its tenant references it: the JSONB, the rows, the backups, the rejection report. Attaching
a URL takes the same lock before checking the object exists, so an attach and a removal of
one object happen one after the other: never an image whose object is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from app.core.database import TenantSession, unit_of_work
from app.core.errors import DomainError
from app.core.settings import Settings
from app.images.errors import ImageError, InvalidImageField
from app.repositories import stored_media
from app.storage.base import InvalidKey, Storage, StorageError, check_key
from app.storage.ownership import named_object

log = structlog.get_logger(__name__)


class ForeignStoredObject(ImageError):
    """The URL names a stored object of another tenant."""

    def __init__(self) -> None:
        super().__init__(
            "url",
            "names a stored object of another tenant: attach your own uploads "
            "(POST /api/products/{id}/images/upload) or the URLs they returned",
        )


class MissingStoredObject(ImageError):
    """The URL names one of the tenant's stored objects, and none is stored there."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "url", f"no stored object under {key!r} (deleted, or never uploaded): upload it"
        )
        self.key = key


class MediaQuotaExceeded(DomainError):
    """An upload that would take the tenant past its storage quota; nothing was stored."""

    status = 413
    validation = True
    field = "file"
    reason = "quota_exceeded"

    def __init__(self, *, used: int, allowed: int, size: int) -> None:
        super().__init__(
            f"the tenant's stored images take {used} bytes of the {allowed} "
            f"bytes allowed, and this file of {size} bytes would pass that: delete images "
            "first, or ask an operator for a larger MEDIA_QUOTA_BYTES_PER_TENANT"
        )
        self.used = used
        self.allowed = allowed
        self.size = size


@dataclass(frozen=True)
class Removal:
    """What one removal pass did: the keys removed (or, dry, that would be), their bytes,
    how many candidates something still referenced, and the keys that failed."""

    removed: tuple[str, ...] = ()
    freed_bytes: int = 0
    referenced: int = 0
    failed: tuple[str, ...] = ()

    def __add__(self, other: Removal) -> Removal:
        return Removal(
            self.removed + other.removed,
            self.freed_bytes + other.freed_bytes,
            self.referenced + other.referenced,
            self.failed + other.failed,
        )


class MediaLifecycle:
    """Attach checks, quota and removal of the stored objects of tenants' images."""

    def __init__(self, storage: Storage, *, url_bases: Sequence[str], quota_bytes: int) -> None:
        self.storage = storage
        self.url_bases = tuple(url_bases)
        self.quota_bytes = quota_bytes

    @classmethod
    def of(cls, settings: Settings, storage: Storage) -> MediaLifecycle:
        """Built from the settings: the same URL bases as the image service accepts."""
        return cls(
            storage,
            url_bases=(storage.base_url, *settings.extra_image_url_bases),
            quota_bytes=settings.media_quota_bytes_per_tenant,
        )

    # --- attaching a URL --------------------------------------------------------------

    def check_attachable(self, session: TenantSession, url: str) -> None:
        """In the caller's write transaction, before the image is added: a URL naming a
        stored object under `t<id>/` must be the caller's own, written as stored, and
        exist; its lock is held until the caller commits. Other URLs (legacy keys, other
        hosts the bases allow) are not ours to judge."""
        named = named_object(url, self.url_bases)
        if named is None or named.owner is None:
            return
        if named.owner != session.tenant_id:
            raise ForeignStoredObject()
        if not named.is_exact:
            raise InvalidImageField(
                "url",
                "must name the stored object as its upload returned it (no percent-escapes, "
                "no empty segments)" + _as_stored(self.storage, named.key),
            )
        stored_media.lock_objects(session, [named.key])
        if not self.storage.exists(named.key):
            raise MissingStoredObject(named.key)

    # --- quota ------------------------------------------------------------------------

    def reserve(self, engine: Engine, tenant_id: int, size: int) -> None:
        """Count an upload's bytes before it is stored (a short transaction of its own, so
        the tenant's counter row is not held while the file is stored); MediaQuotaExceeded
        when the tenant's total would pass the quota."""
        if size <= 0:
            return
        with unit_of_work(engine, tenant_id) as session:
            if stored_media.reserve(session, size, quota=self.quota_bytes):
                return
            used = stored_media.usage(session)
        raise MediaQuotaExceeded(used=used, allowed=self.quota_bytes, size=size)

    def release(self, engine: Engine, tenant_id: int, size: int) -> None:
        """Give back a reservation whose object was not kept. Never raises: a count left
        too high is logged, and the next sweep reconciles it."""
        if size <= 0:
            return
        try:
            with unit_of_work(engine, tenant_id) as session:
                stored_media.release(session, size)
        except Exception as exc:  # the caller is already failing with its own error
            log.error("media.release_failed", tenant=tenant_id, bytes=size, error=str(exc))

    # --- removal ----------------------------------------------------------------------

    def owned_keys(self, tenant_id: int, urls: Iterable[str]) -> list[str]:
        """The keys of the tenant's own objects among these URLs (valid keys under
        `t<id>/`, however spelled); legacy keys and other tenants' are never removed."""
        keys = []
        for url in urls:
            named = named_object(url, self.url_bases)
            if named is not None and named.owner == tenant_id and _is_key(named.key):
                keys.append(named.key)
        return sorted(set(keys))

    def remove_unreferenced(self, engine: Engine, tenant_id: int, urls: Iterable[str]) -> Removal:
        """After the transaction that dropped images with these URLs committed: remove
        their objects that nothing references any more. Never raises (the response is
        already decided): a failure is logged per key and left to the sweep."""
        keys = self.owned_keys(tenant_id, urls)
        if not keys:
            return Removal()
        try:
            removal = self.remove_keys(engine, tenant_id, keys, dry_run=False)
        except Exception as exc:  # logged, not swallowed: the sweep removes what is left
            for key in keys:
                log.error(
                    "media.removal_failed",
                    tenant=tenant_id,
                    key=key,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
            return Removal(failed=tuple(keys))
        if removal.removed:
            log.info(
                "media.removed",
                tenant=tenant_id,
                keys=list(removal.removed),
                freed_bytes=removal.freed_bytes,
            )
        return removal

    def remove_keys(
        self, engine: Engine, tenant_id: int, keys: Sequence[str], *, dry_run: bool = False
    ) -> Removal:
        """Remove these objects of the tenant (keys under `t<id>/`) that nothing references,
        in one transaction: lock them, keep the referenced ones, delete the others from
        storage and release their bytes, then commit (which frees the locks). `dry_run`:
        the same answer, nothing deleted or released. A key that storage fails to delete is
        logged and listed as failed; the others go on."""
        removed: list[str] = []
        failed: list[str] = []
        freed = 0
        with unit_of_work(engine, tenant_id) as session:
            stored_media.lock_objects(session, keys)
            referenced = stored_media.referenced_keys(session, keys)
            for key in sorted(set(keys) - referenced):
                try:
                    found = self.storage.stat(key)
                    if found is None:
                        continue
                    if not dry_run:
                        self.storage.delete(key)
                except StorageError as exc:
                    log.error("media.removal_failed", tenant=tenant_id, key=key, error=str(exc))
                    failed.append(key)
                    continue
                removed.append(key)
                freed += found.size
            if freed and not dry_run:
                stored_media.release(session, freed)
        return Removal(tuple(removed), freed, len(referenced), tuple(failed))


def _is_key(key: str) -> bool:
    try:
        check_key(key)
    except InvalidKey:
        return False
    return True


def _as_stored(storage: Storage, key: str) -> str:
    """`: <the object's URL>` when the key is a valid one, else nothing."""
    return f": {storage.url_for(key)}" if _is_key(key) else ""
