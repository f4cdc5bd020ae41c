"""Vinted: the item payload of the listing flow (title, description, price, brand, photos in
order; the first photo is the cover). Labels never leave: see app/marketplaces."""

from __future__ import annotations

from typing import Any

from app.images import Image
from app.marketplaces import VINTED
from app.models import Product
from app.services.marketplace import MarketplaceConverter


class VintedProductConverter(MarketplaceConverter):
    """Builds the Vinted item payload from the tenant's read path."""

    rules = VINTED

    def build(self, product: Product, photos: tuple[Image, ...]) -> dict[str, Any]:
        return {
            "title": product.title,
            "description": product.description,
            "brand": product.brand,
            "price": {"amount": str(product.price), "currency_code": product.currency},
            "cover_photo_url": photos[0].url,
            "photos": [{"url": p.url, "position": i} for i, p in enumerate(photos)],
        }
