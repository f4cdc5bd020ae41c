"""eBay: the Inventory API inventory item (`createOrReplaceInventoryItem`): `product.title`,
`product.description`, `product.imageUrls` (the first is the gallery picture), ...
Labels never leave: see app/marketplaces."""

from __future__ import annotations

from typing import Any

from app.images import Image
from app.marketplaces import EBAY
from app.models import Product
from app.services.marketplace import MarketplaceConverter


class EbayProductConversionService(MarketplaceConverter):
    """Builds the eBay inventory item from the tenant's read path."""

    rules = EBAY

    def build(self, product: Product, photos: tuple[Image, ...]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "sku": f"product-{product.id}",
            "availability": {"shipToLocationAvailability": {"quantity": 1}},
            "product": {
                "title": product.title,
                "description": product.description,
                "imageUrls": [p.url for p in photos],
            },
        }
        if product.brand:
            item["product"]["brand"] = product.brand
        return item
