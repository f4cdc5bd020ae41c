"""A tenant's product, with the legacy JSONB image column the migration moves away from."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

PRODUCT_STATUSES = ("draft", "active", "sold", "archived")


class Product(Base):
    """`user_<id>.products`."""

    __tablename__ = "products"
    # No RETURNING of server defaults on insert: it would name `images`, which a contracted
    # tenant no longer has; server-filled attributes load on first access instead.
    __mapper_args__ = {"eager_defaults": False}
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("status IN ('draft', 'active', 'sold', 'archived')", name="status_known"),
        Index("ix_products_source", "source"),
        Index("ix_products_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default="")
    brand: Mapped[str | None] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), server_default="EUR")
    status: Mapped[str] = mapped_column(String(16), server_default="draft")
    source: Mapped[str] = mapped_column(String(64), server_default="stoflow")
    # The legacy representation: [{"url", "order", "created_at"}, ...]. Kept in step with
    # product_images by the dual-write until the contract migration drops it. Deferred: a
    # contracted tenant's products have no such column, so it is loaded only where asked.
    images: Mapped[Any] = mapped_column(JSONB, server_default=text("'[]'::jsonb"), deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
