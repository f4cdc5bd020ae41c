"""Products of one tenant: keyset listing and CRUD. The session is bound to the tenant."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import undefer

from app.core.database import TenantSession
from app.core.errors import DomainError
from app.models import Product
from app.repositories.migration_state import CHANGED_PRODUCTS, WRITER_SETTING


class ProductNotFound(DomainError, LookupError):
    """No product with this id in the caller's tenant."""

    status = 404
    field = "product_id"

    def __init__(self, product_id: int) -> None:
        super().__init__(f"product {product_id} not found")
        self.product_id = product_id


def list_products(session: TenantSession, *, after: int | None, limit: int) -> Sequence[Product]:
    """One page of products by ascending id, starting after the given id (keyset)."""
    query = select(Product).order_by(Product.id).limit(limit)
    if after is not None:
        query = query.where(Product.id > after)
    return session.scalars(query).all()


def get_product(session: TenantSession, product_id: int) -> Product:
    """The product, or ProductNotFound."""
    product = session.get(Product, product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


def lock_product(
    session: TenantSession, product_id: int, *, with_images: bool = False, writer: str | None = None
) -> Product:
    """The product under its row lock (`SELECT ... FOR UPDATE`), or ProductNotFound; its
    JSONB loaded in the same statement when asked (absent once the tenant is contracted).
    `writer` declares this transaction's writes of `products.images` to the safety net
    (migration_state.declare_writer; '' withdraws it) in the same round trip."""
    query = select(Product).where(Product.id == product_id).with_for_update()
    if with_images:
        query = query.options(undefer(Product.images))
    if writer is not None:
        query = query.add_columns(func.set_config(WRITER_SETTING, writer, True))
    product = session.scalars(query).one_or_none()
    if product is None:
        raise ProductNotFound(product_id)
    return product


def lock_for_write(session: TenantSession, product_id: int, *, writer: str) -> tuple[Product, bool]:
    """`lock_product(..., with_images=True, writer=writer)`, and in the same statement
    whether the safety net logged the product as written outside the dual-write since its
    rows were last rebuilt (its rows may be stale: the JSONB is the truth)."""
    logged = exists().where(CHANGED_PRODUCTS.c.product_id == Product.id)
    query = (
        select(Product, logged, func.set_config(WRITER_SETTING, writer, True))
        .where(Product.id == product_id)
        .options(undefer(Product.images))
        .with_for_update(of=Product)
    )
    found = session.execute(query).one_or_none()
    if found is None:
        raise ProductNotFound(product_id)
    return found[0], bool(found[1])


def create_product(session: TenantSession, fields: Mapping[str, Any], *, now: datetime) -> Product:
    """Insert a product (no images yet) and return it with its id."""
    # No `images`: its server default fills it, and a contracted tenant has no such column.
    product = Product(**fields, created_at=now, updated_at=now)
    session.add(product)
    session.flush()
    return product


def update_product(
    session: TenantSession, product_id: int, changes: Mapping[str, Any], *, now: datetime
) -> Product:
    """Apply the given field changes under the product's row lock."""
    product = lock_product(session, product_id)
    for name, value in changes.items():
        setattr(product, name, value)
    product.updated_at = now
    session.flush()
    return product


def delete_product(session: TenantSession, product_id: int) -> None:
    """Delete the product (its image rows go with it: ON DELETE CASCADE)."""
    session.delete(lock_product(session, product_id))
    session.flush()
