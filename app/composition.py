"""The composition root: the app's long-lived objects, built once from the settings, for
every entry point (the API in app.main, `python -m app`, `python -m backfill`, `python -m
flags` and the workers' jobs), so that they agree: the same URL bases (the storage's own,
an S3 bucket's too), the same flags, the kill switch honoured by every writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from app.core.database import make_engine, resolve_database_url
from app.core.settings import Settings
from app.services.converters import converters
from app.services.file_service import FileService
from app.services.image_paths import ImagePaths
from app.services.marketplace import MarketplaceConverter
from app.services.media_gc import MediaLifecycle
from app.services.product_image_service import ProductImageService
from app.services.read_origins import ReadOriginRecorder
from app.services.tenant_service import TenantDirectory
from app.storage.base import Storage
from app.storage.factory import build_storage
from flags.client import FlagClient


@dataclass
class Services:
    """What the entry points use; `close` when done (the flags client's thread, the engine
    when `build` made it)."""

    settings: Settings
    engine: Engine
    storage: Storage
    flags: FlagClient
    images: ProductImageService
    files: FileService
    media: MediaLifecycle
    tenants: TenantDirectory
    reads: ReadOriginRecorder
    owns_engine: bool = field(default=False, repr=False)

    @cached_property
    def converters(self) -> dict[str, MarketplaceConverter]:
        """One marketplace converter per name (vinted, ebay, etsy)."""
        return converters(self.images, self.settings)

    def close(self) -> None:
        """Stop the flags client, write the last read figures; dispose of the engine if it
        was made here."""
        self.flags.close()
        self.reads.close()
        if self.owns_engine:
            self.engine.dispose()


def image_url_bases(settings: Settings, storage: Storage) -> tuple[str, ...]:
    """The URL prefixes an image may have: the storage's own base, then the extra ones."""
    return (storage.base_url, *settings.extra_image_url_bases)


def build(
    settings: Settings, engine: Engine | None = None, *, pool_size: int | None = None
) -> Services:
    """Every service, wired; with no engine, one is made (and disposed of by `close`)."""
    owns_engine = engine is None
    if engine is None:
        url = resolve_database_url(settings)
        engine = make_engine(url) if pool_size is None else make_engine(url, pool_size=pool_size)
    storage = build_storage(settings)
    flags = FlagClient.from_settings(settings)
    reads = ReadOriginRecorder(engine)
    images = ProductImageService(
        legacy_sources=settings.legacy_sources,
        max_images=settings.max_images_per_product,
        url_bases=image_url_bases(settings, storage),
        paths=ImagePaths(flags.flags_for),  # the kill switch holds for every writer
        reads=reads,
    )
    files = FileService(
        storage,
        max_bytes=settings.max_upload_bytes,
        max_pixels=settings.max_upload_pixels,
        decode_budget_bytes=settings.decode_budget_bytes,
    )
    return Services(
        settings=settings,
        engine=engine,
        storage=storage,
        flags=flags,
        images=images,
        files=files,
        media=MediaLifecycle.of(settings, storage),
        tenants=TenantDirectory(engine),
        reads=reads,
        owns_engine=owns_engine,
    )
