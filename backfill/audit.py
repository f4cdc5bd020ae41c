"""audit-publications: for every product of a tenant, build each marketplace's payload under
the tenant's current read stage and count the products whose payload would carry a label.
The operator's proof of "no label published", run before and after the switch.

What is a label here does not depend on the read path (the JSONB path cannot see legacy
labels, which is the bug): an image is a label when the table says so (rule, overrides and
edits) or when the label rule says so of the JSONB, matched by the images' stable ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine, select

from app.core.database import unit_of_work
from app.images import is_legacy_source, normalise_legacy
from app.marketplaces import NoPublishablePhoto
from app.models import Product
from app.repositories import shadow_reads
from app.services.image_paths import tenant_facts
from app.services.marketplace import MarketplaceConverter
from app.services.product_image_service import ProductImageService

log = structlog.get_logger("backfill.audit")

CHUNK = 500
SAMPLE = 20


@dataclass
class MarketplaceAudit:
    """One marketplace's result for one tenant."""

    leaking: int = 0  # products whose payload would carry a label
    unpublishable: int = 0  # products with no publishable photo (refused, never sent empty)
    leaking_sample: list[int] = field(default_factory=list)


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


def audit_tenant(
    engine: Engine,
    tenant_id: int,
    service: ProductImageService,
    converters: dict[str, MarketplaceConverter],
) -> TenantAudit:
    """Build every marketplace's payload for every product of the tenant; count labels."""
    audit = TenantAudit(tenant_id, marketplaces={name: MarketplaceAudit() for name in converters})
    after = 0
    while True:
        with unit_of_work(engine, tenant_id) as session:
            products = list(
                session.scalars(
                    select(Product).where(Product.id > after).order_by(Product.id).limit(CHUNK)
                )
            )
            contracted = tenant_facts(session).is_contracted
            for product in products:
                both = shadow_reads.read_both(session, product.id, with_jsonb=not contracted)
                assert both is not None  # read in the same transaction as the product
                by_rule = normalise_legacy(
                    both.raw_jsonb,
                    product_id=product.id,
                    product_created_at=both.created_at,
                    is_legacy_source=is_legacy_source(both.source, service.legacy_sources),
                ).images
                labels = {i.id for i in both.rows if i.is_label} | {
                    i.id for i in by_rule if i.is_label
                }
                audit.labelled_products += bool(labels)
                listed = service.list_images(session, product_id=product.id)
                audit.read_paths[listed.read_path.value] += 1
                for name, converter in converters.items():
                    result = audit.marketplaces[name]
                    try:
                        payload = converter.from_images(product, listed)
                    except NoPublishablePhoto:
                        result.unpublishable += 1
                        continue
                    if labels & {photo.id for photo in payload.photos}:
                        result.leaking += 1
                        if len(result.leaking_sample) < SAMPLE:
                            result.leaking_sample.append(product.id)
        if not products:
            break
        audit.products += len(products)
        after = products[-1].id
    log.info(
        "audit.tenant_done",
        tenant=tenant_id,
        products=audit.products,
        read_paths=dict(audit.read_paths),
        leaking={name: m.leaking for name, m in audit.marketplaces.items()},
    )
    return audit
