"""`/api/products`: keyset listing and CRUD of the caller's products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Response, status

from app.api.deps import EngineDep, TenantUnit
from app.api.errors import ERROR_RESPONSES
from app.api.products.images import Images, Media
from app.api.products.schemas import (
    MAX_BIGINT,
    ProductCreate,
    ProductIdPath,
    ProductOut,
    ProductPage,
    ProductUpdate,
)
from app.core.security import now_utc
from app.services import product_service

router = APIRouter(prefix="/api/products", tags=["products"], responses=ERROR_RESPONSES)


@router.get("", response_model=ProductPage)
def list_products(
    session: TenantUnit,
    after: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ProductPage:
    """Products by ascending id; pass `next_after` back as `after` for the next page."""
    rows = product_service.list_products(session, after=after, limit=limit)
    items = [ProductOut.model_validate(row) for row in rows]
    next_after = items[-1].id if len(items) == limit else None
    return ProductPage(items=items, next_after=next_after)


@router.post("", response_model=ProductOut, status_code=status.HTTP_201_CREATED)
def create_product(body: ProductCreate, session: TenantUnit) -> ProductOut:
    """Create a product."""
    product = product_service.create_product(session, body.model_dump(), now=now_utc())
    return ProductOut.model_validate(product)


@router.get("/{product_id}", response_model=ProductOut)
def get_product(product_id: ProductIdPath, session: TenantUnit) -> ProductOut:
    """One product of the caller's tenant."""
    return ProductOut.model_validate(product_service.get_product(session, product_id))


@router.patch("/{product_id}", response_model=ProductOut)
def update_product(
    product_id: ProductIdPath, body: ProductUpdate, session: TenantUnit
) -> ProductOut:
    """Change the given fields."""
    changes = body.model_dump(exclude_unset=True)
    product = product_service.update_product(session, product_id, changes, now=now_utc())
    return ProductOut.model_validate(product)


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(
    product_id: ProductIdPath,
    engine: EngineDep,
    session: TenantUnit,
    images: Images,
    media: Media,
    background: BackgroundTasks,
) -> Response:
    """Delete the product and its images; their stored objects go too once nothing else
    references them."""
    urls = images.image_urls(session, product_id=product_id)
    product_service.delete_product(session, product_id)
    # Runs after the response is sent, so after this request's commit (see delete_image).
    background.add_task(media.remove_unreferenced, engine, session.tenant_id, urls)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
