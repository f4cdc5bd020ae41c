"""The three marketplace converters, built once per process around the read router."""

from __future__ import annotations

from app.core.settings import Settings
from app.services.ebay.ebay_product_conversion_service import EbayProductConversionService
from app.services.etsy.etsy_listing_converter import EtsyListingConverter
from app.services.marketplace import MarketplaceConverter
from app.services.product_image_service import ProductImageService
from app.services.vinted.vinted_product_converter import VintedProductConverter


def converters(images: ProductImageService, settings: Settings) -> dict[str, MarketplaceConverter]:
    """One converter per marketplace, by name (vinted, ebay, etsy)."""
    built: list[MarketplaceConverter] = [
        VintedProductConverter(images, allow_http=settings.marketplace_allow_http),
        EbayProductConversionService(images, allow_http=settings.marketplace_allow_http),
        EtsyListingConverter(images, allow_http=settings.marketplace_allow_http),
    ]
    return {converter.rules.name: converter for converter in built}
