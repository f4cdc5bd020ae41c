"""Etsy: the listing and its images for Open API v3 (`createDraftListing`, then
`uploadListingImage` per image with `rank` from 1; rank 1 is the main image).
Labels never leave: see app/marketplaces."""

from __future__ import annotations

from typing import Any

from app.images import Image
from app.marketplaces import ETSY
from app.models import Product
from app.services.marketplace import MarketplaceConverter


class EtsyListingConverter(MarketplaceConverter):
    """Builds the Etsy listing payload from the tenant's read path."""

    rules = ETSY

    def build(self, product: Product, photos: tuple[Image, ...]) -> dict[str, Any]:
        return {
            "title": product.title,
            "description": product.description,
            "price": str(product.price),
            "quantity": 1,
            "images": [
                {"url": p.url, "rank": i + 1, "alt_text": p.alt_text} for i, p in enumerate(photos)
            ],
        }
