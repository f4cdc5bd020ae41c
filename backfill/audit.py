"""audit-publications: for every product of a tenant, build each marketplace's payload under
the tenant's current read stage and count the products whose payload would carry a label.
The operator's proof of "no label published", run before and after the switch.

What is a label here does not depend on the read path (the JSONB path cannot see legacy
labels, which is the bug): an image is a label when the table says so (rule, overrides and
edits) or when the label rule says so of the JSONB. A published photo leaks a label when it
has a label's stable id, or when its URL fetches a label's stored object (a legacy product
can list the label's URL several times, under several ids).

A product with images but no payload for a marketplace is counted apart: refused, with the
rules' reasons, when a rule left out a photo (http URLs, a type, a size), since then the
audit proves nothing about that product; only the label (or its file) is nothing to
publish, not a refusal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine, select

from app.core.database import unit_of_work
from app.images import Image, is_legacy_source, normalise_legacy
from app.images.operations import label_objects, stored_object
from app.marketplaces import NoPublishablePhoto
from app.models import Product
from app.repositories import shadow_reads
from app.services.marketplace import MarketplaceConverter
from app.services.product_image_service import ProductImageService
from flags.stages import Stage

log = structlog.get_logger("backfill.audit")

CHUNK = 500
SAMPLE = 20


@dataclass
class MarketplaceAudit:
    """One marketplace's result for one tenant."""

    leaking: int = 0  # products whose payload would carry a label
    unpublishable: int = 0  # products with nothing to publish but a label (or no image)
    refused: int = 0  # products with photos a rule refused, and no payload
    refusal_reasons: Counter[str] = field(default_factory=Counter)  # per refused photo
    leaking_sample: list[int] = field(default_factory=list)
    refused_sample: list[int] = field(default_factory=list)


@dataclass
class TenantAudit:
    """A tenant's audit: products, the read paths that answered, each marketplace."""

    tenant_id: int
    products: int = 0
    labelled_products: int = 0
    read_paths: Counter[str] = field(default_factory=Counter)
    marketplaces: dict[str, MarketplaceAudit] = field(default_factory=dict)

    @property
    def leaking(self) -> int:
        return sum(m.leaking for m in self.marketplaces.values())

    @property
    def refused(self) -> int:
        return sum(m.refused for m in self.marketplaces.values())


def leaks_a_label(photos: Iterable[Image], labels: Iterable[Image]) -> bool:
    """Whether a published photo is one of the labels, by id or by the stored object its URL
    fetches (the same file under another id)."""
    labels = tuple(labels)
    ids = {label.id for label in labels}
    objects = label_objects(labels)
    return any(photo.id in ids or stored_object(photo.url) in objects for photo in photos)


def audit_tenant(
    engine: Engine,
    tenant_id: int,
    service: ProductImageService,
    converters: dict[str, MarketplaceConverter],
    progress: Callable[[int], None] | None = None,
) -> TenantAudit:
    """Build every marketplace's payload for every product of the tenant; count labels.
    `progress` hears of each chunk of products (a job's, which may stop it by raising)."""
    audit = TenantAudit(tenant_id, marketplaces={name: MarketplaceAudit() for name in converters})
    after = 0
    while True:
        with unit_of_work(engine, tenant_id) as session:
            products = list(
                session.scalars(
                    select(Product).where(Product.id > after).order_by(Product.id).limit(CHUNK)
                )
            )
            # The chunk's stage, resolved once for its transaction (list_images reuses it).
            contracted = (
                bool(products) and service.paths.resolution(session).stage is Stage.COMPLETE
            )
            for product in products:
                both = shadow_reads.read_both(session, product.id, with_jsonb=not contracted)
                assert both is not None  # read in the same transaction as the product
                by_rule = normalise_legacy(
                    both.raw_jsonb,
                    product_id=product.id,
                    product_created_at=both.created_at,
                    is_legacy_source=is_legacy_source(both.source, service.legacy_sources),
                ).images
                labels = [i for i in (*both.rows, *by_rule) if i.is_label]
                audit.labelled_products += bool(labels)
                listed = service.list_images(session, product_id=product.id)
                audit.read_paths[listed.read_path.value] += 1
                for name, converter in converters.items():
                    result = audit.marketplaces[name]
                    try:
                        payload = converter.from_images(product, listed)
                    except NoPublishablePhoto as refusal:
                        if not refusal.refused:
                            result.unpublishable += 1
                            continue
                        result.refused += 1
                        result.refusal_reasons.update(e.reason for e in refusal.refused)
                        if len(result.refused_sample) < SAMPLE:
                            result.refused_sample.append(product.id)
                        continue
                    if leaks_a_label(payload.photos, labels):
                        result.leaking += 1
                        if len(result.leaking_sample) < SAMPLE:
                            result.leaking_sample.append(product.id)
        if not products:
            break
        audit.products += len(products)
        after = products[-1].id
        if progress is not None:
            progress(len(products))
    log.info(
        "audit.tenant_done",
        tenant=tenant_id,
        products=audit.products,
        read_paths=dict(audit.read_paths),
        leaking={name: m.leaking for name, m in audit.marketplaces.items()},
        refused={name: m.refused for name, m in audit.marketplaces.items()},
    )
    return audit
