"""`/api/products/{product_id}/marketplaces/{marketplace}`: the payload that would be sent to
Vinted, eBay or Etsy, with the images left out and why (nothing is sent from here)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.api.deps import TenantUnit, services_of
from app.api.errors import ERROR_RESPONSES
from app.api.products.images import READ_PATH_HEADER
from app.api.products.schemas import ErrorOut, ProductIdPath
from app.services.marketplace import MarketplaceConverter

router = APIRouter(
    prefix="/api/products/{product_id}/marketplaces",
    tags=["marketplaces"],
    responses={
        **ERROR_RESPONSES,
        409: {"model": ErrorOut, "description": "No photo of the product can be published"},
    },
)


class Marketplace(StrEnum):
    VINTED = "vinted"
    EBAY = "ebay"
    ETSY = "etsy"


class ExcludedOut(BaseModel):
    image_id: str
    url: str
    reason: str


class MarketplacePayloadOut(BaseModel):
    """What would be sent, and what was left out."""

    marketplace: str
    product_id: int
    read_path: str
    payload: dict[str, Any]
    excluded: list[ExcludedOut]


@router.get(
    "/{marketplace}",
    response_model=MarketplacePayloadOut,
    responses={200: {"headers": {READ_PATH_HEADER: {"description": "jsonb or table"}}}},
)
def marketplace_payload(
    product_id: ProductIdPath,
    marketplace: Marketplace,
    session: TenantUnit,
    request: Request,
    response: Response,
) -> MarketplacePayloadOut:
    """The listing payload for this marketplace: labels excluded, photos in order (the first
    is the cover), the marketplace's rules applied."""
    converter: MarketplaceConverter = services_of(request).converters[marketplace.value]
    built = converter.convert(session, product_id=product_id)
    response.headers[READ_PATH_HEADER] = built.read_path.value
    return MarketplacePayloadOut(
        marketplace=built.marketplace,
        product_id=built.product_id,
        read_path=built.read_path.value,
        payload=built.payload,
        excluded=[ExcludedOut(**vars(e)) for e in built.excluded],
    )
