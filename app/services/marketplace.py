"""What every marketplace converter shares: the product's images from the read router (so a
tenant's read stage decides for the API and every marketplace at once), the photo
selection, and the refusal to build a listing with no publishable photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.database import TenantSession
from app.images import Image
from app.marketplaces import (
    Exclusion,
    MarketplaceRules,
    NoPublishablePhoto,
    select_photos,
)
from app.models import Product
from app.services.image_paths import ReadPath
from app.services.image_reads import ImageList
from app.services.product_image_service import ProductImageService
from app.services.product_service import get_product


@dataclass(frozen=True)
class MarketplacePayload:
    """The payload that would be sent, the images left out and why, and the read path."""

    marketplace: str
    product_id: int
    payload: dict[str, Any]
    photos: tuple[Image, ...]
    excluded: tuple[Exclusion, ...]
    read_path: ReadPath


class MarketplaceConverter:
    """Base of the three converters: subclasses say which rules and build the payload."""

    rules: MarketplaceRules

    def __init__(self, images: ProductImageService, *, allow_http: bool = False) -> None:
        self.images = images
        self.allow_http = allow_http

    def convert(self, session: TenantSession, *, product_id: int) -> MarketplacePayload:
        """The listing payload for the product; NoPublishablePhoto when none is left."""
        product = get_product(session, product_id)
        return self.from_images(product, self.images.list_images(session, product_id=product_id))

    def from_images(self, product: Product, listed: ImageList) -> MarketplacePayload:
        """The payload from images already read through the router (the audit reads once
        for the three marketplaces)."""
        selection = select_photos(listed.images, self.rules, allow_http=self.allow_http)
        if not selection.photos:
            raise NoPublishablePhoto(product.id, self.rules.name, selection.excluded)
        return MarketplacePayload(
            marketplace=self.rules.name,
            product_id=product.id,
            payload=self.build(product, selection.photos),
            photos=selection.photos,
            excluded=selection.excluded,
            read_path=listed.read_path,
        )

    def build(self, product: Product, photos: tuple[Image, ...]) -> dict[str, Any]:
        raise NotImplementedError
